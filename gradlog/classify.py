"""The documented bands and thresholds, as pure functions (standard library only).

One place for every rule of ``shared/spec/report-semantics.md``: the recorder's live echo and
the offline analysis both call these, so a number is judged the same way during training and
afterwards. Boundary values belong to the milder band.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence

# Task balance ratio bands (quick-start table), symmetric: r < 1 is judged by 1/r.
HEALTHY_RATIO = 2.0
MINOR_RATIO = 3.0
COLLAPSE_RATIO = 5.0
HEALTHY_RANGE = (0.5, 2.0)

# Mean gradient norm bands (quick-start table).
VANISHING_NORM = 0.01
HEALTHY_NORM = (0.1, 0.5)
LARGE_NORM = 1.0
EXPLODING_NORM = 5.0

# Per-layer thresholds of the original implementation.
LAYER_VANISHING = 1e-7
LAYER_EXPLODING = 10.0

# Collapse window (decision: a flag, and short runs are judged once they have min_samples).
DEFAULT_WINDOW = 10
DEFAULT_MIN_SAMPLES = 3


class RatioBand(enum.Enum):
    """Band of one task balance ratio, mildest first."""

    HEALTHY = "healthy"
    MINOR = "minor"
    SIGNIFICANT = "significant"
    COLLAPSE = "collapse"
    UNDEFINED = "undefined"  # zero denominator or non-finite norm: a finding of its own

    @property
    def label(self) -> str:
        return _RATIO_LABELS[self]

    @property
    def action(self) -> str:
        return _RATIO_ACTIONS[self]


_RATIO_LABELS = {
    RatioBand.HEALTHY: "Healthy",
    RatioBand.MINOR: "Minor imbalance",
    RatioBand.SIGNIFICANT: "Significant imbalance",
    RatioBand.COLLAPSE: "Task collapse",
    RatioBand.UNDEFINED: "Undefined ratio",
}
_RATIO_ACTIONS = {
    RatioBand.HEALTHY: "No change needed",
    RatioBand.MINOR: "Monitor closely",
    RatioBand.SIGNIFICANT: "Adjust loss weights",
    RatioBand.COLLAPSE: "Urgent: rebalance weights",
    RatioBand.UNDEFINED: "Check the task losses: a task has no (or a non-finite) gradient",
}


class NormBand(enum.Enum):
    """Band of a mean gradient norm."""

    VANISHING = "vanishing"
    LOW = "low"  # 0.01-0.1: no warning (decision)
    HEALTHY = "healthy"
    ELEVATED = "elevated"  # 0.5-1.0: no warning (decision)
    LARGE = "large"
    EXPLODING = "exploding"
    NONFINITE = "non-finite"  # NaN or infinity: the worst of all

    @property
    def label(self) -> str:
        return _NORM_LABELS[self]

    @property
    def action(self) -> str:
        return _NORM_ACTIONS[self]

    @property
    def warns(self) -> bool:
        return self in (NormBand.VANISHING, NormBand.LARGE, NormBand.EXPLODING, NormBand.NONFINITE)


_NORM_LABELS = {
    NormBand.VANISHING: "Vanishing",
    NormBand.LOW: "Low",
    NormBand.HEALTHY: "Healthy",
    NormBand.ELEVATED: "Elevated",
    NormBand.LARGE: "Large",
    NormBand.EXPLODING: "Exploding",
    NormBand.NONFINITE: "Non-finite",
}
_NORM_ACTIONS = {
    NormBand.VANISHING: "Increase learning rate",
    NormBand.LOW: "No change needed",
    NormBand.HEALTHY: "No change needed",
    NormBand.ELEVATED: "No change needed",
    NormBand.LARGE: "Check gradient clipping",
    NormBand.EXPLODING: "Reduce learning rate",
    NormBand.NONFINITE: "Reduce learning rate and check for NaN/Inf in the loss or inputs",
}

# How bad a norm band is, for "worst over the run".
NORM_SEVERITY = {
    NormBand.HEALTHY: 0,
    NormBand.LOW: 1,
    NormBand.ELEVATED: 1,
    NormBand.LARGE: 2,
    NormBand.VANISHING: 3,
    NormBand.EXPLODING: 4,
    NormBand.NONFINITE: 5,
}
RATIO_SEVERITY = {
    RatioBand.HEALTHY: 0,
    RatioBand.MINOR: 1,
    RatioBand.SIGNIFICANT: 2,
    RatioBand.COLLAPSE: 3,
    RatioBand.UNDEFINED: 3,
}


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None where the ratio is undefined.

    Undefined: a non-finite norm, or a zero denominator (decision: never silently 1e8).
    """
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return None
    return numerator / denominator


