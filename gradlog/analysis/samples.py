"""The per-sample half of the analysis engine (:mod:`gradlog.analysis.engine`): each balance
sample of every run, whether it is defined, its extremes, and the rolling geometric window of
each task.

Task samples are one row per (event, task of its run), so any number of tasks, different in
every run of a batch, costs the same code. What it costs is measured (``benchmarks/batch.py``),
and shaped the code:

* the samples are a frame of their own (:func:`sample_frame`), which the engine aggregates by
  run beside the events; only a report joins them onto its events
  (:mod:`gradlog.analysis.events`): a join of a million rows that keeps their order costs more
  than all the aggregations of a batch;
* a run's values reach its rows by a lookup on the run id (:func:`by_run`), not a join;
* when every sample is defined and every run has n tasks (almost always), a batch reads a
  sample's values in place, every n-th row (:func:`_blocks`); else one group_by makes every
  sample's row when all are defined, and a chunk with undefined samples groups its defined
  ones again, for their windows;
* what only a report shows (each sample's names and norms, which task dominates each window)
  is made only with ``detail``, a batch row taking its run's last window alone (:func:`finals`).
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from gradlog.analysis import exprs, original
from gradlog.format import KIND_EVENT
from gradlog.frames import IN_MEMORY


class Options(Protocol):
    """What this half needs of :class:`gradlog.analysis.engine.Options`."""

    window: int
    min_samples: int
    unweighted: bool
    original: bool


def by_run(runs: pl.DataFrame, column: str) -> pl.Expr:
    """``column`` of each row's run (null for a run ``runs`` lacks): a hash lookup of the run
    id, several times cheaper than a join that keeps the rows' order."""
    return pl.col("rid").replace_strict(
        runs.get_column("rid"), runs.get_column(column), default=None
    )


