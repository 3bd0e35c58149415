"""Turning the paths given to ``gradlog batch`` into the logs to read.

Files, directories (searched recursively), globs and object-store URLs, of JSON Lines
(``.jsonl``, ``.jsonl.gz``, ``.ndjson``) and Parquet. A directory laid out as a hive-partitioned
Parquet dataset (``key=value`` folders) is one source, scanned as a whole. Nothing is read here
but the first bytes of local files (to tell Parquet from JSON, as the report does) and their
last byte (a JSON Lines file that does not end its last line was cut by a crash, and goes
straight to the careful reader).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gradlog.format import JOURNAL_SUFFIX, PARQUET_MAGIC, log_kind

URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
HIVE_PART = re.compile(r"^[^=]+=[^=]*$")
GLOB_CHARS = re.compile(r"[*?\[]")

# How to read a source:
JSON = "json"  # JSON Lines, local: one fast scan with many others
PARQUET = "parquet"  # a Parquet file, local: likewise
DATASET = "dataset"  # a hive-partitioned Parquet directory or an object-store prefix
CAREFUL = "careful"  # through gradlog.analysis.readers.read_log: crashed files, Parquet journals
REMOTE_JSON = "remote-json"  # an object-store URL (or glob) of JSON Lines
REMOTE_PARQUET = "remote-parquet"  # an object-store URL (or glob) of Parquet
MISSING = "missing"  # named but not there: an error row


@dataclass(frozen=True)
class Source:
    """One log (or one dataset) to read, and how."""

    path: str
    how: str
    size: int = 0  # bytes on disk, to split the work into chunks of similar size


def find_sources(paths: list[str]) -> list[Source]:
    """The sources named by ``paths``, in the order given, each once."""
    found: dict[str, Source] = {}
    for given in paths:
        for source in _expand(given):
            found.setdefault(source.path, source)
    return list(found.values())


def _expand(given: str) -> list[Source]:
    if URL_PATTERN.match(given):
        return [_remote(given)]
    if GLOB_CHARS.search(given):
        matches = sorted(glob.glob(given, recursive=True))
        if not matches:
            return [Source(given, MISSING)]
        return [s for m in matches for s in _local(m, explicit=False)]
    return _local(given, explicit=True)


def _remote(url: str) -> Source:
    kind = log_kind(url.rstrip("/"))
    if kind == "jsonl":
        return Source(url, REMOTE_JSON)
    if kind == "parquet":
        return Source(url, REMOTE_PARQUET)
    return Source(url, DATASET)  # a prefix: scanned as a (possibly hive-partitioned) dataset


def _local(path: str, *, explicit: bool) -> list[Source]:
    p = Path(path)
    if p.is_dir():
        return _walk(p)
    if p.is_file():
        if not explicit and not _is_log_name(p.name):
            return []
        return [_file(p)]
    if explicit and p.name.endswith(JOURNAL_SUFFIX):
        return []
    if explicit:
        # A Parquet log whose recorder crashed before its first snapshot exists only as its
        # journal; the careful reader knows how to read it.
        journal = p.with_name(p.name + JOURNAL_SUFFIX)
        if journal.exists():
            return [Source(str(p), CAREFUL, journal.stat().st_size)]
        return [Source(str(p), MISSING)]
    return []


def _is_log_name(name: str) -> bool:
    return log_kind(name) is not None


def _walk(root: Path) -> list[Source]:
    sources: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        hive = [d for d in dirnames if HIVE_PART.match(d)]
        if hive:
            # key=value folders: a partitioned dataset rooted here, read as one source
            sources.append(Source(str(here), DATASET, _tree_size(here)))
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            p = here / name
            if name.endswith(JOURNAL_SUFFIX):
                log = p.with_name(name[: -len(JOURNAL_SUFFIX)])
                if _is_log_name(log.name) and not log.exists():
                    sources.append(Source(str(log), CAREFUL, _size(p)))
                continue
            if _is_log_name(name):
                sources.append(_file(p))
    return sources


def _file(p: Path) -> Source:
    size = _size(p)
    journal = p.with_name(p.name + JOURNAL_SUFFIX)
    if journal.exists():
        return Source(str(p), CAREFUL, size)  # a crashed Parquet writer: merge its journal
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
            if head == PARQUET_MAGIC:
                return Source(str(p), PARQUET, size * 4)  # columnar and compressed
            if head[:2] == b"\x1f\x8b":
                return Source(str(p), JSON, size * 8)  # compressed: weigh what it expands to
            if size and not _ends_with_newline(fh, size):
                return Source(str(p), CAREFUL, size)
    except OSError:
        return Source(str(p), CAREFUL, size)  # let the reader name the problem
    if log_kind(p.name) == "parquet":
        return Source(str(p), CAREFUL, size)  # named Parquet but is not: the reader says so
    return Source(str(p), JSON, size)


def _ends_with_newline(fh, size: int) -> bool:
    fh.seek(size - 1)
    return fh.read(1) == b"\n"


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _tree_size(root: Path) -> int:
    return sum(_size(Path(d) / f) for d, _, files in os.walk(root) for f in files) * 8
