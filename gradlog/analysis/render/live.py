"""What ``gradlog watch`` shows of a run as it trains: lines with their styles (data, never
output; :class:`gradlog.analysis.output.Live` writes them).

Every number, band, verdict and sentence is the report's own: the summary block and the
"Recommended action" items of :mod:`gradlog.analysis.render.closing`, read from the same
:class:`~gradlog.analysis.model.RunReport` that ``gradlog report`` renders. What is new here is
only how it is laid out: each task's norm as a sparkline, on one log scale shared by the run's
tasks (a starved task shows as a low line beside a high one), the last sample, the conflict of
each pair and how long ago the log was last written.
"""

from __future__ import annotations

import math

from gradlog import messages
from gradlog.analysis.model import Report, RunReport
from gradlog.analysis.render.closing import Line, advice_items, summary_lines
from gradlog.analysis.status import EMPHASIS, ratio_status
from gradlog.analysis.watch.follow import Followed
from gradlog.classify import RatioBand

BARS = "▁▂▃▄▅▆▇█"
UNDEFINED_BAR = "×"  # a zero, missing or non-finite norm: off the log scale
SPARK_WIDTH = 40  # the last this many balance samples


def sparklines(run: RunReport, width: int = SPARK_WIDTH) -> tuple[list[Line], str | None]:
    """One line per task, ``name  ▁▃▅█  last``, on a log scale shared by the tasks; and the
    scale's caption (None without samples)."""
    ev = run.events.filter("has_balance").tail(width)
    if ev.height == 0 or not run.tasks:
        return [], None
    sampled = run.events.get_column("has_balance")
    series = {t: run.norms(t).filter(sampled).tail(width) for t in run.tasks}
    logs = {
        t: [math.log10(v) if v is not None and math.isfinite(v) and v > 0 else None for v in s]
        for t, s in series.items()
    }
    defined = [x for xs in logs.values() for x in xs if x is not None]
    if not defined:
        return [(f"  {t}  " + UNDEFINED_BAR * ev.height, "") for t in run.tasks], None
    low, high = min(defined), max(defined)
    span = high - low or 1.0
    name_width = max(len(t) for t in run.tasks)
    lines = []
    for task in run.tasks:
        bars = "".join(
            UNDEFINED_BAR
            if x is None
            else BARS[min(len(BARS) - 1, int((x - low) / span * len(BARS)))]
            for x in logs[task]
        )
        last = series[task].to_list()[-1] if series[task].len() else None
        shown = "-" if last is None else f"{last:.4g}"
        lines.append((f"  {task:<{name_width}}  {bars:<{width}}  {shown}", ""))
    caption = (
        f"Task gradient norms, the last {ev.height} balance samples "
        f"(log scale, {10**low:.2g} to {10**high:.2g}):"
    )
    return lines, caption


def last_sample(run: RunReport) -> Line | None:
    """The newest balance sample's ratio (or spread) and band, as the engine judged it."""
    ev = run.events.filter("has_balance")
    if ev.height == 0 or len(run.tasks) < 2:
        return None
    last = ev.row(-1, named=True)
    band = RatioBand(last["ratio_band"]) if last["ratio_band"] else RatioBand.UNDEFINED
    if last["ratio"] is None or not last["defined"]:
        return (f"Last balance sample ({last['label']}): {band.label}", ratio_status(band).style)
    what = "spread" if len(run.tasks) > 2 and not run.original else "ratio"
    return (
        f"Last balance sample ({last['label']}): {what} {messages.fmt2(last['ratio'])}, "
        f"{band.label}",
        ratio_status(band).style,
    )


def conflict_lines(run: RunReport) -> list[Line]:
    out = []
    for pair in run.summary.conflicts:
        name = f"{messages.title(pair.a)}/{messages.title(pair.b)}"
        last = "-" if pair.last_cosine is None else messages.fmt2(pair.last_cosine)
        if pair.mean_cosine is None:
            mean = f"too few samples for a window ({pair.n_samples})"
        else:
            mean = f"mean {messages.fmt2(pair.mean_cosine)} over the last {pair.n_samples} samples"
        out.append((f"Gradient conflict {name}: cosine {last}, {mean}", ""))
    return out


def _events(n: int) -> str:
    return f"{n} event{'s' * (n != 1)}"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def run_lines(report: Report, run: RunReport, since: float | None) -> list[Line]:
    """The live view of one run."""
    s = run.summary
    head = f"Run {run.run_id} ({report.path})" if run.run_id else report.path
    lines: list[Line] = [(f"{head}: {s.status.label}", s.status.style or EMPHASIS)]
    bars, caption = sparklines(run)
    if caption:
        lines.append((caption, ""))
        lines += bars
    sample = last_sample(run)
    if sample:
        lines.append(sample)
    # the report's summary block (less its heading) and its recommended actions
    lines.append(("Summary so far:", EMPHASIS))
    lines += [("  " + text.strip(), style) for text, style in summary_lines(run)[1:]]
    lines.append(("Recommended action:", EMPHASIS))
    for item in advice_items(run):
        if item.head is not None:
            lines.append((f"  {item.head}: {item.text}", item.style))
    lines += conflict_lines(run)
    counts = f"{_events(s.n_events)} ({s.n_balance} balance samples, {s.n_stats} with statistics)"
    lines.append((f"{counts}; log last written {ago(since)}", "dim"))
    return lines


def plain_line(report: Report, run: RunReport) -> str:
    """One line a run, for a log file or a pipe: the verdict, the bands, the event count."""
    s = run.summary
    # the summary block: its heading, the two norm lines when statistics were logged, the verdict
    verdict = summary_lines(run)[3 if s.mean_norm is not None else 1][0].strip()
    parts = [f"{run.run_id or report.path}: {_events(s.n_events)}", verdict]
    for item in advice_items(run):
        if item.head in ("Task balance", "Gradient norms"):
            parts.append(f"{item.head}: {item.text}")
    return "; ".join(parts)


def _waiting(f: Followed) -> str:
    if not f.look.exists:
        return f"{f.look.path}: waiting for the log to be created"
    return f"{f.look.path}: waiting for a readable record ({f.problem})"


def view(target: str, followed: list[Followed], now: float) -> list[Line]:
    """The whole live view: every log's runs, or what is awaited."""
    if not followed:
        return [(f"{target}: waiting for a log in this folder", "dim")]
    lines: list[Line] = []
    for f in followed:
        if lines:
            lines.append(("", ""))
        if f.news:
            lines.append((f.news, "yellow"))
        if f.report is None or f.problem is not None:
            lines.append((_waiting(f), "dim"))
        if f.report is not None:
            since = None if f.look.mtime is None else now - f.look.mtime
            for r in f.report.runs:
                lines += run_lines(f.report, r, since)
    return lines


def plain(target: str, followed: list[Followed]) -> dict[str, str]:
    """The plain view: one line per run (or per log awaited), by a key that stays the same
    from one refresh to the next, so that a line is written again only when it changes."""
    if not followed:
        return {target: f"{target}: waiting for a log in this folder"}
    out: dict[str, str] = {}
    for f in followed:
        path = f.look.path
        if f.news:
            out[path + "\0news"] = f.news
        if f.report is None or f.problem is not None:
            out[path] = _waiting(f)
        if f.report is not None:
            for r in f.report.runs:
                out[f"{path}\0{r.run_id}"] = plain_line(f.report, r)
    return out
