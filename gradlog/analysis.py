"""From a loaded log to :class:`~gradlog.summary.Report` objects.

Polars does the column work (per-task norms, ratios, the rolling window, the summary
statistics) in one pass per run; :mod:`gradlog.classify` judges each number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from gradlog import classify
from gradlog.classify import Collapse, NormBand, RatioBand
from gradlog.errors import GradlogError
from gradlog.readers import LoadedLog
from gradlog.schema import KIND_EVENT, KIND_RUN
from gradlog.summary import (
    BalanceView,
    EventView,
    Recommendation,
    Report,
    RunReport,
    StatsView,
    Summary,
)


@dataclass(frozen=True)
class Options:
    """How to judge a log: the collapse window, and which tasks form the ratio."""

    window: int = classify.DEFAULT_WINDOW
    min_samples: int = classify.DEFAULT_MIN_SAMPLES
    pair: tuple[str, str] | None = None  # default: classify.default_pair(tasks)
    run: str | None = None  # only this run id


def analyse(log: LoadedLog, options: Options = Options()) -> Report:
    """Analyse every run of ``log`` (or ``options.run``), in order of first appearance."""
    if options.window < 1 or options.min_samples < 1:
        raise GradlogError("--window and --min-samples must be at least 1")
    frame = log.frame
    run_ids = frame.get_column("run").unique(maintain_order=True).to_list()
    if options.run is not None:
        if options.run not in run_ids:
            raise GradlogError(f"{log.path}: no run '{options.run}' (runs: {', '.join(run_ids)})")
        run_ids = [options.run]
    runs = tuple(
        _analyse_run(frame.filter(pl.col("run") == rid), rid, log.path, options) for rid in run_ids
    )
    return Report(log.path, runs, tuple(log.notes))


def _run_meta(rows: pl.DataFrame) -> dict:
    meta_rows = rows.filter(pl.col("kind") == KIND_RUN)
    if meta_rows.height == 0:
        return {}
    return meta_rows.get_column("meta")[0] or {}


def _tasks_of(meta: dict, events: pl.DataFrame) -> list[str]:
    if meta.get("tasks"):
        return list(meta["tasks"])
    seen = (
        events.select(pl.col("tasks").explode().struct.field("name"))
        .drop_nulls()
        .unique(maintain_order=True)
        .to_series()
        .to_list()
    )
    return seen


def _analyse_run(rows: pl.DataFrame, run_id: str, path: str, options: Options) -> RunReport:
    meta = _run_meta(rows)
    events = rows.filter(pl.col("kind") == KIND_EVENT)
    tasks = _tasks_of(meta, events)
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

    def task_field(task: str, name: str) -> pl.Expr:
        return (
            pl.col("tasks")
            .list.eval(
                pl.element().filter(pl.element().struct.field("name") == task).struct.field(name)
            )
            .list.first()
        )

    table = events.select(
        "epoch",
        "step",
        "mean_norm",
        "max_norm",
        "total_norm",
        "n_vanishing",
        "n_exploding",
        has_balance=pl.col("tasks").list.len().fill_null(0) > 0,
        **{col: task_field(t, "grad_norm") for t, col in norm_cols.items()},
        **{col: task_field(t, "weight") for t, col in weight_cols.items()},
    )
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

    event_views = []
    ratios_in_window: list[float] = []
    for row in table.iter_rows(named=True):
        label = _label(row["epoch"], row["step"], by_steps)
        stats = None
        if row["mean_norm"] is not None:
            stats = StatsView(
                row["mean_norm"],
                row["max_norm"] if row["max_norm"] is not None else math.nan,
                row["total_norm"],
                row["n_vanishing"],
                row["n_exploding"],
                classify.norm_band(row["mean_norm"]),
            )
        balance = None
        if row["has_balance"] and pair is not None:
            norms = {t: row[norm_cols[t]] for t in tasks}
            r = row["ratio"]
            if r is not None:
                ratios_in_window.append(r)
            window_mean = row["window_mean"] if r is not None else _last_mean(event_views)
            balance = BalanceView(
                norms=norms,
                ratio=r,
                band=classify.ratio_band(r),
                imbalance=r is not None and classify.outside_healthy_range(r),
                window_mean=window_mean,
                verdict=classify.collapse_check(window_mean),
                shares=_shares(norms) if len(tasks) > 2 else None,
            )
        event_views.append(EventView(row["epoch"], row["step"], label, stats, balance))

    summary = _summarise(table, event_views, tasks)
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
        events=tuple(event_views),
        summary=summary,
        recommendation=recommendation,
    )


def _label(epoch: int | None, step: int | None, by_steps: bool) -> str:
    if (by_steps or epoch is None) and step is not None:
        return f"Step {step}"
    if epoch is not None:
        return f"Epoch {epoch}"
    return "Event"


def _last_mean(views: list[EventView]) -> float | None:
    for view in reversed(views):
        if view.balance is not None:
            return view.balance.window_mean
    return None


def _shares(norms: dict[str, float | None]) -> dict[str, float] | None:
    values = list(norms.values())
    if any(v is None or not math.isfinite(v) or v < 0 for v in values):
        return None
    total = math.fsum(values)
    if total == 0:
        return None
    return {t: v / total for t, v in norms.items()}


def _summarise(table: pl.DataFrame, views: list[EventView], tasks: list[str]) -> Summary:
    finite = pl.col("mean_norm").is_finite() & pl.col("max_norm").is_finite()
    stats = (
        table.filter(pl.col("mean_norm").is_not_null())
        .select(
            n=pl.len(),
            n_nonfinite=(~finite).sum(),
            mean=pl.col("mean_norm").filter(finite).mean(),
            std=pl.col("mean_norm").filter(finite).std(ddof=0),
            max_mean=pl.col("max_norm").filter(finite).mean(),
            peak=pl.col("max_norm").filter(finite).max(),
        )
        .row(0, named=True)
    )

    balances = [v for v in views if v.balance is not None]
    final = balances[-1].balance if balances else None
    worst_band: RatioBand | None = None
    worst_ratio = None
    first_imbalance = first_collapse = None
    worst_norm: NormBand | None = None
    for view in views:
        if view.stats is not None:
            if (
                worst_norm is None
                or classify.NORM_SEVERITY[view.stats.band] > classify.NORM_SEVERITY[worst_norm]
            ):
                worst_norm = view.stats.band
        b = view.balance
        if b is None:
            continue
        if b.imbalance and first_imbalance is None:
            first_imbalance = view.label
        if (
            b.verdict in (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES)
            and first_collapse is None
        ):
            first_collapse = view.label
        band = (
            RatioBand.UNDEFINED
            if b.ratio is None
            else (classify.ratio_band(b.window_mean) if b.window_mean is not None else None)
        )
        if band is not None and (
            worst_band is None
            or classify.RATIO_SEVERITY[band] > classify.RATIO_SEVERITY[worst_band]
        ):
            worst_band, worst_ratio = band, (b.window_mean if b.ratio is not None else None)
    final_ratio = final.window_mean if final else None
    final_shares = None
    if len(tasks) > 2:
        window = [v.balance.shares for v in balances[-10:] if v.balance.shares]
        if window:
            final_shares = {t: math.fsum(s[t] for s in window) / len(window) for t in tasks}
    return Summary(
        n_events=len(views),
        n_stats=stats["n"],
        n_balance=len(balances),
        mean_norm_mean=stats["mean"],
        mean_norm_std=stats["std"],
        max_norm_mean=stats["max_mean"],
        max_norm_peak=stats["peak"],
        n_nonfinite=stats["n_nonfinite"] or 0,
        n_undefined=sum(1 for v in balances if v.balance.ratio is None),
        final_ratio=final_ratio,
        final_verdict=classify.collapse_check(final_ratio),
        final_band=classify.ratio_band(final_ratio) if final_ratio is not None else None,
        worst_ratio=worst_ratio,
        worst_band=worst_band,
        worst_norm_band=worst_norm,
        first_imbalance=first_imbalance,
        first_collapse=first_collapse,
        final_shares=final_shares,
    )


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
    window = table.filter(pl.col("ratio").is_not_null()).tail(options.window)
    # Each task's norm relative to the ratio's denominator, averaged over the window: for the
    # numerator this is exactly the window mean ratio the report prints.
    relative = window.select(
        **{t: (pl.col(norm_cols[t]) / pl.col(norm_cols[den])).mean() for t in tasks}
    ).row(0, named=True)
    last = window.tail(1).row(0, named=True)
    current = {t: last[weight_cols[t]] for t in tasks}
    assumed = False
    if any(w is None for w in current.values()):
        meta_weights = {w["name"]: w["weight"] for w in (meta.get("weights") or []) if w}
        current = {t: current[t] if current[t] is not None else meta_weights.get(t) for t in tasks}
    if any(w is None for w in current.values()):
        current = {t: 1.0 if w is None else w for t, w in current.items()}
        assumed = True
    clean = {t: v for t, v in relative.items() if v is not None}
    weights = classify.balancing_weights(clean, current) if len(clean) == len(tasks) else None
    dominant = max(clean, key=clean.get) if clean else None
    starved = min(clean, key=clean.get) if clean else None
    return Recommendation(
        ratio_band, norm_band, dominant, starved, current, weights, assumed, _flags(weights, tasks)
    )


def _flags(weights: dict[str, float] | None, tasks: list[str]) -> str | None:
    if weights is None:
        return None
    if set(tasks) == {"pointer", "type"}:
        # The original's flags: alpha weighs the type task, beta the pointer task.
        return f"--loss-alpha {_num(weights['type'])} --loss-beta {_num(weights['pointer'])}"
    return " ".join(f"{t}={_num(w)}" for t, w in weights.items())


def _num(value: float) -> str:
    return f"{value:.4g}"
