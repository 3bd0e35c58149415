"""``gradlog batch``: one summary row per run, over any number of logs.

The work is the analysis engine (:mod:`gradlog.analysis.engine`, the same as ``gradlog report``'s) over
scans of many files at once (:mod:`gradlog.analysis.scan`), one chunk of files (about ``chunk_bytes`` of
input) at a time, so memory is bounded by the chunk, not by the archive, and a progress bar has
something to count.

A broken file never ends the batch. When a chunk's query fails (a line that is not JSON, a
Parquet file that is not one), the chunk is split in halves until the culprits stand alone, so a
few bad files in thousands cost a few extra scans; a file alone that still fails, or whose
records break the contract, is read by :func:`gradlog.analysis.readers.read_log`, the reader of
``gradlog report``. It either recovers the file (skipping a crash's partial last line, merging a
Parquet journal), and its runs are analysed like the others, or names the problem, which becomes
the file's one row with ``status == "error"``.

A row is a :class:`gradlog.analysis.model.RunSummary`: the very object ``gradlog report`` summarises.

The chunks are analysed here, one after another, or on a Dask cluster
(:mod:`gradlog.analysis.cluster`, ``--scheduler``), each by :func:`analyse_chunk`; either way
the rows come out in the order of the sources.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import polars as pl

from gradlog.analysis.judging import Options
from gradlog.analysis.model import RunSummary, error_row, summaries
from gradlog.analysis.render.batch import counts
from gradlog.analysis.sources import (
    CAREFUL,
    DATASET,
    JSON,
    MISSING,
    PARQUET,
    REMOTE_JSON,
    REMOTE_PARQUET,
    Source,
    find_sources,
    mark_cut,
)
from gradlog.analysis.status import Status
from gradlog.classify import FailOn
from gradlog.errors import GradlogError
from gradlog.format import KIND_EVENT
from gradlog.frames import READ_ERRORS

if TYPE_CHECKING:  # the scan and the engine are imported where a log is read
    from gradlog.analysis.scan import Chunk

DEFAULT_CHUNK_BYTES = 32 << 20
# one log each, read by the scans: the careful reader reads any of them again, alone
_FILES = (JSON, PARQUET, REMOTE_JSON, REMOTE_PARQUET)


@dataclass(frozen=True)
class BatchOptions:
    """How much input to read at once, and how to reach object storage."""

    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    storage_options: dict | None = None  # for object-store URLs (credentials, region...)


@dataclass(frozen=True)
class BatchResult:
    rows: tuple[RunSummary, ...]
    n_sources: int
    # with a summary table (run_batch's ``summary``): how many sources were read, not reused,
    # and what the table's reader has to say (options changed: everything read again)
    n_read: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[RunSummary, ...]:
        return tuple(r for r in self.rows if r.error is not None)

    def counts(self) -> dict[Status, int]:
        """How many rows per status, worst first; statuses with none left out."""
        return counts(self.rows)

    def failing(self, levels: Sequence[FailOn]) -> list[FailOn]:
        """The ``--fail-on`` levels some run reaches."""
        return [lvl for lvl in levels if any(r.reaches(lvl) for r in self.rows)]


# (sources done, sources in all); while they are being found: (sources found so far, None)
Progress = Callable[[int, int | None], None]
# Where the chunks are analysed: here (the default) or on a cluster (gradlog.analysis.cluster).
# It gives each chunk's index and rows as the chunk is done, in any order.
Analyse = Callable[
    [list[list[Source]], Options, BatchOptions], Iterator[tuple[int, list[RunSummary]]]
]


def _spread(row: RunSummary) -> float:
    return -1.0 if row.spread is None else row.spread


def _descending(value: float | int | None) -> tuple[bool, float]:
    return (value is None, -(value if value is not None else 0))


# --sort: every key lists the worst (or largest) first and keeps the order found among equals
SORT_KEYS: dict[str, Callable[[RunSummary], object]] = {
    "status": lambda r: r.status.rank,
    "file": lambda r: r.source,
    "run": lambda r: r.name,
    "ratio": lambda r: (r.status is Status.ERROR, -_spread(r)),
    "spread": lambda r: (r.status is Status.ERROR, -_spread(r)),
    "norm": lambda r: _descending(r.mean_norm),
    "events": lambda r: _descending(r.n_events),
}


def select_rows(
    rows: Sequence[RunSummary],
    sort: str = "status",
    statuses: Sequence[Status] = (),
    limit: int | None = None,
) -> list[RunSummary]:
    """The rows to show: only ``statuses`` (all if empty), sorted by ``sort``, at most ``limit``."""
    chosen = [r for r in rows if not statuses or r.status in statuses]
    chosen.sort(key=SORT_KEYS[sort])
    return chosen if limit is None else chosen[:limit]


def run_batch(
    paths: Sequence[str],
    judging: Options = Options(),
    options: BatchOptions = BatchOptions(),
    progress: Progress | None = None,
    analyse: Analyse | None = None,
    summary: str | os.PathLike[str] | None = None,
) -> BatchResult:
    """Summarise every run of every log under ``paths``, in the order found; ``analyse``: where
    (by default in this process).

    With ``summary`` (a Parquet file, :mod:`gradlog.analysis.summary_table`), only the sources
    that are new or changed since that table was written are read, and the table is replaced
    by this batch's rows: the result is the same as without it.
    """
    counted = None if progress is None else (lambda n: progress(n, None))
    sources = find_sources(list(paths), storage_options=options.storage_options, counted=counted)
    if not sources:
        raise GradlogError(
            "no logs found (.jsonl, .jsonl.gz, .ndjson, .parquet) in " + ", ".join(paths)
        )
    if summary is not None:
        from gradlog.analysis.summary_table import incremental

        done = incremental(
            summary,
            sources,
            judging,
            lambda todo: analyse_sources(todo, judging, options, progress, analyse),
        )
        return BatchResult(done.rows, done.n_sources, n_read=done.n_read, notes=done.notes)
    found = analyse_sources(sources, judging, options, progress, analyse)
    return BatchResult(tuple(row for rows in found.values() for row in rows), len(sources))


def analyse_sources(
    sources: Sequence[Source],
    judging: Options = Options(),
    options: BatchOptions = BatchOptions(),
    progress: Progress | None = None,
    analyse: Analyse | None = None,
) -> dict[str, list[RunSummary]]:
    """Each source's rows (its path the key), in the order of ``sources``."""
    chunks = _chunks(list(sources), options.chunk_bytes)
    analysed = (analyse or _here)(chunks, judging, options)
    placed: list[list[RunSummary]] = [[] for _ in chunks]
    done = 0
    if progress is not None:  # the total at once: a cluster's first chunk may take a while
        progress(done, len(sources))
    for i, rows in analysed:  # as each chunk is done, in any order
        placed[i] = rows
        done += len(chunks[i])
        if progress is not None:
            progress(done, len(sources))
    found: dict[str, list[RunSummary]] = {s.path: [] for s in sources}
    for chunk, rows in zip(chunks, placed):
        _attribute(chunk, rows, found)
    return found


