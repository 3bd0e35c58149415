"""The per-event half of the analysis engine (:mod:`gradlog.analysis.engine`): each balance sample of
every run, whether it is defined, its extremes, and the rolling geometric window of each task.

Task samples are one row per (event, task of its run), so any number of tasks, different in
every run of a batch, costs the same code. What it costs is measured (``benchmarks/batch.py``),
and shaped the code: aggregations stay plain (a filter inside a group's aggregation takes a slow
path in Polars); what only a report shows (each sample's names and norms, which task dominates
each window) is made only with ``detail``, a batch row taking its run's last window alone
(:func:`finals`); a sample's counts come from segments, not a group_by.
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from gradlog.analysis import exprs
from gradlog.format import KIND_EVENT
from gradlog.frames import IN_MEMORY


class Options(Protocol):
    """What this half needs of :class:`gradlog.analysis.engine.Options`."""

    window: int
    min_samples: int
    unweighted: bool


def _task_samples(records: pl.LazyFrame, runs: pl.LazyFrame, options: Options) -> pl.LazyFrame:
    """One row per (event, task of its run) that the event sampled."""
    run_tasks = (
        runs.filter(pl.col("n_tasks") >= 2)
        .select("rid", "pair_a", "pair_b", "meta_weights", name=pl.col("tasks"))
        .with_columns(t=pl.int_ranges(pl.col("name").list.len()))
        .explode("name", "t")
    )
    long = (
        records.filter((pl.col("kind") == KIND_EVENT) & (pl.col("tasks").list.len() > 0))
        .select("rid", "row", "tasks")
        .explode("tasks")
        .select(
            "rid",
            "row",
            name=pl.col("tasks").struct.field("name"),
            norm=pl.col("tasks").struct.field("grad_norm"),
            weight=pl.col("tasks").struct.field("weight"),
        )
        # no name twice in one sample: the readers refuse such a record (gradlog.analysis.validity)
        .join(run_tasks, on=["rid", "name"], how="inner", maintain_order="left")
    )
    if options.unweighted:
        # the weight in force: the sample's own, else the run record's, else 1.0
        meta = (
            run_tasks.select("rid", "meta_weights")
            .unique("rid")
            .explode("meta_weights")
            .select(
                "rid",
                name=pl.col("meta_weights").struct.field("name"),
                meta_weight=pl.col("meta_weights").struct.field("weight"),
            )
            .drop_nulls("name")
            .unique(["rid", "name"], keep="first")
        )
        long = (
            long.join(meta, on=["rid", "name"], how="left", maintain_order="left")
            .with_columns(pl.col("weight").fill_null(pl.col("meta_weight")).fill_null(1.0))
            .with_columns(norm=pl.col("norm") / pl.col("weight"))
            .drop("meta_weight")
        )
    valid = pl.col("norm").is_finite() & (pl.col("norm") > 0)
    return long.with_columns(log=pl.when(valid).then(pl.col("norm").log()), valid=valid)


def _in_task_order(long: pl.DataFrame) -> pl.DataFrame:
    """The task samples by row, each sample's tasks in its run's order (which breaks ties).
    A sample lists them in that order almost always: the sort runs only when one does not."""
    t, row = pl.col("t"), pl.col("row")
    ordered = ((row > row.shift(1)) | ((row == row.shift(1)) & (t > t.shift(1)))).fill_null(True)
    return long if long.select(ordered.all()).item() else long.sort("row", "t")


def _counts(long: pl.LazyFrame) -> pl.LazyFrame:
    """Per balance sample: how many of its run's tasks it has, and how many with a valid norm.

    ``long`` is sorted by row, so a sample is a segment, and its counts differences of running
    counts at its ends: linear, where a group_by hashes every row (five times the time here).
    """
    row, valid = pl.col("row"), pl.col("valid").cast(pl.Int64)
    first, last = (row != row.shift(1)).fill_null(True), (row != row.shift(-1)).fill_null(True)
    i, seen = pl.int_range(pl.len()), valid.cum_sum()
    return long.select(
        pl.col("rid", "row").filter(first),
        n_present=i.filter(last) - i.filter(first) + 1,
        n_valid=seen.filter(last) - seen.filter(first) + valid.filter(first),
    )


def _sample_detail(long: pl.LazyFrame) -> pl.LazyFrame:
    """Per balance sample, what a report shows of it: its names, norms and weights, its
    extremes, the pair's norms."""
    name, norm = pl.col("name"), pl.col("norm")
    return (
        long.with_columns(
            _num=pl.when(name == pl.col("pair_a")).then(norm),
            _den=pl.when(name == pl.col("pair_b")).then(norm),
        )
        # by run and row, not by the sorted row alone: Polars 2.1 aggregates a sorted key's
        # groups as slices, one after another, twice as slowly
        .group_by("rid", "row")
        .agg(
            names=name,
            norms=norm,
            weights=pl.col("weight"),
            num=pl.col("_num").max(),
            den=pl.col("_den").max(),
            **_extremes(pl.col("log"), ""),
        )
        .drop("rid")
    )


