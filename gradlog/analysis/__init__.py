"""The analyser: logs in, findings out. Polars, Typer and Rich; never torch.

Data flows one way: a reader (:mod:`.readers`, :mod:`.scan`, :mod:`.sources`) gives one long
frame of records keyed by run, the engine (:mod:`.engine`, :mod:`.samples`) judges every run of
it, :mod:`.model` holds the results, the renderers (:mod:`.render`) turn them into lines, tables
and documents, and :mod:`.output` is where they leave the program. :mod:`.api` is the public
face; the command line (:mod:`gradlog.cli`) calls it.
"""