def ratio_band(r: float | None) -> RatioBand:
    """The quick-start band of one ratio; r < 1 is judged by 1/r; boundaries are milder."""
    if r is None or not math.isfinite(r) or r < 0:
        return RatioBand.UNDEFINED
    if r == 0:
        return RatioBand.COLLAPSE
    # Compare r against the bound or the reciprocal bound directly rather than computing 1/r:
    # that keeps the documented boundary values (0.5, 1/3, 0.2) exact in floating point.
    if r >= 1:
        if r <= HEALTHY_RATIO:
            return RatioBand.HEALTHY
        if r <= MINOR_RATIO:
            return RatioBand.MINOR
        if r <= COLLAPSE_RATIO:
            return RatioBand.SIGNIFICANT
        return RatioBand.COLLAPSE
    if r * HEALTHY_RATIO >= 1:
        return RatioBand.HEALTHY
    if r >= 1 / MINOR_RATIO:
        return RatioBand.MINOR
    if r * COLLAPSE_RATIO >= 1:
        return RatioBand.SIGNIFICANT
    return RatioBand.COLLAPSE


def outside_healthy_range(r: float) -> bool:
    """Whether one balance sample triggers the original's "Task imbalance detected" warning."""
    low, high = HEALTHY_RANGE
    return not (low <= r <= high)


class Collapse(enum.Enum):
    """Verdict of the collapse check on the window mean."""

    NOT_ENOUGH_DATA = "not enough data"
    BALANCED = "balanced"
    NUMERATOR_DOMINATES = "numerator dominating"
    DENOMINATOR_DOMINATES = "denominator dominating"


def collapse_check(window_mean: float | None) -> Collapse:
    """The original's collapse rule on the mean ratio of the window: > 5.0 or < 0.2."""
    if window_mean is None or math.isnan(window_mean):
        return Collapse.NOT_ENOUGH_DATA
    if window_mean > COLLAPSE_RATIO:
        return Collapse.NUMERATOR_DOMINATES
    if window_mean * COLLAPSE_RATIO < 1:
        return Collapse.DENOMINATOR_DOMINATES
    return Collapse.BALANCED


# Window values are geometric means, taken through logarithms, which round: a window within
# this relative distance of a band's bound counts as the bound, and so gets the milder band.
LOG_TOLERANCE = 1e-12


def log_bound(ratio_bound: float) -> float:
    """A band's bound on the logarithm of a ratio, tolerance included."""
    return math.log(ratio_bound) + LOG_TOLERANCE


def window_logs(
    samples: Sequence[Mapping[str, float]], window: int, min_samples: int
) -> dict[str, float] | None:
    """Each task's mean log norm over the last ``window`` defined samples (its window norm is
    the exponential: the geometric mean), once there are ``min(min_samples, window)``."""
    recent = samples[-window:]
    if not recent or len(recent) < min(min_samples, window):
        return None
    return {t: math.fsum(math.log(s[t]) for s in recent) / len(recent) for t in recent[0]}


def clipped(clip_coef: float | None) -> bool:
    """Whether clipping changed an event's gradients (its factor below 1; docs/format.md)."""
    return clip_coef is not None and 0 < clip_coef < 1


# --original (docs/report.md): the original printed "Tasks balanced" only on epochs that are
# multiples of this, a collapse line after every sample, and nothing before its window was full.
ORIGINAL_BALANCED_EVERY = 10


def original_window(ratios: Sequence[float], window: int) -> float | None:
    """The original's window: the arithmetic mean of the pair's last ``window`` ratios, once
    there are ``window`` of them."""
    recent = ratios[-window:]
    return math.fsum(recent) / window if len(recent) == window else None


def original_line_shown(verdict: Collapse, epoch: int | None) -> bool:
    """Whether the original printed a sample's collapse-check line."""
    if verdict in (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES):
        return True
    return (
        verdict is Collapse.BALANCED and epoch is not None and epoch % ORIGINAL_BALANCED_EVERY == 0
    )


def spread_band(log_spread: float) -> RatioBand:
    """The band of a window's spread (largest over smallest window norm), given as its log."""
    if math.isnan(log_spread):
        return RatioBand.UNDEFINED
    for band, bound in (
        (RatioBand.HEALTHY, HEALTHY_RATIO),
        (RatioBand.MINOR, MINOR_RATIO),
        (RatioBand.SIGNIFICANT, COLLAPSE_RATIO),
    ):
        if log_spread <= log_bound(bound):
            return band
    return RatioBand.COLLAPSE


def collapse_check_log(log_ratio: float | None) -> Collapse:
    """:func:`collapse_check` of a window ratio given as its logarithm."""
    if log_ratio is None or math.isnan(log_ratio):
        return Collapse.NOT_ENOUGH_DATA
    if log_ratio > log_bound(COLLAPSE_RATIO):
        return Collapse.NUMERATOR_DOMINATES
    if log_ratio < -log_bound(COLLAPSE_RATIO):
        return Collapse.DENOMINATOR_DOMINATES
    return Collapse.BALANCED


def defined_sample(norms: Mapping[str, float | None]) -> bool:
    """A balance sample is judged when every task's norm is finite and positive."""
    return all(v is not None and math.isfinite(v) and v > 0 for v in norms.values())


def norm_band(mean_norm: float) -> NormBand:
    """The quick-start band of a mean gradient norm; boundaries belong to the milder band."""
    if not math.isfinite(mean_norm):
        return NormBand.NONFINITE
    if mean_norm < VANISHING_NORM:
        return NormBand.VANISHING
    if mean_norm > EXPLODING_NORM:
        return NormBand.EXPLODING
    if mean_norm > LARGE_NORM:
        return NormBand.LARGE
    low, high = HEALTHY_NORM
    if mean_norm < low:
        return NormBand.LOW
    if mean_norm > high:
        return NormBand.ELEVATED
    return NormBand.HEALTHY