def _task_samples(records: pl.LazyFrame, runs: pl.DataFrame, options: Options) -> pl.LazyFrame:
    """One row per (event, task of its run) that the event sampled, with the task's place in
    its run's list (``t``), the places of the run's pair (``ta``, ``tb``; null if none) and its
    number of tasks.

    The place is looked up by an integer key (run, task name as an enum code), not by a join on
    (run, name): a join that keeps the events' order costs eight times the lookup here.
    """
    run_tasks = (
        runs.lazy()
        .filter(pl.col("n_tasks") >= 2)
        .select("rid", "pair_a", "pair_b", name=pl.col("tasks"))
        .with_columns(t=pl.int_ranges(pl.col("name").list.len()))
        .explode("name", "t")
        .drop_nulls("name")
        .collect(engine=IN_MEMORY)
    )
    names = pl.Enum(run_tasks.get_column("name").unique().sort())
    width = max(len(names.categories), 1)

    def key(name: pl.Expr) -> pl.Expr:
        # an event's name that no run of the chunk lists has no code, hence no key
        return pl.col("rid") * width + name.cast(names, strict=False).to_physical().cast(pl.Int64)

    keys = run_tasks.select(key(pl.col("name"))).to_series()
    pairs = run_tasks.filter(pl.col("pair_a").is_not_null())
    place = {
        side: pairs.filter(pl.col("name") == pl.col(f"pair_{side}")).select("rid", "t")
        for side in ("a", "b")
    }
    long = (
        records.filter((pl.col("kind") == KIND_EVENT) & (pl.col("tasks").list.len() > 0))
        .select("rid", "row", "epoch", "step", "tasks")
        .explode("tasks")
        .select(
            "rid",
            "row",
            "epoch",
            "step",
            name=pl.col("tasks").struct.field("name"),
            norm=pl.col("tasks").struct.field("grad_norm"),
            weight=pl.col("tasks").struct.field("weight"),
        )
        .with_columns(
            t=key(pl.col("name")).replace_strict(
                keys, run_tasks.get_column("t"), default=None, return_dtype=pl.Int64
            ),
            n_tasks=by_run(runs, "n_tasks"),
            **{f"t{side}": by_run(found, "t") for side, found in place.items()},
        )
        # no name twice in one sample: the readers refuse such a record (gradlog.analysis.validity)
        .drop_nulls("t")
    )
    if options.unweighted:
        # the weight in force: the sample's own, else the run record's, else 1.0
        meta = (
            runs.lazy()
            .select("rid", "meta_weights")
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


def _defined(long: pl.DataFrame) -> pl.DataFrame:
    """Each task sample marked with whether its sample is defined: it has every task of its
    run, each with a valid norm.

    ``long`` is sorted by row, so a sample is a segment, and its counts differences of running
    counts at its ends, spread back over the segment: linear, where a group_by hashes every row.
    """
    row, valid = pl.col("row"), pl.col("valid").cast(pl.Int64)
    first, last = (row != row.shift(1)).fill_null(True), (row != row.shift(-1)).fill_null(True)
    i, seen = pl.int_range(pl.len()), valid.cum_sum()
    present = i.filter(last) - i.filter(first) + 1
    n_valid = seen.filter(last) - seen.filter(first) + valid.filter(first)
    n_tasks = pl.col("n_tasks").filter(first)
    defined = (present == n_tasks) & (n_valid == n_tasks)
    if long.select(defined.all()).item():  # almost always: nothing to spread
        return long.with_columns(defined=pl.lit(True))
    return long.with_columns(defined=defined.gather(first.cum_sum() - 1))


def _windowed(long: pl.DataFrame, options: Options) -> pl.DataFrame:
    """The task samples of defined samples, each with its task's window (``wl``): the mean log
    norm over the last ``window`` defined samples of its run, from ``min_samples`` on."""
    m = min(options.min_samples, options.window)
    return long.with_columns(
        wl=pl.col("log").rolling_mean(options.window, min_samples=m).over("rid", "t")
    )


def _extremes(log: pl.Expr, prefix: str) -> dict[str, pl.Expr]:
    """Which task has the largest and the smallest ``log``; a tie goes to the task the run
    lists first."""
    name = pl.col("name")
    return {
        f"{prefix}dominant": name.get(log.arg_max()),
        f"{prefix}starved": name.get(log.arg_min()),
    }


def _sample_aggs(detail: bool) -> dict[str, pl.Expr]:
    """Of a sample's task rows, what the sample is; with ``detail``, what a report shows of it:
    its names, norms and weights, its extremes, the pair's norms."""
    name, norm, t = pl.col("name"), pl.col("norm"), pl.col("t")
    aggs = {c: pl.col(c).first() for c in ("epoch", "step", "n_tasks", "ta", "defined")}
    if detail:
        aggs |= {
            "names": name,
            "norms": norm,
            "weights": pl.col("weight"),
            "_num": pl.when(t == pl.col("ta")).then(norm).max(),
            "_den": pl.when(t == pl.col("tb")).then(norm).max(),
            **_extremes(pl.col("log"), ""),
        }
    return aggs


def _window_aggs(detail: bool) -> dict[str, pl.Expr]:
    """Of a defined sample's task rows: its own extremes, its window's and the pair's log
    ratio there; with ``detail``, the window's names, logs and extreme tasks."""
    name, wl, t = pl.col("name"), pl.col("wl"), pl.col("t")
    aggs = {
        "top": pl.col("norm").max(),
        "bottom": pl.col("norm").min(),
        "w_top": wl.max(),
        "w_bottom": wl.min(),
        "w_pair": pl.when(t == pl.col("ta")).then(wl).max()
        - pl.when(t == pl.col("tb")).then(wl).max(),
    }
    if detail:
        aggs |= {"w_names": name, "w_logs": wl, **_extremes(wl, "w_")}
    return aggs


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


def sample_frame(
    records: pl.LazyFrame, runs: pl.DataFrame, options: Options, *, detail: bool
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """One row per balance sample of every run, in row order, and per run the :func:`finals`
    of its window.

    With ``detail`` (a report), the samples carry every column the renderers read; without (a
    batch row), what the summaries read.
    """
    # the task samples feed several branches of the plan: made once
    long = _task_samples(records, runs, options).collect(engine=IN_MEMORY)
    if options.original:
        long = original.pair_only(long)
    long = _defined(_in_task_order(long))
    everywhere = long.get_column("defined").all()
    windowed = _windowed(long if everywhere else long.filter("defined"), options)
    if options.original:
        windowed = original.arithmetic_window(windowed, options.window)
    n_tasks = long.get_column("n_tasks")
    by = ("rid", "row")
    if everywhere and not detail and n_tasks.n_unique() == 1:
        samples = _blocks(windowed, n_tasks[0])
    elif everywhere:
        samples = (
            windowed.lazy()
            .group_by(*by)
            .agg(**_sample_aggs(detail), **_window_aggs(detail))
            .sort("row")
        )
    else:
        windows = windowed.lazy().group_by(*by).agg(**_window_aggs(detail)).drop("rid")
        samples = (
            long.lazy()
            .group_by(*by)
            .agg(**_sample_aggs(detail))
            .join(windows, on="row", how="left")
            .sort("row")
        )
    if not everywhere:
        # the window carried over an undefined sample is the one judged before it
        carried = ["w_top", "w_bottom", "w_pair"]
        if detail:
            carried += ["w_dominant", "w_starved", "w_names", "w_logs"]
        samples = samples.with_columns(
            pl.when("defined").then(pl.col(c)).otherwise(pl.col(c).forward_fill().over("rid"))
            for c in carried
        )
    return samples.select(_judged(runs, detail)), finals(windowed.lazy())


def _blocks(windowed: pl.DataFrame, n: int) -> pl.LazyFrame:
    """What :func:`_sample_aggs` and :func:`_window_aggs` make of a batch's samples when each
    is ``n`` consecutive rows in task order (every sample defined, every run of ``n`` tasks:
    almost always). A sample's ``k``-th task is every ``n``-th row from ``k``, read in place,
    in row order; a group_by hashes every row, and its groups must be sorted back (eight
    times the time here)."""
    tasks = range(n)

    def each(column: str) -> list[pl.Expr]:
        return [pl.col(column).gather_every(n, k) for k in tasks]

    def pair(side: str) -> pl.Expr:
        place, wl = pl.col(side).gather_every(n), each("wl")
        return pl.coalesce(pl.when(place == k).then(wl[k]) for k in tasks)

    return windowed.lazy().select(
        pl.col("rid", "row", "epoch", "step", "n_tasks", "ta", "defined").gather_every(n),
        top=pl.max_horizontal(each("norm")),
        bottom=pl.min_horizontal(each("norm")),
        w_top=pl.max_horizontal(each("wl")),
        w_bottom=pl.min_horizontal(each("wl")),
        w_pair=pair("ta") - pair("tb"),
    )


def _judged(runs: pl.DataFrame, detail: bool) -> list[pl.Expr]:
    """A sample's findings from its extremes and its window."""
    paired = pl.col("ta").is_not_null()
    has_window = pl.col("w_top").is_not_null()
    w_spread_log = pl.col("w_top") - pl.col("w_bottom")
    sample_spread = pl.when("defined").then(pl.col("top") / pl.col("bottom"))
    window_ratio = pl.when(paired).then(pl.col("w_pair").exp()).otherwise(w_spread_log.exp())
    columns = [
        "rid",
        "row",
        "epoch",
        "step",
        "defined",
        (pl.col("defined") & exprs.outside_healthy_range(sample_spread))
        .fill_null(False)
        .alias("imbalance"),
        pl.when(has_window).then(w_spread_log).alias("window_log_spread"),
        pl.when(has_window).then(w_spread_log.exp()).alias("window_spread"),
        pl.when(has_window).then(window_ratio).alias("window_ratio"),
        pl.when(has_window).then(exprs.spread_band(w_spread_log)).alias("window_band"),
        # the verdict judges the spread, oriented dominant over starved; the pair's own check
        # words the documented sentence of a named pair
        exprs.collapse_check_log(w_spread_log).alias("verdict"),
        pl.when(paired).then(exprs.collapse_check_log(pl.col("w_pair"))).alias("pair_verdict"),
    ]
    if not detail:
        return columns
    pair_a, pair_b = by_run(runs, "pair_a"), by_run(runs, "pair_b")
    sample_ratio = pl.when(paired).then(pl.col("_num") / pl.col("_den")).otherwise(sample_spread)
    return columns + [
        "names",
        "norms",
        "weights",
        sample_spread.alias("spread"),
        sample_ratio.alias("ratio"),
        pl.when(paired).then(pair_a).otherwise(pl.when("defined").then("dominant")).alias("num"),
        pl.when(paired).then(pair_b).otherwise(pl.when("defined").then("starved")).alias("den"),
        pl.when("defined").then("dominant").alias("dominant"),
        pl.when("defined").then("starved").alias("starved"),
        pl.when("defined").then(exprs.ratio_band(sample_spread)).alias("ratio_band"),
        pl.when(has_window)
        .then(pl.when(paired).then(pair_a).otherwise("w_dominant"))
        .alias("window_num"),
        pl.when(has_window)
        .then(pl.when(paired).then(pair_b).otherwise("w_starved"))
        .alias("window_den"),
        pl.when(has_window).then("w_dominant").alias("window_dominant"),
        pl.when(has_window).then("w_starved").alias("window_starved"),
        exprs.collapse_check_log(
            pl.when(paired).then(pl.col("w_pair")).otherwise(w_spread_log)
        ).alias("shown_verdict"),
        pl.when(has_window).then("w_names").alias("window_names"),
        pl.when(has_window).then("w_logs").alias("window_logs"),
    ]
