"""The documented bands of :mod:`gradlog.classify` as Polars expressions.

``gradlog batch`` judges millions of events inside one lazy query, where calling the pure
Python rules row by row would defeat the point. These builders restate those rules as
expressions, reading every bound from :mod:`gradlog.classify` (nothing is written twice), and
a test checks that both give the same answer on every boundary value.
"""

from __future__ import annotations

import polars as pl

from gradlog import classify
from gradlog.classify import Collapse, NormBand, RatioBand


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, or null where the ratio is undefined.

    Undefined, as in the analysis: a missing or non-finite norm, a negative numerator, or a
    denominator that is not positive (zero included: never a silently padded 1e8).
    """
    defined = (
        numerator.is_finite()
        & denominator.is_finite()
        & (denominator != 0)
        & (numerator >= 0)
        & (denominator > 0)
    )
    return pl.when(defined).then(numerator / denominator)


def ratio_band(r: pl.Expr) -> pl.Expr:
    """:func:`classify.ratio_band` of each value, as the band's value ("healthy", ...)."""
    high, low = r >= 1, r < 1
    return (
        pl.when(r.is_null() | ~r.is_finite() | (r < 0))
        .then(pl.lit(RatioBand.UNDEFINED.value))
        .when(r == 0)
        .then(pl.lit(RatioBand.COLLAPSE.value))
        .when(high & (r <= classify.HEALTHY_RATIO))
        .then(pl.lit(RatioBand.HEALTHY.value))
        .when(high & (r <= classify.MINOR_RATIO))
        .then(pl.lit(RatioBand.MINOR.value))
        .when(high & (r <= classify.COLLAPSE_RATIO))
        .then(pl.lit(RatioBand.SIGNIFICANT.value))
        .when(high)
        .then(pl.lit(RatioBand.COLLAPSE.value))
        # below 1: the same comparisons classify makes, so the boundaries stay exact
        .when(low & (r * classify.HEALTHY_RATIO >= 1))
        .then(pl.lit(RatioBand.HEALTHY.value))
        .when(low & (r >= 1 / classify.MINOR_RATIO))
        .then(pl.lit(RatioBand.MINOR.value))
        .when(low & (r * classify.COLLAPSE_RATIO >= 1))
        .then(pl.lit(RatioBand.SIGNIFICANT.value))
        .otherwise(pl.lit(RatioBand.COLLAPSE.value))
    )


def ratio_severity(band: pl.Expr) -> pl.Expr:
    """:data:`classify.RATIO_SEVERITY` of a band value from :func:`ratio_band`."""
    mapping = {b.value: s for b, s in classify.RATIO_SEVERITY.items()}
    return band.replace_strict(mapping, default=None, return_dtype=pl.Int8)


def norm_band(mean_norm: pl.Expr) -> pl.Expr:
    """:func:`classify.norm_band` of each value (null stays null)."""
    low, high = classify.HEALTHY_NORM
    m = mean_norm
    return (
        pl.when(m.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(~m.is_finite())
        .then(pl.lit(NormBand.NONFINITE.value))
        .when(m < classify.VANISHING_NORM)
        .then(pl.lit(NormBand.VANISHING.value))
        .when(m > classify.EXPLODING_NORM)
        .then(pl.lit(NormBand.EXPLODING.value))
        .when(m > classify.LARGE_NORM)
        .then(pl.lit(NormBand.LARGE.value))
        .when(m < low)
        .then(pl.lit(NormBand.LOW.value))
        .when(m > high)
        .then(pl.lit(NormBand.ELEVATED.value))
        .otherwise(pl.lit(NormBand.HEALTHY.value))
    )


def norm_severity(band: pl.Expr) -> pl.Expr:
    """:data:`classify.NORM_SEVERITY` of a band value from :func:`norm_band`."""
    mapping = {b.value: s for b, s in classify.NORM_SEVERITY.items()}
    return band.replace_strict(mapping, default=None, return_dtype=pl.Int8)


def outside_healthy_range(r: pl.Expr) -> pl.Expr:
    """:func:`classify.outside_healthy_range`: the sample triggers "Task imbalance detected"."""
    low, high = classify.HEALTHY_RANGE
    return ~((r >= low) & (r <= high))


def collapse_check(window_mean: pl.Expr) -> pl.Expr:
    """:func:`classify.collapse_check` of each window mean, as the verdict's value."""
    w = window_mean
    return (
        pl.when(w.is_null() | w.is_nan())
        .then(pl.lit(Collapse.NOT_ENOUGH_DATA.value))
        .when(w > classify.COLLAPSE_RATIO)
        .then(pl.lit(Collapse.NUMERATOR_DOMINATES.value))
        .when(w * classify.COLLAPSE_RATIO < 1)
        .then(pl.lit(Collapse.DENOMINATOR_DOMINATES.value))
        .otherwise(pl.lit(Collapse.BALANCED.value))
    )


def collapsed(window_mean: pl.Expr) -> pl.Expr:
    """Whether the collapse check of each window mean says a task dominates."""
    dominated = (Collapse.NUMERATOR_DOMINATES.value, Collapse.DENOMINATOR_DOMINATES.value)
    return collapse_check(window_mean).is_in(dominated)


_LOG_BOUNDS = {
    RatioBand.HEALTHY: classify.log_bound(classify.HEALTHY_RATIO),
    RatioBand.MINOR: classify.log_bound(classify.MINOR_RATIO),
    RatioBand.SIGNIFICANT: classify.log_bound(classify.COLLAPSE_RATIO),
}


def spread_band(log_spread: pl.Expr) -> pl.Expr:
    """The band of a window's spread, given as its logarithm (null: not judged yet)."""
    s = log_spread
    return (
        pl.when(s.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(s.is_nan())
        .then(pl.lit(RatioBand.UNDEFINED.value))
        .when(s <= _LOG_BOUNDS[RatioBand.HEALTHY])
        .then(pl.lit(RatioBand.HEALTHY.value))
        .when(s <= _LOG_BOUNDS[RatioBand.MINOR])
        .then(pl.lit(RatioBand.MINOR.value))
        .when(s <= _LOG_BOUNDS[RatioBand.SIGNIFICANT])
        .then(pl.lit(RatioBand.SIGNIFICANT.value))
        .otherwise(pl.lit(RatioBand.COLLAPSE.value))
    )


def collapse_check_log(log_ratio: pl.Expr) -> pl.Expr:
    """:func:`classify.collapse_check` of a window ratio given as its logarithm."""
    r, bound = log_ratio, _LOG_BOUNDS[RatioBand.SIGNIFICANT]
    return (
        pl.when(r.is_null() | r.is_nan())
        .then(pl.lit(Collapse.NOT_ENOUGH_DATA.value))
        .when(r > bound)
        .then(pl.lit(Collapse.NUMERATOR_DOMINATES.value))
        .when(r < -bound)
        .then(pl.lit(Collapse.DENOMINATOR_DOMINATES.value))
        .otherwise(pl.lit(Collapse.BALANCED.value))
    )
