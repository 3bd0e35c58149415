"""The documented report lines, word for word (standard library only).

``shared/spec/report-semantics.md`` fixes the original implementation's wording; the text
renderer and the recorder's live echo both build their lines here so they never drift apart.
"""

from __future__ import annotations

import math

from gradlog.classify import COLLAPSE_RATIO, Collapse

PREFIX = "[PHASE 4]"


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
    return f"{PREFIX} Gradient monitoring enabled (log frequency: {cadence(log_every, log_every_steps)})"


def stats_block(
    label: str,
    mean_norm: float,
    max_norm: float,
    n_vanishing: int | None,
    n_exploding: int | None,
) -> list[str]:
    """``Epoch N Gradient Stats:`` and its lines; ``label`` is e.g. ``Epoch 10``."""
    lines = [
        f"{label} Gradient Stats:",
        f"  Mean norm: {fmt4(mean_norm)}",
        f"  Max norm:  {fmt4(max_norm)}",
    ]
    if not (math.isfinite(mean_norm) and math.isfinite(max_norm)):
        lines.append("  WARNING: Non-finite gradient norms")
    if n_vanishing:
        lines.append(f"  WARNING: Vanishing gradients in {n_vanishing} layers")
    if n_exploding:
        lines.append(f"  WARNING: Exploding gradients in {n_exploding} layers")
    return lines


def imbalance_lines(when: str, numerator: str, denominator: str, r: float) -> list[str]:
    """The warning for one balance sample outside [0.5, 2.0]; ``when`` is e.g. ``epoch 15``."""
    return [
        f"{PREFIX} Task imbalance detected at {when}!",
        f"{title(numerator)}/{title(denominator)} gradient ratio: {fmt2(r)} (healthy range: 0.5-2.0)",
    ]


def undefined_ratio_line(
    when: str, numerator: str, denominator: str, num: float, den: float
) -> str:
    """A balance sample whose ratio is undefined (decision: reported, never 1e8)."""
    if not math.isfinite(num) or not math.isfinite(den):
        reason = "non-finite gradient norm"
    else:
        reason = f"{title(denominator)} gradient norm is zero"
    return (
        f"{PREFIX} Task balance undefined at {when}: {reason} "
        f"({title(numerator)}={num:.4g}, {title(denominator)}={den:.4g})"
    )


def _collapse_phrase(verdict: Collapse, numerator: str, denominator: str, r: float | None) -> str:
    if verdict is Collapse.NUMERATOR_DOMINATES:
        return f"{title(numerator)} task dominating (ratio={fmt2(r)} > {COLLAPSE_RATIO:.1f})"
    if verdict is Collapse.DENOMINATOR_DOMINATES:
        return f"{title(denominator)} task dominating (ratio={fmt2(r)} < {1 / COLLAPSE_RATIO:.2f})"
    if verdict is Collapse.BALANCED:
        return f"Tasks balanced (ratio={fmt2(r)})"
    return "Not enough data"


def collapse_line(verdict: Collapse, numerator: str, denominator: str, r: float | None) -> str:
    """The per-sample collapse check on the window mean."""
    phrase = _collapse_phrase(verdict, numerator, denominator, r)
    if verdict in (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES):
        return f"{PREFIX} TASK COLLAPSE: {phrase}"
    return f"{PREFIX} Task balance: {phrase}"


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
    lines = [f"{PREFIX} Gradient Monitoring Summary:"]
    if mean_of_means is not None:
        lines.append(f"  Mean gradient norm: {fmt4(mean_of_means)} ± {fmt4(std_of_means)}")
        lines.append(f"  Max gradient norm: {fmt4(mean_of_maxes)} (peak: {fmt4(peak)})")
    phrase = _collapse_phrase(verdict, numerator, denominator, final_ratio)
    if verdict in (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES):
        lines.append(f"  TASK COLLAPSE DETECTED: {phrase}")
    else:
        lines.append(f"  Task balance: {phrase}")
    return lines


def nonfinite_summary_line(n_nonfinite: int, n_stats: int) -> str:
    return (
        f"  WARNING: Non-finite gradient norms in {n_nonfinite} of {n_stats} "
        "logged events (left out above)"
    )


def shares_line(shares: dict[str, float]) -> str:
    """Each task's share of the summed task norms (runs with three or more tasks)."""
    return "Task shares: " + ", ".join(f"{title(t)} {100 * v:.1f}%" for t, v in shares.items())


def conflict_line(a: str, b: str, mean: float, n: int, action: str) -> str:
    """A pair in sustained gradient conflict, in the "Recommended action" section."""
    return f"  Gradient conflict: {title(a)}/{title(b)} cosine {fmt2(mean)} over the last {n} samples: {action}"


def tasks_line(
    dominant: str, dominant_share: float, starved: str, starved_share: float, r: float | None
) -> str:
    """Three or more tasks: the dominant and the starved task, in "Recommended action"."""
    ratio = "undefined" if r is None else fmt2(r)
    return (
        f"  Tasks:          {title(dominant)} dominant ({100 * dominant_share:.1f}%), "
        f"{title(starved)} starved ({100 * starved_share:.1f}%); "
        f"{title(dominant)}/{title(starved)} ratio {ratio}"
    )
