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
from gradlog.analysis.render import md
from gradlog.analysis.render.mermaid import thin, xychart
from gradlog.analysis.render.table import Column, TableSpec
from gradlog.analysis.status import Status
from gradlog.classify import HEALTHY_RANGE
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
RATIO_CAP = 10.0
MARKDOWN_ROWS = 100  # a PR comment stays readable (and under GitHub's size limit)


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


# -- Markdown -----------------------------------------------------------------------------------

MARKDOWN_HEADER = [
    "#",
    "Status",
    "Run",
    "File",
    "Tasks",
    "Events",
    "Epochs",
    "Window ratio",
    "Spread",
    "Worst spread",
    "First imbalance",
    "First collapse",
    "Mean norm ± std",
    "Peak max norm",
    "Weights",
]


def _markdown_row(i: int, row: RunSummary) -> list[str]:
    status = f"{row.status.badge} {row.status.value}"
    if row.error is not None:
        blank = [""] * (len(MARKDOWN_HEADER) - 5)
        return [str(i), status, "", md.code(row.source), "see below", *blank]
    ratio = fmt_ratio(row.window_ratio)
    if row.window_num and row.window_ratio is not None:
        ratio += f" ({md.code(row.window_num)} / {md.code(row.window_den)})"
    return [
        str(i),
        status,
        md.code(row.name),
        md.code(row.source),
        ", ".join(md.code(t) for t in row.tasks) or "–",
        str(row.n_events),
        "–" if row.last_epoch is None else str(row.last_epoch),
        ratio,
        fmt_ratio(row.spread),
        fmt_ratio(row.worst_spread),
        row.first_imbalance or "–",
        row.first_collapse or "–",
        fmt_mean_std(row),
        fmt_norm(row.max_norm_peak),
        md.code(row.advice.flags) if row.advice.flags else "–",
    ]


def verdict(rows: Sequence[RunSummary]) -> tuple[Status, str]:
    """The worst status of the batch, and the headline that says it."""
    found = counts(rows)
    worst = next(iter(found), Status.NO_DATA)
    quiet = (Status.HEALTHY, Status.NO_DATA, Status.ERROR)
    attention = sum(n for s, n in found.items() if s not in quiet)
    total = sum(n for s, n in found.items() if s is not Status.ERROR)
    errors = found.get(Status.ERROR, 0)
    text = (
        f"{attention} of {total} runs need attention"
        if attention
        else f"no findings in {total} run{'s' * (total != 1)}"
    )
    if errors:
        text += f"; {errors} file{'s' * (errors != 1)} unreadable"
    return worst, text


def format_markdown(
    all_rows: Sequence[RunSummary], rows: Sequence[RunSummary], n_sources: int
) -> str:
    """The batch as a PR comment: verdict, counts, table, findings and a chart of the spreads."""
    worst, headline = verdict(all_rows)
    badges = " · ".join(f"{s.badge} {n} {md.escape(s.value)}" for s, n in counts(all_rows).items())
    lines = [
        f"## {worst.badge} gradlog batch: {headline}",
        "",
        f"**{md.escape(summary_line(all_rows, n_sources))}**",
        "",
    ]
    if badges:
        lines += [badges, ""]
    shown = list(rows)[:MARKDOWN_ROWS]
    lines += md.table(
        MARKDOWN_HEADER,
        [_markdown_row(i, r) for i, r in enumerate(shown, start=1)],
        align="rllllrrrrrllrrl",
    )
    if len(rows) > len(shown):
        lines += ["", f"… and {len(rows) - len(shown)} more runs (use `--limit` or `--status`)."]
    found = findings(shown)
    if found:
        lines += ["", "### Findings", "", *found]
    lines += chart(shown)
    return "\n".join(lines).rstrip("\n") + "\n"


def findings(rows: Sequence[RunSummary]) -> list[str]:
    """One bullet per run that needs attention, with its epochs and the weights to try."""
    out = []
    for i, row in enumerate(rows, start=1):
        if row.status in (Status.HEALTHY, Status.NO_DATA):
            continue
        if row.error is not None:
            source = md.code(row.source, in_table=False)
            out.append(f"- {row.status.badge} #{i} {source}: {md.escape(row.error)}")
            continue
        parts = [f"{row.status.label}"]
        if row.first_collapse:
            parts.append(f"collapse from {row.first_collapse}")
        if row.first_imbalance:
            parts.append(f"first imbalance at {row.first_imbalance}")
        if row.spread is not None:
            part = f"final spread {fmt_ratio(row.spread)}"
            if row.dominant and row.status is not Status.HEALTHY:
                part += f" ({md.code(row.dominant, in_table=False)} over "
                part += f"{md.code(row.starved, in_table=False)})"
            parts.append(part)
        if row.worst_norm_band is not None and row.worst_norm_band.warns:
            parts.append(f"worst mean norm {row.worst_norm_band.label.lower()}")
        name, source = md.code(row.name, in_table=False), md.code(row.source, in_table=False)
        text = f"- {row.status.badge} #{i} {name} ({source}): "
        text += "; ".join(parts) + "."
        if row.advice.flags:
            text += f" Try {md.code(row.advice.flags, in_table=False)}."
        out.append(text)
    return out


def chart(rows: Sequence[RunSummary]) -> list[str]:
    """Bars: each run's final spread (table order), with the healthy bound as a line."""
    judged = [(i, r) for i, r in enumerate(rows, start=1) if r.spread is not None]
    if len(judged) < 2:
        return []
    judged = [judged[k] for k in thin(len(judged), 40)]
    values = [r.spread for _, r in judged]
    top = min(RATIO_CAP, max(2.5, max(values) * 1.1))
    high = HEALTHY_RANGE[1]
    block = xychart(
        title="Final spread per run",
        x_title="run, numbered as in the table",
        x=[i for i, _ in judged],
        y_title="spread",
        y_range=(1.0, top),
        bars=[min(v, top) if math.isfinite(v) else top for v in values],
        lines=[[high] * len(judged)],
        colours=("#1f77b4", "#2ca02c"),
    )
    legend = (
        "Bars: each run's final spread (largest task norm over the smallest); "
        f"green line: the healthy bound {high}."
    )
    if max(values) > top:
        legend += f" Values above {top:g} are drawn at {top:g}."
    return ["", "### Chart", "", legend, "", *block]


# -- a DataFrame ----------------------------------------------------------------------------------


def rows_frame(summaries: Sequence[RunSummary]) -> pl.DataFrame:
    """The rows as a Polars frame (``gradlog.batch``): lists stay lists, weights a list of
    ``{task, weight}``, and the non-finite floats that JSON spells as text are floats again."""
    rows = [row_data(r) for r in summaries]
    columns = COLUMNS

    floats = (
        "window_ratio",
        "spread",
        "worst_spread",
        "mean_norm",
        "mean_norm_std",
        "max_norm_peak",
    )
    for row in rows:
        for c in floats:
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
