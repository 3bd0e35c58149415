"""A small text chart of the task balance ratio for the terminal (``gradlog report --chart``).

One row per band of :func:`gradlog.classify.ratio_band`, on each side of 1 (the numerator's
tasks dominate above, the denominator's below), one column per group of balance samples:
``●`` marks the band of the window mean (what the collapse check judges), ``·`` that of the
sample itself where it differs, ``×`` a sample whose ratio is undefined. Plain characters
only, no dependency; each row carries the style of its band.
"""

from __future__ import annotations

from gradlog import classify
from gradlog.analysis.model import RunReport
from gradlog.analysis.status import ratio_status
from gradlog.classify import RatioBand

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


def _row(r: float | None) -> int | None:
    band = classify.ratio_band(r)
    if band is RatioBand.UNDEFINED:
        return None
    return next(i for i, ((b, above), _) in enumerate(_ROWS) if b is band and above == (r >= 1))


def ratio_chart(run: RunReport, width: int = WIDTH) -> list[tuple[str, str]]:
    """The chart's lines with their styles (none when the run has no balance samples)."""
    ev = run.events.filter("has_balance")
    if len(run.tasks) < 2 or ev.height == 0:
        return []
    ratios = ev.get_column("ratio").to_list()
    defined = ev.get_column("defined").to_list()
    windows = ev.get_column("window_ratio").to_list()
    event_labels = ev.get_column("label").to_list()
    samples = list(range(ev.height))
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
            if not defined[i]:
                undefined[c] = "×"
                continue
            row = _row(ratios[i])
            if row is not None and grid[row][c] == " ":
                grid[row][c] = "·"
        mean_row = _row(windows[last]) if windows[last] is not None else None
        if mean_row is not None:
            grid[mean_row][c] = "●"
    labels = [label for _, label in _ROWS] + (["undefined"] if "×" in undefined else [])
    label_width = max(len(label) for label in labels)
    if run.pair is not None:
        what = f"{run.pair[0]}/{run.pair[1]} gradient ratio"
    else:
        what = "spread (largest task norm over the smallest)"
    title = f"{what}, {len(samples)} balance samples (● window, · sample, × undefined)"
    lines = [(title, "")]
    for ((band, _), label), cells in zip(_ROWS, grid):
        lines.append((f"{label:>{label_width}} │{''.join(cells).rstrip()}", _style(band)))
    if "×" in undefined:
        lines.append(
            (
                f"{'undefined':>{label_width}} │{''.join(undefined).rstrip()}",
                _style(RatioBand.UNDEFINED),
            )
        )
    first, last = event_labels[0], event_labels[-1]
    axis = " " * label_width + " └" + "─" * n_cols
    lines.append((axis, ""))
    gap = max(1, n_cols - len(first) - len(last))
    lines.append((" " * (label_width + 2) + first + " " * gap + last, ""))
    return lines


def _style(band: RatioBand) -> str:
    return ratio_status(band).style
