"""The one scale of every ratio chart (terminal and Markdown): logarithmic, centred on 1.

A ratio of 0.04 is a collapse as bad as 25 (the bands are symmetric: r < 1 is judged by 1/r),
so a chart must draw them equally far from "even": on a linear axis 0.04 is an invisible bar
next to 25. Positions are logarithms, so x2 and x0.5 sit one step either side of 1.

What a run's chart shows is what its verdict judges (``shared/spec/report-semantics.md``,
second edition): with two tasks (or ``--original``, which judges one pair) the pair's ratio,
signed around 1 so that the dominating task can be read off; with three or more the *spread*
(largest task norm over the smallest, never below 1). Every balance sample is drawn, the first
ones included (before the window holds ``--min-samples`` samples only the sample itself has a
value); an undefined sample (a zero or non-finite norm) has no value and is marked as such.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

from gradlog import classify
from gradlog.analysis.model import RunReport

HEALTHY = classify.HEALTHY_RATIO  # the healthy band is 1/2 .. 2
COLLAPSE = classify.COLLAPSE_RATIO  # collapse beyond 1/5 .. 5
# the terminal chart's rows stop at 1000 (and 1/1000): a ratio past it is collapsed whatever
# its size, and more rows would not show it better
MOST = 1000.0


@dataclass(frozen=True)
class Series:
    """A run's chart: one value per balance sample (None when undefined) and its window."""

    signed: bool  # a ratio around 1 (both sides drawn); False: a spread, 1 and above
    what: str  # "pointer/type gradient ratio", or the spread's description
    samples: list[float | None]
    windows: list[float | None]  # None before the window is judged (and when undefined)
    labels: list[str]  # "Epoch 5", "Step 300"
    axis: str  # "epoch" or "step"

    @property
    def values(self) -> list[float]:
        """Every defined value drawn, samples and windows."""
        return [v for v in self.samples + self.windows if v is not None]


@dataclass(frozen=True)
class Judged:
    """Which of a run's event columns its verdict judges, for every chart of every format."""

    signed: bool  # the pair's ratio, around 1; False: the spread, 1 and above
    sample: str  # the event column of each sample's value
    window: str  # the event column of the window's value
    what: str


def judged(run: RunReport) -> Judged:
    """The pair's ratio with two tasks (or ``--original``), else the spread, even when
    ``--pair`` names a pair among three or more tasks: a chart shows what the verdict judges."""
    if run.pair is not None and (len(run.tasks) == 2 or run.original):
        what = f"{run.pair[0]}/{run.pair[1]} gradient ratio"
        return Judged(True, "ratio", "window_ratio", what)
    return Judged(False, "spread", "window_spread", "spread (largest task norm over the smallest)")


def series(run: RunReport) -> Series | None:
    """The values a run's ratio chart draws (None for a run with one task or no sample)."""
    events = run.events.filter("has_balance")
    if len(run.tasks) < 2 or events.height == 0:
        return None
    signed, sample, window, what = astuple(judged(run))
    defined = events.get_column("defined").to_list()
    return Series(
        signed=signed,
        what=what,
        samples=[
            _value(v) if ok else None for v, ok in zip(events.get_column(sample).to_list(), defined)
        ],
        windows=[_value(v) for v in events.get_column(window).to_list()],
        labels=events.get_column("label").to_list(),
        axis="step" if run.by_steps else "epoch",
    )


def _value(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) and v > 0 else None


def position(value: float) -> float:
    """Where a ratio sits on the scale: log2, so 0 is even and each step a doubling."""
    return math.log2(value)


def extent(values: list[float]) -> float:
    """How far the axis reaches either side of 1, in doublings: a whole number, past the
    collapse bound and every value."""
    furthest = max((abs(position(v)) for v in values), default=0.0)
    return float(math.ceil(max(furthest, position(COLLAPSE)) + 0.25))


def bounds(values: list[float]) -> list[float]:
    """The terminal chart's row bounds above 1, at 1-2-5 steps (each about a third of a decade,
    and symmetric: 1/2 and 1/5 are steps too): 1, 2, 5, 10 ... up to the last below the
    furthest value (the top row holds everything above it), past the collapse bound and at
    most :data:`MOST`. Rows are the intervals between bounds, so 2 and 5 (and 1/2, 1/5), the
    bounds the verdict judges by, are never inside a row."""
    furthest = max((max(v, 1 / v) for v in values), default=1.0)
    out = [1.0]
    while True:
        last = out[-1]
        digit = round(last / 10 ** math.floor(math.log10(last)))
        step = float(f"{last * (2.5 if digit == 2 else 2):.3g}")
        if last >= COLLAPSE and (step >= furthest or step > MOST):
            return out
        out.append(step)


def row(edges: list[float], value: float) -> int:
    """Which interval of ``edges`` (:func:`bounds`) holds ``value`` (0: 1 to 2; the last: above
    the last bound); a value below 1 by its reciprocal, so a pair and its inverse mirror each
    other. A bound belongs to the milder row, as to the milder band."""
    v = max(value, 1 / value)
    return max(0, sum(1 for b in edges if b < v) - 1)
