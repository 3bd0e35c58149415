"""The original monitor's balance rules, for ``--original`` (docs/report.md).

The engine's samples (:mod:`gradlog.analysis.samples`) are rows of (sample, task). Under
``--original`` they are cut down to the run's pair, the one ratio the original judged, so that
every later step (definedness, extremes, bands, verdict) sees a run of two tasks; and the
window, the geometric mean of each task's norms otherwise, becomes the original's arithmetic
mean of the pair's ratio, over a full window only. The norms are already unweighted by then.
"""

from __future__ import annotations

import polars as pl

from gradlog.frames import IN_MEMORY


def pair_only(long: pl.DataFrame) -> pl.DataFrame:
    """The task samples of each run's pair alone, the numerator as task 0, the denominator as
    task 1 (a run without a pair has nothing judged)."""
    t, ta, tb = pl.col("t"), pl.col("ta"), pl.col("tb")
    return long.filter((t == ta) | (t == tb)).with_columns(
        t=pl.when(t == ta).then(0).otherwise(1).cast(pl.Int64),
        ta=pl.lit(0, pl.Int64),
        tb=pl.lit(1, pl.Int64),
        n_tasks=pl.lit(2, pl.Int64),
    )


def arithmetic_window(windowed: pl.DataFrame, window: int) -> pl.DataFrame:
    """``wl`` as the original's window: the arithmetic mean of the pair's ratio over the last
    ``window`` defined samples of the run, from the ``window``-th on, as the log of that mean on
    the numerator's row and 0 on the denominator's, so that the engine's window ratio (their
    difference) and spread (its absolute value) are the original's mean ratio.

    ``windowed`` holds the defined samples of :func:`pair_only`, two rows each, in row order.
    """
    ratios = (
        windowed.lazy()
        .group_by("rid", "row", maintain_order=True)
        .agg(ratio=pl.col("norm").first() / pl.col("norm").last())
        .with_columns(mean=pl.col("ratio").rolling_mean(window, min_samples=window).over("rid"))
        .select("row", "mean")
        .collect(engine=IN_MEMORY)
    )
    mean = pl.col("row").replace_strict(ratios.get_column("row"), ratios.get_column("mean"))
    return windowed.with_columns(
        wl=pl.when(mean.is_null()).then(None).when(pl.col("t") == 0).then(mean.log()).otherwise(0.0)
    )
