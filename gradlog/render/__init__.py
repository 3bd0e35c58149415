"""Renderers: result objects (:mod:`gradlog.model`) in, data out (lines, tables, documents);
:mod:`gradlog.output` writes them."""
