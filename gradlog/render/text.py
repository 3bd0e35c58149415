"""The documented text report (``shared/spec/gradient-monitoring-quickstart.md``).

:func:`report_lines` renders plain lines, and :func:`format_text` the string the golden tests
pin. Colour is decided afterwards, line by line, by :func:`line_style`, so that building a
million-event report costs no more than its text.
"""

from __future__ import annotations

from gradlog import messages
from gradlog.classify import NormBand, RatioBand
from gradlog.summary import Report, RunReport

RULE = "-" * 60


def report_lines(report: Report) -> list[str]:
    """Every run of the report; a heading names each run when the file holds several."""
    lines: list[str] = []
    for i, run in enumerate(report.runs):
        if len(report.runs) > 1:
            if i:
                lines.append("")
            lines += [f"=== Run {run.run_id} ({report.path}) ===", ""]
        lines.extend(run_lines(run))
    return lines


def run_lines(run: RunReport) -> list[str]:
    lines = [messages.enabled_line(run.log_every, run.log_every_steps), ""]
    num, den = run.pair or ("", "")
    ev = run.events
    append, extend = lines.append, lines.extend
    stats_block, collapse_line = messages.stats_block, messages.collapse_line
    for i in range(len(ev)):
        mean = ev.mean_norm[i]
        if mean is not None:
            extend(
                stats_block(ev.label[i], mean, ev.max_norm[i], ev.n_vanishing[i], ev.n_exploding[i])
            )
            append("")
        if not ev.has_balance[i]:
            continue
        r = ev.ratio[i]
        if r is None:
            a, b = _or_nan(ev.norms[num][i]), _or_nan(ev.norms[den][i])
            extend((messages.undefined_ratio_line(_when(ev.label[i]), num, den, a, b), ""))
        elif ev.imbalance[i]:
            extend(messages.imbalance_lines(_when(ev.label[i]), num, den, r))
            append("")
        append(collapse_line(ev.verdict[i], num, den, ev.window_mean[i]))
        if ev.shares is not None and ev.shares[run.tasks[0]][i] is not None:
            append(messages.shares_line({t: ev.shares[t][i] for t in run.tasks}))
        append("")
    extend(summary_lines(run))
    append("")
    extend(recommendation_lines(run))
    return lines


def _when(label: str) -> str:
    return label[:1].lower() + label[1:]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def summary_lines(run: RunReport) -> list[str]:
    s = run.summary
    num, den = run.pair or ("", "")
    lines = messages.summary_lines(
        s.mean_norm_mean,
        s.mean_norm_std,
        s.max_norm_mean,
        s.max_norm_peak,
        s.final_verdict,
        num,
        den,
        s.final_ratio,
    )
    if s.n_nonfinite:
        lines.append(messages.nonfinite_summary_line(s.n_nonfinite, s.n_stats))
    if s.final_shares:
        lines.append("  " + messages.shares_line(s.final_shares))
    return lines


def recommendation_lines(run: RunReport) -> list[str]:
    """The "Recommended action" section: bands, the quick start's actions, balancing weights."""
    r, s = run.recommendation, run.summary
    lines = [RULE, "Recommended action:"]
    if r.ratio_band is None:
        reason = "fewer than two tasks" if run.pair is None else "not enough balance samples"
        lines.append(f"  Task balance:   no verdict ({reason})")
    else:
        detail = f"window ratio {messages.fmt2(s.final_ratio)}"
        if r.dominant and r.ratio_band is not RatioBand.HEALTHY:
            detail += f", {messages.title(r.dominant)} dominating"
        lines.append(f"  Task balance:   {r.ratio_band.label} ({detail}): {r.ratio_band.action}")
    if r.norm_band is None:
        lines.append("  Gradient norms: no verdict (no gradient statistics logged)")
    else:
        if r.norm_band is NormBand.NONFINITE:
            mean = f"in {s.n_nonfinite} of {s.n_stats} logged events"
        else:
            mean = f"mean {messages.fmt4(s.mean_norm_mean)}"
        lines.append(f"  Gradient norms: {r.norm_band.label} ({mean}): {r.norm_band.action}")
    worst = s.worst_norm_band
    if worst is not None and worst.warns and worst is not r.norm_band:
        lines.append(f"  Worst logged norm band: {worst.label}: {worst.action}")
    if r.withheld is not None:
        lines.append(f"  No weights suggested: {r.withheld}")
    if r.weights is not None:
        last = min(run.window, s.n_balance - s.n_undefined)
        lines.append(f"  Weights that would have balanced the last {last} balance samples:")
        lines.append(f"    {r.flags}")
        if r.weights_assumed:
            lines.append(
                "    (the log carries no loss weights; current weights of 1.0 were assumed)"
            )
    return lines


_RED = "bold red"
_STYLES = (  # first matching prefix wins
    ("[PHASE 4] TASK COLLAPSE", _RED),
    ("  TASK COLLAPSE DETECTED", _RED),
    ("[PHASE 4] Task balance undefined", _RED),
    ("  WARNING: Non-finite", _RED),
    ("  WARNING", "yellow"),
    ("[PHASE 4] Task imbalance", "yellow"),
    ("[PHASE 4] Task balance: Tasks balanced", "green"),
    ("  Task balance: Tasks balanced", "green"),
    (f"  Task balance:   {RatioBand.HEALTHY.label}", "green"),
    (f"  Task balance:   {RatioBand.COLLAPSE.label}", _RED),
    (f"  Task balance:   {RatioBand.UNDEFINED.label}", _RED),
    ("  Task balance:   no verdict", ""),
    ("  Task balance:   ", "yellow"),
    (f"  Gradient norms: {NormBand.HEALTHY.label}", "green"),
    (f"  Gradient norms: {NormBand.EXPLODING.label}", _RED),
    (f"  Gradient norms: {NormBand.NONFINITE.label}", _RED),
    (f"  Gradient norms: {NormBand.VANISHING.label}", "yellow"),
    (f"  Gradient norms: {NormBand.LARGE.label}", "yellow"),
    ("  Worst logged norm band", "yellow"),
    ("    --loss", "bold"),
    ("[PHASE 4] Gradient", "bold"),
    ("Recommended action:", "bold"),
    ("=== Run", "bold"),
)


def line_style(line: str) -> str:
    """The Rich style of one report line on a terminal ("" for none)."""
    for prefix, style in _STYLES:
        if line.startswith(prefix):
            return style
    if line.endswith("Gradient Stats:"):
        return "bold"
    if "(healthy range:" in line:
        return "yellow"
    return ""


def format_text(report: Report) -> str:
    """The report as plain text, newline-terminated."""
    return "\n".join(report_lines(report)) + "\n"
