"""Callbacks for training frameworks: optional extras, each imported only when used.

* :mod:`gradlog.recorder.integrations.lightning`: ``GradlogCallback`` for Lightning
  (``pip install 'gradlog-mtl[lightning]'``);
* :mod:`gradlog.recorder.integrations.huggingface`: ``GradlogCallback`` for the Hugging Face
  ``Trainer`` (``pip install 'gradlog-mtl[huggingface]'``).

Importing this package imports neither framework.
"""
