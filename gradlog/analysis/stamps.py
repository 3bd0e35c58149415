"""A local source's stamp: what changes when its content may have.

``gradlog batch --summary`` (:mod:`gradlog.analysis.summary_table`) reads again only the sources
whose :attr:`~gradlog.analysis.sources.Source.stamp` differs from the one its table holds. For a
local file that is its size and modification time in nanoseconds, as ``make`` and ``rsync`` judge
a file, with its journal's when a Parquet log has one (the reader merges the two); for a folder
(a hive dataset, a TensorBoard run), a digest of the names, sizes and modification times of every
file below it. Objects in object storage get theirs from their listing
(:mod:`gradlog.analysis.remote`).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from gradlog.format import JOURNAL_SUFFIX


def local_stamp(p: Path) -> str | None:
    """``SIZE:MTIME_NS`` of a file (``+`` its journal's; ``journal:`` and the journal's alone
    when the log is not there yet), ``tree:`` and a digest for a folder, None for a stream (a
    FIFO) or what cannot be seen."""
    journal = p.with_name(p.name + JOURNAL_SUFFIX)
    try:
        st = p.stat()
    except OSError:
        return "journal:" + _file_stamp(journal) if _regular(journal) else None
    if stat.S_ISDIR(st.st_mode):
        digest = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath) / name
                digest.update(f"{f.relative_to(p)}\0{_file_stamp(f)}\0".encode())
        return "tree:" + digest.hexdigest()
    if not stat.S_ISREG(st.st_mode):
        return None
    return file_stamp(st, journal.stat() if _regular(journal) else None)


def file_stamp(st: os.stat_result, journal: os.stat_result | None = None) -> str:
    """A regular file's stamp from its stat (and its journal's, when it has one)."""
    own = f"{st.st_size}:{st.st_mtime_ns}"
    return own if journal is None else f"{own}+{journal.st_size}:{journal.st_mtime_ns}"


def _file_stamp(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.stat().st_mode)
    except OSError:
        return False
