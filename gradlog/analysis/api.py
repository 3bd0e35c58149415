"""gradlog's Python API for analysis: what the command line does, as DataFrames and objects.

``read`` loads logs the way every command does; ``analyse`` is ``gradlog report``; ``batch`` is
``gradlog batch``. The command line calls exactly these. Polars only, never torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from typing import TYPE_CHECKING

import polars as pl

from gradlog.analysis.judging import Options
from gradlog.errors import GradlogError, LogFormatError

if TYPE_CHECKING:
    from gradlog.analysis.batch import BatchResult
    from gradlog.analysis.model import RunReport, RunSummary
    from gradlog.analysis.report import AnalysedReport

PathLike = str | os.PathLike[str]


def _paths(paths: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _options(
    window: int,
    min_samples: int,
    pair: tuple[str, str] | None,
    unweighted: bool,
    original: bool,
) -> Options:
    return Options(
        window=window,
        min_samples=min_samples,
        pair=tuple(pair) if pair else None,
        unweighted=unweighted,
        original=original,
    )


def _mapping(rules: Sequence[str] | None, map_file: PathLike | None):
    """``--map`` and ``--map-file`` as the API takes them: None keeps the current mapping."""
    if not rules and map_file is None:  # the mapping module only when rules come
        return nullcontext()
    from gradlog.analysis.foreign.mapping import make_mapping, using_mapping

    return using_mapping(make_mapping(list(rules or ()), map_file))


def read(
    paths: PathLike | Sequence[PathLike],
    *,
    strict: bool = False,
    mapping: Sequence[str] | None = None,
    map_file: PathLike | None = None,
    storage_options: dict | None = None,
) -> pl.DataFrame:
    """Every record of every log under ``paths`` (files, directories, globs, object-store URLs)
    as one long frame: the columns of docs/format.md, plus ``source`` (the file each record
    came from). ``storage_options``: how to reach object storage (docs/batch.md), as Polars'.

    Crashed logs are read up to their last whole record, as the report reads them; a log that
    cannot be read raises :class:`gradlog.errors.LogFormatError` naming the file and line.
    Other tools' logs (docs/import.md) are read through the built-in templates, after
    ``mapping`` (``["TEMPLATE=FIELD", ...]``, as ``--map``) and ``map_file`` (``--map-file``).
    """
    with _mapping(mapping, map_file):
        return _read(paths, strict, storage_options)


def _read(
    paths: PathLike | Sequence[PathLike], strict: bool, storage_options: dict | None = None
) -> pl.DataFrame:
    from gradlog.analysis.readers import read_log
    from gradlog.analysis.sources import DATASET, MISSING, find_sources

    frames = []
    for source in find_sources(_paths(paths), storage_options=storage_options):
        if source.how == MISSING:
            raise LogFormatError(source.error or "no such file", source.path)
        if source.how == DATASET:
            raise GradlogError(f"{source.path}: read datasets with polars.scan_parquet")
        log = read_log(source.path, strict=strict, storage_options=storage_options)
        frames.append(log.frame.with_columns(source=pl.lit(source.path)))
    if not frames:
        raise GradlogError("no logs found in " + ", ".join(_paths(paths)))
    return pl.concat(frames, how="vertical_relaxed")


def analyse(
    path: PathLike,
    *,
    window: int = Options.window,
    min_samples: int = Options.min_samples,
    pair: tuple[str, str] | None = None,
    unweighted: bool = False,
    original: bool = False,
    run: str | None = None,
    strict: bool = False,
    mapping: Sequence[str] | None = None,
    map_file: PathLike | None = None,
    storage_options: dict | None = None,
) -> AnalysedReport:
    """``gradlog report PATH``: the report of one log (``-``: stdin; or an object-store URL).

    ``report.to_dict()`` is ``--format json``; ``report.to_polars()`` one row per run;
    in a notebook the report shows as Markdown. ``mapping``, ``map_file`` and
    ``storage_options``: as :func:`read`.
    """
    from gradlog.analysis.limits import event_limit
    from gradlog.analysis.readers import read_log
    from gradlog.analysis.report import analyse as analyse_log

    with _mapping(mapping, map_file):
        log = read_log(
            os.fspath(path),
            strict=strict,
            max_events=event_limit(),
            storage_options=storage_options,
        )
    return analyse_log(
        log, _options(window, min_samples, pair, unweighted, original), run=run, strict=strict
    )


def batch_result(
    paths: PathLike | Sequence[PathLike],
    *,
    window: int = Options.window,
    min_samples: int = Options.min_samples,
    pair: tuple[str, str] | None = None,
    unweighted: bool = False,
    original: bool = False,
    storage_options: dict | None = None,
    progress=None,
    mapping: Sequence[str] | None = None,
    map_file: PathLike | None = None,
    scheduler: str | None = None,
    summary: PathLike | None = None,
) -> BatchResult:
    """``gradlog batch``'s result objects (one :class:`~gradlog.analysis.model.RunSummary` per row).

    ``summary``: a Parquet summary table (``--summary``, docs/batch.md): only the logs new or
    changed since it was written are read, and it is replaced by this batch's rows. A row read
    back from it carries the table's columns; its other fields keep their defaults."""
    # imported here: gradlog report, which never batches, starts without the table renderer
    from gradlog.analysis.batch import BatchOptions, run_batch

    analyse = None
    if scheduler is not None:  # Dask, imported only then
        from gradlog.analysis.cluster import on_cluster

        analyse = partial(on_cluster, scheduler)
    with _mapping(mapping, map_file):
        return run_batch(
            _paths(paths),
            _options(window, min_samples, pair, unweighted, original),
            BatchOptions(storage_options=storage_options),
            progress,
            analyse,
            summary=summary,
        )


