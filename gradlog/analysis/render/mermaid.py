"""Mermaid ``xychart-beta`` blocks: charts that GitHub renders in Markdown, no attachment needed.

Only numbers and gradlog's own words go inside a block (task names and run ids are listed in
the Markdown around it, escaped): Mermaid has its own syntax, and log text has no business in
it. Mermaid draws every line over the same x categories and needs a number at each, so callers
pass points where every line is defined; long series are thinned to :data:`MAX_POINTS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

MAX_POINTS = 60
# Colours of the lines, in order (Mermaid has no legend: the Markdown names them).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
COLOUR_NAMES = ("blue", "red", "green", "orange", "purple", "brown", "pink")
BLUE, RED, GREEN, ORANGE = PALETTE[:4]
# A title is a quoted string, which only a double quote ends; a category sits in a list, which
# a comma or a bracket would break.
_SAFE = re.compile(r"[^A-Za-z0-9 _./+(),=-]")
_SAFE_CATEGORY = re.compile(r"[^A-Za-z0-9 _./+-]")


def safe_label(text: str) -> str:
    """Text reduced to characters that mean nothing to Mermaid (for titles and axis names)."""
    return _SAFE.sub("", str(text))[:60]


def _category(text: str) -> str:
    return _SAFE_CATEGORY.sub("", str(text))[:60] or "-"


def thin(n: int, limit: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``limit`` points spread evenly over ``n``, the last one included."""
    if n <= limit:
        return list(range(n))
    step = (n - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def _number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def xychart(
    *,
    title: str,
    x_title: str,
    x: Sequence[str | int],
    y_title: str,
    y_range: tuple[float, float],
    lines: Sequence[Sequence[float]],
    colours: Sequence[str] | None = None,
    bars: Sequence[float] | None = None,
) -> list[str]:
    """A fenced ``mermaid`` block drawing ``lines`` (and ``bars``) over the categories ``x``."""
    # colours are taken in the order the plots are declared: the bar first, then each line
    palette = list(colours or PALETTE)
    init = '{"themeVariables": {"xyChart": {"plotColorPalette": "' + ", ".join(palette) + '"}}}'
    low, high = y_range
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        low, high = 0.0, 1.0
    categories = ", ".join(_category(v) for v in x)
    out = [
        "```mermaid",
        f"%%{{init: {init}}}%%",
        "xychart-beta",
        f'    title "{safe_label(title)}"',
        f'    x-axis "{safe_label(x_title)}" [{categories}]',
        f'    y-axis "{safe_label(y_title)}" {_number(low)} --> {_number(high)}',
    ]
    if bars is not None:
        out.append("    bar [" + ", ".join(_number(v) for v in bars) + "]")
    for line in lines:
        out.append("    line [" + ", ".join(_number(v) for v in line) + "]")
    out.append("```")
    return out
