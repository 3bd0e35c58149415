"""Gradient conflict between two tasks: the rule that judges a pair's cosines, and its advice.

The recorder logs the cosine of each pair of task gradients; the analysis takes each pair's last
window of them and asks :func:`sustained_conflict`. Like :mod:`gradlog.classify`, pure Python,
shared by both halves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Gradient conflict: the cosine of two tasks' gradients (negative: they pull the shared weights
# apart). A pair is in *sustained* conflict when, over its last `window` samples with a
# cosine (at least `min_samples` of them, as for the collapse window), the mean cosine is below
# CONFLICT_COSINE and at least CONFLICT_FRACTION of the samples are negative: one strongly
# negative sample, or a mean dragged down by a few, does not count.
CONFLICT_COSINE = -0.1
CONFLICT_FRACTION = 0.8
CONFLICT_ACTION = (
    "the tasks pull the shared layers apart; try a gradient-surgery method (PCGrad, CAGrad) "
    "or give each task more layers of its own"
)


def conflict_window(
    cosines: Sequence[float], window: int, min_samples: int
) -> tuple[float | None, float | None, int]:
    """Mean cosine, fraction of negative cosines and sample count over the last ``window``
    finite samples; the mean and fraction are None before ``min(min_samples, window)``."""
    recent = [c for c in cosines if math.isfinite(c)][-window:]
    if not recent or len(recent) < min(min_samples, window):
        return None, None, len(recent)
    mean = math.fsum(recent) / len(recent)
    return mean, sum(1 for c in recent if c < 0) / len(recent), len(recent)


def sustained_conflict(mean: float | None, negative_fraction: float | None) -> bool:
    """Whether a pair's window is in sustained gradient conflict (thresholds above)."""
    if mean is None or negative_fraction is None:
        return False
    return mean < CONFLICT_COSINE and negative_fraction >= CONFLICT_FRACTION
