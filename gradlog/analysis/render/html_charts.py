"""The numbers behind the HTML report's charts: each run's series, bands and marks, as data.

Three charts a run, as ``gradlog plot`` draws them: each task's gradient norm, the ratio (or the
spread) per sample and over the window with the bands of :mod:`gradlog.classify` shaded, and the
mean and max gradient norm with the norm bands; the first collapse is marked on each. Values
are the run's event columns (:attr:`gradlog.analysis.model.RunReport.events`), never recomputed;
a value a log axis cannot draw (zero, negative, NaN, infinite) is a gap (``None``). A series of
more than :data:`MAX_POINTS` points is thinned evenly (the last point kept), and at most
:data:`MAX_TASKS` task norms are drawn; the page says so.
"""

from __future__ import annotations

import math

from gradlog import classify
from gradlog.analysis.model import RunReport
from gradlog.analysis.render.logscale import judged
from gradlog.analysis.render.mermaid import thin

MAX_POINTS = 1000  # per series: a run's charts stay under about 200 KB, however long the run
MAX_TASKS = 8  # task norms drawn (one colour each); the legend says how many the run has


def x_positions(run: RunReport) -> tuple[list[float], str]:
    """Each event's position on the x axis, its epoch (its step for runs logged by steps; the
    event's index where the log has neither), and the axis' name."""
    values = run.events.get_column("step" if run.by_steps else "epoch").to_list()
    xs = [float(v) if v is not None else float(i) for i, v in enumerate(values)]
    return xs, "step" if run.by_steps else "epoch"


def collapse_x(run: RunReport, xs: list[float]) -> float | None:
    """Where the run's first collapse is on the x axis (None without one)."""
    label = run.summary.first_collapse
    if label is None:
        return None
    labels = run.events.get_column("label").to_list()
    return next((x for x, lbl in zip(xs, labels) if lbl == label), None)


def positive(value: float | None) -> float | None:
    """A value a log axis can draw, else None (a gap)."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def ratio_bands(pair: bool) -> list[list]:
    """The bands of the ratio (both sides of 1) or of the spread (above 1), as [low, high, name]."""
    h, m, c = classify.HEALTHY_RATIO, classify.MINOR_RATIO, classify.COLLAPSE_RATIO
    bands = [[1.0, h, "healthy"], [h, m, "minor"], [m, c, "significant"], [c, None, "collapse"]]
    if pair:
        bands += [[1 / h, 1.0, "healthy"], [1 / m, 1 / h, "minor"], [1 / c, 1 / m, "significant"]]
        bands.append([None, 1 / c, "collapse"])
    return bands


def norm_bands() -> list[list]:
    low, high = classify.HEALTHY_NORM
    return [
        [None, classify.VANISHING_NORM, "collapse"],
        [low, high, "healthy"],
        [classify.LARGE_NORM, classify.EXPLODING_NORM, "minor"],
        [classify.EXPLODING_NORM, None, "collapse"],
    ]


def drawn_tasks(run: RunReport) -> list[str]:
    """The tasks whose norms are drawn: all of them up to :data:`MAX_TASKS`, else the final
    window's dominant and starved tasks and the first others, in the run's order."""
    if len(run.tasks) <= MAX_TASKS:
        return list(run.tasks)
    first = [t for t in (run.summary.dominant, run.summary.starved) if t]
    rest = [t for t in run.tasks if t not in first]
    chosen = set(first + rest[: MAX_TASKS - len(first)])
    return [t for t in run.tasks if t in chosen]


def _series(name: str, xs: list[float], ys: list, rows: list[int]) -> dict:
    kept = [rows[k] for k in thin(len(rows), MAX_POINTS)]
    return {
        "name": name,
        "x": [xs[i] for i in kept],
        "y": [positive(ys[i]) for i in kept],
        "n": len(rows),
    }


def _range(series: list[dict], at_least: tuple[float, float] | None = None) -> list[float]:
    """The y range: the data's, widened to show at least ``at_least`` (the bands around it)."""
    values = [y for s in series for y in s["y"] if y is not None]
    if not values:
        return list(at_least or (0.1, 10.0))
    low, high = min(values) / 1.5, max(values) * 1.5
    if at_least is not None:
        low, high = min(low, at_least[0]), max(high, at_least[1])
    return [low, high]


def run_charts(run: RunReport) -> dict:
    """The data of one run's charts (plain values: the page's script draws them)."""
    ev = run.events
    xs, axis = x_positions(run)
    balance = [i for i, b in enumerate(ev.get_column("has_balance").to_list()) if b]
    tasks = [_series(t, xs, run.norms(t).to_list(), balance) for t in drawn_tasks(run)]
    charts = []
    if tasks and balance:
        charts.append({"id": "tasks", "series": tasks, "bands": [], "of": len(run.tasks)})
    if len(run.tasks) >= 2 and balance:
        what = judged(run)
        series = [
            _series("per sample", xs, ev.get_column(what.sample).to_list(), balance),
            _series(f"window ({run.window})", xs, ev.get_column(what.window).to_list(), balance),
        ]
        edge = classify.COLLAPSE_RATIO * 1.5
        charts.append(
            {
                "id": "ratio",
                "series": series,
                "bands": ratio_bands(what.signed),
                "range": _range(series, (1 / edge if what.signed else 1.0, edge)),
            }
        )
    stats = [i for i, m in enumerate(ev.get_column("mean_norm").to_list()) if m is not None]
    if stats:
        series = [
            _series("mean norm", xs, ev.get_column("mean_norm").to_list(), stats),
            _series("max norm", xs, ev.get_column("max_norm").to_list(), stats),
        ]
        low, high = classify.HEALTHY_NORM
        charts.append(
            {
                "id": "norms",
                "series": series,
                "bands": norm_bands(),
                "range": _range(series, (low / 2, high * 2)),
            }
        )
    for chart in charts:
        chart.setdefault("range", _range(chart["series"]))
    return {"axis": axis, "collapse": collapse_x(run, xs), "charts": charts}
