"""The report as JSON, for machines: every number, non-finite floats as "NaN"/"Infinity".

Each run has its summary (the fields of :class:`gradlog.analysis.model.RunSummary`, as ``gradlog batch
--format json`` also gives them, plus the report's own), and ``events``: an object of parallel
arrays, one entry per logged event (``events.ratio[i]`` belongs to ``events.label[i]``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from gradlog.analysis.model import Report, RunReport
from gradlog.format import SCHEMA_VERSION, encode_float

EVENT_COLUMNS = (
    "epoch",
    "step",
    "label",
    "mean_norm",
    "max_norm",
    "total_norm",
    "n_vanishing",
    "n_exploding",
    "pre_clip_norm",
    "clip_coef",
    "norm_band",
    "has_balance",
    "defined",
    "ratio",
    "num",
    "den",
    "spread",
    "dominant",
    "starved",
    "ratio_band",
    "imbalance",
    "window_ratio",
    "window_num",
    "window_den",
    "window_spread",
    "window_band",
    "verdict",
)


_FIELDS: dict[type, tuple[str, ...]] = {}


def to_data(value: Any) -> Any:
    """Plain JSON-ready data from result objects (enums by value, floats encoded)."""
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, enum.Enum):
        return value.value
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_data(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


def _column(series: pl.Series) -> list:
    values = series.to_list()
    if series.dtype.is_float() and not series.is_finite().fill_null(True).all():
        return [encode_float(v) if v is not None and not math.isfinite(v) else v for v in values]
    return values


def _float(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else encode_float(value)


def run_data(run: RunReport, events: dict[str, list] | None = None) -> dict:
    """One run's summary and events; ``events``: its columns as lists, when already made, or
    as JSON text (:func:`_encoded_events`)."""
    if events is None:
        events = _columns(run.events)
    if "names" in events:
        samples = [dict(zip(n, v)) if n else {} for n, v in zip(events["names"], events["norms"])]
        shown = {c: events[c] for c in EVENT_COLUMNS if c in events}
        shown["norms"] = {t: [_float(s.get(t)) for s in samples] for t in run.tasks}
    else:
        shown = events
    return {
        **to_data(run.summary),
        "log_every": run.log_every,
        "log_every_steps": run.log_every_steps,
        "started_at": run.started_at,
        "stats_at": run.stats_at,
        "tags": run.tags,
        "window": run.window,
        "min_samples": run.min_samples,
        "original": run.original,
        "events": shown,
    }


def _columns(frame: pl.DataFrame) -> dict[str, list]:
    wanted = [c for c in (*EVENT_COLUMNS, "names", "norms") if c in frame.columns]
    return {c: _column(frame.get_column(c)) for c in wanted}


def report_data(report: Report, *, encoded: bool = False) -> dict:
    """The whole report as plain data. Every event column is turned into Python values once,
    for all runs together, then cut run by run (ten thousand small conversions cost a minute).

    With ``encoded`` (the report written out), the event columns are JSON text that Polars
    writes where it can (:func:`_encoded_events`), and no Python value is made of them.
    """
    runs = []
    if report.runs:
        texts = _encoded_events(report) if encoded else None
        if texts is not None:
            runs = [run_data(run, text) for run, text in zip(report.runs, texts)]
            return _document(report, runs)
        wanted = [c for c in (*EVENT_COLUMNS, "names", "norms") if c in report.events.columns]
        columns = _columns(report.events_in_order(wanted))
        start = 0
        for run in report.runs:
            end = start + run.summary.n_events
            runs.append(run_data(run, {c: v[start:end] for c, v in columns.items()}))
            start = end
    return _document(report, runs)


def _document(report: Report, runs: list[dict]) -> dict:
    return {
        "gradlog_report": 2,
        "log_schema": SCHEMA_VERSION,
        "path": report.path,
        "notes": list(report.notes),
        "runs": runs,
    }


EVENTS_PER_BLOCK = 20_000  # events of runs written together, a column at a time


def _encoded_events(report: Report) -> list[dict] | None:
    """Each run's events, column by column, as JSON text written by Polars: its float
    formatting is ten times Python's, and a 100,000-event report makes no Python value per
    number. The same values as :func:`_columns` gives (Polars writes ``1e-5`` for ``1e-05``).

    The text is written as the output reaches it (:func:`~gradlog.analysis.output.json_pieces`),
    one column of a block of runs at a time: a 100,000-event report is 33 MB of JSON, which
    must not be held whole beside the frames it comes from.

    None where Polars cannot write the document's data: a NaN or an infinity (written as null
    there, as a token here), runs of different tasks, or a run without events.
    """
    runs = report.runs
    tasks = {run.tasks for run in runs}
    if len(tasks) != 1 or not next(iter(tasks)):
        return None
    (tasks,) = tasks
    wanted = [c for c in EVENT_COLUMNS if c in report.events.columns]
    events = report.events_in_order([*wanted, "names", "norms"])
    names, norms = pl.col("names"), pl.col("norms")
    per_task = {
        f"norm_{i}": pl.when(names.list.contains(t)).then(
            norms.list.get(names.list.eval(pl.element() == t).list.arg_max())
        )
        for i, t in enumerate(tasks)
    }
    frame = events.lazy().select("rid", *wanted, **per_task)
    floats = [c for c, dtype in frame.collect_schema().items() if dtype.is_float()]
    if frame.select(pl.any_horizontal(~pl.col(floats).is_finite()).any()).collect().item():
        return None
    if events.get_column("rid").n_unique() != len(runs):
        return None
    out: list[dict] = []
    start = 0
    for block in _blocks(runs):
        length = sum(run.summary.n_events for run in block)
        part = frame.slice(start, length)
        columns = {c: _Column(part, [c], pl.col(c)) for c in wanted}
        columns["norms"] = _Column(
            part,
            list(per_task),
            pl.struct(pl.col(f"norm_{i}").alias(t) for i, t in enumerate(tasks)).alias("norms"),
        )
        out += [{c: column.piece(i) for c, column in columns.items()} for i in range(len(block))]
        start += length
    return out


def _blocks(runs: Sequence[RunReport]) -> list[list[RunReport]]:
    """The runs in blocks of consecutive runs of about :data:`EVENTS_PER_BLOCK` events."""
    blocks: list[list[RunReport]] = []
    size = EVENTS_PER_BLOCK
    for run in runs:
        if size >= EVENTS_PER_BLOCK:
            blocks.append([])
            size = 0
        blocks[-1].append(run)
        size += run.summary.n_events
    return blocks


class _Column:
    """One event column of a block of runs (``shown``, made of the columns ``used``), written
    by Polars when the output first reaches it, each run's piece dropped once taken (the
    runs' pieces are taken in order)."""

    def __init__(self, part: pl.LazyFrame, used: list[str], shown: pl.Expr) -> None:
        self.part, self.used, self.shown = part, used, shown
        self.pieces: list[str] | None = None

    def piece(self, i: int) -> Callable[[], str]:
        """Run ``i``'s piece, as :func:`~gradlog.analysis.output.json_pieces` takes it."""
        return lambda: self._take(i)

    def _take(self, i: int) -> str:
        if self.pieces is None:
            self.pieces = self._write()
        piece, self.pieces[i] = self.pieces[i], ""
        return piece

    def _write(self) -> list[str]:
        grouped = (
            self.part.select("rid", *self.used)
            .group_by("rid", maintain_order=True)
            .agg(*self.used)
            .select(self.shown)
        )
        (column,) = grouped.collect_schema().names()
        # each line is {"column":VALUE}: VALUE is kept (split on "\n" alone: a string's other
        # line breaks, U+2028 among them, are its own)
        text = grouped.collect().write_ndjson()
        if text.count("\n") == 1:  # one run: no copies of the lines
            return [text[len(column) + 4 : -2]]
        return [line[len(column) + 4 : -1] for line in text.split("\n")[:-1]]
