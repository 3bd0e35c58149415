"""The original monitor, re-implemented from ``shared/spec/report-semantics.md`` alone.

Independent of gradlog's code on purpose (its own strings, its own arithmetic): the tests hold
``gradlog report --original`` to these lines. Epochs: the training loop's, from 0; statistics
are printed for every batch of an epoch divisible by the log frequency, labelled with that
0-based epoch; balance is sampled at the end of every ``balance_every``-th epoch, labelled
with the 1-based epoch, from the *unweighted* task norms. Blocks are separated by blank lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Epoch:
    """What the original saw in one epoch of the loop."""

    batches: list[tuple[float, float]] = field(default_factory=list)  # (mean, max) per batch
    balance: tuple[float, float] | None = None  # unweighted (pointer, type) norms


def console(
    epochs: list[Epoch], *, log_freq: int = 10, window: int = 10, names=("pointer", "type")
) -> list[str]:
    num, den = (n[:1].upper() + n[1:] for n in names)
    out = [f"[PHASE 4] Gradient monitoring enabled (log frequency: {log_freq} epochs)", ""]
    ratios: list[float] = []
    means: list[float] = []
    maxes: list[float] = []
    for e, epoch in enumerate(epochs):
        if e % log_freq == 0:
            for mean, top in epoch.batches:
                means.append(mean)
                maxes.append(top)
                out += [f"Epoch {e} Gradient Stats:", f"  Mean norm: {mean:.4f}"]
                out += [f"  Max norm:  {top:.4f}", ""]
        if epoch.balance is None:
            continue
        p, t = epoch.balance
        ratio = p / (t + 1e-8)
        ratios.append(ratio)
        if ratio < 0.5 or ratio > 2.0:
            out += [f"[PHASE 4] Task imbalance detected at epoch {e + 1}!"]
            out += [f"{num}/{den} gradient ratio: {ratio:.2f} (healthy range: 0.5-2.0)", ""]
        if len(ratios) >= window:
            line = _check(sum(ratios[-window:]) / window, num, den, "[PHASE 4] TASK COLLAPSE:")
            if line is not None:
                out += [line, ""]
            elif (e + 1) % 10 == 0:
                mean = sum(ratios[-window:]) / window
                out += [f"[PHASE 4] Task balance: Tasks balanced (ratio={mean:.2f})", ""]
    out += ["[PHASE 4] Gradient Monitoring Summary:"]
    if means:
        average = sum(means) / len(means)
        std = math.sqrt(sum((m - average) ** 2 for m in means) / len(means))
        out += [f"  Mean gradient norm: {average:.4f} ± {std:.4f}"]
        out += [f"  Max gradient norm: {sum(maxes) / len(maxes):.4f} (peak: {max(maxes):.4f})"]
    if len(ratios) >= window:
        mean = sum(ratios[-window:]) / window
        line = _check(mean, num, den, "  TASK COLLAPSE DETECTED:")
        out += [line or f"  Task balance: Tasks balanced (ratio={mean:.2f})"]
    else:
        out += ["  Task balance: Not enough data"]
    return out


def _check(mean: float, num: str, den: str, head: str) -> str | None:
    if mean > 5.0:
        return f"{head} {num} task dominating (ratio={mean:.2f} > 5.0)"
    if mean < 0.2:
        return f"{head} {den} task dominating (ratio={mean:.2f} < 0.20)"
    return None
