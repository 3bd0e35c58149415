"""``gradlog batch`` for machines and pull requests: JSON, CSV and Markdown (strings only).

Every format carries the same columns, one row per run (:data:`COLUMNS`); an unreadable file is
a row with ``status`` ``error`` and its ``error``. The terminal table is in
:mod:`gradlog.render.table`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from gradlog.batch import BatchResult, RunRow
from gradlog.classify import HEALTHY_RANGE
from gradlog.render import md
from gradlog.render.mermaid import thin, xychart
from gradlog.schema import SCHEMA_VERSION, encode_float
from gradlog.status import Status

COLUMNS = (
    "status",
    "run",
    "file",
    "tasks",
    "events",
    "epochs",
    "final_ratio",
    "window_mean",
    "worst_ratio",
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


def row_data(row: RunRow) -> dict:
    """One row as plain JSON-ready data, in :data:`COLUMNS` order."""

    def enum(value):
        return value.value if value is not None else None

    return {
        "status": row.status.value,
        "run": row.run,
        "file": row.file,
        "tasks": list(row.tasks),
        "events": row.events,
        "epochs": row.epochs,
        "final_ratio": encode_float(row.final_ratio),
        "window_mean": encode_float(row.window_mean),
        "worst_ratio": encode_float(row.worst_ratio),
        "final_band": enum(row.final_band),
        "worst_band": enum(row.worst_band),
        "worst_norm_band": enum(row.worst_norm_band),
        "first_imbalance": row.first_imbalance,
        "first_collapse": row.first_collapse,
        "mean_norm": encode_float(row.mean_norm),
        "mean_norm_std": encode_float(row.mean_norm_std),
        "max_norm_peak": encode_float(row.max_norm_peak),
        "weights": ({k: encode_float(v) for k, v in row.weights.items()} if row.weights else None),
        "flags": row.flags,
        "error": row.error,
        "notes": list(row.notes),
    }


def summary_data(result: BatchResult) -> dict:
    return {
        "runs": sum(1 for r in result.rows if r.error is None),
        "files": result.n_sources,
        "errors": len(result.errors),
        "by_status": {s.value: n for s, n in result.counts().items()},
    }


def summary_line(result: BatchResult) -> str:
    """``1000 runs in 998 files: 12 collapse, 3 exploding, 985 healthy; 2 files unreadable``."""
    counts = {s: n for s, n in result.counts().items() if s is not Status.ERROR}
    n_runs = sum(counts.values())
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items()) or "nothing to judge"
    line = f"{n_runs} run{'s' * (n_runs != 1)} in {result.n_sources} file{'s' * (result.n_sources != 1)}: {parts}"
    errors = len(result.errors)
    if errors:
        line += f"; {errors} unreadable"
    return line


def format_json(result: BatchResult, rows: Sequence[RunRow]) -> str:
    data = {
        "gradlog_batch": 1,
        "log_schema": SCHEMA_VERSION,
        "summary": summary_data(result),
        "runs": [row_data(r) for r in rows],
    }
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def format_csv(rows: Sequence[RunRow]) -> str:
    """CSV with a header; tasks joined by ``;``, floats in full precision (``NaN`` spelled out)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        data = row_data(row)
        data["tasks"] = ";".join(row.tasks)
        data["weights"] = (
            " ".join(f"{k}={v!r}" for k, v in row.weights.items()) if row.weights else None
        )
        data["notes"] = " | ".join(row.notes)
        writer.writerow(["" if data[c] is None else data[c] for c in COLUMNS])
    return out.getvalue()


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def fmt_norm(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def fmt_mean_std(row: RunRow) -> str:
    if row.mean_norm is None:
        return "–"
    return f"{row.mean_norm:.4f} ± {row.mean_norm_std:.4f}"


MARKDOWN_HEADER = [
    "#",
    "Status",
    "Run",
    "File",
    "Tasks",
    "Events",
    "Epochs",
    "Final ratio",
    "Window mean",
    "Worst ratio",
    "First imbalance",
    "First collapse",
    "Mean norm ± std",
    "Peak max norm",
    "Weights",
]


def _markdown_row(i: int, row: RunRow) -> list[str]:
    status = f"{row.status.badge} {row.status.value}"
    if row.error is not None:
        blank = [""] * (len(MARKDOWN_HEADER) - 4)
        return [str(i), status, "", md.code(row.file)] + ["see below"] + blank[1:]
    return [
        str(i),
        status,
        md.code(row.run or ""),
        md.code(row.file),
        ", ".join(md.code(t) for t in row.tasks) or "–",
        str(row.events),
        "–" if row.epochs is None else str(row.epochs),
        fmt_ratio(row.final_ratio),
        fmt_ratio(row.window_mean),
        fmt_ratio(row.worst_ratio),
        row.first_imbalance or "–",
        row.first_collapse or "–",
        fmt_mean_std(row),
        fmt_norm(row.max_norm_peak),
        md.code(row.flags) if row.flags else "–",
    ]


def verdict(result: BatchResult) -> tuple[Status, str]:
    """The worst status of the batch, and the headline that says it."""
    counts = result.counts()
    worst = next(iter(counts), Status.NO_DATA)
    quiet = (Status.HEALTHY, Status.NO_DATA, Status.ERROR)
    attention = sum(n for s, n in counts.items() if s not in quiet)
    total = sum(n for s, n in counts.items() if s is not Status.ERROR)
    errors = counts.get(Status.ERROR, 0)
    text = (
        f"{attention} of {total} runs need attention"
        if attention
        else f"no findings in {total} run{'s' * (total != 1)}"
    )
    if errors:
        text += f"; {errors} file{'s' * (errors != 1)} unreadable"
    return worst, text


def format_markdown(result: BatchResult, rows: Sequence[RunRow]) -> str:
    """The batch as a PR comment: verdict, counts, table, findings and a chart of the ratios."""
    worst, headline = verdict(result)
    counts = " · ".join(f"{s.badge} {n} {md.escape(s.value)}" for s, n in result.counts().items())
    lines = [f"## {worst.badge} gradlog batch: {headline}", "", f"**{summary_line(result)}**", ""]
    if counts:
        lines += [counts, ""]
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


def findings(rows: Sequence[RunRow]) -> list[str]:
    """One bullet per run that needs attention, with its epochs and the weights to try."""
    out = []
    for i, row in enumerate(rows, start=1):
        if row.status in (Status.HEALTHY, Status.NO_DATA):
            continue
        if row.error is not None:
            out.append(f"- {row.status.badge} #{i} {md.code(row.file)}: {md.escape(row.error)}")
            continue
        parts = [f"{row.status.label}"]
        if row.first_collapse:
            parts.append(f"collapse from {row.first_collapse}")
        if row.first_imbalance:
            parts.append(f"first imbalance at {row.first_imbalance}")
        if row.window_mean is not None:
            parts.append(f"final window ratio {row.window_mean:.2f}")
        if row.worst_norm_band is not None and row.worst_norm_band.warns:
            parts.append(f"worst mean norm {row.worst_norm_band.label.lower()}")
        text = f"- {row.status.badge} #{i} {md.code(row.run or '')} ({md.code(row.file)}): "
        text += "; ".join(parts) + "."
        if row.flags:
            text += f" Try {md.code(row.flags, in_table=False)}."
        out.append(text)
    return out


def chart(rows: Sequence[RunRow]) -> list[str]:
    """Bars: each run's final window ratio (table order), with the healthy band as lines."""
    judged = [(i, r) for i, r in enumerate(rows, start=1) if r.window_mean is not None]
    if len(judged) < 2:
        return []
    judged = [judged[k] for k in thin(len(judged), 40)]
    values = [r.window_mean for _, r in judged]
    top = min(RATIO_CAP, max(2.5, max(values) * 1.1))
    low, high = HEALTHY_RANGE
    block = xychart(
        title="Final window ratio per run",
        x_title="run (# in the table)",
        x=[i for i, _ in judged],
        y_title="ratio",
        y_range=(0.0, top),
        bars=[min(v, top) if math.isfinite(v) else top for v in values],
        lines=[[low] * len(judged), [high] * len(judged)],
        colours=("#1f77b4", "#2ca02c", "#2ca02c"),
    )
    legend = f"Bars: each run's final window ratio; green lines: the healthy band {low}–{high}."
    if max(values) > top:
        legend += f" Values above {top:g} are drawn at {top:g}."
    return ["", "### Chart", "", legend, "", *block]
