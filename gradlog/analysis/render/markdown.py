"""``gradlog report --format markdown``: the report as a pull-request comment.

For each run: a verdict line with a status badge, the summary table, the findings with their
epochs, the recommended action (the text report's own wording), and two Mermaid charts (the
task balance ratio with the healthy band, and the per-task gradient norms) that GitHub renders
without attachments. Everything that comes from the log goes through :mod:`gradlog.analysis.render.md`.
"""

from __future__ import annotations

import math

from gradlog import messages
from gradlog.analysis.model import Report, RunReport
from gradlog.analysis.render import logscale, md, parts
from gradlog.analysis.render.closing import advice_items
from gradlog.analysis.render.fit import Runs
from gradlog.analysis.render.mermaid import BLUE, COLOUR_NAMES, GREEN, ORANGE, RED, thin, xychart
from gradlog.analysis.render.parts import Code, Option, Parts
from gradlog.analysis.status import Status, run_status
from gradlog.classify import HEALTHY_RANGE, NormBand, RatioBand


def format_markdown(report: Report) -> str:
    """The whole report (every run of the file) as GitHub-flavoured Markdown."""
    return markdown_runs(report).whole()


def markdown_runs(report: Report) -> Runs:
    """The report as runs that :func:`gradlog.analysis.render.fit.fit` can cut, worst first."""
    head: list[str] = []
    if len(report.runs) > 1:
        worst = min((r.summary.status for r in report.runs), key=lambda s: s.rank)
        head += [
            f"## {worst.badge} gradlog: {len(report.runs)} runs in {md.code(report.path)}",
            "",
        ]
    level = 3 if len(report.runs) > 1 else 2
    runs = [[*run_markdown(run, report.path, level=level), ""] for run in report.runs]
    tail: list[str] = []
    if report.notes:
        tail.append("<sub>")
        tail += [f"Note: {md.escape(n)}<br>" for n in report.notes]
        tail.append("</sub>")
        tail.append("")

    def render(keep) -> str:
        lines = head + [line for i in keep for line in runs[i]] + tail
        return "\n".join(lines).rstrip("\n") + "\n"

    order = sorted(range(len(runs)), key=lambda i: report.runs[i].summary.status.rank)
    return Runs(len(runs), render, order)


def run_markdown(run: RunReport, path: str, level: int = 2) -> list[str]:
    status = run.summary.status
    h = "#" * level
    lines = [
        f"{h} {status.badge} gradlog: {status.label} in run {md.code(run.run_id)} "
        f"({md.code(path)})",
        "",
        verdict_line(run, status),
        "",
    ]
    lines += summary_table(run)
    lines += ["", f"{h}# Findings", ""]
    lines += findings(run)
    lines += ["", f"{h}# Recommended action", ""]
    lines += recommendation(run)
    charts = ratio_chart(run) + norms_chart(run)
    if charts:
        lines += ["", f"{h}# Charts", ""] + charts
    return lines


def verdict_line(run: RunReport, status: Status) -> str:
    """``**Verdict: ❌ Task collapse** · task balance: ... · gradient norms: ...``"""
    text = parts.join(verdict_parts(run), str, lambda t: md.code(t, in_table=False))
    return f"**Verdict: {status.badge} {status.label}** · " + text


def verdict_parts(run: RunReport) -> Parts:
    """What follows the verdict's label: the task balance and the gradient norms, in brief."""
    s = run.summary
    r = s.advice
    out: Parts = ["task balance: "]
    if s.final_band is not None:
        band = s.final_band
        out.append(f"{band.label}, final spread {messages.fmt2(s.spread)}")
        if s.dominant and band is not RatioBand.HEALTHY:
            out += [" (", Code(s.dominant), " dominating)"]
    elif len(s.tasks) < 2:
        out.append("not judged (fewer than two tasks)")
    else:
        out.append("not judged (too few balance samples)")
    if s.first_collapse:
        out.append(f", collapse from {s.first_collapse}")
    if r.norm_band is not None:
        mean = (
            f"in {s.n_nonfinite} of {s.n_stats} events"
            if r.norm_band is NormBand.NONFINITE
            else f"mean {messages.fmt4(s.mean_norm)}"
        )
        out.append(f" · gradient norms: {r.norm_band.label} ({mean})")
    return out


def summary_table(run: RunReport) -> list[str]:
    rows = [[md.cell(label), parts.join(value, str, md.code)] for label, value in summary_rows(run)]
    return md.table(["", ""], rows, align="ll")


