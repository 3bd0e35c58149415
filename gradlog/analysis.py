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
from gradlog.summary import Events, Recommendation, Report, RunReport, Summary


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

    n = table.height
    col = {name: table.get_column(name).to_list() for name in table.columns}
    mean_norm = col["mean_norm"]
    has_balance = col["has_balance"] if pair is not None else [False] * n
    ratio = col["ratio"] if pair is not None else [None] * n
    # An undefined sample keeps the previous window mean (it is not part of the window).
    window_mean = [
        w if b else None for w, b in zip(col.get("window_mean", [None] * n), has_balance)
    ]
    norm_band = classify.norm_band
    ratio_band = classify.ratio_band
    outside = classify.outside_healthy_range
    check = classify.collapse_check
    events = Events(
        epoch=col["epoch"],
        step=col["step"],
        label=[_label(e, s, by_steps) for e, s in zip(col["epoch"], col["step"])],
        mean_norm=mean_norm,
        max_norm=[
            (math.nan if x is None else x) if m is not None else None
            for m, x in zip(mean_norm, col["max_norm"])
        ],
        total_norm=col["total_norm"],
        n_vanishing=col["n_vanishing"],
        n_exploding=col["n_exploding"],
        norm_band=[None if m is None else norm_band(m) for m in mean_norm],
        has_balance=has_balance,
        norms={t: col[c] for t, c in norm_cols.items()},
        ratio=ratio,
        ratio_band=[ratio_band(r) if b else None for r, b in zip(ratio, has_balance)],
        imbalance=[r is not None and outside(r) for r in ratio],
        window_mean=window_mean,
        verdict=[check(w) if b else None for w, b in zip(window_mean, has_balance)],
        shares=_shares_columns(tasks, [col[norm_cols[t]] for t in tasks], has_balance),
    )
    summary = _summarise(table, events, tasks, options.window)
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


def _shares_columns(
    tasks: list[str], norms: list[list[float | None]], has_balance: list[bool]
) -> dict[str, list[float | None]] | None:
    if len(tasks) <= 2:
        return None
    columns: dict[str, list[float | None]] = {t: [] for t in tasks}
    for row, sampled in zip(zip(*norms), has_balance):
        shares = classify.shares(dict(zip(tasks, row))) if sampled else None
        for t in tasks:
            columns[t].append(None if shares is None else shares[t])
    return columns


def _label(epoch: int | None, step: int | None, by_steps: bool) -> str:
    if (by_steps or epoch is None) and step is not None:
        return f"Step {step}"
    if epoch is not None:
        return f"Epoch {epoch}"
    return "Event"


def _summarise(table: pl.DataFrame, events: Events, tasks: list[str], window: int) -> Summary:
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
    balance_rows = [i for i, b in enumerate(events.has_balance) if b]
    final_ratio = events.window_mean[balance_rows[-1]] if balance_rows else None

    worst_norm = max(
        (b for b in events.norm_band if b is not None),
        key=classify.NORM_SEVERITY.__getitem__,
        default=None,
    )
    # The run's balance finding: the worst band its window mean reached once judged, and an
    # undefined sample counts as collapse-level.
    worst_band: RatioBand | None = None
    worst_ratio = None
    first_imbalance = first_collapse = None
    collapsed = (Collapse.NUMERATOR_DOMINATES, Collapse.DENOMINATOR_DOMINATES)
    severity = classify.RATIO_SEVERITY
    for i in balance_rows:
        if first_imbalance is None and events.imbalance[i]:
            first_imbalance = events.label[i]
        if first_collapse is None and events.verdict[i] in collapsed:
            first_collapse = events.label[i]
        if events.ratio[i] is None:
            band, value = RatioBand.UNDEFINED, None
        elif events.window_mean[i] is not None:
            value = events.window_mean[i]
            band = classify.ratio_band(value)
        else:
            continue
        if worst_band is None or severity[band] > severity[worst_band]:
            worst_band, worst_ratio = band, value

    final_shares = None
    if events.shares is not None:
        first = events.shares[tasks[0]]
        last = [i for i in balance_rows if events.ratio[i] is not None and first[i] is not None]
        last = last[-window:]
        if last:
            final_shares = {
                t: math.fsum(events.shares[t][i] for i in last) / len(last) for t in tasks
            }
    return Summary(
        n_events=len(events),
        n_stats=stats["n"],
        n_balance=len(balance_rows),
        mean_norm_mean=stats["mean"],
        mean_norm_std=stats["std"],
        max_norm_mean=stats["max_mean"],
        max_norm_peak=stats["peak"],
        n_nonfinite=stats["n_nonfinite"] or 0,
        n_undefined=sum(1 for i in balance_rows if events.ratio[i] is None),
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
    last_sample = table.filter(pl.col("has_balance")).tail(1)
    if norm_band is NormBand.NONFINITE or last_sample.get_column("ratio").is_null().any():
        # Weights computed from the last finite samples of a run that then diverged would be
        # absurd (they scale with the blow-up): the divergence is the thing to fix first.
        reason = "the run diverged (non-finite gradient norms); fix that before rebalancing"
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
