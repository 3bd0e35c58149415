"""Reading logs into one Polars frame of the storage schema, leniently where nothing is lost.

What is read, skipped or refused is the table of docs/format.md ("Reading leniently, refusing
clearly"). In short: blank lines, a byte-order mark and unknown fields are ignored; a line that is
not JSON at all (cut short, corrupted, not UTF-8) is skipped with a counted note; a JSON record
that breaks the schema stops the read with its file, line and field; ``strict=True`` turns every
skip and note into that error. A log is data, never code: it is parsed as JSON or Parquet and
nothing else, and its size is bounded before it is parsed (:data:`~gradlog.format.MAX_LINE_BYTES`
per line, :data:`~gradlog.format.MAX_TASKS` tasks per record).

The package, one job a module:

* :mod:`.loaded`: :class:`LoadedLog` (what a read gives back) and the notes of one read;
* :mod:`.streams`: bytes in, with bounded lines (standard input, pipes, gzip, regular files);
* :mod:`.fast`: JSON Lines, the fast columnar read;
* :mod:`.jsonl`: JSON Lines, the fast read checked, or the careful read line by line;
* :mod:`.checks`: the schema's rules on whole columns, and the messages naming a record;
* :mod:`.parquet`: Parquet, and a Parquet snapshot's journal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import polars as pl

from gradlog.analysis.foreign import has_event_files, is_gradlog_head, read_foreign, sniff
from gradlog.analysis.limits import too_many_events
from gradlog.analysis.readers.jsonl import read_json_file, read_json_stream
from gradlog.analysis.readers.loaded import JSON_BLANK, UTF8_BOM, LoadedLog, Notes
from gradlog.analysis.readers.parquet import read_parquet, read_parquet_data
from gradlog.analysis.readers.streams import (
    Read,
    StreamFile,
    is_regular,
    peek,
    read_stream,
)
from gradlog.analysis.remote import URL_PATTERN
from gradlog.errors import LogFormatError
from gradlog.files import has_whole_line
from gradlog.format import GZIP_MAGIC, KIND_EVENT, PARQUET_MAGIC, journal_path, log_kind

__all__ = ["LoadedLog", "read_log"]

UNKNOWN_LOG = (
    "not a log gradlog can read: neither its own JSON Lines or Parquet nor a TensorBoard, "
    "Lightning CSV, Hugging Face trainer_state.json or W&B history log (docs/import.md)"
)


def read_log(
    path: str | os.PathLike[str],
    *,
    strict: bool = False,
    max_events: int | None = None,
    mapping=None,
    storage_options: dict | None = None,
) -> LoadedLog:
    """Read a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` log, or ``-`` for standard input.

    Another tool's log (a TensorBoard event file or run directory, Lightning's ``metrics.csv``,
    Hugging Face's ``trainer_state.json``, a W&B history export), told by its content, is read
    through ``mapping`` (:mod:`gradlog.analysis.foreign.mapping`; default: the current one).

    A pipe, FIFO or device (``<(cat log.jsonl)``, ``/dev/stdin``) is read as a stream, as
    standard input is, within the bounds of :mod:`.streams`. Raises
    :class:`~gradlog.errors.LogFormatError` naming the file (line, field) when the log cannot be
    read. With ``strict=True``, whatever would be skipped with a note is refused. A log of
    more than ``max_events`` events is refused, its JSON Lines read no further than that.

    An object-store URL (``s3://bucket/run.jsonl``) is read as a stream of its bytes, reached
    with ``storage_options`` (:mod:`gradlog.analysis.remote`): a crash's cut last line is
    skipped with the note a local file gets.
    """
    notes = Notes(strict)
    name = str(path)
    if name == "-":
        if sys.stdin is None:
            raise LogFormatError("no standard input to read", "<stdin>")
        return _read_stream_log(sys.stdin.buffer.read, "<stdin>", notes, max_events)
    if URL_PATTERN.match(name):
        from gradlog.analysis.remote import open_reader

        return _read_stream_log(open_reader(name, storage_options), name, notes, max_events)
    p = Path(path)
    if p.is_dir():
        if has_event_files(p):
            return _bounded(read_foreign(p, None, mapping), max_events)
        raise LogFormatError("is a directory, expected a log file", name)
    if not p.exists():
        journal = journal_path(p)
        if is_regular(journal):
            if not has_whole_line(journal):
                raise LogFormatError(
                    f"no records yet: the recorder has written none to its journal {journal}",
                    name,
                )
            notes.note(
                name,
                f"not written yet (the recorder did not close); read its journal {journal}",
            )
            return read_json_file(journal, str(journal), notes, max_events)
        raise LogFormatError("no such file", name)
    if not is_regular(p):  # a pipe, a FIFO, a device: opening it must not wait for a writer
        with StreamFile(p, name) as stream:
            return _read_stream_log(stream.read, name, notes, max_events)
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    if head.startswith(PARQUET_MAGIC) or name.endswith(".parquet"):
        try:
            return _bounded(read_parquet(p, name, notes), max_events)
        except LogFormatError:  # a W&B export is Parquet too: only then is it looked at again
            kind = sniff(p)
            if kind is None:
                raise
            return _bounded(read_foreign(name, kind, mapping), max_events)
    # an empty (or blank) file is no other tool's log: the JSON reader says it is empty
    text = head.lstrip(JSON_BLANK + UTF8_BOM)
    if text and not head.startswith(GZIP_MAGIC) and not is_gradlog_head(head):
        kind = sniff(p)
        if kind is not None:
            return _bounded(read_foreign(name, kind, mapping), max_events)
        if log_kind(name) is None and not text.startswith(b"{"):
            raise LogFormatError(UNKNOWN_LOG, name)
    return read_json_file(p, name, notes, max_events)


def _bounded(log: LoadedLog, max_events: int | None) -> LoadedLog:
    """A Parquet log (typed and compact once read) within ``max_events``."""
    if max_events is not None:
        events = log.frame.select((pl.col("kind") == KIND_EVENT).sum()).item()
        if events > max_events:
            raise too_many_events(log.path, max_events)
    return log


def _read_stream_log(read: Read, name: str, notes: Notes, max_events: int | None) -> LoadedLog:
    """A log read as a stream, whatever it holds: gzip, Parquet or JSON Lines."""
    first, read = peek(read, len(PARQUET_MAGIC))
    if first == PARQUET_MAGIC or (name.endswith(".parquet") and not first.startswith(GZIP_MAGIC)):
        return _bounded(
            read_parquet_data(read_stream(read, name, text=False), name, notes), max_events
        )
    gzipped = first.startswith(GZIP_MAGIC)
    return read_json_stream(read, name, notes, gzipped=gzipped, max_events=max_events)
