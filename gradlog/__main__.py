"""``python -m gradlog``: the same as the ``gradlog`` command."""

from gradlog.cli import main

if __name__ == "__main__":
    main()
