"""Terminal tables (``gradlog batch``, ``gradlog compare``) that fit the terminal.

A renderer describes a table (:class:`TableSpec`: columns with a priority, rows of styled
cells); :func:`render` lays it out with Rich. Cells are never wrapped, so no number or word is
split: at the terminal's width the least important columns are left out (their names listed
under the table), and text columns that still do not fit are shortened with an ellipsis. A file
or a pipe (no width) gets every column. The output boundary neutralises the cells first.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rich.cells import cell_len

Cell = tuple[str, str]  # text, style
GAP = 3  # Rich's SIMPLE_HEAD box: a separator and a space of padding on each side


@dataclass(frozen=True)
class Column:
    name: str
    justify: str = "left"  # "left" or "right"
    priority: int = 0  # 0 is kept longest
    shrink: bool = False  # text that may be shortened with an ellipsis (never a number)


@dataclass(frozen=True)
class TableSpec:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    footer: tuple[str, ...] = field(default=())

    def map_text(self, fn: Callable[[str], str]) -> TableSpec:
        """The same table with ``fn`` applied to every cell's text (the output boundary's)."""
        rows = tuple(tuple((fn(text), style) for text, style in row) for row in self.rows)
        return replace(self, rows=rows, footer=tuple(fn(f) for f in self.footer))


def _natural(spec: TableSpec, i: int) -> int:
    cells = [cell_len(row[i][0]) for row in spec.rows]
    return max([cell_len(spec.columns[i].name), *cells])


SHRINK_FLOOR = 12  # a shortened text column keeps at least this many characters


def fit(spec: TableSpec, width: int | None) -> tuple[list[int], list[int]]:
    """The columns to show (in order) and their widths: all of them without a width, else the
    most important ones that fit, text columns shortened (least important first) before
    another column is left out."""
    n = len(spec.columns)
    natural = [_natural(spec, i) for i in range(n)]
    shown = list(range(n))
    if width is None:
        return shown, natural
    by_priority = sorted(shown, key=lambda i: (spec.columns[i].priority, i))
    while True:
        widths = {i: natural[i] for i in shown}
        extra = sum(widths.values()) + GAP * (len(shown) - 1) - width
        shrinkable = [i for i in reversed(by_priority) if i in shown and spec.columns[i].shrink]
        for i in shrinkable:
            if extra <= 0:
                break
            floor = max(SHRINK_FLOOR, cell_len(spec.columns[i].name))
            cut = min(extra, max(0, widths[i] - floor))
            widths[i] -= cut
            extra -= cut
        if extra <= 0 or len(shown) == 1:
            return shown, [widths[i] for i in shown]
        shown.remove(next(i for i in reversed(by_priority) if i in shown))


def render(spec: TableSpec, *, color: bool, width: int | None = None) -> str:
    """The table as text: coloured for a terminal, plain otherwise."""
    # Rich's console and table only here: a batch written as CSV or JSON never draws one
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown, widths = fit(spec, width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for i, w in zip(shown, widths):
        col = spec.columns[i]
        table.add_column(col.name, justify=col.justify, no_wrap=True, overflow="ellipsis", width=w)
    for row in spec.rows:
        table.add_row(*(Text(row[i][0], style=row[i][1] or "") for i in shown))
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=color,
        color_system="standard" if color else None,
        width=10_000 if width is None else max(width, 20),
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    console.print(table)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    left_out = len(spec.columns) - len(shown)
    if left_out:
        lines.append(f"({left_out} more column{'s' * (left_out != 1)}: --wide shows all)")
    lines += list(spec.footer)
    return "\n".join(lines) + "\n"