def _extremes(log: pl.Expr, prefix: str) -> dict[str, pl.Expr]:
    """Which task has the largest and the smallest ``log``; a tie goes to the task the run
    lists first."""
    name = pl.col("name")
    return {
        f"{prefix}dominant": name.get(log.arg_max()),
        f"{prefix}starved": name.get(log.arg_min()),
    }


def _windowed(long: pl.LazyFrame, defined: pl.LazyFrame, options: Options) -> pl.DataFrame:
    """The task samples of defined samples, each with its task's window (``wl``): the mean log
    norm over the last ``window`` defined samples of its run, from ``min_samples`` on."""
    m = min(options.min_samples, options.window)
    return (
        long.join(defined, on="row", how="semi", maintain_order="left")
        .with_columns(wl=pl.col("log").rolling_mean(options.window, min_samples=m).over("rid", "t"))
        .collect(engine=IN_MEMORY)
    )


def _windows(windowed: pl.LazyFrame, *, detail: bool) -> pl.LazyFrame:
    """Per defined sample: the window's extremes and the pair's log ratio; with ``detail``,
    its names, logs and extreme tasks."""
    name, wl = pl.col("name"), pl.col("wl")
    more = {"w_names": name, "w_logs": wl} | _extremes(wl, "w_") if detail else {}
    return (
        windowed.with_columns(
            _wa=pl.when(name == pl.col("pair_a")).then(wl),
            _wb=pl.when(name == pl.col("pair_b")).then(wl),
        )
        .group_by("rid", "row")
        .agg(
            # the sample's own extremes, where it is defined: every norm finite and positive
            top=pl.col("norm").max(),
            bottom=pl.col("norm").min(),
            w_top=wl.max(),
            w_bottom=wl.min(),
            w_pair=pl.col("_wa").max() - pl.col("_wb").max(),
            **more,
        )
    )


def finals(windowed: pl.LazyFrame) -> pl.LazyFrame:
    """Per run, its last defined sample: the window there (the last one judged; an undefined
    sample after it carries it) and the weights logged with it."""
    last = windowed.group_by("rid").agg(pl.col("row").max())
    return (
        windowed.join(last, on=["rid", "row"], how="semi")
        .group_by("rid")
        .agg(
            _final_names=pl.col("name"),
            _final_logs=pl.col("wl"),
            _final_weights=pl.col("weight"),
            **_extremes(pl.col("wl"), "_final_"),
        )
    )


