"""From a loaded log to :class:`~gradlog.summary.Report` objects.

Polars does the column work (per-task norms, ratios, the rolling window, the summary
statistics) in one pass per run; :mod:`gradlog.classify` judges each number.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import polars as pl

from gradlog import classify, conflict, exprs
from gradlog.classify import Collapse, NormBand, RatioBand
from gradlog.errors import GradlogError, LogFormatError
from gradlog.readers import LoadedLog
from gradlog.schema import KIND_EVENT, KIND_RUN, MAX_TASKS
from gradlog.summary import Events, Recommendation, Report, RunReport, Summary

MAX_RUNS = 10_000  # runs in one report (gradlog batch summarises any number)


@dataclass(frozen=True)
class Options:
    """How to judge a log: the collapse window, and which tasks form the ratio."""

    window: int = classify.DEFAULT_WINDOW
    min_samples: int = classify.DEFAULT_MIN_SAMPLES
    pair: tuple[str, str] | None = None  # default: classify.default_pair(tasks)
    run: str | None = None  # only this run id
    strict: bool = False  # refuse what would be reported with a note (events out of order)


def analyse(log: LoadedLog, options: Options = Options()) -> Report:
    """Analyse every run of ``log`` (or ``options.run``), in order of first appearance."""
    if options.window < 1 or options.min_samples < 1:
        raise GradlogError("--window and --min-samples must be at least 1")
    frame = log.frame.with_row_index("_row")
    run_ids = frame.get_column("run").unique(maintain_order=True).to_list()
    if options.run is not None:
        if options.run not in run_ids:
            shown = ", ".join(run_ids[:20]) + (
                f" and {len(run_ids) - 20} more" if len(run_ids) > 20 else ""
            )
            raise GradlogError(f"{log.path}: no run '{options.run}' (runs: {shown})")
        run_ids = [options.run]
    elif len(run_ids) > MAX_RUNS:  # a bound on the work: a report per run
        raise GradlogError(
            f"{log.path}: {len(run_ids):,} runs in one file (a report covers at most "
            f"{MAX_RUNS:,}; pick one with --run, or summarise them with gradlog batch)"
        )
    if len(run_ids) == 1:
        by_run = {(run_ids[0],): frame.filter(pl.col("run") == run_ids[0])}
    else:
        by_run = frame.partition_by("run", maintain_order=True, as_dict=True)  # one pass
    runs = []
    notes = list(log.notes)
    for rid in run_ids:
        rows = by_run[(rid,)]
        notes += _order_notes(rows, rid, log, options.strict)
        runs.append(_analyse_run(rows.drop("_row"), rid, log.path, options))
    return Report(log.path, tuple(runs), tuple(notes))


def _order_notes(rows: pl.DataFrame, run_id: str, log: LoadedLog, strict: bool) -> list[str]:
    """Events that go back in time, or repeat an epoch/step: reported in file order, noted.

    A run resumed from a checkpoint under the same id, or two trainings writing one run id,
    leave such logs. Every event is reported where it stands in the file (the window runs in
    file order too); the note says how many, and where the first one is.
    """
    epoch, step = pl.col("epoch"), pl.col("step")
    same_epoch = epoch.eq_missing(epoch.shift(1))
    back = ((epoch < epoch.shift(1)) | (same_epoch & (step < step.shift(1)))).fill_null(False)
    known = epoch.is_not_null() | step.is_not_null()
    events = rows.filter(pl.col("kind") == KIND_EVENT)
    n_back = events.select(back.sum()).item()
    # In order, a repeat can only follow its twin; otherwise look at every pair (rarer, slower).
    if n_back:
        repeat = known & ~pl.struct(epoch, step).is_first_distinct()
    else:
        repeat = known & same_epoch & step.eq_missing(step.shift(1))
    found = events.select(
        n_back=back.sum(),
        n_repeat=repeat.sum(),
        back_row=pl.arg_where(back).first(),
        repeat_row=pl.arg_where(repeat).first(),
    ).row(0, named=True)
    notes = []
    for kind, what in (
        ("back", "earlier than the event before (epoch or step going back)"),
        ("repeat", "repeating an epoch and step already logged"),
    ):
        n = found[f"n_{kind}"]
        if not n:
            continue
        i = found[f"{kind}_row"]
        first = events.row(i, named=True)
        when = ", ".join(f"{k} {first[k]}" for k in ("epoch", "step") if first[k] is not None)
        where = log.where(first["_row"])
        text = (
            f"run {run_id}: {n} event{'s' if n > 1 else ''} {what} (the first: {when}, "
            f"at {where or 'record ' + str(first['_row'] + 1)}); all are reported in file order"
        )
        if strict:
            raise LogFormatError(f"{text}; refused with --strict", log.path)
        notes.append(f"{log.path}: {text}")
    return notes


def _run_meta(rows: pl.DataFrame) -> dict:
    meta_rows = rows.filter(pl.col("kind") == KIND_RUN)
    if meta_rows.height == 0:
        return {}
    return meta_rows.get_column("meta")[0] or {}


def _tasks_of(meta: dict, events: pl.DataFrame, run_id: str) -> list[str]:
    if meta.get("tasks"):
        return list(meta["tasks"])
    seen = (
        events.select(pl.col("tasks").explode().struct.field("name"))
        .drop_nulls()
        .unique(maintain_order=True)
        .head(MAX_TASKS + 1)
        .to_series()
        .to_list()
    )
    if len(seen) > MAX_TASKS:  # a bound on the work (one column per task), as in the reader
        raise GradlogError(f"run {run_id}: more than {MAX_TASKS:,} distinct task names")
    return seen


def _task_columns(
    events: pl.DataFrame, tasks: list[str], norm_cols: dict[str, str], weight_cols: dict[str, str]
) -> list[pl.Series]:
    """Each task's gradient norm and weight per event, as columns (null where not sampled).

    Many tasks are spread out with one pivot of the exploded samples, so that the work grows
    with the number of samples and not with its square.
    """
    if len(tasks) <= 8:

        def task_field(task: str, name: str) -> pl.Expr:
            return (
                pl.col("tasks")
                .list.eval(
                    pl.element()
                    .filter(pl.element().struct.field("name") == task)
                    .struct.field(name)
                )
                .list.first()
            )

        return events.select(
            **{col: task_field(t, "grad_norm") for t, col in norm_cols.items()},
            **{col: task_field(t, "weight") for t, col in weight_cols.items()},
        ).get_columns()
    long = (
        events.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "tasks")
        .explode("tasks")
        .select(
            "_i",
            name=pl.col("tasks").struct.field("name"),
            grad_norm=pl.col("tasks").struct.field("grad_norm"),
            weight=pl.col("tasks").struct.field("weight"),
        )
        .filter(pl.col("name").is_in(tasks))
        .unique(["_i", "name"], keep="first", maintain_order=True)
    )
    index = pl.DataFrame({"_i": pl.int_range(events.height, dtype=pl.UInt32, eager=True)})
    out = []
    for value, cols in (("grad_norm", norm_cols), ("weight", weight_cols)):
        wide = long.pivot(on="name", index="_i", values=value) if long.height else index
        wide = index.join(wide, on="_i", how="left", maintain_order="left")
        for t in tasks:
            column = wide.get_column(t) if t in wide.columns else pl.Series(dtype=pl.Float64)
            out.append(
                column.cast(pl.Float64)
                .extend_constant(None, events.height - len(column))
                .alias(cols[t])
            )
    return out


def _analyse_run(rows: pl.DataFrame, run_id: str, path: str, options: Options) -> RunReport:
    meta = _run_meta(rows)
    events = rows.filter(pl.col("kind") == KIND_EVENT)
    tasks = _tasks_of(meta, events, run_id)
    pair = options.pair or classify.default_pair(tasks)
    if options.pair is not None:
        for task in options.pair:
            if task not in tasks:
                raise GradlogError(
                    f"--pair: no task '{task}' in run {run_id} of {path} (tasks: {', '.join(tasks) or 'none'})"
                )
    by_steps = bool(meta.get("log_every_steps") or meta.get("balance_every_steps"))

    norm_cols = {t: f"norm:{t}" for t in tasks}
    weight_cols = {t: f"weight:{t}" for t in tasks}

    table = events.select(
        "epoch",
        "step",
        "mean_norm",
        "max_norm",
        "total_norm",
        "n_vanishing",
        "n_exploding",
        has_balance=pl.col("tasks").list.len().fill_null(0) > 0,
    ).hstack(_task_columns(events, tasks, norm_cols, weight_cols))
    if pair is not None:
        num, den = (pl.col(norm_cols[t]) for t in pair)
        defined = num.is_finite() & den.is_finite() & (den != 0) & (num >= 0) & (den > 0)
        table = table.with_columns(
            ratio=pl.when(pl.col("has_balance") & defined).then(num / den),
        )
        # The window runs over the defined samples only; undefined ones are reported apart.
        samples = table.with_row_index("i").filter(pl.col("ratio").is_not_null())
        samples = samples.with_columns(
            window_mean=pl.col("ratio").rolling_mean(
                options.window, min_samples=min(options.min_samples, options.window)
            )
        ).select("i", "window_mean")
        table = (
            table.with_row_index("i")
            .join(samples, on="i", how="left")
            .sort("i")
            .with_columns(pl.col("window_mean").forward_fill())
            .drop("i")
        )

    events = _events(table, tasks, pair, norm_cols, by_steps)
    summary = _summarise(table, events, tasks, options.window)
    summary = dataclasses.replace(
        summary,
        conflicts=conflict.pair_conflicts(
            rows.filter(pl.col("kind") == KIND_EVENT), tasks, options.window, options.min_samples
        ),
        task_balance=conflict.task_balance(table, tasks, norm_cols, options.window),
    )
    recommendation = _recommend(table, summary, tasks, pair, norm_cols, weight_cols, meta, options)
    tags = {
        t["key"]: t["value"] for t in (meta.get("tags") or []) if t and t.get("key") is not None
    }
    return RunReport(
        run_id=run_id,
        tasks=tuple(tasks),
        pair=pair,
        log_every=meta.get("log_every"),
        log_every_steps=meta.get("log_every_steps"),
        started_at=meta.get("started_at"),
        tags=tags,
        window=options.window,
        min_samples=options.min_samples,
        events=events,
        summary=summary,
        recommendation=recommendation,
    )


def _events(
    table: pl.DataFrame,
    tasks: list[str],
    pair: tuple[str, str] | None,
    norm_cols: dict[str, str],
    by_steps: bool,
) -> Events:
    """The per-event columns of the report, computed by Polars with the documented rules.

    :mod:`gradlog.exprs` states :mod:`gradlog.classify`'s rules as expressions (a test checks
    both agree on every boundary), so a million events cost no Python loop here; the columns
    become Python lists only if a renderer asks for them (:class:`ColumnarEvents`).
    """
    epoch, step, mean = pl.col("epoch"), pl.col("step"), pl.col("mean_norm")
    sampled = pl.col("has_balance") if pair is not None else pl.lit(False)
    ratio = pl.col("ratio") if pair is not None else pl.lit(None, dtype=pl.Float64)
    window_mean = pl.col("window_mean") if pair is not None else pl.lit(None, dtype=pl.Float64)
    label = (
        pl.when((pl.lit(by_steps) | epoch.is_null()) & step.is_not_null())
        .then(pl.format("Step {}", step))
        .when(epoch.is_not_null())
        .then(pl.format("Epoch {}", epoch))
        .otherwise(pl.lit("Event"))
    )
    first, share_columns = _share_exprs(tasks, norm_cols, sampled)
    columns = table.with_columns(first).select(
        "epoch",
        "step",
        label.alias("label"),
        "mean_norm",
        pl.when(mean.is_not_null()).then(pl.col("max_norm").fill_null(math.nan)).alias("max_norm"),
        "total_norm",
        "n_vanishing",
        "n_exploding",
        exprs.norm_band(mean).alias("norm_band"),
        sampled.alias("has_balance"),
        *[pl.col(norm_cols[t]) for t in tasks],
        ratio.alias("ratio"),
        pl.when(sampled).then(exprs.ratio_band(ratio)).alias("ratio_band"),
        exprs.outside_healthy_range(ratio).fill_null(False).alias("imbalance"),
        pl.when(sampled).then(window_mean).alias("window_mean"),
        pl.when(sampled).then(exprs.collapse_check(window_mean)).alias("verdict"),
        *share_columns,
    )
    return ColumnarEvents(columns, tuple(tasks), norm_cols, shares=len(tasks) > 2)


def _share_exprs(
    tasks: list[str], norm_cols: dict[str, str], sampled: pl.Expr
) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """:func:`classify.shares` of each balance sample (three or more tasks).

    The total is summed with Neumaier's compensation, which for a few non-negative norms gives
    the correctly rounded sum that ``math.fsum`` gives (beyond 16 tasks, a plain sum: a chain
    of thousands of expressions would be too deep). Total and validity are computed once, as
    columns, so that the work grows with the number of tasks, not with its square.
    """
    if len(tasks) <= 2:
        return [], []
    norms = [pl.col(norm_cols[t]) for t in tasks]
    if len(tasks) > 16:
        total = pl.sum_horizontal(norms)
    else:
        total, carry = norms[0], pl.lit(0.0)
        for x in norms[1:]:
            t = total + x
            carry = carry + pl.when(total.abs() >= x.abs()).then((total - t) + x).otherwise(
                (x - t) + total
            )
            total = t
        total = total + carry
    valid = sampled & pl.all_horizontal(x.is_finite() & (x >= 0) for x in norms) & (total > 0)
    at_once = pl.struct(total.alias("total"), valid.alias("valid"))
    return [at_once.alias("_shares")], [
        pl.when(pl.col("_shares").struct.field("valid"))
        .then(x / pl.col("_shares").struct.field("total"))
        .alias(f"share:{t}")
        for t, x in zip(tasks, norms)
    ]


_NORM_BANDS = {b.value: b for b in NormBand}
_RATIO_BANDS = {b.value: b for b in RatioBand}
_VERDICTS = {v.value: v for v in Collapse}


class ColumnarEvents(Events):
    """:class:`~gradlog.summary.Events` whose columns stay in one Polars frame.

    Every field reads as the documented Python list (computed once, when first asked for), so
    renderers that loop in Python see plain :class:`Events`; the text renderer reads
    :attr:`frame` directly and never builds a million Python objects.
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        tasks: tuple[str, ...],
        norm_cols: dict[str, str],
        *,
        shares: bool,
    ) -> None:
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "norm_cols", norm_cols)
        object.__setattr__(self, "_has_shares", shares)
        object.__setattr__(self, "_lists", {})

    def __len__(self) -> int:
        return self.frame.height

    def _list(self, column: str, lookup: dict | None = None) -> list:
        lists = self._lists
        if column not in lists:
            values = self.frame.get_column(column).to_list()
            if lookup is not None:
                values = [None if v is None else lookup[v] for v in values]
            lists[column] = values
        return lists[column]

    epoch = property(lambda self: self._list("epoch"))
    step = property(lambda self: self._list("step"))
    label = property(lambda self: self._list("label"))
    mean_norm = property(lambda self: self._list("mean_norm"))
    max_norm = property(lambda self: self._list("max_norm"))
    total_norm = property(lambda self: self._list("total_norm"))
    n_vanishing = property(lambda self: self._list("n_vanishing"))
    n_exploding = property(lambda self: self._list("n_exploding"))
    norm_band = property(lambda self: self._list("norm_band", _NORM_BANDS))
    has_balance = property(lambda self: self._list("has_balance"))
    norms = property(lambda self: {t: self._list(self.norm_cols[t]) for t in self.tasks})
    ratio = property(lambda self: self._list("ratio"))
    ratio_band = property(lambda self: self._list("ratio_band", _RATIO_BANDS))
    imbalance = property(lambda self: self._list("imbalance"))
    window_mean = property(lambda self: self._list("window_mean"))
    verdict = property(lambda self: self._list("verdict", _VERDICTS))
    shares = property(
        lambda self: {t: self._list(f"share:{t}") for t in self.tasks} if self._has_shares else None
    )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Events):
            return NotImplemented
        names = [f.name for f in dataclasses.fields(Events)]
        return all(getattr(self, n) == getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment] - mutable caches, as the dataclass's lists