def summary_rows(run: RunReport) -> list[tuple[str, Parts]]:
    """The summary table of a run: (label, value) rows."""
    s = run.summary
    ratio: Parts = ["not judged"]
    if s.window_ratio is not None and s.window_num:
        ratio = [f"{messages.fmt2(s.window_ratio)} (", Code(s.window_num), " / "]
        ratio += [Code(s.window_den), ")"]
    rows: list[tuple[str, Parts]] = [
        ("Tasks", parts.codes(run.tasks) or ["none"]),
        ("Events", [f"{s.n_events} ({s.n_stats} with statistics, {s.n_balance} balance samples)"]),
        ("Final window ratio", ratio),
        ("Final spread", [_ratio_cell(s.spread, s.final_band)]),
        ("Worst spread", [_ratio_cell(s.worst_spread, s.worst_band)]),
        ("First imbalance", [s.first_imbalance or "none"]),
        ("First collapse", [s.first_collapse or "none"]),
    ]
    if s.mean_norm is not None:
        mean = f"{messages.fmt4(s.mean_norm)} ± {messages.fmt4(s.mean_norm_std)}"
        peak = f"{messages.fmt4(s.max_norm_mean)} (peak {messages.fmt4(s.max_norm_peak)})"
        rows += [("Mean gradient norm", [mean]), ("Max gradient norm", [peak])]
    if s.n_nonfinite:
        rows.append(("Non-finite norms", [f"{s.n_nonfinite} of {s.n_stats} events"]))
    if s.n_undefined:
        rows.append(("Undefined ratios", [f"{s.n_undefined} of {s.n_balance} samples"]))
    if run.started_at:
        rows.append(("Started", [Code(run.started_at)]))
    if run.stats_at:
        rows.append(("Statistics", [Code(run.stats_at.replace("_", " "))]))
    if run.tags:
        tags: Parts = []
        for i, (k, v) in enumerate(run.tags.items()):
            tags += ([", "] if i else []) + [Code(k), " = ", Code(v)]
        rows.append(("Tags", tags))
    return rows


def _ratio_cell(value: float | None, band: RatioBand | None) -> str:
    if band is RatioBand.UNDEFINED:
        return f"{_badge_ratio(band)} undefined"
    if value is None or band is None:
        return "not judged"
    return f"{messages.fmt2(value)} ({_badge_ratio(band)} {band.label})"


def findings(run: RunReport) -> list[str]:
    return [
        f"- {status.badge} " + parts.join(text, str, lambda t: f"`{t}`")
        for status, text in finding_items(run)
    ]


def finding_items(run: RunReport) -> list[tuple[Status, Parts]]:
    """The findings with their epochs, each with the status its badge shows."""
    s = run.summary
    out: list[tuple[Status, Parts]] = []
    if s.first_imbalance:
        low, high = HEALTHY_RANGE
        out.append(
            (
                Status.MINOR,
                [
                    f"First balance sample outside the healthy range {low}–{high} "
                    f"at {s.first_imbalance}."
                ],
            )
        )
    if s.first_collapse:
        what = (
            "the mean of the pair's ratio over the window (the original's rule) left 0.2–5.0"
            if run.original
            else "the spread of the task norms over the window (largest over smallest) passed 5.0"
        )
        out.append((Status.COLLAPSE, [f"Task collapse from {s.first_collapse}: {what}."]))
    if s.worst_band is not None and s.worst_band not in (RatioBand.HEALTHY, RatioBand.UNDEFINED):
        worst = f"Worst spread: {messages.fmt2(s.worst_spread)} ({s.worst_band.label})."
        out.append((run_status(s.worst_band, None), [worst]))
    if s.n_undefined:
        undefined = (
            f"{s.n_undefined} balance sample(s) with an undefined "
            "ratio (a zero or non-finite task norm): counts as collapse for "
        )
        out.append((Status.UNDEFINED, [undefined, Option("--fail-on"), "."]))
    worst = s.worst_norm_band
    if worst is not None and worst.warns:
        out.append((run_status(None, worst), [f"Worst logged mean norm: {worst.label}."]))
    if s.n_nonfinite:
        nonfinite = f"Non-finite gradient norms in {s.n_nonfinite} of {s.n_stats} logged events."
        out.append((Status.NONFINITE, [nonfinite]))
    return out or [(Status.HEALTHY, ["No findings."])]


def recommendation(run: RunReport) -> list[str]:
    """The text report's "Recommended action" items, as a list (same wording)."""
    out = []
    for item in advice_items(run):
        if item.code:
            out.append(f"  - {md.code(item.text, in_table=False)}")
        elif item.head is None:
            out.append(f"- {md.escape(item.text.strip())}")
        else:
            out.append(f"- **{md.escape(item.head)}:** {md.escape(item.text)}")
    return out


def _x_label(label: str) -> str:
    return label.rsplit(" ", 1)[-1]


