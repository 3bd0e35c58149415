"""The report as JSON, for machines: every number, non-finite floats as "NaN"/"Infinity".

Each run has its summary (the fields of :class:`gradlog.model.RunSummary`, as ``gradlog batch
--format json`` also gives them, plus the report's own), and ``events``: an object of parallel
arrays, one entry per logged event (``events.ratio[i]`` belongs to ``events.label[i]``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import polars as pl

from gradlog.model import Report, RunReport
from gradlog.schema import SCHEMA_VERSION, encode_float

EVENT_COLUMNS = (
    "epoch",
    "step",
    "label",
    "mean_norm",
    "max_norm",
    "total_norm",
    "n_vanishing",
    "n_exploding",
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


def to_data(value: Any) -> Any:
    """Plain JSON-ready data from result objects (enums by value, floats encoded)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return encode_float(value)
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


def run_data(run: RunReport) -> dict:
    ev = run.events
    events = {c: _column(ev.get_column(c)) for c in EVENT_COLUMNS if c in ev.columns}
    events["norms"] = {t: _column(run.norms(t)) for t in run.tasks}
    return {
        **to_data(run.summary),
        "log_every": run.log_every,
        "log_every_steps": run.log_every_steps,
        "started_at": run.started_at,
        "tags": run.tags,
        "window": run.window,
        "min_samples": run.min_samples,
        "events": events,
    }


def report_data(report: Report) -> dict:
    return {
        "gradlog_report": 2,
        "log_schema": SCHEMA_VERSION,
        "path": report.path,
        "notes": list(report.notes),
        "runs": [run_data(r) for r in report.runs],
    }
