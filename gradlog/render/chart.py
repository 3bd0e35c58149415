"""A small text chart of the task balance ratio for the terminal (``gradlog report --chart``).

One row per band of :func:`gradlog.classify.ratio_band`, on each side of 1 (the numerator's
tasks dominate above, the denominator's below), one column per group of balance samples:
``●`` marks the band of the window mean (what the collapse check judges), ``·`` that of the
sample itself where it differs, ``×`` a sample whose ratio is undefined. Plain characters
only, no dependency; :func:`row_style` colours a row on a terminal.
"""

from __future__ import annotations

from gradlog import classify
from gradlog.classify import RatioBand
from gradlog.summary import RunReport

WIDTH = 60

# (band, above 1?) per row, top to bottom, with the row's label
_ROWS = (
    ((RatioBand.COLLAPSE, True), f"> {classify.COLLAPSE_RATIO:g}"),
    ((RatioBand.SIGNIFICANT, True), f"{classify.MINOR_RATIO:g}-{classify.COLLAPSE_RATIO:g}"),
    ((RatioBand.MINOR, True), f"{classify.HEALTHY_RATIO:g}-{classify.MINOR_RATIO:g}"),
    ((RatioBand.HEALTHY, True), f"1-{classify.HEALTHY_RATIO:g}"),
    ((RatioBand.HEALTHY, False), f"{1 / classify.HEALTHY_RATIO:.2g}-1"),
    (
        (RatioBand.MINOR, False),
        f"{1 / classify.MINOR_RATIO:.2g}-{1 / classify.HEALTHY_RATIO:.2g}",
    ),
    (
        (RatioBand.SIGNIFICANT, False),
        f"{1 / classify.COLLAPSE_RATIO:.2g}-{1 / classify.MINOR_RATIO:.2g}",
    ),
    ((RatioBand.COLLAPSE, False), f"< {1 / classify.COLLAPSE_RATIO:.2g}"),
)
_STYLE = {
    RatioBand.HEALTHY: "green",
    RatioBand.MINOR: "yellow",
    RatioBand.SIGNIFICANT: "yellow",
    RatioBand.COLLAPSE: "bold red",
}


def _row(r: float | None) -> int | None:
    band = classify.ratio_band(r)
    if band is RatioBand.UNDEFINED:
        return None
    return next(i for i, ((b, above), _) in enumerate(_ROWS) if b is band and above == (r >= 1))


def ratio_chart(run: RunReport, width: int = WIDTH) -> list[str]:
    """The chart's lines (empty when the run has no balance samples)."""
    ev = run.events
    samples = [i for i in range(len(ev)) if ev.has_balance[i]]
    if run.pair is None or not samples:
        return []
    n_cols = min(width, len(samples))
    groups = [
        samples[c * len(samples) // n_cols : (c + 1) * len(samples) // n_cols]
        for c in range(n_cols)
    ]
    grid = [[" "] * n_cols for _ in _ROWS]
    undefined = [" "] * n_cols
    for c, group in enumerate(groups):
        last = group[-1]
        for i in group:
            if ev.ratio[i] is None:
                undefined[c] = "×"
                continue
            row = _row(ev.ratio[i])
            if row is not None and grid[row][c] == " ":
                grid[row][c] = "·"
        mean_row = _row(ev.window_mean[last]) if ev.window_mean[last] is not None else None
        if mean_row is not None:
            grid[mean_row][c] = "●"
    labels = [label for _, label in _ROWS] + (["undefined"] if "×" in undefined else [])
    label_width = max(len(label) for label in labels)
    num, den = run.pair
    title = (
        f"{num}/{den} gradient ratio, {len(samples)} balance samples "
        "(● window mean, · sample, × undefined)"
    )
    lines = [title]
    for (_, label), cells in zip(_ROWS, grid):
        lines.append(f"{label:>{label_width}} │{''.join(cells).rstrip()}")
    if "×" in undefined:
        lines.append(f"{'undefined':>{label_width}} │{''.join(undefined).rstrip()}")
    first, last = ev.label[samples[0]], ev.label[samples[-1]]
    axis = " " * label_width + " └" + "─" * n_cols
    lines.append(axis)
    gap = max(1, n_cols - len(first) - len(last))
    lines.append(" " * (label_width + 2) + first + " " * gap + last)
    return lines


def row_style(line: str) -> str:
    """The Rich style of a chart row on a terminal ("" for none)."""
    label = line.split("│", 1)[0].strip() if "│" in line else None
    for (band, _), row_label in _ROWS:
        if label == row_label:
            return _STYLE[band]
    if label == "undefined":
        return "bold red"
    return ""
