"""Following a log's path while its recorder writes it: what is there, and whether the run ended.

Nothing here opens a log for longer than a look, takes a lock a writer could wait on, or reads
a record: each refresh of :func:`gradlog.analysis.watch.follow` re-reads the log through the
one reader. A look is a few ``stat`` calls and, once a log holds something, the presence probe
of :mod:`gradlog.presence` (an exclusive lock tried without waiting and given back at once).

A run has ended when nobody writes its log any more: the JSON Lines writer's shared lock is
gone (closed, or its process ended however it ended); for Parquet, the journal is gone with
the lock file beside it (closed), or the journal is left but no process holds it (killed).
Since a writer takes its lock before its first record, a log that holds something and is not
locked is finished. Paths are looked at afresh each time, so a log created late, cut short,
or replaced by a new file (rotated) is followed as it is now.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gradlog.format import journal_path, lock_path, log_kind
from gradlog.presence import being_written


@dataclass(frozen=True)
class Look:
    """What is at one log's path now."""

    path: str
    exists: bool
    size: int = 0  # bytes: the file, or a Parquet log's snapshot and journal together
    mtime: float | None = None  # when it was last written
    inode: tuple[int, int] | None = None  # a JSON Lines file's identity
    ended: bool = False  # nobody writes it, and it holds something


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def look(path: str) -> Look:
    """One look at ``path`` (a JSON Lines log, or a Parquet log and its journal)."""
    p = Path(path)
    if log_kind(p.name) == "parquet":
        return _look_parquet(p)
    st = _stat(p)
    if st is None:
        return Look(path, False)
    ended = st.st_size > 0 and being_written(p) is False
    return Look(path, True, st.st_size, st.st_mtime, (st.st_dev, st.st_ino), ended)


def _look_parquet(p: Path) -> Look:
    journal = journal_path(p)
    # the journal first: a closing writer removes it after its last snapshot
    j = _stat(journal)
    snap = _stat(p)
    if j is not None:
        # a writer locks its journal before its first record: one that holds some, unlocked,
        # was left by a writer that is gone
        ended = j.st_size > 0 and being_written(journal) is False
    else:
        ended = snap is not None and not lock_path(p).exists()
    found = [s for s in (snap, j) if s is not None]
    if not found:
        return Look(str(p), False)
    size = sum(s.st_size for s in found)
    mtime = max(s.st_mtime for s in found)
    return Look(str(p), True, size, mtime, None, ended)


def logs_in(folder: str) -> list[str]:
    """The logs a folder holds now (as ``gradlog batch`` finds them), Parquet logs whose
    recorder has not written a snapshot yet (a journal alone) included."""
    from gradlog.analysis.sources import DATASET, MISSING, find_sources

    found = [
        s.path
        for s in find_sources([folder], note=lambda _text: None)
        if s.how not in (MISSING, DATASET)
    ]
    for journal in sorted(Path(folder).rglob("*.parquet.journal")):
        log = str(journal.with_name(journal.name.removesuffix(".journal")))
        if log not in found:
            found.append(log)
    return found


def change(before: Look | None, now: Look) -> str | None:
    """What happened to the file since the last look, when it is news: created, cut short,
    replaced by a new file (a rotated log)."""
    if before is None:
        return None
    if not before.exists:
        return f"{now.path}: created; following it" if now.exists else None
    if not now.exists:
        return f"{now.path}: gone; waiting for it to come back"
    if before.inode is not None and now.inode is not None and before.inode != now.inode:
        return f"{now.path}: replaced by a new file (rotated); following the new one"
    if now.size < before.size:
        return f"{now.path}: cut short ({before.size - now.size:,} bytes fewer); following what is left"
    return None


@dataclass(frozen=True)
class Followed:
    """One log at one moment of ``gradlog watch``: its look, its report when it could be read,
    else why not (while the recorder writes, a log may not be readable yet), and news of
    the file itself."""

    look: Look
    report: object | None = None  # gradlog.analysis.report.AnalysedReport
    problem: str | None = None
    news: str | None = None
