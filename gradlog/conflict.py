"""How the tasks of a run relate, pair by pair: gradient conflict and, for three or more tasks,
the balance of every task against every other.

Called by :mod:`gradlog.analysis` once per run; judged by :mod:`gradlog.classify`
(``conflict_window``, ``sustained_conflict``, ``shares``, ``ratio``).
"""

from __future__ import annotations

import polars as pl

from gradlog import classify
from gradlog.summary import PairConflict, TaskBalance


def pair_conflicts(
    events: pl.DataFrame, tasks: list[str], window: int, min_samples: int
) -> tuple[PairConflict, ...]:
    """Every pair of tasks with logged cosines, in task order, judged over its last window."""
    if "conflicts" not in events.columns:
        return ()
    samples = (
        events.select("conflicts")
        .explode("conflicts")
        .drop_nulls("conflicts")
        .unnest("conflicts")
        .filter(pl.col("a").is_in(tasks) & pl.col("b").is_in(tasks))  # the run's tasks only
    )
    if samples.height == 0:
        return ()
    per_pair = samples.group_by("a", "b", maintain_order=True).agg(
        pl.col("cosine").filter(pl.col("cosine").is_finite())
    )
    order = {t: i for i, t in enumerate(tasks)}
    rows = sorted(per_pair.iter_rows(), key=lambda row: (order[row[0]], order[row[1]]))
    results = []
    for a, b, cosines in rows:
        mean, negative, n = classify.conflict_window(cosines, window, min_samples)
        results.append(
            PairConflict(
                a=a,
                b=b,
                mean_cosine=mean,
                negative_fraction=negative,
                n_samples=n,
                last_cosine=cosines[-1] if cosines else None,
                sustained=classify.sustained_conflict(mean, negative),
            )
        )
    return tuple(results)


def task_balance(
    table: pl.DataFrame, tasks: list[str], norm_cols: dict[str, str], window: int
) -> TaskBalance | None:
    """Three or more tasks: mean norms over the last ``window`` complete balance samples, each
    task's share, every pairwise ratio, and the dominant and the starved task."""
    if len(tasks) < 3:
        return None
    cols = [pl.col(norm_cols[t]) for t in tasks]
    complete = pl.all_horizontal(c.is_finite() & (c >= 0) for c in cols)
    recent = table.filter(pl.col("has_balance") & complete).tail(window)
    if recent.height == 0:
        return None
    means = recent.select(pl.col(norm_cols[t]).mean().alias(t) for t in tasks).row(0, named=True)
    shares = classify.shares(means)
    if shares is None:
        return None
    ratios = {
        f"{a}/{b}": classify.ratio(means[a], means[b])
        for i, a in enumerate(tasks)
        for b in tasks[i + 1 :]
    }
    dominant = max(tasks, key=means.__getitem__)
    starved = min(tasks, key=means.__getitem__)
    return TaskBalance(
        mean_norms=means,
        shares=shares,
        ratios=ratios,
        dominant=dominant,
        starved=starved,
        spread=classify.ratio(means[dominant], means[starved]),
        n_samples=recent.height,
    )
