"""``gradlog plot``: the gradients of one or more runs as a picture (PNG, SVG or HTML).

Three panels over epochs (or steps): each task's gradient norm (log scale), the task balance
ratio with its bands shaded (log scale, per sample and window mean), and the mean and max
gradient norm with the healthy band; the first collapse of each run is marked on all three.
Several runs are overlaid, one colour each (the positions on the x axis and of the collapse are
those of the HTML report's charts, :mod:`gradlog.analysis.render.html_charts`). Drawn with matplotlib, an optional extra
(the ``plot`` extra, ``pip install 'gradlog-mtl[plot]'``, or ``pip install matplotlib``), imported only here and only when a plot is made. HTML is a
self-contained page around the SVG.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from gradlog import classify
from gradlog.analysis.model import RunReport
from gradlog.analysis.output import for_terminal
from gradlog.analysis.render.html_charts import collapse_x, ratio_bands, x_positions
from gradlog.analysis.render.logscale import judged
from gradlog.errors import GradlogError
from gradlog.files import replacing

FORMATS = ("png", "svg", "html")
_BAND_COLOURS = {
    "healthy": "#2ca02c",
    "minor": "#ffdd57",
    "significant": "#ff9f40",
    "collapse": "#d62728",
}
_TASK_STYLES = ("-", "--", ":", "-.")


class PlotDependencyError(GradlogError):
    """matplotlib is not installed."""


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise GradlogError(
            f"{path}: unknown picture format; use a name ending in .png, .svg or .html"
        )
    return suffix


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise PlotDependencyError(
            "gradlog plot needs matplotlib: pip install 'gradlog-mtl[plot]' (or pip install matplotlib)"
        ) from exc
    matplotlib.use("Agg")  # no display needed, whatever the environment says
    import matplotlib.pyplot as plt

    return plt


_COLUMNS = (
    "has_balance",
    "ratio",
    "window_ratio",
    "spread",
    "window_spread",
    "mean_norm",
    "max_norm",
)


def _text(value: str) -> str:
    """Log text for a matplotlib label: control characters shown as escapes (never passed to a
    font, whose missing-glyph warning would print them raw), "$" kept from starting mathtext."""
    return for_terminal(str(value)).replace("$", r"\$")


def _positive(value: float | None) -> float:
    """A value a log axis can draw (NaN leaves a gap)."""
    return value if value is not None and math.isfinite(value) and value > 0 else math.nan


def _shade_ratio_bands(ax) -> None:
    for low, high, band in ratio_bands(pair=True):
        ax.axhspan(low or 1e-6, high or 1e6, color=_BAND_COLOURS[band], alpha=0.12, lw=0)


def draw(runs: Sequence[tuple[str, RunReport]], title: str | None = None):
    """The matplotlib figure for ``runs`` ((file, run report) pairs)."""
    plt = _pyplot()
    fig, (ax_tasks, ax_ratio, ax_norms) = plt.subplots(
        3, 1, figsize=(10, 9), sharex=True, constrained_layout=True
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    axis_name = "epoch"
    many = len(runs) > 1
    for k, (_path, run) in enumerate(runs):
        colour = colours[k % len(colours)]
        ev = {c: run.events.get_column(c).to_list() for c in _COLUMNS}
        xs, axis_name = x_positions(run)
        name = f"{_text(run.run_id)} " if many else ""
        balance = [i for i, b in enumerate(ev["has_balance"]) if b]
        for t, task in enumerate(run.tasks):
            norms = run.norms(task).to_list()
            ax_tasks.plot(
                [xs[i] for i in balance],
                [_positive(norms[i]) for i in balance],
                _TASK_STYLES[t % len(_TASK_STYLES)],
                color=colour,
                label=f"{name}{_text(task)}",
                lw=1.4,
            )
        if len(run.tasks) >= 2:
            ax_ratio.plot(
                [xs[i] for i in balance],
                [_positive(ev[judged(run).sample][i]) for i in balance],
                color=colour,
                lw=0.8,
                alpha=0.45,
                label=f"{name}per sample",
            )
            ax_ratio.plot(
                [xs[i] for i in balance],
                [_positive(ev[judged(run).window][i]) for i in balance],
                color=colour,
                lw=2.0,
                label=f"{name}window ({run.window})",
            )
        stats = [i for i, m in enumerate(ev["mean_norm"]) if m is not None]
        ax_norms.plot(
            [xs[i] for i in stats],
            [_positive(ev["mean_norm"][i]) for i in stats],
            color=colour,
            lw=1.6,
            label=f"{name}mean norm",
        )
        ax_norms.plot(
            [xs[i] for i in stats],
            [_positive(ev["max_norm"][i]) for i in stats],
            ":",
            color=colour,
            lw=1.2,
            label=f"{name}max norm",
        )
        collapse = collapse_x(run, xs)
        if collapse is not None:
            for ax in (ax_tasks, ax_ratio, ax_norms):
                ax.axvline(collapse, color=colour, ls="--", lw=1.2)
            ax_ratio.annotate(
                f"collapse ({_text(run.summary.first_collapse)})",
                xy=(collapse, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, 4),
                textcoords="offset points",
                color=colour,
                fontsize=8,
            )
    _shade_ratio_bands(ax_ratio)
    low, high = classify.HEALTHY_NORM
    ax_norms.axhspan(low, high, color=_BAND_COLOURS["healthy"], alpha=0.12, lw=0)
    ax_norms.axhspan(
        1e-12, classify.VANISHING_NORM, color=_BAND_COLOURS["collapse"], alpha=0.08, lw=0
    )
    ax_norms.axhspan(
        classify.EXPLODING_NORM, 1e12, color=_BAND_COLOURS["collapse"], alpha=0.08, lw=0
    )
    for ax, ylabel in (
        (ax_tasks, "task gradient norm"),
        (ax_ratio, "gradient ratio"),
        (ax_norms, "gradient norm"),
    ):
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.autoscale(enable=True, axis="y", tight=False)
        handles, _ = ax.get_legend_handles_labels()
        if handles and len(handles) <= 16:
            ax.legend(loc="best", fontsize=7, ncol=2 if len(handles) > 4 else 1, framealpha=0.8)
    _tighten_y(ax_ratio, classify.COLLAPSE_RATIO * 1.5, 1 / (classify.COLLAPSE_RATIO * 1.5))
    _tighten_y(ax_norms, classify.HEALTHY_NORM[1] * 2, classify.HEALTHY_NORM[0] / 2)
    ax_norms.set_xlabel(axis_name)
    pair = runs[0][1].pair if runs and judged(runs[0][1]).signed else None
    ax_ratio.set_title(
        f"{_text(pair[0])}/{_text(pair[1])} gradient ratio (bands: healthy, minor, significant, collapse)"
        if pair
        else "spread: largest task norm over the smallest",
        fontsize=9,
    )
    ax_tasks.set_title("per-task gradient norms", fontsize=9)
    ax_norms.set_title("mean and max gradient norm (healthy band shaded)", fontsize=9)
    fig.suptitle(_text(title) if title else _default_title(runs), fontsize=11)
    return fig


def _tighten_y(ax, min_top: float, max_bottom: float) -> None:
    """Show the bands around the data: at least up to ``min_top`` and down to ``max_bottom``."""
    lines = [y for line in ax.get_lines() for y in line.get_ydata() if math.isfinite(y) and y > 0]
    if not lines:
        ax.set_ylim(max_bottom, min_top)
        return
    ax.set_ylim(min(min(lines) / 1.5, max_bottom), max(max(lines) * 1.5, min_top))


def _default_title(runs: Sequence[tuple[str, RunReport]]) -> str:
    if len(runs) == 1:
        path, run = runs[0]
        return f"gradlog: run {_text(run.run_id)} ({_text(Path(path).name)})"
    return f"gradlog: {len(runs)} runs"


def save(fig, output: str | os.PathLike[str]) -> None:
    """Write the figure; the format follows the file name (.png, .svg or .html)."""
    fmt = output_format(output)
    out = Path(output)
    if fmt == "html":
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        title = html.escape(fig._suptitle.get_text() if fig._suptitle else "gradlog")
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{title}</title></head>\n<body style="margin:0">\n'
            + buffer.getvalue()
            + "\n</body></html>\n"
        )
        data = page.encode("utf-8")
    else:
        image = io.BytesIO()
        fig.savefig(image, format=fmt, dpi=100)
        data = image.getvalue()
    with replacing(out) as fh:
        fh.write(data)


def plot_runs(
    runs: Sequence[tuple[str, RunReport]],
    output: str | os.PathLike[str],
    title: str | None = None,
) -> None:
    """Draw ``runs`` and write the picture to ``output``."""
    output_format(output)  # refuse a bad name before drawing anything
    if not runs:
        raise GradlogError("nothing to plot (no runs)")
    fig = draw(runs, title)
    try:
        save(fig, output)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
