"""``gradlog compare``: base and head side by side, as a terminal table, Markdown or JSON."""

from __future__ import annotations

from collections.abc import Sequence

from gradlog.analysis.compare import Comparison, Pair
from gradlog.analysis.render import md
from gradlog.analysis.render.batch import fmt_norm, fmt_ratio, row_data
from gradlog.analysis.render.fit import Runs
from gradlog.analysis.render.table import Column, TableSpec
from gradlog.analysis.status import Status
from gradlog.classify import FailOn
from gradlog.format import encode_float

_CHANGE_STYLE = {"worse": "bold red", "better": "green", "same": "", "new": "", "gone": "dim"}
_CHANGE_BADGE = {
    "worse": Status.COLLAPSE.badge,
    "better": Status.HEALTHY.badge,
    "same": "\N{HEAVY EQUALS SIGN}",
    "new": "\N{SQUARED NEW}",
    "gone": "\N{HEAVY MINUS SIGN}",
}


def factor_text(value: float | None) -> str:
    """A change of a ratio, a spread or a norm as a factor, the way it was made (a fall from
    1.14 to 0.04 is ``x28 lower``; its difference, -1.10, would hide that): ``x2.5 higher``.
    ``unchanged`` exactly when the factor, at the 3 significant digits shown, is 1: no factor
    is ever printed as ``x1``, and no change that would show is hidden."""
    if value is None:
        return "–"
    if value == 0:
        return "to zero"
    f = value if value > 1 else 1 / value
    amount = f"{f:.3g}" if f < 1e5 else f"{f:.2e}"
    if amount == "1":
        return "unchanged"
    return f"x{amount} {'higher' if value > 1 else 'lower'}"


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


COMPARE_COLUMNS = (
    Column("run", priority=0, shrink=True),
    Column("base", priority=2),
    Column("head", priority=1),
    Column("change", priority=1),
    Column("spread base", "right", priority=4),
    Column("head", "right", priority=3),
    Column("spread change", "right", priority=3),
    Column("mean norm base", "right", priority=6),
    Column("head", "right", priority=5),
    Column("norm change", "right", priority=5),
)


def compare_table(comparison: Comparison, footer: Sequence[str] = ()) -> TableSpec:
    rows = []
    for p in comparison.pairs:
        cells = [(p.name, "")]
        for side in ("base", "head"):
            status = _status(p, side)
            cells.append((status.value, status.style) if status else ("–", ""))
        cells.append((p.change, _CHANGE_STYLE[p.change]))
        cells += [
            (_num(p, "base", "spread", fmt_ratio), ""),
            (_num(p, "head", "spread", fmt_ratio), ""),
            (factor_text(p.factor("spread")), ""),
            (_num(p, "base", "mean_norm", fmt_norm), ""),
            (_num(p, "head", "mean_norm", fmt_norm), ""),
            (factor_text(p.factor("mean_norm")), ""),
        ]
        rows.append(tuple(cells))
    return TableSpec(COMPARE_COLUMNS, tuple(rows), tuple(footer))


_CUT_ORDER = {"worse": 0, "new": 1, "gone": 2, "better": 3, "same": 4}


def markdown_runs(comparison: Comparison, levels: Sequence[FailOn] = ()) -> Runs:
    """The comparison as pairs that :func:`gradlog.analysis.render.fit.fit` cuts: regressions
    past ``--fail-on`` kept first, then the runs that got worse, new, gone, better, the same."""
    pairs = comparison.pairs

    def rank(i: int) -> tuple[bool, int]:
        p = pairs[i]
        return (not any(p.regressed(lvl) for lvl in levels), _CUT_ORDER[p.change])

    return Runs(
        len(pairs),
        lambda keep: format_markdown(comparison, levels, [pairs[i] for i in keep]),
        sorted(range(len(pairs)), key=rank),
    )


def format_markdown(
    comparison: Comparison, levels: Sequence[FailOn] = (), pairs: Sequence[Pair] | None = None
) -> str:
    """The comparison as a PR comment; ``pairs``: only these (the verdict is of them all)."""
    pairs = comparison.pairs if pairs is None else pairs
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
        "Spread (base → head)",
        "Spread change",
        "Mean norm (base → head)",
        "Norm change",
    ]
    rows = []
    for p in pairs:
        statuses = []
        for side in ("base", "head"):
            s = _status(p, side)
            statuses.append(f"{s.badge} {s.value}" if s else "–")
        rows.append(
            [
                md.code(p.name),
                *statuses,
                f"{_CHANGE_BADGE[p.change]} {p.change}",
                f"{_num(p, 'base', 'spread', fmt_ratio)} → {_num(p, 'head', 'spread', fmt_ratio)}",
                factor_text(p.factor("spread")),
                f"{_num(p, 'base', 'mean_norm', fmt_norm)} → "
                f"{_num(p, 'head', 'mean_norm', fmt_norm)}",
                factor_text(p.factor("mean_norm")),
            ]
        )
    lines += md.table(header, rows, align="llllrrrr")
    details = []
    for p in pairs:
        if p.change != "worse" and not any(p.regressed(lvl) for lvl in levels):
            continue
        head = p.head
        parts = [f"{p.base.status.label if p.base else 'no base'} → {head.status.label}"]
        if head.first_collapse:
            parts.append(f"collapse from {head.first_collapse}")
        if head.advice.flags:
            parts.append(f"try {md.code(head.advice.flags, in_table=False)}")
        name = md.code(p.name, in_table=False)
        details.append(f"- {head.status.badge} {name}: " + "; ".join(parts) + ".")
    for row in comparison.errors:
        source = md.code(row.source, in_table=False)
        details.append(f"- {row.status.badge} {source}: {md.escape(row.error or '')}")
    if details:
        lines += ["", "### Details", "", *details]
    return "\n".join(lines) + "\n"


def json_data(comparison: Comparison, levels: Sequence[FailOn] = ()) -> dict:
    return {
        "gradlog_compare": 2,
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
                "spread_factor": encode_float(p.factor("spread")),
                "mean_norm_factor": encode_float(p.factor("mean_norm")),
            }
            for p in comparison.pairs
        ],
        "errors": [row_data(r) for r in comparison.errors],
    }
