"""The per-run summary of many logs at once, as Polars expressions (``gradlog batch``).

Input: the records and run metadata of many logs (:class:`gradlog.scan.Chunk`). Output: one
row per (source, run) with the numbers of the report's summary, computed by the rules of
:mod:`gradlog.analysis` (which works one run at a time): the ratio of the pair's task norms per
balance sample, the rolling window mean over the defined samples, the worst band it reached,
the first sample outside the healthy range and the first collapse verdict, the statistics of
the logged norms, and what the recommended weights need (each task's norm relative to the
denominator's over the last window, and the weights in force). Bands come from
:mod:`gradlog.exprs`, which reads them from :mod:`gradlog.classify`; which tasks form a run's
ratio is decided by :func:`gradlog.classify.default_pair` itself, once per run.

Two small steps: :func:`run_table` (one row per run: order, counts, metadata, the task names
seen), then :func:`summarise` with each run's pair. Both are column expressions over the whole
frame; nothing loops over records. Runs are numbered (``rid``) so that grouping and joining
work on integers, not on pairs of strings.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from gradlog import classify, exprs
from gradlog.classify import RatioBand
from gradlog.scan import Chunk
from gradlog.schema import KIND_EVENT

RUN = ["source", "run"]


def run_table(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records numbered by run (``rid``), and one row per run in order of appearance.

    Run columns: ``rid, source, run, first_row, n_events, bad, tasks, by_steps,
    meta_weights``; ``tasks`` are the run record's, else the names seen in its events, in order.
    """
    records = chunk.records.with_columns(rid=pl.struct(RUN).rank("dense").cast(pl.Int64))
    runs = records.group_by("rid").agg(
        pl.col("source").first(),
        pl.col("run").first(),
        first_row=pl.col("row").min(),
        n_events=(pl.col("kind") == KIND_EVENT).sum(),
        bad=pl.col("bad").any(),
    )
    # the first run record's metadata, as the analysis takes it
    meta = (
        chunk.meta.sort("row")
        .group_by(RUN)
        .agg(
            meta_tasks=pl.col("meta_tasks").first(),
            by_steps=pl.col("by_steps").first(),
            meta_weights=pl.col("meta_weights").first(),
            bad_meta=pl.col("bad").any(),
        )
    )
    runs = (
        runs.join(meta, on=RUN, how="left", nulls_equal=True)
        .sort("first_row")
        .with_columns(
            bad=pl.col("bad") | pl.col("bad_meta").fill_null(False),
            by_steps=pl.col("by_steps").fill_null(False),
        )
        .drop("bad_meta")
    )
    from_meta = pl.col("meta_tasks").list.len().fill_null(0) > 0
    need = runs.filter(~from_meta).get_column("rid")
    if need.len() == 0:
        return records, runs.rename({"meta_tasks": "tasks"})
    seen = (
        records.lazy()
        .filter(pl.col("rid").is_in(need.implode()) & (pl.col("kind") == KIND_EVENT))
        .select("rid", name=pl.col("tasks"))
        .explode("name")
        .select("rid", name=pl.col("name").struct.field("name"))
        .drop_nulls("name")
        .group_by("rid", maintain_order=True)
        .agg(seen=pl.col("name").unique(maintain_order=True))
        .collect()
    )
    runs = (
        runs.join(seen, on="rid", how="left", maintain_order="left")
        .with_columns(
            tasks=pl.when(from_meta)
            .then(pl.col("meta_tasks"))
            .otherwise(pl.col("seen").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        )
        .drop("meta_tasks", "seen")
    )
    return records, runs


def summarise(
    records: pl.DataFrame,
    runs: pl.DataFrame,
    pairs: dict[int, tuple[str, str]],
    *,
    window: int,
    min_samples: int,
) -> pl.DataFrame:
    """The summary of every run of ``runs`` (both frames from :func:`run_table`); ``pairs``
    maps a run's ``rid`` to the tasks of its ratio (runs with fewer than two tasks have none)."""
    ratios = _ratios(records.lazy(), pairs).collect()
    samples = _samples(ratios.lazy(), window, min(min_samples, window)).collect()
    last = samples.lazy().filter(pl.col("from_end") <= window)
    return (
        runs.lazy()
        .join(_record_stats(ratios.lazy()), on="rid", how="left", maintain_order="left")
        .join(_sample_stats(samples.lazy()), on="rid", how="left", maintain_order="left")
        .join(_window_weights(records.lazy(), last), on="rid", how="left", maintain_order="left")
        .with_columns(_worst_band())
        .collect()
    )


def _task_norm(name: str) -> pl.Expr:
    """The grad_norm of the first task sample called ``name`` in each event."""
    named = pl.element().struct.field("name") == name
    return pl.col("tasks").list.filter(named).list.first().struct.field("grad_norm")


def _ratios(records: pl.LazyFrame, pairs: dict[int, tuple[str, str]]) -> pl.LazyFrame:
    """Each record with its pair's norms and ratio (and without its task list)."""
    # A few distinct pairs in a whole archive (usually one): one list lookup per pair.
    distinct = sorted(set(pairs.values()))
    index = {rid: distinct.index(p) for rid, p in pairs.items()}
    pair = pl.col("rid").replace_strict(index, default=None, return_dtype=pl.Int32)
    num = den = pl.lit(None, dtype=pl.Float64)
    for i, (a, b) in reversed(list(enumerate(distinct))):
        num = pl.when(pl.col("pair") == i).then(_task_norm(a)).otherwise(num)
        den = pl.when(pl.col("pair") == i).then(_task_norm(b)).otherwise(den)
    is_event = pl.col("kind") == KIND_EVENT
    # the analysis reads events only: a run record's fields, if any, do not count
    has_balance = (
        is_event & (pl.col("tasks").list.len().fill_null(0) > 0) & pl.col("pair").is_not_null()
    )
    return (
        records.with_columns(pair=pair)
        .select(
            "rid",
            "row",
            "epoch",
            "step",
            is_event=is_event,
            mean_norm=pl.when(is_event).then(pl.col("mean_norm")),
            max_norm=pl.when(is_event).then(pl.col("max_norm")),
            has_balance=has_balance,
            num_norm=num,
            den_norm=den,
        )
        .with_columns(
            ratio=pl.when("has_balance").then(exprs.ratio(pl.col("num_norm"), pl.col("den_norm")))
        )
    )


def _scaled(values: pl.Expr, statistic: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
    """``statistic(values)``, taken on the values scaled by a power of two near their largest,
    as the report does: norms near the ends of the float range (1e300, 1e-200) would overflow
    or underflow a sum or a square. The exponent stays within +-1021, where both the power and
    its inverse are normal numbers, so the scaling changes no digit."""
    exponent = values.abs().max().log(2).floor().clip(-1021, 1021).fill_null(0)
    return statistic(values * pl.lit(2.0).pow(-exponent)) * pl.lit(2.0).pow(exponent)


def _record_stats(ratios: pl.LazyFrame) -> pl.LazyFrame:
    """Per run, over its events: the norm statistics and bands, the undefined samples."""
    mean, maxn = pl.col("mean_norm"), pl.col("max_norm")
    finite = mean.is_finite() & maxn.is_finite()
    balance, r = pl.col("has_balance"), pl.col("ratio")
    undefined = balance & r.is_null()
    worst_norm = pl.col("norm_severity") == pl.col("norm_severity").max()
    return (
        ratios.with_columns(norm_band=exprs.norm_band(mean))
        .with_columns(norm_severity=exprs.norm_severity(pl.col("norm_band")))
        .group_by("rid")
        .agg(
            last_epoch=pl.col("epoch").filter("is_event").max(),
            n_stats=mean.is_not_null().sum(),
            n_nonfinite=(mean.is_not_null() & ~finite).sum(),
            mean_norm=_scaled(mean.filter(finite), lambda x: x.mean()),
            mean_norm_std=_scaled(mean.filter(finite), lambda x: x.std(ddof=0)),
            max_norm_mean=_scaled(maxn.filter(finite), lambda x: x.mean()),
            max_norm_peak=maxn.filter(finite).max(),
            worst_norm_band=pl.col("norm_band").filter(worst_norm).first(),
            n_balance=balance.sum(),
            n_undefined=undefined.sum(),
            first_undefined=pl.col("row").filter(undefined).first(),
            last_sample_defined=r.filter(balance).last().is_not_null(),
        )
    )


def _samples(ratios: pl.LazyFrame, window: int, min_samples: int) -> pl.LazyFrame:
    """The defined samples of each run, with the rolling window mean (the undefined ones are
    left out of the window, as in the analysis) and their rank from the end."""
    return (
        ratios.filter(pl.col("ratio").is_not_null())
        .select(
            "rid",
            "row",
            "epoch",
            "step",
            "ratio",
            "den_norm",
            window_mean=pl.col("ratio").rolling_mean(window, min_samples=min_samples).over("rid"),
            from_end=(pl.len() - pl.int_range(pl.len())).over("rid"),
        )
        .with_columns(band=exprs.ratio_band(pl.col("window_mean")))
        .with_columns(
            # before the window is judged there is no band (ratio_band(null) is "undefined")
            band=pl.when(pl.col("window_mean").is_not_null()).then("band"),
        )
        .with_columns(severity=exprs.ratio_severity(pl.col("band")))
    )


def _sample_stats(samples: pl.LazyFrame) -> pl.LazyFrame:
    """Per run, over its defined samples: window means, the worst band, first imbalance and
    collapse. (An undefined sample never holds the first collapse: the window mean it would
    carry over was judged at a defined sample before it.)"""
    r, mean = pl.col("ratio"), pl.col("window_mean")
    imbalance = exprs.outside_healthy_range(r)
    collapse = exprs.collapsed(mean)
    worst = pl.col("severity") == pl.col("severity").max()
    return samples.group_by("rid").agg(
        last_ratio=r.last(),
        window_mean=mean.drop_nulls().last(),
        defined_worst=pl.col("band").filter(worst).first(),
        defined_worst_ratio=mean.filter(worst).first(),
        defined_worst_row=pl.col("row").filter(worst).first(),
        imbalance_epoch=pl.col("epoch").filter(imbalance).first(),
        imbalance_step=pl.col("step").filter(imbalance).first(),
        any_imbalance=imbalance.any(),
        collapse_epoch=pl.col("epoch").filter(collapse).first(),
        collapse_step=pl.col("step").filter(collapse).first(),
        any_collapse=collapse.any(),
    )


def _worst_band() -> list[pl.Expr]:
    """The run's worst window band: an undefined sample counts as collapse-level, and of two
    findings of the same severity the first one in the run is kept (as the analysis does)."""
    undefined = pl.lit(RatioBand.UNDEFINED.value)
    severity = exprs.ratio_severity(pl.col("defined_worst"))
    undefined_wins = (pl.col("n_undefined").fill_null(0) > 0) & (
        pl.col("defined_worst").is_null()
        | (severity < classify.RATIO_SEVERITY[RatioBand.UNDEFINED])
        | (
            (severity == classify.RATIO_SEVERITY[RatioBand.UNDEFINED])
            & (pl.col("first_undefined") < pl.col("defined_worst_row"))
        )
    )
    return [
        pl.when(undefined_wins).then(undefined).otherwise("defined_worst").alias("worst_band"),
        pl.when(undefined_wins).then(None).otherwise("defined_worst_ratio").alias("worst_ratio"),
    ]


def _window_weights(records: pl.LazyFrame, last: pl.LazyFrame) -> pl.LazyFrame:
    """Per run and task, over the last window of defined samples: the mean of the task's norm
    relative to the denominator's, and the task's weight in the last of them (the first sample
    of each name in an event counts, as in the analysis)."""
    per_task = (
        records.select("row", "tasks")
        .join(last.select("rid", "row", "from_end", "den_norm"), on="row", how="inner")
        .sort("row")
        .explode("tasks")
        .unnest("tasks")
        .unique(subset=["row", "name"], keep="first", maintain_order=True)
        .group_by(["rid", "name"], maintain_order=True)
        .agg(
            relative=(pl.col("grad_norm") / pl.col("den_norm")).mean(),
            last_weight=pl.col("weight").filter(pl.col("from_end") == 1).first(),
        )
    )
    return per_task.group_by("rid").agg(
        window_tasks=pl.col("name"),
        window_relative=pl.col("relative"),
        window_weights=pl.col("last_weight"),
    )