def _attribute(
    chunk: list[Source], rows: list[RunSummary], found: dict[str, list[RunSummary]]
) -> None:
    """Each row to its source: the one it names, else (a file of a dataset, named by Polars)
    the chunk's last dataset or object-store source."""
    mine = {s.path for s in chunk}
    scanned = [s for s in chunk if s.how in (REMOTE_JSON, REMOTE_PARQUET, DATASET)]
    fallback = (scanned or chunk)[-1].path
    for row in rows:
        found[row.source if row.source in mine else fallback].append(row)


def _here(
    chunks: list[list[Source]], judging: Options, options: BatchOptions
) -> Iterator[tuple[int, list[RunSummary]]]:
    """Each chunk's index and rows, analysed in this process, in order."""
    # The next chunk (one at most: memory stays bounded by two) is read while this one is
    # analysed: Polars releases the GIL in a collect, and the phases overlap a little.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = _read_ahead(pool, chunks, 0, options)
        for i, chunk in enumerate(chunks):
            read, ahead = ahead, _read_ahead(pool, chunks, i + 1, options)
            yield i, analyse_chunk(chunk, judging, options, read)


def _read_ahead(
    pool: ThreadPoolExecutor, chunks: list[list[Source]], i: int, options: BatchOptions
) -> Future | None:
    if i >= len(chunks) or any(s.how in (CAREFUL, MISSING) for s in chunks[i]):
        return None
    return pool.submit(_read, chunks[i], options)


