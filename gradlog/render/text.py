"""The documented text report (``shared/spec/gradient-monitoring-quickstart.md``).

Renders to styled lines, so the CLI can colour them on a terminal and print them plain
elsewhere; :func:`format_text` is the plain string the golden tests pin.
"""

from __future__ import annotations

from typing import NamedTuple

from gradlog import messages
from gradlog.classify import Collapse, NormBand, RatioBand
from gradlog.summary import Report, RunReport

RULE = "-" * 60


class Line(NamedTuple):
    text: str
    style: str | None = None  # a Rich style name, used on terminals only


def report_lines(report: Report) -> list[Line]:
    """Every run of the report; a heading names each run when the file holds several."""
    lines: list[Line] = []
    for i, run in enumerate(report.runs):
        if len(report.runs) > 1:
            if i:
                lines.append(Line(""))
            lines.append(Line(f"=== Run {run.run_id} ({report.path}) ===", "bold"))
            lines.append(Line(""))
        lines.extend(run_lines(run))
    return lines


def run_lines(run: RunReport) -> list[Line]:
    lines = [Line(messages.enabled_line(run.log_every, run.log_every_steps), "bold"), Line("")]
    num, den = run.pair or ("", "")
    for event in run.events:
        if event.stats is not None:
            s = event.stats
            block = messages.stats_block(
                event.label, s.mean_norm, s.max_norm, s.n_vanishing, s.n_exploding
            )
            lines.append(Line(block[0], "bold"))
            lines.append(Line(block[1], _norm_style(s.band)))
            lines.append(Line(block[2]))
            lines.extend(Line(text, "yellow") for text in block[3:])
            lines.append(Line(""))
        b = event.balance
        if b is None:
            continue
        if b.ratio is None:
            text = messages.undefined_ratio_line(
                event.when, num, den, *_pair_norms(b.norms, num, den)
            )
            lines += [Line(text, "bold red"), Line("")]
        elif b.imbalance:
            first, second = messages.imbalance_lines(event.when, num, den, b.ratio)
            lines += [Line(first, "yellow"), Line(second, "yellow"), Line("")]
        lines.append(
            Line(
                messages.collapse_line(b.verdict, num, den, b.window_mean),
                _verdict_style(b.verdict),
            )
        )
        if b.shares:
            lines.append(Line(_shares_line(b.shares)))
        lines.append(Line(""))
    lines.extend(summary_lines(run))
    lines.append(Line(""))
    lines.extend(recommendation_lines(run))
    return lines


def _pair_norms(norms: dict, num: str, den: str) -> tuple[float, float]:
    nan = float("nan")
    a, b = norms.get(num), norms.get(den)
    return (nan if a is None else a, nan if b is None else b)


def _shares_line(shares: dict[str, float]) -> str:
    return "Task shares: " + ", ".join(
        f"{messages.title(t)} {100 * v:.1f}%" for t, v in shares.items()
    )


def summary_lines(run: RunReport) -> list[Line]:
    s = run.summary
    num, den = run.pair or ("", "")
    texts = messages.summary_lines(
        s.mean_norm_mean,
        s.mean_norm_std,
        s.max_norm_mean,
        s.max_norm_peak,
        s.final_verdict,
        num,
        den,
        s.final_ratio,
    )
    lines = [Line(texts[0], "bold")]
    lines.extend(
        Line(t, _verdict_style(s.final_verdict) if "Task" in t or "TASK" in t else None)
        for t in texts[1:]
    )
    if s.n_nonfinite:
        lines.append(
            Line(
                f"  WARNING: Non-finite gradient norms in {s.n_nonfinite} of {s.n_stats} logged events (left out above)",
                "bold red",
            )
        )
    if s.final_shares:
        lines.append(Line("  " + _shares_line(s.final_shares)))
    return lines


def recommendation_lines(run: RunReport) -> list[Line]:
    """The "Recommended action" section: bands, the quick start's actions, balancing weights."""
    r, s = run.recommendation, run.summary
    lines = [Line(RULE), Line("Recommended action:", "bold")]
    if r.ratio_band is None:
        reason = "fewer than two tasks" if run.pair is None else "not enough balance samples"
        lines.append(Line(f"  Task balance:   no verdict ({reason})"))
    else:
        detail = f"window ratio {messages.fmt2(s.final_ratio)}"
        if r.dominant and r.ratio_band is not RatioBand.HEALTHY:
            detail += f", {messages.title(r.dominant)} dominating"
        lines.append(
            Line(
                f"  Task balance:   {r.ratio_band.label} ({detail}): {r.ratio_band.action}",
                _band_style(r.ratio_band),
            )
        )
    if r.norm_band is None:
        lines.append(Line("  Gradient norms: no verdict (no gradient statistics logged)"))
    else:
        mean = (
            "non-finite"
            if r.norm_band is NormBand.NONFINITE
            else f"mean {messages.fmt4(s.mean_norm_mean)}"
        )
        lines.append(
            Line(
                f"  Gradient norms: {r.norm_band.label} ({mean}): {r.norm_band.action}",
                _norm_style(r.norm_band),
            )
        )
    if (
        s.worst_norm_band is not None
        and s.worst_norm_band.warns
        and s.worst_norm_band is not r.norm_band
    ):
        lines.append(
            Line(
                f"  Worst logged norm band: {s.worst_norm_band.label}: {s.worst_norm_band.action}",
                "yellow",
            )
        )
    if r.weights is not None:
        last = min(run.window, s.n_balance)
        lines.append(Line(f"  Weights that would have balanced the last {last} balance samples:"))
        lines.append(Line(f"    {r.flags}", "bold"))
        if r.weights_assumed:
            lines.append(
                Line("    (the log carries no loss weights; current weights of 1.0 were assumed)")
            )
    return lines


def _verdict_style(verdict: Collapse) -> str | None:
    if verdict in (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES):
        return "bold red"
    if verdict is Collapse.BALANCED:
        return "green"
    return None


def _band_style(band: RatioBand) -> str:
    return {
        RatioBand.HEALTHY: "green",
        RatioBand.MINOR: "yellow",
        RatioBand.SIGNIFICANT: "yellow",
        RatioBand.COLLAPSE: "bold red",
        RatioBand.UNDEFINED: "bold red",
    }[band]


def _norm_style(band: NormBand) -> str | None:
    if band in (NormBand.EXPLODING, NormBand.NONFINITE):
        return "bold red"
    if band in (NormBand.VANISHING, NormBand.LARGE):
        return "yellow"
    return None


def format_text(report: Report) -> str:
    """The report as plain text, newline-terminated."""
    return "".join(line.text + "\n" for line in report_lines(report))