def _axis_name(run: RunReport) -> str:
    return "step" if run.by_steps else "epoch"


def ratio_chart(run: RunReport) -> list[str]:
    """What the verdict judges, per sample and over the window, on the log scale of
    :mod:`gradlog.analysis.render.logscale`, with the healthy band and the collapse bounds."""
    s = logscale.series(run)
    if s is None or len(s.samples) < 2:
        return []
    keep = thin(len(s.samples))
    reach = logscale.extent(s.values)
    edge = reach  # where an undefined sample is drawn: the top, collapse-level
    samples = [s.samples[i] for i in keep]
    windows = [s.windows[i] for i in keep]
    drawn = [edge if v is None else logscale.position(v) for v in samples]
    # before the window holds --min-samples samples only the sample has a value
    window = [drawn[k] if w is None else logscale.position(w) for k, w in enumerate(windows)]
    low, high = HEALTHY_RANGE
    healthy, collapse = logscale.position(high), logscale.position(logscale.COLLAPSE)
    bounds = [[healthy] * len(keep), [collapse] * len(keep)]
    if s.signed:
        bounds = [bounds[0], [-healthy] * len(keep), bounds[1], [-collapse] * len(keep)]
    name = "ratio" if s.signed else "spread"
    chart = xychart(
        title=f"Task balance {name} (log scale)",
        x_title=s.axis,
        x=[_x_label(s.labels[i]) for i in keep],
        y_title=f"{name}, log2 scale (0 = even)",
        y_range=(-reach if s.signed else 0.0, reach),
        lines=[drawn, window, *bounds],
        colours=(BLUE, RED, GREEN, GREEN, ORANGE, ORANGE)
        if s.signed
        else (BLUE, RED, GREEN, ORANGE),
    )
    c = logscale.COLLAPSE
    if s.signed:
        num, den = run.pair
        legend = (
            f"Ratio {md.code(num)} / {md.code(den)} on a log scale (the axis is log2 of the "
            f"ratio: 0 is even, 1 twice, -1 half, so 0.04 sits as far below 0 as 25 above)"
        )
        lines = f"green lines: the healthy band {low}–{high}; orange: collapse below {1 / c:g} and above {c}"
    else:
        legend = (
            "Spread (largest task norm over the smallest) on a log scale (the axis is log2 of "
            "the spread: 0 is even, 1 twice)"
        )
        lines = f"green line: the healthy bound {high}; orange: collapse above {c}"
    legend += (
        f": blue per sample, red the window ({run.window} samples; before it is judged, the "
        f"sample's own value); {lines}."
    )
    n_undefined = samples.count(None)
    if n_undefined:
        legend += (
            f" {n_undefined} undefined sample(s) (a zero or non-finite task norm) drawn at the top."
        )
    if len(keep) < len(s.samples):
        legend += f" {len(keep)} of the {len(s.samples)} samples drawn, evenly spread."
    return [legend, "", *chart, ""]


def norms_chart(run: RunReport) -> list[str]:
    """Each task's gradient norm over the balance samples where all of them are finite."""
    tasks = list(run.tasks)[: len(COLOUR_NAMES)]
    if not tasks:
        return []
    import polars as pl

    norms = pl.DataFrame([run.norms(t).alias(t) for t in tasks]).with_columns(
        label=run.events.get_column("label"), has_balance=run.events.get_column("has_balance")
    )
    # log10, as the ratio is on a log scale: a starved task's norm, 100x below the others,
    # is a line of its own instead of one hugging the axis
    points = norms.filter(
        pl.col("has_balance")
        & pl.all_horizontal((pl.col(t).is_finite() & (pl.col(t) > 0)) for t in tasks)
    )
    if points.height < 2:
        return []
    points = points[thin(points.height)]
    series = [[math.log10(v) for v in points.get_column(t).to_list()] for t in tasks]
    labels = points.get_column("label").to_list()
    low = math.floor(min(min(s) for s in series))
    high = max(math.ceil(max(max(s) for s in series)), low + 1)
    chart = xychart(
        title="Task gradient norms",
        x_title=_axis_name(run),
        x=[_x_label(label) for label in labels],
        y_title="gradient norm, log10 scale (-2 = 0.01)",
        y_range=(float(low), float(high)),
        lines=series,
    )
    of = "loss divided by its weight (raw)" if run.unweighted else "weighted loss"
    legend = f"Gradient norm of each task's {of}: " + ", ".join(
        f"{colour} {md.code(t)}" for colour, t in zip(COLOUR_NAMES, tasks)
    )
    return [legend + ".", "", *chart, ""]


def _badge_ratio(band: RatioBand) -> str:
    return run_status(band, None).badge
