"""A small text chart of the task balance for the terminal (``gradlog report --chart``).

The scale is :mod:`gradlog.analysis.render.logscale`'s: rows between 1-2-5 steps of a log
scale centred on 1, so a ratio of 0.04 sits as far below 1 as 25 above it. The bounds of the
healthy band (2 and 0.5) and of collapse (5 and 0.2) are dotted lines between rows, named on
the right: a mark above the 5 line is a collapse, whatever the row. One column per balance
sample (or per group of them, past :data:`WIDTH`): ``●`` the window (what the verdict judges),
``·`` the sample itself where it differs, ``×`` an undefined sample. Plain characters only;
each row carries the style of its band.
"""

from __future__ import annotations

import math

from gradlog import classify
from gradlog.analysis.model import RunReport
from gradlog.analysis.render import logscale
from gradlog.analysis.status import ratio_status
from gradlog.classify import RatioBand

WIDTH = 60
DOTS = "┈"


def _lines_at(signed: bool) -> dict[float, str]:
    """The bounds drawn as dotted lines, with their names."""
    low, high = classify.HEALTHY_RANGE
    c = logscale.COLLAPSE
    if not signed:
        return {c: f"collapse above {c:g}", high: f"healthy below {high:g}"}
    return {
        c: f"collapse above {c:g}",
        high: f"healthy {low:g}-{high:g}",
        low: "",
        1 / c: f"collapse below {1 / c:g}",
    }


def _rows(edges: list[float], signed: bool) -> list[tuple[str, float, int, bool]]:
    """(label, a value inside, interval index, below 1?) per row, top to bottom: the
    intervals between ``edges`` above 1, then (``signed``) their reciprocals below it."""
    above, below = [], []
    for k, lo in enumerate(edges):
        hi = edges[k + 1] if k + 1 < len(edges) else None
        above.append((f"{lo:g}-{hi:g}" if hi else f"> {lo:g}", lo * 1.5, k, False))
        below.append((f"{1 / hi:g}-{1 / lo:g}" if hi else f"< {1 / lo:g}", 1 / (lo * 1.5), k, True))
    return above[::-1] + (below if signed else [])


def ratio_chart(run: RunReport, width: int = WIDTH) -> list[tuple[str, str]]:
    """The chart's lines with their styles (none when the run has no balance samples)."""
    s = logscale.series(run)
    if s is None:
        return []
    n = len(s.samples)
    n_cols = min(width, n)
    cell = max(1, min(3, width // n))  # a few samples get room to breathe
    groups = [range(c * n // n_cols, (c + 1) * n // n_cols) for c in range(n_cols)]
    edges = logscale.bounds(s.values)
    rows = _rows(edges, s.signed)
    where = {(k, below): r for r, (_, _, k, below) in enumerate(rows)}

    def place(value: float) -> int:
        return where[logscale.row(edges, value), s.signed and value < 1]

    marks = [[""] * n_cols for _ in rows]
    undefined = [""] * n_cols
    for c, group in enumerate(groups):
        for i in group:
            if s.samples[i] is None:
                undefined[c] = "×"
            elif not marks[r := place(s.samples[i])][c]:
                marks[r][c] = "·"
        window = s.windows[group[-1]]
        if window is not None:
            marks[place(window)][c] = "●"
    named = _lines_at(s.signed)
    labels = [label for label, *_ in rows] + [f"{v:g}" for v in named]
    label_width = max(len(x) for x in labels + (["undefined"] if "×" in undefined else []))
    span = n_cols * cell
    title = f"{s.what}, log scale, {n} balance samples: ● window, · sample, × undefined"
    lines = [(title, "")]
    for r, (label, inside, k, below) in enumerate(rows):
        cells = "".join(_cell(m, cell) for m in marks[r])
        lines.append((f"{label:>{label_width}} │{cells}".rstrip(), _style(inside)))
        # the dotted line under this row, at its lower bound, where that is a named one
        if below and k + 1 == len(edges):
            continue  # the bottom row: no bound under it
        bound = 1 / edges[k + 1] if below else edges[k]
        note = next((t for v, t in named.items() if math.isclose(v, bound)), None)
        if note is not None:
            text = f"{bound:>{label_width}g} ┼{DOTS * span}  {note}".rstrip()
            lines.append((text, _style(inside)))
    if "×" in undefined:
        cells = "".join(_cell(m, cell) for m in undefined)
        text = f"{'undefined':>{label_width}} │{cells}".rstrip()
        lines.append((text, ratio_status(RatioBand.UNDEFINED).style))
    lines.append((" " * label_width + " └" + "─" * span, ""))
    first, last = (label.rsplit(" ", 1)[-1] for label in (s.labels[0], s.labels[-1]))
    pad = (cell - 1) // 2  # under the first and the last column's mark
    gap = max(1, span - 2 * pad - len(first) - len(last))
    ticks = " " * pad + first + (" " * gap + last if n > 1 else "")
    lines.append((" " * (label_width + 2) + ticks + f"  {s.axis}", ""))
    return lines


def _cell(mark: str, width: int) -> str:
    side = (width - 1) // 2
    return " " * side + (mark or " ") + " " * (width - 1 - side)


def _style(value: float) -> str:
    return ratio_status(classify.ratio_band(value)).style
