"""The documented report lines, word for word (standard library only).

``shared/spec/report-semantics.md`` fixes the original implementation's wording. Each sentence
is one template below; the recorder's live echo formats them in Python (:func:`render`) and the
offline report builds the same templates as Polars string expressions
(:func:`gradlog.analysis.render.columns.template`), so the two can never drift apart.

Placeholders: ``{label}`` ("Epoch 10"), ``{when}`` ("epoch 10"), ``{num}``/``{den}``/``{task}``
(task names, capitalised as the original: :func:`title`), numbers as ``{name:.4f}`` or
``{name:.2f}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gradlog.classify import COLLAPSE_RATIO, EXPLODING_NORM, HEALTHY_RANGE, Collapse, clipped

PREFIX = "[PHASE 4]"
_HIGH = f"{COLLAPSE_RATIO:.1f}"
_LOW = f"{1 / COLLAPSE_RATIO:.2f}"
_RANGE = f"{HEALTHY_RANGE[0]}-{HEALTHY_RANGE[1]}"

ENABLED = PREFIX + " Gradient monitoring enabled (log frequency: {cadence})"
STATS_HEAD = "{label} Gradient Stats:"
STATS_MEAN = "  Mean norm: {mean:.4f}"
STATS_MAX = "  Max norm:  {max:.4f}"
# A clipped event (docs/format.md "Clipping"). Clipping scales every gradient by one factor,
# so when the statistics are of the clipped gradients, the norms before it are the logged ones
# over that factor; when they were read before clipping, only the clipping itself is news.
CLIPPED = (
    "  Before clipping: mean norm {pre_mean:.4f}, max norm {pre_max:.4f}, total norm {pre:.4f} "
    "(clipped to {post:.4f})"
)
CLIPPED_AFTER = "  Then clipped: total norm {pre:.4f} to {post:.4f}"
EXPLODING_BEFORE_CLIPPING = (
    "  WARNING: Exploding gradients before clipping (mean norm {pre_mean:.4f} > "
    + f"{EXPLODING_NORM:.1f})"
)
NONFINITE_BEFORE_CLIPPING = "  WARNING: Non-finite gradient norm before clipping"
NONFINITE_WARNING = "  WARNING: Non-finite gradient norms"
VANISHING_WARNING = "  WARNING: Vanishing gradients in {n} layers"
EXPLODING_WARNING = "  WARNING: Exploding gradients in {n} layers"
IMBALANCE_HEAD = PREFIX + " Task imbalance detected at {when}!"
IMBALANCE_RATIO = "{num}/{den} gradient ratio: {r:.2f} (healthy range: " + _RANGE + ")"
UNDEFINED = PREFIX + " Task balance undefined at {when}: {reason} ({norms})"
# The collapse check, per sample (``LINE``) and in the summary (``SUMMARY``), by verdict.
PHRASES = {
    Collapse.NUMERATOR_DOMINATES: "{num} task dominating (ratio={r:.2f} > " + _HIGH + ")",
    Collapse.DENOMINATOR_DOMINATES: "{den} task dominating (ratio={r:.2f} < " + _LOW + ")",
    Collapse.BALANCED: "Tasks balanced (ratio={r:.2f})",
    Collapse.NOT_ENOUGH_DATA: "Not enough data",
}
_COLLAPSED = (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES)
LINE = {
    v: (PREFIX + " TASK COLLAPSE: " if v in _COLLAPSED else PREFIX + " Task balance: ") + p
    for v, p in PHRASES.items()
}
SUMMARY = {
    v: ("  TASK COLLAPSE DETECTED: " if v in _COLLAPSED else "  Task balance: ") + p
    for v, p in PHRASES.items()
}
SUMMARY_HEAD = PREFIX + " Gradient Monitoring Summary:"
SUMMARY_MEAN = "  Mean gradient norm: {mean:.4f} ± {std:.4f}"
SUMMARY_MAX = "  Max gradient norm: {max:.4f} (peak: {peak:.4f})"
SUMMARY_NONFINITE = (
    "  WARNING: Non-finite gradient norms in {n} of {total} logged events (left out above)"
)
SHARES = "Task shares: {shares}"
SHARE = "{task} {share:.1f}%"


def render(template: str, **values: object) -> str:
    """One template with its values; task names given raw are capitalised here."""
    for key in ("num", "den", "task"):
        if isinstance(values.get(key), str):
            values[key] = title(values[key])
    return template.format(**values)


def title(task: str) -> str:
    """A task name as the original capitalised it ("pointer" -> "Pointer")."""
    return task[:1].upper() + task[1:]


def fmt4(value: float) -> str:
    return f"{value:.4f}"


def fmt2(value: float) -> str:
    return f"{value:.2f}"


def cadence(log_every: int | None, log_every_steps: int | None) -> str:
    parts = []
    if log_every:
        parts.append(f"{log_every} epochs")
    if log_every_steps:
        parts.append(f"{log_every_steps} steps")
    return ", ".join(parts) if parts else "unknown"


def enabled_line(log_every: int | None, log_every_steps: int | None) -> str:
    return render(ENABLED, cadence=cadence(log_every, log_every_steps))


def stats_block(
    label: str,
    mean_norm: float,
    max_norm: float,
    n_vanishing: int | None,
    n_exploding: int | None,
    clip_coef: float | None = None,
    pre_clip_norm: float | None = None,
    after_clipping: bool = False,
) -> list[str]:
    """``Epoch N Gradient Stats:`` and its lines; ``label`` is e.g. ``Epoch 10``;
    ``after_clipping``: the statistics are of the clipped gradients (``meta.stats_at``)."""
    lines = [
        render(STATS_HEAD, label=label),
        render(STATS_MEAN, mean=mean_norm),
        render(STATS_MAX, max=max_norm),
    ]
    lines += _clipping_lines(mean_norm, max_norm, clip_coef, pre_clip_norm, after_clipping)
    if not (math.isfinite(mean_norm) and math.isfinite(max_norm)):
        lines.append(NONFINITE_WARNING)
    if n_vanishing:
        lines.append(render(VANISHING_WARNING, n=n_vanishing))
    if n_exploding:
        lines.append(render(EXPLODING_WARNING, n=n_exploding))
    return lines


def _clipping_lines(
    mean_norm: float,
    max_norm: float,
    clip_coef: float | None,
    pre_clip_norm: float | None,
    after_clipping: bool,
) -> list[str]:
    if pre_clip_norm is None:
        return []
    if after_clipping and not math.isfinite(pre_clip_norm):
        return [NONFINITE_BEFORE_CLIPPING]
    if not clipped(clip_coef):
        return []
    post = pre_clip_norm * clip_coef
    if not after_clipping:
        return [render(CLIPPED_AFTER, pre=pre_clip_norm, post=post)]
    pre_mean = mean_norm / clip_coef
    lines = [
        render(
            CLIPPED, pre_mean=pre_mean, pre_max=max_norm / clip_coef, pre=pre_clip_norm, post=post
        )
    ]
    if pre_mean > EXPLODING_NORM:
        lines.append(render(EXPLODING_BEFORE_CLIPPING, pre_mean=pre_mean))
    return lines


def imbalance_lines(when: str, numerator: str, denominator: str, r: float) -> list[str]:
    """The warning for one balance sample outside [0.5, 2.0]; ``when`` is e.g. ``epoch 15``."""
    return [
        render(IMBALANCE_HEAD, when=when),
        render(IMBALANCE_RATIO, num=numerator, den=denominator, r=r),
    ]


def undefined_reason(norms: Mapping[str, float | None]) -> str:
    """Why a sample's balance is undefined: the first task norm that is missing, not finite,
    negative or zero (decision: reported, never a silently padded 1e8)."""
    for task, value in norms.items():
        if value is None:
            return f"no gradient norm for {title(task)}"
        if not math.isfinite(value):
            return "non-finite gradient norm"
    for task, value in norms.items():
        if value < 0:
            return f"{title(task)} gradient norm is negative"
        if value == 0:
            return f"{title(task)} gradient norm is zero"
    return "undefined"


def undefined_line(when: str, norms: Mapping[str, float | None]) -> str:
    """A balance sample whose ratio is undefined, with every task's norm in print order."""
    shown = ", ".join(
        f"{title(t)}={'missing' if v is None else format(v, '.4g')}" for t, v in norms.items()
    )
    return render(UNDEFINED, when=when, reason=undefined_reason(norms), norms=shown)


