"""``gradlog batch``: one summary row per run, over any number of logs.

The work is the lazy query of :mod:`gradlog.runstats` over scans of many files at once
(:mod:`gradlog.scan`), collected once per chunk of files (about ``chunk_bytes`` of input), so
memory is bounded by the chunk, not by the archive, and a progress bar has something to count.

A broken file never ends the batch. When a chunk's query fails (a line that is not JSON, a
Parquet file that is not one), the chunk is split in halves until the culprits stand alone, so a
few bad files in thousands cost a few extra scans; a file alone that still fails, or whose
records break the contract, is read by :func:`gradlog.readers.read_log`, the reader of
``gradlog report``. It either recovers the file (skipping a crash's partial last line, merging a
Parquet journal), and its runs are analysed like the others, or names the problem, which becomes
the file's one row with ``status == "error"``.

The numbers are those of ``gradlog report --format json`` for the same run (tested): see
:class:`RunRow` for which is which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from gradlog import classify
from gradlog.classify import FailOn, NormBand, RatioBand
from gradlog.errors import GradlogError
from gradlog.runstats import run_table, summarise
from gradlog.scan import Chunk, from_frame, read_dataset, read_json, read_parquet
from gradlog.sources import (
    CAREFUL,
    DATASET,
    JSON,
    MISSING,
    PARQUET,
    REMOTE_JSON,
    REMOTE_PARQUET,
    Source,
    find_sources,
)
from gradlog.status import Status, run_status

DEFAULT_CHUNK_BYTES = 32 << 20


@dataclass(frozen=True)
class BatchOptions:
    """How to judge the runs (as ``gradlog report``) and how much input to read at once."""

    window: int = classify.DEFAULT_WINDOW
    min_samples: int = classify.DEFAULT_MIN_SAMPLES
    pair: tuple[str, str] | None = None  # default per run: pointer/type, else the first two
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    storage_options: dict | None = None  # for object-store URLs (credentials, region...)


@dataclass(frozen=True)
class RunRow:
    """One run of the batch (or one unreadable file, with ``error`` set).

    Against ``gradlog report --format json`` of the same run: ``window_mean`` is
    ``summary.final_ratio`` (the final window mean), ``final_ratio`` the ratio of the last
    defined balance sample (``events.ratio``), ``worst_ratio``/``worst_band`` and
    ``worst_norm_band`` as in the summary, ``mean_norm``/``mean_norm_std``/``max_norm_peak``
    likewise, ``first_imbalance``/``first_collapse`` the same labels (``"Epoch 15"``), and
    ``weights``/``flags`` the recommendation's.
    """

    file: str
    run: str | None
    status: Status
    tasks: tuple[str, ...] = ()
    pair: tuple[str, str] | None = None
    events: int = 0
    epochs: int | None = None  # the last logged epoch
    final_ratio: float | None = None
    window_mean: float | None = None
    worst_ratio: float | None = None
    final_band: RatioBand | None = None
    worst_band: RatioBand | None = None
    worst_norm_band: NormBand | None = None
    first_imbalance: str | None = None
    first_collapse: str | None = None
    mean_norm: float | None = None
    mean_norm_std: float | None = None
    max_norm_peak: float | None = None
    n_nonfinite: int = 0
    weights: dict[str, float] | None = None
    flags: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()

    def reaches(self, level: FailOn) -> bool:
        """Whether this run's findings reach a ``--fail-on`` level (never for an error row)."""
        return self.error is None and classify.reaches(level, self.worst_band, self.worst_norm_band)


@dataclass(frozen=True)
class BatchResult:
    rows: tuple[RunRow, ...]
    n_sources: int

    @property
    def errors(self) -> tuple[RunRow, ...]:
        return tuple(r for r in self.rows if r.error is not None)

    def counts(self) -> dict[Status, int]:
        """How many rows per status, worst first; statuses with none left out."""
        counts: dict[Status, int] = {}
        for row in sorted(self.rows, key=lambda r: r.status.rank):
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def failing(self, levels: Sequence[FailOn]) -> list[FailOn]:
        """The ``--fail-on`` levels some run reaches."""
        return [lvl for lvl in levels if any(r.reaches(lvl) for r in self.rows)]


Progress = Callable[[int, int], None]  # (sources done, sources in all)


def _imbalance(row: RunRow) -> float:
    r = row.window_mean
    if r is None or not r > 0:
        return -1.0 if r is None else float("inf")
    return max(r, 1 / r)


def _descending(value: float | int | None) -> tuple[bool, float]:
    return (value is None, -(value if value is not None else 0))


# --sort: every key lists the worst (or largest) first and keeps the order found among equals
SORT_KEYS: dict[str, Callable[[RunRow], object]] = {
    "status": lambda r: r.status.rank,
    "file": lambda r: r.file,
    "run": lambda r: r.run or "",
    "ratio": lambda r: (r.status is Status.ERROR, -_imbalance(r)),
    "norm": lambda r: _descending(r.mean_norm),
    "events": lambda r: _descending(r.events),
}


