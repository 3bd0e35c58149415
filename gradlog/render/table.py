"""The terminal tables of ``gradlog batch`` and ``gradlog compare`` (Rich, rendered to a string).

Only this module and the CLI use Rich for tables. :func:`batch_table` returns the table as
text, with ANSI colours when asked (a terminal) and plain otherwise, so that the CLI prints one
string and tests compare it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradlog.batch import RunRow
from gradlog.render.batch import fmt_mean_std, fmt_norm, fmt_ratio
from gradlog.status import Status

STATUS_STYLE = {
    Status.ERROR: "bold red",
    Status.COLLAPSE: "bold red",
    Status.UNDEFINED: "bold red",
    Status.NONFINITE: "bold red",
    Status.EXPLODING: "bold red",
    Status.SIGNIFICANT: "yellow",
    Status.VANISHING: "yellow",
    Status.LARGE: "yellow",
    Status.MINOR: "yellow",
    Status.HEALTHY: "green",
    Status.NO_DATA: "dim",
}


def render(table: Table, *, color: bool, width: int | None = None) -> str:
    """A Rich renderable as text: coloured for a terminal, plain (and wide enough) otherwise."""
    out = io.StringIO()
    if width is None:
        # a terminal: its width, the table folds to fit; a file or pipe: one line per row
        width = shutil.get_terminal_size().columns if color else 10_000
    console = Console(
        file=out,
        force_terminal=color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    console.print(table)
    text = out.getvalue()
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def status_text(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def batch_table(rows: Sequence[RunRow], *, color: bool, width: int | None = None) -> str:
    """One line per run (or unreadable file); columns as in ``gradlog batch --format csv``."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for name, justify in (
        ("status", "left"),
        ("run", "left"),
        ("file", "left"),
        ("tasks", "left"),
        ("events", "right"),
        ("epochs", "right"),
        ("final ratio", "right"),
        ("window mean", "right"),
        ("worst ratio", "right"),
        ("first imbalance", "left"),
        ("first collapse", "left"),
        ("mean norm ± std", "right"),
        ("peak max", "right"),
        ("weights / error", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        if row.error is not None:
            table.add_row(
                status_text(row.status),
                "",
                Text(row.file),
                *[""] * 10,
                Text(row.error, style="red"),
            )
            continue
        table.add_row(
            status_text(row.status),
            Text(row.run or ""),
            Text(row.file),
            Text(",".join(row.tasks)),
            str(row.events),
            "" if row.epochs is None else str(row.epochs),
            fmt_ratio(row.final_ratio),
            fmt_ratio(row.window_mean),
            fmt_ratio(row.worst_ratio),
            row.first_imbalance or "",
            row.first_collapse or "",
            fmt_mean_std(row),
            fmt_norm(row.max_norm_peak),
            Text(row.flags or ""),
        )
    return render(table, color=color, width=width)