def events_frame(
    records: pl.LazyFrame, runs: pl.LazyFrame, options: Options, *, detail: bool
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """One row per event of every run, and per run the :func:`finals` of its window.

    With ``detail`` (a report), the events carry every column the renderers read; without (a
    batch row), what the summaries read.
    """
    # the task samples feed two branches of the plan: made once
    long = _in_task_order(_task_samples(records, runs, options).collect(engine=IN_MEMORY)).lazy()
    run_cols = runs.select("rid", "n_tasks", "pair_a", "pair_b", "by_steps")
    samples = (
        _counts(long)
        .join(run_cols.select("rid", "n_tasks"), on="rid", how="left", maintain_order="left")
        .with_columns(
            defined=(pl.col("n_valid") == pl.col("n_tasks"))
            & (pl.col("n_present") == pl.col("n_tasks"))
        )
        .drop("rid", "n_tasks")
        .collect(engine=IN_MEMORY)
    )
    undefined = samples.filter(~pl.col("defined")).height > 0
    ev = (
        records.filter(pl.col("kind") == KIND_EVENT)
        .join(run_cols, on="rid", how="left", maintain_order="left")
        .join(samples.lazy(), on="row", how="left", maintain_order="left")
        .with_columns(
            has_balance=pl.col("n_present").is_not_null(),
            defined=pl.col("defined").fill_null(False),
        )
    )
    if detail:
        ev = ev.join(_sample_detail(long), on="row", how="left", maintain_order="left")
    windowed = _windowed(long, samples.lazy().filter("defined").select("row"), options).lazy()
    ev = ev.join(_windows(windowed, detail=detail), on="row", how="left", maintain_order="left")
    paired = pl.col("pair_a").is_not_null()
    has_window = pl.col("w_top").is_not_null()
    w_spread_log = pl.col("w_top") - pl.col("w_bottom")
    # the window carried over an undefined sample is the one judged before it
    carried = ["w_top", "w_bottom", "w_pair"]
    if detail:
        carried += ["w_dominant", "w_starved", "w_names", "w_logs"]
    if undefined:
        ev = ev.with_columns(
            pl.when(pl.col("defined") | ~pl.col("has_balance"))
            .then(pl.col(c))
            .otherwise(pl.col(c).forward_fill().over("rid"))
            .alias(c)
            for c in carried
        )
    sample_spread = pl.when("defined").then(pl.col("top") / pl.col("bottom"))
    sample_ratio = pl.when(paired).then(pl.col("num") / pl.col("den")).otherwise(sample_spread)
    window_ratio = pl.when(paired).then(pl.col("w_pair").exp()).otherwise(w_spread_log.exp())
    mean = pl.col("mean_norm")
    judged = pl.col("has_balance") & has_window
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
        "has_balance",
        "defined",
        (pl.col("defined") & exprs.outside_healthy_range(sample_spread))
        .fill_null(False)
        .alias("imbalance"),
        pl.when(judged).then(w_spread_log).alias("window_log_spread"),
        pl.when(judged).then(w_spread_log.exp()).alias("window_spread"),
        pl.when(judged).then(window_ratio).alias("window_ratio"),
        pl.when(judged).then(exprs.spread_band(w_spread_log)).alias("window_band"),
        # the verdict judges the spread, oriented dominant over starved; the pair's own check
        # words the documented sentence of a named pair
        pl.when("has_balance").then(exprs.collapse_check_log(w_spread_log)).alias("verdict"),
        pl.when(pl.col("has_balance") & paired)
        .then(exprs.collapse_check_log(pl.col("w_pair")))
        .alias("pair_verdict"),
        "n_tasks",
        "pair_a",
        "pair_b",
    ]
    if detail:
        optional = [c for c in ("total_norm", "n_vanishing", "n_exploding") if c in _names(records)]
        columns += [
            label(pl.col("epoch"), pl.col("step"), pl.col("by_steps")).alias("label"),
            *optional,
            pl.when("has_balance").then("names").alias("names"),
            pl.when("has_balance").then("norms").alias("norms"),
            pl.when("has_balance").then("weights").alias("weights"),
            sample_spread.alias("spread"),
            sample_ratio.alias("ratio"),
            pl.when(paired)
            .then("pair_a")
            .otherwise(pl.when("defined").then("dominant"))
            .alias("num"),
            pl.when(paired)
            .then("pair_b")
            .otherwise(pl.when("defined").then("starved"))
            .alias("den"),
            pl.when("defined").then("dominant").alias("dominant"),
            pl.when("defined").then("starved").alias("starved"),
            pl.when("defined").then(exprs.ratio_band(sample_spread)).alias("ratio_band"),
            pl.when(judged)
            .then(pl.when(paired).then("pair_a").otherwise("w_dominant"))
            .alias("window_num"),
            pl.when(judged)
            .then(pl.when(paired).then("pair_b").otherwise("w_starved"))
            .alias("window_den"),
            pl.when(judged).then("w_dominant").alias("window_dominant"),
            pl.when(judged).then("w_starved").alias("window_starved"),
            pl.when("has_balance")
            .then(
                exprs.collapse_check_log(
                    pl.when(paired).then(pl.col("w_pair")).otherwise(w_spread_log)
                )
            )
            .alias("shown_verdict"),
            pl.when(judged).then("w_names").alias("window_names"),
            pl.when(judged).then("w_logs").alias("window_logs"),
        ]
    return ev.select(columns), finals(windowed)


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