def select_rows(
    rows: Sequence[RunRow],
    sort: str = "status",
    statuses: Sequence[Status] = (),
    limit: int | None = None,
) -> list[RunRow]:
    """The rows to show: only ``statuses`` (all if empty), sorted by ``sort``, at most ``limit``."""
    chosen = [r for r in rows if not statuses or r.status in statuses]
    chosen.sort(key=SORT_KEYS[sort])
    return chosen if limit is None else chosen[:limit]


def run_batch(
    paths: Sequence[str],
    options: BatchOptions = BatchOptions(),
    progress: Progress | None = None,
) -> BatchResult:
    """Summarise every run of every log under ``paths``, in the order found."""
    if options.window < 1 or options.min_samples < 1:
        raise GradlogError("--window and --min-samples must be at least 1")
    sources = find_sources(list(paths))
    if not sources:
        raise GradlogError(
            "no logs found (.jsonl, .jsonl.gz, .ndjson, .parquet) in " + ", ".join(paths)
        )
    rows: list[RunRow] = []
    done = 0
    chunks = _chunks(sources, options.chunk_bytes)
    # The next chunk is read while this one is analysed: Polars releases the GIL in a collect,
    # and neither phase alone keeps both cores busy (the analysis is a chain of small queries).
    # One chunk ahead at most, so memory stays bounded by two chunks.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = _read_ahead(pool, chunks, 0, options)
        for i, chunk in enumerate(chunks):
            read, ahead = ahead, _read_ahead(pool, chunks, i + 1, options)
            rows.extend(_chunk_rows(chunk, options, read))
            done += len(chunk)
            if progress is not None:
                progress(done, len(sources))
    return BatchResult(tuple(rows), len(sources))


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


def _chunk_rows(
    chunk: list[Source], options: BatchOptions, read: Future | None = None
) -> list[RunRow]:
    if len(chunk) == 1 and chunk[0].how == MISSING:
        return [_error_row(chunk[0].path, "no such file")]
    if len(chunk) == 1 and chunk[0].how == CAREFUL:
        return _careful_rows(chunk[0], options)
    try:
        base = read.result() if read is not None else _read(chunk, options)
    except Exception as exc:  # noqa: BLE001 - any broken input: find it, then let read_log say
        if len(chunk) == 1:
            return _careful_rows(chunk[0], options, reason=exc)
        half = len(chunk) // 2
        return _chunk_rows(chunk[:half], options) + _chunk_rows(chunk[half:], options)
    by_source: dict[str, list[dict]] = {}
    for row in _analyse(base, options):
        by_source.setdefault(row["source"], []).append(row)
    rows: list[RunRow] = []
    empty: list[str] = []
    for source in chunk:
        found = by_source.pop(source.path, None)
        if source.how in (JSON, PARQUET) and (found is None or any(r["bad"] for r in found)):
            # no records, or records that break the contract: the careful reader says why
            rows.extend(_careful_rows(source, options))
        elif found is None:
            empty.append(source.path)
        else:
            rows.extend(_to_row(r) for r in found)
    for found in by_source.values():  # the files of a glob URL, named by Polars
        rows.extend(_to_row(r) for r in found)
    if empty and not by_source:
        rows.extend(_error_row(path, "no records") for path in empty)
    return rows


def _read(chunk: list[Source], options: BatchOptions) -> Chunk:
    """The records of a chunk in memory: one scan per kind of source."""
    try:
        return _scans(chunk, options, tokens=False)
    except Exception:
        if not any(s.how in (JSON, REMOTE_JSON) for s in chunk):
            raise
    # "NaN"/"Infinity" tokens (or a broken line: then this fails too, and the caller splits)
    return _scans(chunk, options, tokens=True)


def _scans(chunk: list[Source], options: BatchOptions, *, tokens: bool) -> Chunk:
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
        elif how == REMOTE_JSON:
            for path in paths:
                parts.append(read_json([path], len(parts), tokens=tokens, storage_options=so))
        elif how == REMOTE_PARQUET:
            for path in paths:
                parts.append(read_parquet([path], len(parts), storage_options=so))
        elif how == DATASET:
            for path in paths:
                parts.append(read_dataset(path, len(parts), storage_options=so))
        else:  # pragma: no cover - careful and missing sources never reach a scan
            raise AssertionError(how)
    return Chunk.concat(parts)