def collapse_line(verdict: Collapse, numerator: str, denominator: str, r: float | None) -> str:
    """The per-sample collapse check on the window."""
    return render(LINE[verdict], num=numerator, den=denominator, r=r)


def summary_lines(
    mean_of_means: float | None,
    std_of_means: float | None,
    mean_of_maxes: float | None,
    peak: float | None,
    verdict: Collapse,
    numerator: str,
    denominator: str,
    final_ratio: float | None,
) -> list[str]:
    """The ``Gradient Monitoring Summary`` block; the norm lines only when stats were logged."""
    lines = [SUMMARY_HEAD]
    if mean_of_means is not None:
        lines.append(render(SUMMARY_MEAN, mean=mean_of_means, std=std_of_means))
        lines.append(render(SUMMARY_MAX, max=mean_of_maxes, peak=peak))
    lines.append(render(SUMMARY[verdict], num=numerator, den=denominator, r=final_ratio))
    return lines


def nonfinite_summary_line(n_nonfinite: int, n_stats: int) -> str:
    return render(SUMMARY_NONFINITE, n=n_nonfinite, total=n_stats)


def shares_line(shares: Mapping[str, float]) -> str:
    """Each task's share of the summed task norms (runs with three or more tasks)."""
    parts = ", ".join(render(SHARE, task=t, share=100 * v) for t, v in shares.items())
    return render(SHARES, shares=parts)


def conflict_text(a: str, b: str, mean: float, n: int, action: str) -> str:
    """A pair in sustained gradient conflict ("Recommended action", after "Gradient conflict:")."""
    return f"{title(a)}/{title(b)} cosine {fmt2(mean)} over the last {n} samples: {action}"


def tasks_text(
    dominant: str, dominant_share: float, starved: str, starved_share: float, r: float | None
) -> str:
    """Three or more tasks: the dominant and the starved task ("Recommended action", after
    "Tasks:")."""
    ratio = "undefined" if r is None else fmt2(r)
    return (
        f"{title(dominant)} dominant ({100 * dominant_share:.1f}%), "
        f"{title(starved)} starved ({100 * starved_share:.1f}%); "
        f"{title(dominant)}/{title(starved)} ratio {ratio}"
    )
