"""The per-event half of the analysis engine (:mod:`gradlog.analysis.engine`): each event's
statistics and band, and, for a report, its balance sample's columns and its label.

A batch row reads the events and the samples (:mod:`gradlog.analysis.samples`) apart; only a
report, which prints a line per event, joins them.
"""

from __future__ import annotations

import polars as pl

from gradlog.analysis import exprs
from gradlog.analysis.samples import by_run
from gradlog.format import KIND_EVENT
from gradlog.frames import IN_MEMORY


def events_frame(
    records: pl.LazyFrame, runs: pl.DataFrame, samples: pl.DataFrame | None
) -> pl.LazyFrame:
    """One row per event of every run: its statistics; with ``samples`` (a report: the
    :func:`sample_frame` made with ``detail``, collected), its balance sample's columns and
    its label."""
    mean = pl.col("mean_norm")
    columns = [
        "rid",
        "row",
        "epoch",
        "step",
        mean,
        pl.when(mean.is_not_null())
        .then(pl.col("max_norm").fill_null(float("nan")))
        .alias("max_norm"),
        exprs.norm_band(mean).alias("norm_band"),
        (pl.col("tasks").list.len().fill_null(0) > 0).alias("sampled"),
    ]
    events = records.filter(pl.col("kind") == KIND_EVENT)
    if samples is None:
        return events.select(columns)
    detail = ("total_norm", "n_vanishing", "n_exploding", "pre_clip_norm", "clip_coef")
    optional = [c for c in detail if c in _names(records)]
    sampled = _names(samples)[4:]  # after rid, row, epoch and step
    judged = sampled.index("pair_verdict") + 1
    own = samples.drop("rid", "epoch", "step").with_columns(has_balance=pl.lit(True))
    rows = events.select("row").collect(engine=IN_MEMORY).get_column("row")
    if rows.equals(samples.get_column("row")):
        # every event a balance sample (the usual report): its columns as they are, where a
        # join would copy each of them
        joined = pl.concat([events, own.drop("row").lazy()], how="horizontal")
    else:
        joined = events.join(own.lazy(), on="row", how="left", maintain_order="left")
    return joined.with_columns(
        pl.col("has_balance", "defined", "imbalance").fill_null(False)
    ).select(
        *columns,
        "has_balance",
        *sampled[:judged],
        by_run(runs, "n_tasks").alias("n_tasks"),
        by_run(runs, "pair_a").alias("pair_a"),
        by_run(runs, "pair_b").alias("pair_b"),
        label(pl.col("epoch"), pl.col("step"), by_run(runs, "by_steps")).alias("label"),
        *optional,
        *sampled[judged:],
    )


def label(epoch: pl.Expr, step: pl.Expr, by_steps: pl.Expr) -> pl.Expr:
    """How an event is named: "Epoch 5", "Step 250" (a run logged by steps), else "Event"."""
    return (
        pl.when((by_steps | epoch.is_null()) & step.is_not_null())
        .then(pl.format("Step {}", step))
        .when(epoch.is_not_null())
        .then(pl.format("Epoch {}", epoch))
        .otherwise(pl.lit("Event"))
    )


def _names(frame: pl.LazyFrame | pl.DataFrame) -> list[str]:
    return frame.collect_schema().names()
