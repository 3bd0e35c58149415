"""``gradlog compare BASE HEAD``: did this change make training worse?

Each side is summarised by :func:`gradlog.analysis.batch.run_batch` (a file, a directory, globs), then
its runs are paired: two single runs with each other; otherwise by file (relative to the path
given) and run id, then by file and position within the file, then by run id alone. A pair is
*worse* when the head's status is worse than the base's (:class:`gradlog.analysis.status.Status`), and a
*regression* past a ``--fail-on`` level when the head reaches that level and the base did not
(a head run without a base counts when it reaches it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gradlog.analysis import engine
from gradlog.analysis.batch import BatchOptions, BatchResult, run_batch
from gradlog.analysis.model import RunSummary
from gradlog.classify import FailOn


@dataclass(frozen=True)
class Pair:
    """A run of the base and the same run of the head (either may be missing)."""

    base: RunSummary | None
    head: RunSummary | None

    @property
    def change(self) -> str:
        """``worse``, ``better``, ``same``, ``new`` (head only) or ``gone`` (base only)."""
        if self.base is None:
            return "new"
        if self.head is None:
            return "gone"
        if self.head.status.rank < self.base.status.rank:
            return "worse"
        if self.head.status.rank > self.base.status.rank:
            return "better"
        return "same"

    @property
    def name(self) -> str:
        """The run's name for tables: its id (both ids when they differ)."""
        ids = [r.name for r in (self.base, self.head) if r is not None]
        return ids[0] if len(set(ids)) == 1 else " → ".join(ids)

    def factor(self, field: str) -> float | None:
        """head / base of a positive numeric field (a spread, a norm), where both have it."""
        if self.base is None or self.head is None:
            return None
        a, b = getattr(self.base, field), getattr(self.head, field)
        if a is None or b is None or not a > 0 or not b >= 0:
            return None
        return b / a

    def regressed(self, level: FailOn) -> bool:
        if self.head is None or not self.head.reaches(level):
            return False
        return self.base is None or not self.base.reaches(level)


@dataclass(frozen=True)
class Comparison:
    base: BatchResult
    head: BatchResult
    pairs: tuple[Pair, ...]

    def regressions(self, levels: Sequence[FailOn]) -> list[tuple[FailOn, Pair]]:
        return [(lvl, p) for lvl in levels for p in self.pairs if p.regressed(lvl)]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.change] = out.get(p.change, 0) + 1
        return out

    @property
    def errors(self) -> tuple[RunSummary, ...]:
        return self.base.errors + self.head.errors


def compare(
    base: Sequence[str],
    head: Sequence[str],
    judging: engine.Options = engine.Options(),
    options: BatchOptions = BatchOptions(),
) -> Comparison:
    """Summarise both sides (as ``gradlog batch``) and pair their runs."""
    b, h = run_batch(base, judging, options), run_batch(head, judging, options)
    return Comparison(b, h, tuple(pair_runs(b.rows, h.rows, _root(base), _root(head))))


def _root(paths: Sequence[str]) -> str:
    """What the files of one side are named relative to: the directory given, or theirs."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return paths[0]
    dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return os.path.commonpath(dirs) if dirs else ""


def _relative(row: RunSummary, root: str) -> str:
    try:
        return os.path.relpath(os.path.abspath(row.source), os.path.abspath(root))
    except ValueError:  # another drive, or a URL
        return row.source


def pair_runs(
    base: Sequence[RunSummary], head: Sequence[RunSummary], base_root: str = "", head_root: str = ""
) -> list[Pair]:
    """Pair the runs of two sides (see the module docstring); unpaired runs stand alone."""
    base_runs = [r for r in base if r.error is None]
    head_runs = [r for r in head if r.error is None]
    if len(base_runs) == 1 and len(head_runs) == 1:
        return [Pair(base_runs[0], head_runs[0])]

    def keys(rows: Sequence[RunSummary], root: str) -> list[tuple[tuple, tuple, tuple]]:
        ordinal: dict[str, int] = {}
        out = []
        for row in rows:
            rel = _relative(row, root)
            n = ordinal[rel] = ordinal.get(rel, -1) + 1
            out.append(((rel, row.run), (rel, n), ("id", row.run)))
        return out

    bkeys, hkeys = keys(base_runs, base_root), keys(head_runs, head_root)
    paired: dict[int, int] = {}  # head index -> base index
    for level in range(3):
        taken = set(paired.values())
        free = {}
        for i, k in enumerate(bkeys):
            if i not in taken:
                free.setdefault(k[level], []).append(i)
        if level == 2:  # run ids alone pair only when unique on both sides
            free = {k: v for k, v in free.items() if len(v) == 1}
        for j, k in enumerate(hkeys):
            if j in paired or not free.get(k[level]):
                continue
            paired[j] = free[k[level]].pop(0)
    pairs = []
    used = set(paired.values())
    for j, row in enumerate(head_runs):
        pairs.append(Pair(base_runs[paired[j]] if j in paired else None, row))
    pairs += [Pair(row, None) for i, row in enumerate(base_runs) if i not in used]
    return pairs
