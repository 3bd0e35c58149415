"""The per-event half of the analysis engine (:mod:`gradlog.analysis.engine`): each event's
statistics and band, and, for a report, its balance sample's columns and its label; the
order checks (an event going back, an event repeating one already logged).

A batch row reads the events and the samples (:mod:`gradlog.analysis.samples`) apart; only a
report, which prints a line per event, joins them.
"""

from __future__ import annotations

import functools
import operator

import polars as pl

from gradlog.analysis import exprs
from gradlog.analysis.samples import by_run
from gradlog.format import KIND_EVENT


def events_frame(
    records: pl.LazyFrame, runs: pl.DataFrame, samples: pl.LazyFrame | None
) -> pl.LazyFrame:
    """One row per event of every run: its statistics; with ``samples`` (a report: the
    :func:`sample_frame` made with ``detail``), its balance sample's columns and its label."""
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
    return (
        events.join(
            samples.drop("rid", "epoch", "step").with_columns(has_balance=pl.lit(True)),
            on="row",
            how="left",
            maintain_order="left",
        )
        .with_columns(pl.col("has_balance", "defined", "imbalance").fill_null(False))
        .select(
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


def _names(frame: pl.LazyFrame) -> list[str]:
    return frame.collect_schema().names()


def runs_contiguous(records: pl.DataFrame) -> bool:
    """Whether each run's records are consecutive rows (one run after another, as a file
    holds them unless two runs were interleaved)."""
    rid = pl.col("rid")
    return records.select((rid != rid.shift(1)).sum() + 1 == rid.n_unique()).item()


def back(contiguous: bool) -> pl.Expr:
    """An event earlier than the one before it in its run (epoch, then step, going back).
    When each run's events are consecutive rows, the one before is the row before, in the same
    run: a plain shift, a fifth of the time of a shift within each run's group."""
    epoch, step = pl.col("epoch"), pl.col("step")
    if contiguous:
        same_run = pl.col("rid") == pl.col("rid").shift(1)
        prev_epoch, prev_step = (pl.when(same_run).then(c.shift(1)) for c in (epoch, step))
    else:
        prev_epoch, prev_step = epoch.shift(1).over("rid"), step.shift(1).over("rid")
    same = epoch.eq_missing(prev_epoch)
    return ((epoch < prev_epoch) | (same & (step < prev_step))).fill_null(False)


def repeats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per run with any, the events repeating an epoch and step already logged in it, and where
    the first one is.

    A hash of (run, epoch, step) finds the few events that may repeat, which are then compared
    by value: comparing every event's values costs four times the hash. The hash combines each
    column's own (a struct's hash encodes its rows first, a third more time); equal values have
    equal hashes, so no repeat is missed, whatever collides. A balance sample taken apart from
    its step (``rec.sample_balance``) shares the step's number without repeating it.
    """
    key = pl.struct("rid", "epoch", "step", "sampled")
    columns = ("rid", "epoch", "step", "sampled")
    cheap = functools.reduce(operator.xor, (pl.col(c).hash(i) for i, c in enumerate(columns)))
    known = pl.col("epoch").is_not_null() | pl.col("step").is_not_null()
    return (
        events.filter(cheap.is_duplicated())
        .filter(known & ~key.is_first_distinct())
        .group_by("rid")
        .agg(
            n_repeat=pl.len(),
            **{f"repeat_{c}": pl.col(c).first() for c in ("row", "epoch", "step")},
        )
    )