def _chunks(sources: list[Source], limit: int) -> list[list[Source]]:
    """Consecutive groups of sources of about ``limit`` bytes; careful reads go one at a time."""
    chunks: list[list[Source]] = []
    current: list[Source] = []
    size = 0
    for source in sources:
        if source.how in (CAREFUL, MISSING):
            if current:
                chunks.append(current)
                current, size = [], 0
            chunks.append([source])
            continue
        if current and size + source.size > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(source)
        size += source.size
    if current:
        chunks.append(current)
    return chunks


def analyse_chunk(
    chunk: list[Source],
    judging: Options,
    options: BatchOptions,
    read: Future | None = None,
) -> list[RunSummary]:
    """The rows of one chunk of sources (from ``read``, its records read ahead, if given):
    every run found, in the order of the sources, and an error row for each source that
    cannot be read. A Dask worker runs it as it is (:mod:`gradlog.analysis.cluster`)."""
    if len(chunk) == 1 and chunk[0].how == MISSING:
        return [error_row(chunk[0].path, chunk[0].error or "no such file")]
    so = options.storage_options
    if len(chunk) == 1 and chunk[0].how == CAREFUL:
        return _careful_rows(chunk[0], judging, storage_options=so)
    try:
        base = read.result() if read is not None else _read(chunk, options)
    except _CutObjects as cut:  # to the careful reader, and the others scanned again
        parts = _chunks(cut.chunk, options.chunk_bytes)
        return [row for part in parts for row in analyse_chunk(part, judging, options)]
    except READ_ERRORS as exc:  # any broken input: find it, then let read_log say
        if len(chunk) == 1:
            return _careful_rows(chunk[0], judging, reason=exc, storage_options=so)
        half = len(chunk) // 2
        return analyse_chunk(chunk[:half], judging, options) + analyse_chunk(
            chunk[half:], judging, options
        )
    from gradlog.analysis.engine import judge

    base, over = _within_event_limit(base)
    runs = judge(base, judging).runs
    bad = set(runs.filter("bad").get_column("source").to_list())
    by_source: dict[str, list[RunSummary]] = {}
    for row in summaries(runs):
        by_source.setdefault(row.source, []).append(row)
    rows: list[RunSummary] = []
    empty: list[str] = []
    for source in chunk:
        found = by_source.pop(source.path, None)
        if source.path in over:
            rows.append(over[source.path])
        elif source.how in _FILES and (found is None or source.path in bad):
            # no records, or records that break the contract: the careful reader says why
            rows.extend(_careful_rows(source, judging, storage_options=so))
        elif found is None:
            empty.append(source.path)
        else:
            rows.extend(found)
    for found in by_source.values():  # the files of a dataset, named by Polars
        rows.extend(found)
    if empty and not by_source:
        rows.extend(error_row(path, "no records") for path in empty)
    return rows


