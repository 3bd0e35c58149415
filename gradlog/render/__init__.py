"""Renderers: a :class:`~gradlog.summary.Report` in, a string (or styled lines) out."""
