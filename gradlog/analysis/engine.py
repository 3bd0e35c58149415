"""The one analysis core: every run of a long frame of records, judged at once.

``gradlog report`` runs it on one file, ``gradlog batch`` on chunks of many, ``gradlog compare``
on two batches, and :mod:`gradlog.analysis.api` exposes it; nothing else computes a band, a window or a
statistic. Input: the records and run metadata of :class:`gradlog.analysis.scan.Chunk` (one long frame
keyed by source and run). Output (:class:`Judged`): one row per event (when asked) and one row
per run, as Polars frames that :mod:`gradlog.analysis.model` turns into the result objects.

The rules are those of ``shared/spec/report-semantics.md``, second edition:

* a balance sample is *defined* when every task of the run has a finite, positive norm; any
  other sample is undefined, a collapse-level finding judged once (never also "dominating");
* each task's *window norm* is the geometric mean of its norms over the last ``window`` defined
  samples (from ``min_samples`` on); the *spread* is the largest window norm over the smallest,
  and it alone decides the band, the collapse verdict, the status and the exit code, so the
  order of the tasks (or of ``--pair``) never changes a finding;
* the ratio a message prints is the pair's (two tasks, or ``--pair``: exactly the reciprocal
  when the pair is swapped), else the window's dominant over its starved task.

Geometric means are taken through logarithms, which round: a window value within
:data:`gradlog.classify.LOG_TOLERANCE` of a band's bound counts as the bound (the milder band).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import polars.selectors as cs

from gradlog import classify
from gradlog.analysis import exprs
from gradlog.analysis.events import events_frame, label
from gradlog.analysis.judging import Options  # noqa: F401 - engine.Options, as callers name it
from gradlog.analysis.samples import sample_frame
from gradlog.analysis.scan import Chunk
from gradlog.classify import Collapse, RatioBand
from gradlog.format import KIND_EVENT
from gradlog.frames import IN_MEMORY

RUN = ["source", "run"]


@dataclass(frozen=True)
class Judged:
    """The engine's answer: ``runs`` (:data:`RUN_COLUMNS`), ``events`` when asked for."""

    runs: pl.DataFrame
    events: pl.DataFrame | None


def judge(chunk: Chunk, options: Options = Options(), *, events: bool = False) -> Judged:
    """Judge every run of ``chunk``; with ``events``, keep the per-event frame too."""
    records, runs = _run_table(chunk)
    runs = _pairs(runs, options)
    samples, finals = sample_frame(records.lazy(), runs, options, detail=events)
    if events:
        # collected first: when every event is a balance sample, the events take the samples'
        # columns as they are, where a join copies them (the peak memory of a large report)
        samples, finals = pl.collect_all([samples, finals], engine=IN_MEMORY)
    frame = events_frame(records.lazy(), runs, samples if events else None)
    if events:
        samples, finals = samples.lazy(), finals.lazy()
    summary = _summaries(frame, samples, finals, runs.lazy())
    if "conflicts" in records.columns:
        summary = summary.join(
            _conflicts(records.lazy(), runs.lazy(), options), on="rid", how="left"
        ).sort("first_row")
    if events:
        ev, out = pl.collect_all([frame, summary], engine=IN_MEMORY)
        return Judged(out, ev)
    return Judged(summary.collect(engine=IN_MEMORY), None)


# -- runs ---------------------------------------------------------------------------------------