def _analyse(chunk: Chunk, options: BatchOptions) -> list[dict]:
    """The summary rows of every run in ``chunk``, with each run's pair decided here."""
    records, runs = run_table(chunk)
    pairs: dict[int, tuple[str, str]] = {}
    missing: dict[int, str] = {}
    for rid, tasks in zip(runs.get_column("rid"), runs.get_column("tasks")):
        tasks = tasks.to_list() if tasks is not None else []
        if options.pair is None:
            pair = classify.default_pair(tasks)
        else:
            absent = [t for t in options.pair if t not in tasks]
            if absent:
                missing[rid] = absent[0]
                continue
            pair = options.pair
        if pair is not None:
            pairs[rid] = pair
    frame = summarise(records, runs, pairs, window=options.window, min_samples=options.min_samples)
    rows = []
    for row in frame.iter_rows(named=True):
        row["pair"] = pairs.get(row["rid"])
        row["missing_task"] = missing.get(row["rid"])
        rows.append(row)
    return rows


def _careful_rows(
    source: Source, options: BatchOptions, reason: Exception | None = None
) -> list[RunRow]:
    """Read one source with the report's reader: recovered runs, or one error row."""
    from gradlog.readers import read_log

    if source.how not in (JSON, PARQUET, CAREFUL):
        return [_error_row(source.path, f"cannot be read ({_first_line(reason)})")]
    try:
        log = read_log(source.path)
    except GradlogError as exc:
        return [_error_row(source.path, str(exc))]
    except Exception as exc:  # noqa: BLE001 - one unreadable file is one row, never the end
        return [_error_row(source.path, f"cannot be read ({_first_line(exc)})")]
    try:
        rows = _analyse(from_frame(log.frame, source.path, 0), options)
    except Exception as exc:  # noqa: BLE001
        return [_error_row(source.path, f"cannot be analysed ({_first_line(exc)})")]
    notes = tuple(log.notes)
    return [_to_row(r, notes) for r in rows] or [_error_row(source.path, "no records")]


def _first_line(exc: Exception | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _error_row(path: str, message: str) -> RunRow:
    return RunRow(file=path, run=None, status=Status.ERROR, error=message)


def _label(epoch: int | None, step: int | None, by_steps: bool) -> str:
    """An event's label as the report writes it: "Epoch 15", or "Step 300" for step runs."""
    if (by_steps or epoch is None) and step is not None:
        return f"Step {step}"
    if epoch is not None:
        return f"Epoch {epoch}"
    return "Event"


def _to_row(r: dict, notes: tuple[str, ...] = ()) -> RunRow:
    tasks = tuple(r["tasks"] or ())
    if r["missing_task"] is not None:
        message = (
            f"--pair: no task '{r['missing_task']}' in run {r['run']} of {r['source']} "
            f"(tasks: {', '.join(tasks) or 'none'})"
        )
        return RunRow(file=r["source"], run=r["run"], status=Status.ERROR, error=message)
    pair = r["pair"]
    worst_band = RatioBand(r["worst_band"]) if r["worst_band"] else None
    worst_norm = NormBand(r["worst_norm_band"]) if r["worst_norm_band"] else None
    window_mean = r["window_mean"]
    final_band = classify.ratio_band(window_mean) if window_mean is not None else None
    weights = _weights(r, tasks, pair, final_band)
    by_steps = bool(r["by_steps"])
    return RunRow(
        file=r["source"],
        run=r["run"],
        status=run_status(worst_band, worst_norm),
        tasks=tasks,
        pair=pair,
        events=r["n_events"],
        epochs=r["last_epoch"],
        final_ratio=r["last_ratio"],
        window_mean=window_mean,
        worst_ratio=r["worst_ratio"],
        final_band=final_band,
        worst_band=worst_band,
        worst_norm_band=worst_norm,
        first_imbalance=(
            _label(r["imbalance_epoch"], r["imbalance_step"], by_steps)
            if r["any_imbalance"]
            else None
        ),
        first_collapse=(
            _label(r["collapse_epoch"], r["collapse_step"], by_steps) if r["any_collapse"] else None
        ),
        mean_norm=r["mean_norm"],
        mean_norm_std=r["mean_norm_std"],
        max_norm_peak=r["max_norm_peak"],
        n_nonfinite=r["n_nonfinite"] or 0,
        weights=weights,
        flags=classify.weight_flags(weights, tasks),
        notes=notes,
    )


def _weights(
    r: dict, tasks: tuple[str, ...], pair: tuple[str, str] | None, band: RatioBand | None
) -> dict[str, float] | None:
    """The recommendation's balancing weights, by the rules of the report (docs/report.md)."""
    if pair is None or band is None or band is RatioBand.HEALTHY:
        return None
    if classify.weights_withheld(bool(r["n_nonfinite"]), not r["last_sample_defined"]):
        return None
    names = r["window_tasks"] or []
    relative = dict(zip(names, r["window_relative"] or []))
    last = dict(zip(names, r["window_weights"] or []))
    current, _ = classify.current_weights(last, r["meta_weights"], tasks)
    clean = {t: relative[t] for t in tasks if relative.get(t) is not None}
    if len(clean) != len(tasks):
        return None
    return classify.balancing_weights(clean, current)
