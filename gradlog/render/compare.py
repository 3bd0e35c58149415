"""``gradlog compare``: base and head side by side, as a terminal table, Markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from gradlog.classify import FailOn
from gradlog.compare import Comparison, Pair
from gradlog.render import md
from gradlog.render.batch import fmt_norm, fmt_ratio, row_data
from gradlog.render.table import STATUS_STYLE, render
from gradlog.schema import encode_float
from gradlog.status import Status

_CHANGE_STYLE = {"worse": "bold red", "better": "green", "same": "", "new": "", "gone": "dim"}
_CHANGE_BADGE = {
    "worse": Status.COLLAPSE.badge,
    "better": Status.HEALTHY.badge,
    "same": "\N{HEAVY EQUALS SIGN}",
    "new": "\N{SQUARED NEW}",
    "gone": "\N{HEAVY MINUS SIGN}",
}


def _delta(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _status(pair: Pair, side: str) -> Status | None:
    row = getattr(pair, side)
    return row.status if row is not None else None


def _num(pair: Pair, side: str, field: str, fmt) -> str:
    row = getattr(pair, side)
    return "–" if row is None else fmt(getattr(row, field))


def headline(comparison: Comparison, levels: Sequence[FailOn] = ()) -> tuple[Status, str]:
    """The overall verdict: worse anywhere, regressions past --fail-on, or no change."""
    counts = comparison.counts()
    regressions = comparison.regressions(levels)
    worse = counts.get("worse", 0)
    total = len(comparison.pairs)
    if regressions:
        levels_hit = ", ".join(dict.fromkeys(lvl.value for lvl, _ in regressions))
        return (
            Status.COLLAPSE,
            f"regression past --fail-on {levels_hit} in {len({id(p) for _, p in regressions})} of {total} runs",
        )
    if worse:
        return Status.SIGNIFICANT, f"training got worse in {worse} of {total} runs"
    better = counts.get("better", 0)
    if better:
        return Status.HEALTHY, f"no run got worse; {better} of {total} got better"
    return Status.HEALTHY, f"no run got worse ({total} compared)"


def summary_line(comparison: Comparison) -> str:
    counts = comparison.counts()
    order = ("worse", "better", "same", "new", "gone")
    return ", ".join(f"{counts[c]} {c}" for c in order if counts.get(c))


def compare_table(comparison: Comparison, *, color: bool, width: int | None = None) -> str:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for name, justify in (
        ("run", "left"),
        ("base", "left"),
        ("head", "left"),
        ("change", "left"),
        ("window ratio base", "right"),
        ("head", "right"),
        ("Δ", "right"),
        ("mean norm base", "right"),
        ("head", "right"),
        ("Δ", "right"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for p in comparison.pairs:
        cells = []
        for side in ("base", "head"):
            status = _status(p, side)
            cells.append(Text(status.value, style=STATUS_STYLE[status]) if status else Text("–"))
        table.add_row(
            Text(p.name),
            *cells,
            Text(p.change, style=_CHANGE_STYLE[p.change]),
            _num(p, "base", "window_mean", fmt_ratio),
            _num(p, "head", "window_mean", fmt_ratio),
            _delta(p.delta("window_mean"), 2),
            _num(p, "base", "mean_norm", fmt_norm),
            _num(p, "head", "mean_norm", fmt_norm),
            _delta(p.delta("mean_norm"), 4),
        )
    return render(table, color=color, width=width)


def format_markdown(comparison: Comparison, levels: Sequence[FailOn] = ()) -> str:
    status, text = headline(comparison, levels)
    lines = [f"## {status.badge} gradlog compare: {text}", ""]
    line = summary_line(comparison)
    if line:
        lines += [f"**{line}**", ""]
    header = [
        "Run",
        "Base",
        "Head",
        "Change",
        "Window ratio (base → head)",
        "Δ ratio",
        "Mean norm (base → head)",
        "Δ norm",
    ]
    rows = []
    for p in comparison.pairs:
        statuses = []
        for side in ("base", "head"):
            s = _status(p, side)
            statuses.append(f"{s.badge} {s.value}" if s else "–")
        rows.append(
            [
                md.code(p.name),
                *statuses,
                f"{_CHANGE_BADGE[p.change]} {p.change}",
                f"{_num(p, 'base', 'window_mean', fmt_ratio)} → "
                f"{_num(p, 'head', 'window_mean', fmt_ratio)}",
                _delta(p.delta("window_mean"), 2),
                f"{_num(p, 'base', 'mean_norm', fmt_norm)} → "
                f"{_num(p, 'head', 'mean_norm', fmt_norm)}",
                _delta(p.delta("mean_norm"), 4),
            ]
        )
    lines += md.table(header, rows, align="llllrrrr")
    details = []
    for p in comparison.pairs:
        if p.change != "worse" and not any(p.regressed(lvl) for lvl in levels):
            continue
        head = p.head
        parts = [f"{p.base.status.label if p.base else 'no base'} → {head.status.label}"]
        if head.first_collapse:
            parts.append(f"collapse from {head.first_collapse}")
        if head.flags:
            parts.append(f"try {md.code(head.flags, in_table=False)}")
        details.append(f"- {head.status.badge} {md.code(p.name)}: " + "; ".join(parts) + ".")
    for row in comparison.errors:
        details.append(f"- {row.status.badge} {md.code(row.file)}: {md.escape(row.error or '')}")
    if details:
        lines += ["", "### Details", "", *details]
    return "\n".join(lines) + "\n"


def format_json(comparison: Comparison, levels: Sequence[FailOn] = ()) -> str:
    data = {
        "gradlog_compare": 1,
        "summary": comparison.counts(),
        "regressions": [
            {"level": lvl.value, "run": p.name} for lvl, p in comparison.regressions(levels)
        ],
        "pairs": [
            {
                "run": p.name,
                "change": p.change,
                "base": row_data(p.base) if p.base else None,
                "head": row_data(p.head) if p.head else None,
                "delta_window_mean": encode_float(p.delta("window_mean")),
                "delta_mean_norm": encode_float(p.delta("mean_norm")),
            }
            for p in comparison.pairs
        ],
        "errors": [row_data(r) for r in comparison.errors],
    }
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