def layer_is_vanishing(norm: float) -> bool:
    return norm < LAYER_VANISHING


def layer_is_exploding(norm: float) -> bool:
    return norm > LAYER_EXPLODING


class FailOn(enum.Enum):
    """Levels for ``--fail-on``; the balance levels are ordered, the norm levels stand alone."""

    MINOR = "minor"
    SIGNIFICANT = "significant"
    COLLAPSE = "collapse"
    VANISHING = "vanishing"
    EXPLODING = "exploding"


def reaches(level: FailOn, worst_ratio: RatioBand | None, worst_norm: NormBand | None) -> bool:
    """Whether a run's worst findings reach ``level`` ("at or above" for the balance levels)."""
    if level is FailOn.VANISHING:
        return worst_norm is NormBand.VANISHING
    if level is FailOn.EXPLODING:
        return worst_norm in (NormBand.EXPLODING, NormBand.NONFINITE)
    if worst_ratio is None:
        return False
    needed = {FailOn.MINOR: 1, FailOn.SIGNIFICANT: 2, FailOn.COLLAPSE: 3}[level]
    return RATIO_SEVERITY[worst_ratio] >= needed


def balancing_weights(
    mean_norms: Mapping[str, float], weights: Mapping[str, float]
) -> dict[str, float] | None:
    """Loss weights under which every task's mean gradient norm would equal the largest one.

    A task's gradient norm scales linearly with its loss weight, so scaling each weight by
    (largest norm / this task's norm) balances the window the norms came from. The dominant
    task keeps its weight: the starved tasks are raised, as the quick start's remedy does.
    None where a norm or weight is missing, zero or non-finite.
    """
    if not mean_norms or set(mean_norms) - set(weights):
        return None
    values = list(mean_norms.values()) + [weights[name] for name in mean_norms]
    if not all(math.isfinite(v) and v > 0 for v in values):
        return None
    top = max(mean_norms.values())
    return {name: weights[name] * top / norm for name, norm in mean_norms.items()}


DIVERGED_NO_WEIGHTS = "the run diverged (non-finite gradient norms); fix that before rebalancing"


def weights_withheld(nonfinite: bool, last_sample_undefined: bool) -> str | None:
    """Why no balancing weights are advised, or None: weights computed from the last finite
    samples of a run that then diverged would be absurd (they scale with the blow-up), so the
    divergence is the thing to fix first."""
    if nonfinite or last_sample_undefined:
        return DIVERGED_NO_WEIGHTS
    return None


def current_weights(
    logged: Mapping[str, float | None],
    meta_weights: Sequence[Mapping[str, object] | None] | None,
    tasks: Sequence[str],
) -> tuple[dict[str, float], bool]:
    """The loss weights a run trained with, per task, and whether any had to be assumed (1.0).

    The weights logged with the window's last sample win; then the run record's; a task with
    neither is assumed to weigh 1.0.
    """
    current = {t: logged.get(t) for t in tasks}
    if any(w is None for w in current.values()):
        meta = {w["name"]: w["weight"] for w in (meta_weights or []) if w}
        current = {t: current[t] if current[t] is not None else meta.get(t) for t in tasks}
    assumed = any(w is None for w in current.values())
    return {t: 1.0 if w is None else w for t, w in current.items()}, assumed


def weight_flags(weights: Mapping[str, float] | None, tasks: Sequence[str]) -> str | None:
    """The weights as the report prints them: the original's flags for pointer/type (alpha
    weighs the type task, beta the pointer task), else ``task=weight`` pairs."""
    if weights is None:
        return None
    if set(tasks) == {"pointer", "type"}:
        return f"--loss-alpha {weights['type']:.4g} --loss-beta {weights['pointer']:.4g}"
    return " ".join(f"{t}={w:.4g}" for t, w in weights.items())


def default_pair(tasks: Sequence[str], *, any_count: bool = False) -> tuple[str, str] | None:
    """The pair messages print for a run of two tasks: pointer/type, else the two in order.
    Three or more tasks have none (messages name the dominant and the starved task), except
    with ``any_count``, the original's rule: pointer/type, else the first two."""
    if len(tasks) < 2 or (len(tasks) > 2 and not any_count):
        return None
    if {"pointer", "type"} <= set(tasks):
        return ("pointer", "type")
    return (tasks[0], tasks[1])


def shares(norms: Mapping[str, float | None]) -> dict[str, float] | None:
    """Each task's share of the summed norms; None when a norm is missing, negative or non-finite."""
    values = list(norms.values())
    if any(v is None or not math.isfinite(v) or v < 0 for v in values):
        return None
    # scaled by the largest first: three finite norms near the float maximum overflow a sum
    top = max(values, default=0.0)
    if top <= 0:
        return None
    total = math.fsum(v / top for v in values)
    return {t: (v / top) / total for t, v in norms.items()}
