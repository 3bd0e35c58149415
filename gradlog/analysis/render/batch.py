"""``gradlog batch``: one row per run, for the terminal, machines and pull requests.

Every format carries the same columns (:data:`COLUMNS`), from :class:`gradlog.analysis.model.RunSummary`
alone; an unreadable file is a row with ``status`` ``error`` and its ``error``. Renderers return
data (rows, a table spec, a Markdown string); :mod:`gradlog.analysis.output` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

from gradlog.analysis.model import RunSummary
from gradlog.analysis.render.table import Column, TableSpec
from gradlog.analysis.status import Status
from gradlog.format import SCHEMA_VERSION, decode_float, encode_float

COLUMNS = (
    "status",
    "run",
    "file",
    "tasks",
    "events",
    "epochs",
    "window_ratio",
    "window_num",
    "window_den",
    "spread",
    "worst_spread",
    "dominant",
    "starved",
    "final_band",
    "worst_band",
    "worst_norm_band",
    "first_imbalance",
    "first_collapse",
    "mean_norm",
    "mean_norm_std",
    "max_norm_peak",
    "weights",
    "flags",
    "error",
    "notes",
)


def _value(value):
    return value.value if hasattr(value, "value") else value


def row_data(row: RunSummary) -> dict:
    """One row as plain JSON-ready data, in :data:`COLUMNS` order."""
    a = row.advice
    return {
        "status": row.status.value,
        "run": row.name if row.error is None else row.run,
        "file": row.source,
        "tasks": list(row.tasks),
        "events": row.n_events,
        "epochs": row.last_epoch,
        "window_ratio": encode_float(row.window_ratio),
        "window_num": row.window_num,
        "window_den": row.window_den,
        "spread": encode_float(row.spread),
        "worst_spread": encode_float(row.worst_spread),
        "dominant": row.dominant,
        "starved": row.starved,
        "final_band": _value(row.final_band),
        "worst_band": _value(row.worst_band),
        "worst_norm_band": _value(row.worst_norm_band),
        "first_imbalance": row.first_imbalance,
        "first_collapse": row.first_collapse,
        "mean_norm": encode_float(row.mean_norm),
        "mean_norm_std": encode_float(row.mean_norm_std),
        "max_norm_peak": encode_float(row.max_norm_peak),
        "weights": ({k: encode_float(v) for k, v in a.weights.items()} if a.weights else None),
        "flags": a.flags,
        "error": row.error,
        "notes": list(row.notes),
    }


def counts(rows: Sequence[RunSummary]) -> dict[Status, int]:
    """How many rows per status, worst first; statuses with none left out."""
    out: dict[Status, int] = {}
    for row in sorted(rows, key=lambda r: r.status.rank):
        out[row.status] = out.get(row.status, 0) + 1
    return out


def summary_data(rows: Sequence[RunSummary], n_sources: int) -> dict:
    return {
        "runs": sum(1 for r in rows if r.error is None),
        "files": n_sources,
        "errors": sum(1 for r in rows if r.error is not None),
        "by_status": {s.value: n for s, n in counts(rows).items()},
    }


def summary_line(rows: Sequence[RunSummary], n_sources: int) -> str:
    """``1000 runs in 998 files: 12 collapse, 3 exploding, 985 healthy; 2 unreadable``."""
    found = {s: n for s, n in counts(rows).items() if s is not Status.ERROR}
    n_runs = sum(found.values())
    parts = ", ".join(f"{n} {s.value}" for s, n in found.items()) or "nothing to judge"
    line = f"{n_runs} run{'s' * (n_runs != 1)} in {n_sources} file{'s' * (n_sources != 1)}: {parts}"
    errors = sum(1 for r in rows if r.error is not None)
    if errors:
        line += f"; {errors} unreadable"
    return line


def json_data(all_rows: Sequence[RunSummary], rows: Sequence[RunSummary], n_sources: int) -> dict:
    return {
        "gradlog_batch": 2,
        "log_schema": SCHEMA_VERSION,
        "summary": summary_data(all_rows, n_sources),
        "runs": [row_data(r) for r in rows],
    }


_FLOAT_COLUMNS = (
    "window_ratio",
    "spread",
    "worst_spread",
    "mean_norm",
    "mean_norm_std",
    "max_norm_peak",
)


def csv_rows(rows: Sequence[RunSummary]) -> list[list]:
    """The CSV's rows (the header is :data:`COLUMNS`): tasks joined by ``;``, weights as
    ``task=weight`` pairs, notes joined by `` | ``; floats in full precision."""
    out = []
    for row in rows:
        data = row_data(row)
        for column in _FLOAT_COLUMNS:  # numbers stay numbers: the output encodes NaN/Infinity
            data[column] = getattr(row, column)
        data["tasks"] = ";".join(row.tasks)
        weights = row.advice.weights
        data["weights"] = " ".join(f"{k}={v!r}" for k, v in weights.items()) if weights else None
        data["notes"] = " | ".join(row.notes)
        out.append([data[c] for c in COLUMNS])
    return out


def fmt_ratio(value: float | None) -> str:
    """A ratio in two decimals; scientific where two decimals would mislead or sprawl."""
    if value is None:
        return "–"
    if math.isfinite(value) and value != 0 and not 1e-2 <= abs(value) < 1e5:
        return f"{value:.2e}"
    return f"{value:.2f}"


def fmt_norm(value: float | None) -> str:
    """A gradient norm in four decimals; scientific where four decimals would mislead."""
    if value is None:
        return "–"
    if math.isfinite(value) and value != 0 and not 1e-4 <= abs(value) < 1e5:
        return f"{value:.3e}"
    return f"{value:.4f}"


def fmt_mean_std(row: RunSummary) -> str:
    if row.mean_norm is None:
        return "–"
    return f"{fmt_norm(row.mean_norm)} ± {fmt_norm(row.mean_norm_std)}"


# -- the terminal table -------------------------------------------------------------------------

TABLE_COLUMNS = (  # in reading order; the lowest priority number is the last to go
    Column("status", priority=0),
    Column("run", priority=1, shrink=True),
    Column("file", priority=6),  # a path cut short names nothing: shown whole or left out
    Column("tasks", priority=8, shrink=True),
    Column("events", "right", priority=9),
    Column("epochs", "right", priority=11),
    Column("window ratio", "right", priority=10),
    Column("spread", "right", priority=2),
    Column("worst spread", "right", priority=7),
    Column("first imbalance", priority=12),
    Column("first collapse", priority=3),
    Column("mean norm ± std", "right", priority=5),
    Column("peak max", "right", priority=13),
    Column("weights / error", priority=4, shrink=True),
)


def batch_table(rows: Sequence[RunSummary], footer: Sequence[str] = ()) -> TableSpec:
    """One line per run (or unreadable file), most important columns first to stay."""
    out = []
    for row in rows:
        status = (row.status.value, row.status.style)
        if row.error is not None:
            cells = {
                "status": status,
                "file": (row.source, ""),
                "weights / error": (row.error, "red"),
            }
        else:
            ratio = fmt_ratio(row.window_ratio)
            if row.window_num and row.window_ratio is not None:
                ratio = f"{ratio} ({row.window_num}/{row.window_den})"
            cells = {
                "status": status,
                "run": (row.name, ""),
                "file": (row.source, ""),
                "tasks": (",".join(row.tasks), ""),
                "events": (str(row.n_events), ""),
                "epochs": ("" if row.last_epoch is None else str(row.last_epoch), ""),
                "window ratio": (ratio, ""),
                "spread": (fmt_ratio(row.spread), ""),
                "worst spread": (fmt_ratio(row.worst_spread), ""),
                "first imbalance": (row.first_imbalance or "", ""),
                "first collapse": (row.first_collapse or "", ""),
                "mean norm ± std": (fmt_mean_std(row), ""),
                "peak max": (fmt_norm(row.max_norm_peak), ""),
                "weights / error": (row.advice.flags or "", ""),
            }
        out.append(tuple(cells.get(c.name, ("", "")) for c in TABLE_COLUMNS))
    return TableSpec(TABLE_COLUMNS, tuple(out), tuple(footer))


# -- a DataFrame ----------------------------------------------------------------------------------


def rows_frame(summaries: Sequence[RunSummary]) -> pl.DataFrame:
    """The rows as a Polars frame (``gradlog.batch``): lists stay lists, weights a list of
    ``{task, weight}``, and the non-finite floats that JSON spells as text are floats again."""
    rows = [row_data(r) for r in summaries]
    columns = COLUMNS

    for row in rows:
        for c in _FLOAT_COLUMNS:
            row[c] = decode_float(row[c])
        if row["weights"] is not None:
            row["weights"] = [
                {"task": k, "weight": decode_float(v)} for k, v in row["weights"].items()
            ]
    schema = {
        "status": pl.String,
        "run": pl.String,
        "file": pl.String,
        "tasks": pl.List(pl.String),
        "events": pl.Int64,
        "epochs": pl.Int64,
        "window_ratio": pl.Float64,
        "window_num": pl.String,
        "window_den": pl.String,
        "spread": pl.Float64,
        "worst_spread": pl.Float64,
        "dominant": pl.String,
        "starved": pl.String,
        "final_band": pl.String,
        "worst_band": pl.String,
        "worst_norm_band": pl.String,
        "first_imbalance": pl.String,
        "first_collapse": pl.String,
        "mean_norm": pl.Float64,
        "mean_norm_std": pl.Float64,
        "max_norm_peak": pl.Float64,
        "weights": pl.List(pl.Struct({"task": pl.String, "weight": pl.Float64})),
        "flags": pl.String,
        "error": pl.String,
        "notes": pl.List(pl.String),
    }
    return pl.DataFrame(rows, schema={c: schema[c] for c in columns})
