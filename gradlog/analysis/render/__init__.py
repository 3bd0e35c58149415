"""Renderers: result objects (:mod:`gradlog.analysis.model`) in, data out (lines, tables, documents);
:mod:`gradlog.analysis.output` writes them."""
