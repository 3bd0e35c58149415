"""Callbacks for training frameworks: optional extras, each imported only when used.

* :mod:`gradlog.integrations.lightning`: ``GradlogCallback`` for Lightning
  (``pip install '.[lightning]'``);
* :mod:`gradlog.integrations.huggingface`: ``GradlogCallback`` for the Hugging Face
  ``Trainer`` (``pip install '.[huggingface]'``).

Importing this package imports neither framework.
"""
