"""The end of each run's text report: the summary block and "Recommended action".

Line by line in Python (a handful per run), each with its style, from the run's
:class:`~gradlog.analysis.model.RunSummary`; :func:`advice_items` is also what the Markdown report lists,
so the two say the same things in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradlog import conflict, messages
from gradlog.analysis.model import RunReport
from gradlog.analysis.status import EMPHASIS, Status, norm_status, ratio_status
from gradlog.classify import Collapse, NormBand, RatioBand

RULE = "-" * 60

_VERDICT_STATUS = {
    Collapse.NUMERATOR_DOMINATES: Status.COLLAPSE,
    Collapse.DENOMINATOR_DOMINATES: Status.COLLAPSE,
    Collapse.BALANCED: Status.HEALTHY,
}


def verdict_style(verdict: Collapse | None) -> str:
    status = _VERDICT_STATUS.get(verdict)
    return status.style if status is not None else ""


Line = tuple[str, str]  # text, style


def closing_lines(run: RunReport) -> list[Line]:
    return summary_lines(run) + [("", "")] + recommendation_lines(run)


def summary_lines(run: RunReport) -> list[Line]:
    s = run.summary
    shown_verdict = s.pair_verdict if s.pair is not None else s.verdict
    lines = messages.summary_lines(
        s.mean_norm,
        s.mean_norm_std,
        s.max_norm_mean,
        s.max_norm_peak,
        shown_verdict,
        s.window_num or "",
        s.window_den or "",
        s.window_ratio,
    )
    out = [(lines[0], EMPHASIS)] + [(line, "") for line in lines[1:-1]]
    out.append((lines[-1], verdict_style(shown_verdict)))
    if (
        s.pair is not None
        and len(s.tasks) >= 3
        and s.dominant
        and {s.dominant, s.starved} != set(s.pair)
    ):
        extreme = messages.render(
            messages.SUMMARY[s.verdict], num=s.dominant, den=s.starved, r=s.spread
        )
        out.append((extreme, verdict_style(s.verdict)))
    if s.n_nonfinite:
        out.append(
            (messages.nonfinite_summary_line(s.n_nonfinite, s.n_stats), Status.NONFINITE.style)
        )
    if s.shares:
        out.append(("  " + messages.shares_line(s.shares), ""))
    return out


@dataclass(frozen=True)
class Advice:
    """One item of "Recommended action": a heading, what to do, its style; ``code`` marks the
    flags to copy (a line of their own)."""

    head: str | None
    text: str
    style: str = ""
    code: bool = False


_HEAD_WIDTH = 16  # "  Task balance:   " and "  Gradient norms: " line up


def recommendation_lines(run: RunReport) -> list[Line]:
    """The "Recommended action" section: bands, the quick start's actions, balancing weights."""
    lines: list[Line] = [(RULE, ""), ("Recommended action:", EMPHASIS)]
    for item in advice_items(run):
        if item.code:
            lines.append((f"    {item.text}", item.style))
        elif item.head is None:
            lines.append((f"  {item.text}", item.style))
        else:
            head = f"{item.head}:"
            if item.head in _ALIGNED:
                head = head.ljust(_HEAD_WIDTH)
            else:
                head += " "
            lines.append((f"  {head}{item.text}", item.style))
    return lines


_ALIGNED = ("Task balance", "Gradient norms", "Tasks")


def advice_items(run: RunReport) -> list[Advice]:
    """What "Recommended action" says, item by item (text and Markdown word it alike)."""
    a, s = run.summary.advice, run.summary
    items: list[Advice] = []
    if a.ratio_band is None:
        reason = "fewer than two tasks" if len(s.tasks) < 2 else "not enough balance samples"
        items.append(Advice("Task balance", f"no verdict ({reason})"))
    else:
        if len(s.tasks) >= 3 and not run.original:  # the original judges its pair alone
            detail = f"spread {messages.fmt2(s.spread)}"
        else:
            detail = f"window ratio {messages.fmt2(s.window_ratio)}"
        if s.dominant and a.ratio_band is not RatioBand.HEALTHY:
            detail += f", {messages.title(s.dominant)} dominating"
        items.append(
            Advice(
                "Task balance",
                f"{a.ratio_band.label} ({detail}): {a.ratio_band.action}",
                ratio_status(a.ratio_band).style,
            )
        )
    if s.shares and s.dominant and s.starved:
        text = messages.tasks_text(
            s.dominant, s.shares[s.dominant], s.starved, s.shares[s.starved], s.spread
        )
        items.append(Advice("Tasks", text))
    if a.norm_band is None:
        items.append(Advice("Gradient norms", "no verdict (no gradient statistics logged)"))
    else:
        if a.norm_band is NormBand.NONFINITE:
            mean = f"in {s.n_nonfinite} of {s.n_stats} logged events"
        else:
            mean = f"mean {messages.fmt4(s.mean_norm)}"
        items.append(
            Advice(
                "Gradient norms",
                f"{a.norm_band.label} ({mean}): {a.norm_band.action}",
                _norm_style(a.norm_band),
            )
        )
    worst = s.worst_norm_band
    if worst is not None and worst.warns and worst is not a.norm_band:
        items.append(
            Advice("Worst logged norm band", f"{worst.label}: {worst.action}", _norm_style(worst))
        )
    for pair in s.conflicts:
        if pair.sustained:
            text = messages.conflict_text(
                pair.a, pair.b, pair.mean_cosine, pair.n_samples, conflict.CONFLICT_ACTION
            )
            items.append(Advice("Gradient conflict", text, Status.MINOR.style))
    if a.withheld is not None:
        items.append(Advice("No weights suggested", a.withheld))
    if a.weights is not None:
        last = min(run.window, s.n_balance - s.n_undefined)
        items.append(
            Advice(None, f"Weights that would have balanced the last {last} balance samples:")
        )
        items.append(Advice(None, a.flags or "", EMPHASIS, code=True))
        if a.weights_assumed:
            items.append(
                Advice(
                    None,
                    "  (the log carries no loss weights; current weights of 1.0 were assumed)",
                )
            )
    return items


def _norm_style(band: NormBand) -> str:
    status = norm_status(band)
    return status.style if band.warns or band is NormBand.HEALTHY else ""