def run_reports(
    rows: Sequence[RunSummary],
    *,
    window: int = Options.window,
    min_samples: int = Options.min_samples,
    pair: tuple[str, str] | None = None,
    unweighted: bool = False,
    original: bool = False,
    storage_options: dict | None = None,
) -> list[RunReport | None]:
    """The whole analysis (every event) of each batch row's run, as :func:`analyse` makes it,
    each file read once: what ``gradlog batch --format html`` draws. None for an error row, or
    a run whose file cannot be read by itself."""
    found: dict[str, AnalysedReport | None] = {}
    out: list[RunReport | None] = []
    for row in rows:
        if row.error is not None:
            out.append(None)
            continue
        if row.source not in found:
            try:
                found[row.source] = analyse(
                    row.source,
                    window=window,
                    min_samples=min_samples,
                    pair=pair,
                    unweighted=unweighted,
                    original=original,
                    storage_options=storage_options,
                )
            except GradlogError:
                found[row.source] = None
        report = found[row.source]
        runs = report.runs if report is not None else ()
        out.append(next((r for r in runs if r.summary.run == row.run), None))
    return out


def batch(
    paths: PathLike | Sequence[PathLike],
    *,
    window: int = Options.window,
    min_samples: int = Options.min_samples,
    pair: tuple[str, str] | None = None,
    unweighted: bool = False,
    original: bool = False,
    storage_options: dict | None = None,
    mapping: Sequence[str] | None = None,
    map_file: PathLike | None = None,
    scheduler: str | None = None,
    summary: PathLike | None = None,
) -> pl.DataFrame:
    """``gradlog batch PATHS...``: one row per run (or unreadable file), in the order found,
    with the columns of ``gradlog batch --format csv``; ``mapping``, ``map_file``: as :func:`read`;
    ``scheduler``: a Dask scheduler's address (``tcp://host:8786``), whose workers analyse the
    logs (``pip install 'gradlog-mtl[dask]'``; docs/scale.md); ``summary``: as :func:`batch_result`."""
    from gradlog.analysis.render.batch import rows_frame

    result = batch_result(
        paths,
        window=window,
        min_samples=min_samples,
        pair=pair,
        unweighted=unweighted,
        original=original,
        storage_options=storage_options,
        mapping=mapping,
        map_file=map_file,
        scheduler=scheduler,
        summary=summary,
    )
    return rows_frame(result.rows)