def _within_event_limit(base: Chunk) -> tuple[Chunk, dict[str, RunSummary]]:
    """The chunk without its logs of more events than the analysis may hold (as the careful
    reader refuses them), and an error row for each of those."""
    from gradlog.analysis.limits import event_limit, too_many_events

    limit = event_limit()
    if base.records.height <= limit:  # no source of the chunk can hold more
        return base, {}
    counts = base.records.filter(pl.col("kind") == KIND_EVENT).group_by("source").len()
    over = counts.filter(pl.col("len") > limit).get_column("source").to_list()
    if not over:
        return base, {}
    keep = ~pl.col("source").is_in(over)
    rows = {path: error_row(path, str(too_many_events(path, limit))) for path in over}
    return replace(base, records=base.records.filter(keep), meta=base.meta.filter(keep)), rows


class _CutObjects(Exception):
    """A chunk's scan failed on remote objects a crash cut: the chunk, with those marked for
    the careful reader (:func:`gradlog.analysis.sources.mark_cut`)."""

    def __init__(self, chunk: list[Source]) -> None:
        super().__init__("cut objects")
        self.chunk = chunk


def _read(chunk: list[Source], options: BatchOptions) -> Chunk:
    """The records of a chunk in memory: one scan per kind of source."""
    try:
        return _scans(chunk, options, tokens=False)
    except READ_ERRORS:
        if not any(s.how in (JSON, REMOTE_JSON) for s in chunk):
            raise
        marked = mark_cut(chunk, options.storage_options)
        if marked != chunk:  # objects cut by a crash: the scan would fail again
            raise _CutObjects(marked) from None
    # "NaN"/"Infinity" tokens (or a broken line: then this fails too, and the caller splits)
    return _scans(chunk, options, tokens=True)


def _scans(chunk: list[Source], options: BatchOptions, *, tokens: bool) -> Chunk:
    from gradlog.analysis.jsonl_scan import read_json
    from gradlog.analysis.scan import Chunk, read_dataset, read_parquet

    groups: dict[str, list[str]] = {}
    for source in chunk:
        groups.setdefault(source.how, []).append(source.path)
    parts: list[Chunk] = []
    so = options.storage_options
    for how, paths in groups.items():
        if how == JSON:
            parts.append(read_json(paths, len(parts), tokens=tokens))
        elif how == PARQUET:
            parts.append(read_parquet(paths, len(parts)))
        elif how == REMOTE_JSON:  # Polars fetches the objects of one scan side by side
            parts.append(read_json(paths, len(parts), tokens=tokens, storage_options=so))
        elif how == REMOTE_PARQUET:
            parts.append(read_parquet(paths, len(parts), storage_options=so))
        elif how == DATASET:
            for path in paths:
                parts.append(read_dataset(path, len(parts), storage_options=so))
        else:  # pragma: no cover - careful and missing sources never reach a scan
            raise AssertionError(how)
    return Chunk.concat(parts)


def _careful_rows(
    source: Source,
    judging: Options,
    reason: BaseException | None = None,
    storage_options: dict | None = None,
) -> list[RunSummary]:
    """Read one source with the report's reader: recovered runs, or one error row."""
    from gradlog.analysis.engine import judge
    from gradlog.analysis.limits import event_limit
    from gradlog.analysis.readers import read_log
    from gradlog.analysis.scan import from_frame

    if source.how not in (*_FILES, CAREFUL):
        return [error_row(source.path, f"cannot be read ({_first_line(reason)})")]
    try:
        log = read_log(source.path, max_events=event_limit(), storage_options=storage_options)
    except GradlogError as exc:
        return [error_row(source.path, str(exc))]
    except READ_ERRORS as exc:  # one unreadable file is one row, never the end
        return [error_row(source.path, f"cannot be read ({_first_line(exc)})")]
    try:
        runs = judge(from_frame(log.frame, source.path, 0), judging).runs
    except READ_ERRORS as exc:
        return [error_row(source.path, f"cannot be analysed ({_first_line(exc)})")]
    rows = summaries(runs, where=log.where, notes=tuple(log.notes))
    return rows or [error_row(source.path, "no records")]


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