def _summarise(
    table: pl.DataFrame, events: ColumnarEvents, tasks: list[str], window: int
) -> Summary:
    finite = pl.col("mean_norm").is_finite() & pl.col("max_norm").is_finite()
    logged = table.filter(pl.col("mean_norm").is_not_null())
    # Norms near the ends of the float range (1e300, 1e-200) would overflow or underflow a sum
    # or a square: each column is scaled by a power of two first, which changes no digit.
    scale = _scale(logged, finite)
    mean_norm, max_norm = (
        pl.col("mean_norm") / scale["mean_norm"],
        pl.col("max_norm") / scale["max_norm"],
    )
    stats = logged.select(
        n=pl.len(),
        n_nonfinite=(~finite).sum(),
        mean=mean_norm.filter(finite).mean() * scale["mean_norm"],
        std=mean_norm.filter(finite).std(ddof=0) * scale["mean_norm"],
        max_mean=max_norm.filter(finite).mean() * scale["max_norm"],
        peak=pl.col("max_norm").filter(finite).max(),
    ).row(0, named=True)
    frame = events.frame
    sampled = pl.col("has_balance")
    # The run's balance finding: the worst band its window mean reached once judged, and an
    # undefined sample counts as collapse-level (the first sample of the worst band wins).
    judged = (
        pl.when(sampled & pl.col("ratio").is_null())
        .then(pl.lit(RatioBand.UNDEFINED.value))
        .when(sampled & pl.col("window_mean").is_not_null())
        .then(exprs.ratio_band(pl.col("window_mean")))
    )
    collapsed = (Collapse.NUMERATOR_DOMINATES.value, Collapse.DENOMINATOR_DOMINATES.value)

    def first(condition: pl.Expr, column: str) -> pl.Expr:
        return pl.col(column).filter(condition.fill_null(False)).first()

    def worst(value: pl.Expr, severity: pl.Expr) -> pl.Expr:
        """``value`` where ``severity`` is highest, the first such row (null: no severity)."""
        return value.filter((severity == severity.max()).fill_null(False)).first()

    # Each band and severity column once: string-valued when/then chains over a million
    # events cost a third of a second apiece.
    ranked = frame.with_columns(_judged=judged).with_columns(
        _judged_severity=exprs.ratio_severity(pl.col("_judged")),
        _norm_severity=exprs.norm_severity(pl.col("norm_band")),
    )
    found = ranked.select(
        n_balance=sampled.sum(),
        n_undefined=(sampled & pl.col("ratio").is_null()).sum(),
        final_ratio=pl.col("window_mean").filter(sampled).last(),
        worst_norm=worst(pl.col("norm_band"), pl.col("_norm_severity")),
        worst_band=worst(pl.col("_judged"), pl.col("_judged_severity")),
        worst_ratio=worst(pl.col("window_mean"), pl.col("_judged_severity")),
        first_imbalance=first(sampled & pl.col("imbalance"), "label"),
        first_collapse=first(sampled & pl.col("verdict").is_in(collapsed), "label"),
    ).row(0, named=True)
    worst_band = _RATIO_BANDS.get(found["worst_band"])
    final_ratio = found["final_ratio"]

    final_shares = None
    if events.shares is not None:
        share_cols = [f"share:{t}" for t in tasks]
        last = (
            frame.filter(
                sampled & pl.col("ratio").is_not_null() & pl.col(share_cols[0]).is_not_null()
            )
            .tail(window)
            .select(share_cols)
        )
        if last.height:
            final_shares = {
                t: math.fsum(last.get_column(f"share:{t}").to_list()) / last.height for t in tasks
            }
    return Summary(
        n_events=len(events),
        n_stats=stats["n"],
        n_balance=found["n_balance"],
        mean_norm_mean=stats["mean"],
        mean_norm_std=stats["std"],
        max_norm_mean=stats["max_mean"],
        max_norm_peak=stats["peak"],
        n_nonfinite=stats["n_nonfinite"] or 0,
        n_undefined=found["n_undefined"],
        final_ratio=final_ratio,
        final_verdict=classify.collapse_check(final_ratio),
        final_band=classify.ratio_band(final_ratio) if final_ratio is not None else None,
        worst_ratio=None if worst_band is RatioBand.UNDEFINED else found["worst_ratio"],
        worst_band=worst_band,
        worst_norm_band=_NORM_BANDS.get(found["worst_norm"]),
        first_imbalance=found["first_imbalance"],
        first_collapse=found["first_collapse"],
        final_shares=final_shares,
    )


