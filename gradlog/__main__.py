"""``python -m gradlog``: the same as the ``gradlog`` command."""

from gradlog.cli import run

if __name__ == "__main__":
    run()
