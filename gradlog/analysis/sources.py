"""Turning the paths given to ``gradlog batch`` into the logs to read.

Files, directories (searched recursively), globs and object-store URLs, of JSON Lines
(``.jsonl``, ``.jsonl.gz``, ``.ndjson``) and Parquet. A directory laid out as a hive-partitioned
Parquet dataset (``key=value`` folders) is one source, scanned as a whole. A URL is listed object
by object (:mod:`gradlog.analysis.remote`): each object is its own source, and a prefix holding
``key=value`` folders is a dataset, as a local folder. Nothing is read here
but the first bytes of local files (to tell Parquet from JSON, as the report does), their last
byte (a JSON Lines file that does not end its last line was cut by a crash, and goes straight
to the careful reader), and, in a file larger than the line bound, where its newlines are (a
line longer than :data:`~gradlog.format.MAX_LINE_BYTES` sends the file to the careful reader,
which refuses it in the words of ``gradlog report``).

A path that exists is taken as it is, even when it holds glob characters (``run[1].jsonl``).
Inside a directory or a glob, a file that is not a regular file (a FIFO, a device, a socket) is
skipped with a note, since reading it could wait forever; named on its own, it is read as a
stream, as ``gradlog report`` reads it. A folder that cannot be read is noted, never skipped
silently.

Other tools' logs (docs/import.md) are careful sources, read one at a time by ``read_log``: a
folder holding TensorBoard event files is one run, and a ``.csv``, ``.json`` or JSON Lines file
that is no gradlog log is looked at (its first :data:`~gradlog.analysis.foreign.HEAD_BYTES`) for
Lightning's, Hugging Face's or W&B's; found in a folder, a file that is none of these is left out.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gradlog.analysis.foreign import TFEVENTS, is_gradlog_head, sniff
from gradlog.analysis.remote import (
    GLOB_CHARS,
    URL_PATTERN,
    MissingObject,
    ends_whole,
    listed,
    objects,
)
from gradlog.analysis.stamps import file_stamp, local_stamp
from gradlog.errors import LogFormatError
from gradlog.format import GZIP_MAGIC, JOURNAL_SUFFIX, MAX_LINE_BYTES, PARQUET_MAGIC, log_kind

HIVE_PART = re.compile(r"^[^=]+=[^=]*$")

# How to read a source:
JSON = "json"  # JSON Lines, local: one fast scan with many others
PARQUET = "parquet"  # a Parquet file, local: likewise
DATASET = "dataset"  # a hive-partitioned Parquet directory or an object-store prefix
# A log larger than this (JSON Lines, or what gzip or Parquet expand to) is read alone, by the
# careful reader: JSON Lines a piece at a time, and no more events than the analysis may hold
# (MAX_EVENTS). A scan holds several times its text at once, and a batch's memory must not grow
# with one file.
ALONE_BYTES = 64 << 20
CAREFUL = "careful"  # through gradlog.analysis.readers.read_log: crashed files, Parquet journals
REMOTE_JSON = "remote-json"  # an object of JSON Lines in object storage
REMOTE_PARQUET = "remote-parquet"  # a Parquet object in object storage
MISSING = "missing"  # named but not there: an error row


@dataclass(frozen=True)
class Source:
    """One log (or one dataset) to read, and how."""

    path: str
    how: str
    size: int = 0  # bytes on disk, to split the work into chunks of similar size
    # Its version: the same stamp, the same bytes (``gradlog batch --summary`` reads only sources
    # whose stamp differs from its table's). An object's ETag (or size and modification time); a
    # local file's size and modification time in ns (with its journal's); a folder's digest of
    # those of its files. None: no version known, always read.
    stamp: str | None = None
    error: str | None = None  # why a MISSING source is missing, when not "no such file"


Note = Callable[[str], None]  # one note for standard error: "FILE: skipped, ..."
Found = Callable[[int], None]  # how many sources found so far (a progress bar's count)


def find_sources(
    paths: list[str],
    note: Note | None = None,
    *,
    storage_options: dict | None = None,
    counted: Found | None = None,
) -> list[Source]:
    """The sources named by ``paths``, in the order given, each once.

    ``note`` receives what is left out and why (a FIFO in a folder, a folder that cannot be
    read); by default it goes to standard error as a ``Note:`` line. ``storage_options``:
    how to reach object storage (:mod:`gradlog.analysis.remote`). ``counted``, if given, is
    told the count so far while a folder or a glob is searched (thousands take seconds).
    """
    if note is None:
        from gradlog.analysis.output import note
    found: dict[str, Source] = {}
    for given in paths:
        seen = None if counted is None else (lambda n, before=len(found): counted(before + n))
        for source in _expand(given, note, storage_options, seen):
            found.setdefault(source.path, source)
        if counted is not None:
            counted(len(found))
    return list(found.values())


def _expand(
    given: str, note: Note, storage_options: dict | None = None, seen: Found | None = None
) -> list[Source]:
    if URL_PATTERN.match(given):
        return _remote(given, storage_options)
    if GLOB_CHARS.search(given) and not os.path.lexists(given):
        matches = sorted(glob.glob(given, recursive=True))
        if not matches:
            return [Source(given, MISSING)]
        out: list[Source] = []
        for m in matches:  # each opened to tell what it holds: thousands take seconds
            if seen is not None:
                seen(len(out))
            out += [_stamped(s) for s in _local(m, note, explicit=False)]
        return out
    return [_stamped(s) for s in _local(given, note, explicit=True, seen=seen)]


def _remote(url: str, storage_options: dict | None) -> list[Source]:
    """An object-store URL's objects, each its own source (:mod:`gradlog.analysis.remote`
    lists them); under a prefix, a hive-partitioned dataset is one source, as a local one."""
    if not listed(url):  # a scheme only Polars reaches (hf://): its scans take it as given
        kind = log_kind(url.rstrip("/"))
        how = {"jsonl": REMOTE_JSON, "parquet": REMOTE_PARQUET}.get(kind, DATASET)
        return [Source(url, how)]
    try:
        found = objects(url, storage_options)
    except MissingObject as exc:
        return [Source(url, MISSING, error=exc.reason)]
    if len(found) == 1 and found[0].url == url:  # named on its own: read whatever its name
        obj = found[0]
        return [_remote_object(obj) or Source(obj.url, CAREFUL, obj.size, obj.stamp)]
    sources: list[Source] = []
    datasets: dict[str, list] = {}
    for obj in found:
        root = None if GLOB_CHARS.search(url) else _hive_root(url, obj.url)
        if root is not None:
            datasets.setdefault(root, []).append(obj)
        elif (source := _remote_object(obj)) is not None:
            sources.append(source)
    for root, parts in datasets.items():
        stamp = hashlib.sha1(",".join(p.stamp for p in parts).encode()).hexdigest()
        sources.append(Source(root, DATASET, sum(p.size for p in parts) * 8, stamp))
    return sources


def mark_cut(chunk: list[Source], storage_options: dict | None = None) -> list[Source]:
    """``chunk`` with each remote JSON Lines object that a crash cut (no final newline) sent
    to the careful reader, as a local one is when it is found. Asked only of a chunk whose
    scan failed: one one-byte request per object, where halving the chunk until the culprit
    stood alone would fetch every object of it several times over."""
    remote = [s.path for s in chunk if s.how == REMOTE_JSON and s.size and listed(s.path)]
    if not remote:
        return chunk
    whole = ends_whole(remote, storage_options)
    return [replace(s, how=CAREFUL) if whole.get(s.path) is False else s for s in chunk]


def _hive_root(prefix: str, url: str) -> str | None:
    """The folder of ``url`` (below ``prefix``) holding its first ``key=value`` folder."""
    base = prefix if prefix.endswith("/") else prefix + "/"
    parts = url[len(base) :].split("/")[:-1]
    for i, part in enumerate(parts):
        if HIVE_PART.match(part):
            return base + "".join(p + "/" for p in parts[:i])
    return None


def _remote_object(obj) -> Source | None:
    """How to read one object: whole and healthy-looking in one scan with others, or alone by
    the careful reader (compressed, or large enough to hold a line over the bound)."""
    kind = log_kind(obj.url)
    if kind == "parquet":
        size = obj.size * 4  # columnar and compressed: weigh what it expands to
        return Source(obj.url, CAREFUL if size > ALONE_BYTES else REMOTE_PARQUET, size, obj.stamp)
    if kind is None:
        return None
    careful = obj.url.endswith(".gz") or obj.size > min(ALONE_BYTES, MAX_LINE_BYTES)
    return Source(obj.url, CAREFUL if careful else REMOTE_JSON, obj.size, obj.stamp)


def _local(path: str, note: Note, *, explicit: bool, seen: Found | None = None) -> list[Source]:
    p = Path(path)
    if p.is_dir():
        return _walk(p, note, seen)
    if p.is_file():
        if not explicit and not _is_log_name(p.name):
            return [_foreign(p)] if _is_foreign(p) else []
        return [_file(p)]
    if os.path.exists(p):  # a FIFO, a device, a socket
        if explicit:
            return [Source(str(p), CAREFUL)]  # read as a stream, as gradlog report reads it
        if _is_log_name(p.name) or p.name.endswith(JOURNAL_SUFFIX):
            note(_not_regular(p))
        return []
    if explicit and p.name.endswith(JOURNAL_SUFFIX):
        return []
    if explicit:
        # A Parquet log whose recorder crashed before its first snapshot exists only as its
        # journal; the careful reader knows how to read it.
        journal = p.with_name(p.name + JOURNAL_SUFFIX)
        if _regular(journal):
            return [Source(str(p), CAREFUL, journal.stat().st_size)]
        return [Source(str(p), MISSING)]
    return []


def _stamped(source: Source) -> Source:
    """``source`` with its :attr:`Source.stamp`, taken before any read (a file changed while
    it is read then differs from its stamp next time, and is read again)."""
    if source.how == MISSING or source.stamp is not None:
        return source
    return replace(source, stamp=local_stamp(Path(source.path)))


def _is_log_name(name: str) -> bool:
    return log_kind(name) is not None


# Names under which other tools' logs are looked for in a folder (the content decides).
_FOREIGN_SUFFIXES = (".csv", ".json")


def _is_foreign(p: Path) -> bool:
    name = p.name.lower()
    if not (name.endswith(_FOREIGN_SUFFIXES) or name.startswith(TFEVENTS)):
        return False
    return _regular(p) and sniff(p) is not None


def _foreign(p: Path) -> Source:
    size = _tree_size(p) // 8 if p.is_dir() else _size(p)
    return Source(str(p), CAREFUL, size)


def _walk(root: Path, note: Note, seen: Found | None = None) -> list[Source]:
    def unreadable(exc: OSError) -> None:
        note(f"{exc.filename}: cannot read this folder ({exc.strerror}); its logs are left out")

    sources: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        here = Path(dirpath)
        tensorboard = any(name.startswith(TFEVENTS) for name in filenames)
        if tensorboard:  # a TensorBoard run: its event files together, as TensorBoard reads them
            sources.append(_foreign(here))
        hive = [d for d in dirnames if HIVE_PART.match(d)]
        if hive:
            # key=value folders: a partitioned dataset rooted here, read as one source
            sources.append(Source(str(here), DATASET, _tree_size(here)))
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            if seen is not None:
                seen(len(sources))
            p = here / name
            is_journal = name.endswith(JOURNAL_SUFFIX)
            if not (is_journal or _is_log_name(name)):
                if not (tensorboard and name.startswith(TFEVENTS)) and _is_foreign(p):
                    sources.append(_foreign(p))
                continue
            st = _stat(p)  # once: whether it is a regular file, its size and its stamp
            if st is not None and not stat.S_ISREG(st.st_mode):
                note(_not_regular(p))  # a FIFO could keep the batch waiting forever
                continue
            if is_journal:
                log = p.with_name(name[: -len(JOURNAL_SUFFIX)])
                if _is_log_name(log.name) and not log.exists():
                    sources.append(Source(str(log), CAREFUL, _size(p)))
                continue
            sources.append(_file(p, st))
    return sources


def _regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.stat().st_mode)
    except OSError:
        return False


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(p: Path) -> str:
    try:
        mode = p.stat().st_mode
        kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    except OSError:
        kind = "not a regular file"
    return f"{p}: skipped, {kind} (name it alone to read it as a stream)"


def _file(p: Path, st: os.stat_result | None = None) -> Source:
    """How to read the file ``p`` (``st``: its stat, when the caller has it), stamped."""
    st = st or _stat(p)
    size = 0 if st is None else st.st_size
    journal = _stat(p.with_name(p.name + JOURNAL_SUFFIX))
    journal = journal if journal is not None and stat.S_ISREG(journal.st_mode) else None
    stamp = None if st is None else file_stamp(st, journal)

    def source(how: str, weight: int = size) -> Source:
        return Source(str(p), how, weight, stamp)

    if journal is not None:
        return source(CAREFUL)  # a crashed Parquet writer: merge its journal
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
            if not head.startswith((PARQUET_MAGIC, GZIP_MAGIC)) and not is_gradlog_head(head):
                if sniff(p) is not None:  # another tool's log, named .jsonl or .ndjson
                    return source(CAREFUL)
            head = head[:4]
            if head == PARQUET_MAGIC:  # columnar and compressed: weigh what it expands to
                return source(CAREFUL if size * 4 > ALONE_BYTES else PARQUET, size * 4)
            if head[:2] == b"\x1f\x8b":  # compressed: weigh what it expands to
                return source(CAREFUL if size * 8 > ALONE_BYTES else JSON, size * 8)
            if size > ALONE_BYTES:
                return source(CAREFUL)
            if size and not _ends_with_newline(fh, size):
                return source(CAREFUL)
            if size > MAX_LINE_BYTES and log_kind(p.name) != "parquet" and _long_line(fh, size):
                return source(CAREFUL)  # the reader refuses it, naming the line
    except OSError:
        return source(CAREFUL)  # let the reader name the problem
    if log_kind(p.name) == "parquet":
        return source(CAREFUL)  # named Parquet but is not: the reader says so
    return source(JSON)


def _stat(p: Path) -> os.stat_result | None:
    try:
        return os.stat(p)
    except OSError:
        return None


def _long_line(fh, size: int) -> bool:
    """Whether a line is longer than MAX_LINE_BYTES (found without reading the file)."""
    from gradlog.analysis.readers.streams import check_file_lines

    try:
        check_file_lines(fh, size, fh.name)
    except LogFormatError:
        return True
    return False


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
