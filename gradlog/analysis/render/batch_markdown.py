"""``gradlog batch --format markdown``: the batch as a pull-request comment.

The verdict, the counts, the table of runs, one finding per run that needs attention and a
chart of the spreads; every cell from :class:`gradlog.analysis.model.RunSummary` through the
formatters of :mod:`gradlog.analysis.render.batch`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gradlog.analysis.model import RunSummary
from gradlog.analysis.render import logscale, md, parts
from gradlog.analysis.render.batch import counts, fmt_mean_std, fmt_norm, fmt_ratio, summary_line
from gradlog.analysis.render.fit import Runs
from gradlog.analysis.render.mermaid import BLUE, GREEN, ORANGE, thin, xychart
from gradlog.analysis.render.parts import Code, Parts
from gradlog.analysis.status import Status
from gradlog.classify import HEALTHY_RANGE

MARKDOWN_ROWS = 100  # a PR comment stays readable (and under GitHub's size limit)

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
    return [parts.join(cell, str, md.code) for cell in row_cells(i, row)]


def row_cells(i: int, row: RunSummary) -> list[Parts]:
    """The cells of a run's row under :data:`MARKDOWN_HEADER`."""
    status = f"{row.status.badge} {row.status.value}"
    if row.error is not None:
        blank: list[Parts] = [[""] for _ in range(len(MARKDOWN_HEADER) - 5)]
        return [[str(i)], [status], [""], [Code(row.source)], ["see below"], *blank]
    ratio: Parts = [fmt_ratio(row.window_ratio)]
    if row.window_num and row.window_ratio is not None:
        ratio += [" (", Code(row.window_num), " / ", Code(row.window_den), ")"]
    return [
        [str(i)],
        [status],
        [Code(row.name)],
        [Code(row.source)],
        parts.codes(row.tasks) or ["–"],
        [str(row.n_events)],
        ["–" if row.last_epoch is None else str(row.last_epoch)],
        ratio,
        [fmt_ratio(row.spread)],
        [fmt_ratio(row.worst_spread)],
        [row.first_imbalance or "–"],
        [row.first_collapse or "–"],
        [fmt_mean_std(row)],
        [fmt_norm(row.max_norm_peak)],
        [Code(row.advice.flags)] if row.advice.flags else ["–"],
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


def markdown_runs(
    all_rows: Sequence[RunSummary], rows: Sequence[RunSummary], n_sources: int
) -> Runs:
    """The batch as rows that :func:`gradlog.analysis.render.fit.fit` cuts, in table order
    (worst first when sorted by status); every row is shown, the size is the limit's job."""
    rows = list(rows)
    return Runs(
        len(rows),
        lambda keep: format_markdown(all_rows, [rows[i] for i in keep], n_sources, cap=None),
    )


def format_markdown(
    all_rows: Sequence[RunSummary],
    rows: Sequence[RunSummary],
    n_sources: int,
    cap: int | None = MARKDOWN_ROWS,
) -> str:
    """The batch as a PR comment: verdict, counts, table, findings and a chart of the spreads;
    at most ``cap`` rows, with a line saying how many more there are."""
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
    shown = list(rows)[:cap]
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
    """Bars: each run's final spread (table order) on the reports' log scale, with the healthy
    bound and the collapse bound as lines."""
    judged = [(i, r) for i, r in enumerate(rows, start=1) if r.spread is not None]
    if len(judged) < 2:
        return []
    judged = [judged[k] for k in thin(len(judged), 40)]
    finite = [r.spread for _, r in judged if math.isfinite(r.spread) and r.spread > 0]
    reach = logscale.extent(finite)
    bars = [
        logscale.position(v) if math.isfinite(v) and v > 0 else reach
        for v in (r.spread for _, r in judged)
    ]
    high, collapse = HEALTHY_RANGE[1], logscale.COLLAPSE
    block = xychart(
        title="Final spread per run (log scale)",
        x_title="run number in the table",
        x=[i for i, _ in judged],
        y_title="spread, log2 scale (0 = even)",
        y_range=(0.0, reach),
        bars=bars,
        lines=[
            [logscale.position(high)] * len(judged),
            [logscale.position(collapse)] * len(judged),
        ],
        colours=(BLUE, GREEN, ORANGE),
    )
    legend = (
        "Bars: each run's final spread (largest task norm over the smallest) on a log scale "
        "(the axis is log2 of the spread: 0 is even, 1 twice; a run whose ratio fell to 0.04 "
        f"has a spread of 25, at 4.6); green line: the healthy bound {high}; orange: "
        f"collapse above {collapse}."
    )
    if len(finite) < len(judged):
        legend += " A non-finite spread is drawn at the top."
    return ["", "### Chart", "", legend, "", *block]