def _scale(logged: pl.DataFrame, finite: pl.Expr) -> dict[str, float]:
    """A power of two near each norm column's largest value, to divide the column by."""
    out = {}
    for column in ("mean_norm", "max_norm"):
        largest = logged.select(pl.col(column).filter(finite).abs().max()).item()
        if not largest:  # no finite value, or all zero
            out[column] = 1.0
        else:
            # Kept within 2**+-1021 so that 1/scale is a normal number too: Polars divides by
            # multiplying with the reciprocal, and 1/2**-1026 is infinite.
            exponent = min(max(math.frexp(largest)[1] - 1, -1021), 1021)
            out[column] = math.ldexp(1.0, exponent)
    return out


def _recommend(
    table: pl.DataFrame,
    summary: Summary,
    tasks: list[str],
    pair: tuple[str, str] | None,
    norm_cols: dict[str, str],
    weight_cols: dict[str, str],
    meta: dict,
    options: Options,
) -> Recommendation:
    norm_band = (
        classify.norm_band(summary.mean_norm_mean) if summary.mean_norm_mean is not None else None
    )
    if summary.n_nonfinite:
        norm_band = NormBand.NONFINITE
    ratio_band = summary.final_band
    none = Recommendation(ratio_band, norm_band, None, None, None, None, False, None)
    if pair is None or ratio_band is None or ratio_band is RatioBand.HEALTHY:
        return none
    num, den = pair
    last_sample = table.filter(pl.col("has_balance")).tail(1)
    reason = classify.weights_withheld(
        norm_band is NormBand.NONFINITE, last_sample.get_column("ratio").is_null().any()
    )
    if reason is not None:
        final = summary.final_ratio if summary.final_ratio is not None else 1.0
        dominant, starved = (num, den) if final >= 1 else (den, num)
        return Recommendation(
            ratio_band, norm_band, dominant, starved, None, None, False, None, reason
        )
    window = table.filter(pl.col("ratio").is_not_null()).tail(options.window)
    # Each task's norm relative to the ratio's denominator, averaged over the window: for the
    # numerator this is exactly the window mean ratio the report prints.
    relative = window.select(
        **{t: (pl.col(norm_cols[t]) / pl.col(norm_cols[den])).mean() for t in tasks}
    ).row(0, named=True)
    last = window.tail(1).row(0, named=True)
    current, assumed = classify.current_weights(
        {t: last[weight_cols[t]] for t in tasks}, meta.get("weights"), tasks
    )
    clean = {t: v for t, v in relative.items() if v is not None}
    weights = classify.balancing_weights(clean, current) if len(clean) == len(tasks) else None
    dominant = max(clean, key=clean.get) if clean else None
    starved = min(clean, key=clean.get) if clean else None
    return Recommendation(
        ratio_band,
        norm_band,
        dominant,
        starved,
        current,
        weights,
        assumed,
        classify.weight_flags(weights, tasks),
    )