def _run_table(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records numbered by run (``rid``), and one row per run in order of appearance.

    A run's tasks are its run record's, else the names its events carry, in order of first
    appearance; its metadata is its first run record's.
    """
    records = chunk.records.with_columns(rid=pl.struct(RUN).rank("dense").cast(pl.Int64))
    runs = records.group_by("rid").agg(
        pl.col("source").first(),
        pl.col("run").first(),
        first_row=pl.col("row").min(),
        bad=pl.col("bad").any(),
    )
    meta = (
        chunk.meta.sort("row")
        .group_by(RUN)
        .agg(pl.all().exclude("row", "bad").first(), bad_meta=pl.col("bad").any())
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
    if runs.select(from_meta.all()).item():  # the usual case: every run has its run record
        return records, runs.rename({"meta_tasks": "tasks"})
    seen = (
        records.lazy()
        .filter(pl.col("kind") == KIND_EVENT)
        .select("rid", name=pl.col("tasks"))
        .explode("name")
        .select("rid", name=pl.col("name").struct.field("name"))
        .drop_nulls("name")
        .group_by("rid")
        .agg(seen=pl.col("name").unique(maintain_order=True))
        .collect(engine=IN_MEMORY)
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


def _pairs(runs: pl.DataFrame, options: Options) -> pl.DataFrame:
    """Each run's named pair (``pair_a``/``pair_b``), or the task ``--pair`` names and it lacks.

    Two tasks: the documented pair (pointer/type, else the first two) unless ``--pair`` says
    otherwise; three or more: ``--pair`` if given, else none (messages name the extremes), or
    with ``--original`` the original's pair (pointer/type, else the first two), which alone is
    judged.
    """
    a, b, missing = [], [], []
    for tasks in runs.get_column("tasks").to_list():
        tasks = tasks or []
        pair, absent = None, None
        if options.pair is not None:
            absent = next((t for t in options.pair if t not in tasks), None)
            pair = None if absent is not None else options.pair
        elif len(tasks) == 2 or (options.original and len(tasks) > 2):
            pair = classify.default_pair(tasks, any_count=options.original)
        a.append(pair[0] if pair else None)
        b.append(pair[1] if pair else None)
        missing.append(absent)
    return runs.with_columns(
        pl.Series("pair_a", a, dtype=pl.String),
        pl.Series("pair_b", b, dtype=pl.String),
        pl.Series("missing_task", missing, dtype=pl.String),
        n_tasks=pl.col("tasks").list.len().cast(pl.Int64),
        unweighted=pl.lit(options.unweighted),
        original=pl.lit(options.original),
    )


# -- runs' summaries ----------------------------------------------------------------------------


def _scaled(values: pl.Expr, statistic) -> pl.Expr:
    """``statistic(values)`` taken on the values scaled by a power of two near their largest:
    norms near the ends of the float range (1e300, 1e-200) would overflow or underflow a sum or
    a square. The exponent stays within +-1021, where the power and its inverse are both normal
    numbers (Polars divides by multiplying with the inverse), so the scaling changes no digit."""
    exponent = values.abs().max().log(2).floor().clip(-1021, 1021).fill_null(0)
    return statistic(values * pl.lit(2.0).pow(-exponent)) * pl.lit(2.0).pow(exponent)


def _summaries(
    events: pl.LazyFrame, samples: pl.LazyFrame, finals: pl.LazyFrame, runs: pl.LazyFrame
) -> pl.LazyFrame:
    """One row per run: the numbers of the report's summary and of a batch row, aggregated
    from its events and, apart, from its balance samples."""
    judged = pl.col("window_spread").is_not_null()
    paired = pl.col("pair_a").is_not_null()
    return (
        runs.join(_of_events(events), on="rid", how="left", maintain_order="left")
        .join(_of_samples(samples), on="rid", how="left", maintain_order="left")
        .join(finals, on="rid", how="left", maintain_order="left")
        .with_columns(
            window_num=pl.when(judged).then(
                pl.when(paired).then("pair_a").otherwise("_final_dominant")
            ),
            window_den=pl.when(judged).then(
                pl.when(paired).then("pair_b").otherwise("_final_starved")
            ),
            dominant=pl.when(judged).then("_final_dominant"),
            starved=pl.when(judged).then("_final_starved"),
            window_names=pl.when(judged).then("_final_names"),
            window_logs=pl.when(judged).then("_final_logs"),
            window_weights=pl.col("_final_weights"),
            window_weight_names=pl.col("_final_names"),
            **{
                f"first_{what}": pl.when(pl.col(f"_{what}_row").is_not_null()).then(
                    label(pl.col(f"_{what}_epoch"), pl.col(f"_{what}_step"), pl.col("by_steps"))
                )
                for what in ("imbalance", "collapse")
            },
        )
        .drop(cs.starts_with("_"))  # what the finals and first findings were made from
        .with_columns(
            pl.col(
                "n_events", "n_stats", "n_nonfinite", "n_balance", "n_undefined", "n_defined"
            ).fill_null(0),
            worst_band=pl.when(pl.col("worst_band") == RatioBand.UNDEFINED.value)
            .then(pl.lit(RatioBand.UNDEFINED.value))
            .otherwise("worst_band"),
            worst_spread=pl.when(pl.col("worst_band") == RatioBand.UNDEFINED.value)
            .then(None)
            .otherwise("worst_spread"),
        )
        .sort("first_row")
    )


def _worst(value: pl.Expr, severity: pl.Expr) -> pl.Expr:
    """``value`` where ``severity`` is first at its largest (null if it never is): found by
    position, a filter of every value costing several times more."""
    return value.get(severity.arg_max(), null_on_oob=True)


def _first(condition: pl.Expr, column: str) -> pl.Expr:
    return pl.col(column).filter(condition.fill_null(False)).first()


def _of_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per run, of its events: counts, the statistics' summary, the order checks."""
    mean, maxn = pl.col("mean_norm"), pl.col("max_norm")
    finite = mean.is_finite() & maxn.is_finite()
    ranked = events.with_columns(
        _norm_severity=exprs.norm_severity(pl.col("norm_band")),
        # window expressions, made once here rather than in each aggregation that reads them
        _back=_back(),
        _same=_same(),
    )
    return (
        ranked.group_by("rid")
        .agg(
            n_events=pl.len(),
            last_epoch=pl.col("epoch").max(),
            n_stats=mean.is_not_null().sum(),
            n_nonfinite=(mean.is_not_null() & ~finite).sum(),
            mean_norm=_scaled(mean.filter(finite), lambda x: x.mean()),
            mean_norm_std=_scaled(mean.filter(finite), lambda x: x.std(ddof=0)),
            max_norm_mean=_scaled(maxn.filter(finite), lambda x: x.mean()),
            max_norm_peak=maxn.filter(finite).max(),
            worst_norm_band=_worst(pl.col("norm_band"), pl.col("_norm_severity")),
            **_first_of(pl.col("_back"), "back"),
        )
        .join(_repeats(ranked), on="rid", how="left")
    )


def _of_samples(samples: pl.LazyFrame) -> pl.LazyFrame:
    """Per run, of its balance samples: counts, the worst band, the first imbalance and
    collapse, and the window judged last."""
    defined, judged = pl.col("defined"), pl.col("window_spread").is_not_null()
    band = (
        pl.when(~defined)
        .then(pl.lit(RatioBand.UNDEFINED.value))
        .when(judged)
        .then(pl.col("window_band"))
    )
    ranked = samples.with_columns(_judged=band).with_columns(
        _judged_severity=exprs.ratio_severity(pl.col("_judged"))
    )
    collapsed = pl.col("verdict").is_in(
        [Collapse.NUMERATOR_DOMINATES.value, Collapse.DENOMINATOR_DOMINATES.value]
    )

    def final(column: str) -> pl.Expr:
        return pl.col(column).filter(judged).last()

    return ranked.group_by("rid").agg(
        n_balance=pl.len(),
        n_undefined=(~defined).sum(),
        n_defined=defined.sum(),
        last_sample_defined=defined.last(),
        worst_band=_worst(pl.col("_judged"), pl.col("_judged_severity")),
        worst_spread=_worst(pl.col("window_spread"), pl.col("_judged_severity")),
        # labelled once per run, not once per event
        **{f"_imbalance_{c}": _first(pl.col("imbalance"), c) for c in ("row", "epoch", "step")},
        **{f"_collapse_{c}": _first(collapsed, c) for c in ("row", "epoch", "step")},
        window_ratio=final("window_ratio"),
        window_spread=final("window_spread"),
        window_log_spread=final("window_log_spread"),
        final_band=final("window_band"),
        verdict=final("verdict"),
        pair_verdict=final("pair_verdict"),
    )


def _first_of(condition: pl.Expr, name: str) -> dict[str, pl.Expr]:
    """How many events meet ``condition``, and where the first one is."""
    return {
        f"n_{name}": condition.sum(),
        **{f"{name}_{c}": pl.col(c).filter(condition).first() for c in ("row", "epoch", "step")},
    }


def _back() -> pl.Expr:
    """An event earlier than the one before it in its run (epoch, then step, going back)."""
    epoch, step = pl.col("epoch"), pl.col("step")
    prev_epoch, prev_step = epoch.shift(1).over("rid"), step.shift(1).over("rid")
    same = epoch.eq_missing(prev_epoch)
    return ((epoch < prev_epoch) | (same & (step < prev_step))).fill_null(False)


def _same() -> pl.Expr:
    """An event with the epoch and step of the one before it in its run."""
    epoch, step = pl.col("epoch"), pl.col("step")
    return epoch.eq_missing(epoch.shift(1).over("rid")) & step.eq_missing(step.shift(1).over("rid"))


def _repeats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per run with any, the events repeating an epoch and step already logged in it, and where
    the first one is.

    Only a run that may repeat is looked at: one with an event going back, an event with the
    epoch and step of the one before, or a missing epoch or step. In any other run, epochs and
    steps rise, so no two of its events share them (almost every run: hashing every event
    cost a batch a tenth of its analysis). There, a hash of (run, epoch, step) finds the few
    events that may repeat, which are then compared by value: comparing every event's values
    costs four times the hash. A balance sample taken apart from its step
    (``rec.sample_balance``) shares the step's number without repeating it.
    """
    epoch, step = pl.col("epoch"), pl.col("step")
    may = (
        events.group_by("rid")
        .agg(may=(pl.col("_back") | pl.col("_same") | epoch.is_null() | step.is_null()).any())
        .filter("may")
    )
    key = pl.struct("rid", "epoch", "step", "sampled")
    known = epoch.is_not_null() | step.is_not_null()
    return (
        events.join(may, on="rid", how="semi", maintain_order="left")
        .filter(key.hash().is_duplicated())
        .filter(known & ~key.is_first_distinct())
        .group_by("rid")
        .agg(
            n_repeat=pl.len(),
            **{f"repeat_{c}": pl.col(c).first() for c in ("row", "epoch", "step")},
        )
    )


def _conflicts(records: pl.LazyFrame, runs: pl.LazyFrame, options: Options) -> pl.LazyFrame:
    """Per run, every pair of its tasks with finite cosines, in task order, over its last
    ``window`` of them: mean, share below zero, count (the mean and share from
    ``min_samples`` on), and the last cosine; :func:`conflict.sustained_conflict` judges."""
    tasks = (
        runs.select("rid", name=pl.col("tasks"))
        .with_columns(t=pl.int_ranges(pl.col("name").list.len()))
        .explode("name", "t")
    )
    cos = pl.col("recent")
    enough = cos.list.len() >= min(options.min_samples, options.window)
    return (
        records.filter(pl.col("kind") == KIND_EVENT)
        .select("rid", "row", "conflicts")
        .explode("conflicts")
        .drop_nulls("conflicts")
        .unnest("conflicts")
        .join(tasks.rename({"name": "a", "t": "ta"}), on=["rid", "a"], how="inner")
        .join(tasks.rename({"name": "b", "t": "tb"}), on=["rid", "b"], how="inner")
        .filter(pl.col("cosine").is_finite())
        .sort("row")
        .group_by("rid", "a", "b", "ta", "tb")
        .agg(last=pl.col("cosine").last(), recent=pl.col("cosine").tail(options.window))
        .sort("rid", "ta", "tb")
        .group_by("rid", maintain_order=True)
        .agg(
            conflicts=pl.struct(
                "a",
                "b",
                mean=pl.when(enough).then(cos.list.mean()),
                negative=pl.when(enough).then(
                    cos.list.eval((pl.element() < 0).cast(pl.Float64)).list.mean()
                ),
                n=cos.list.len(),
                last="last",
            )
        )
    )
