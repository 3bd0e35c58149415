"""JSON Lines logs: from a file or bytes to a :class:`~.loaded.LoadedLog`.

The fast columnar read (:mod:`.fast`) first, its columns checked as a whole (:mod:`.checks`).
Only a log that Polars cannot read is read line by line in Python, with
:func:`gradlog.record_rules.validate_record`, to skip what is not JSON and name the line and field of
what breaks the schema.
"""

from __future__ import annotations

import bisect
import json
import os
import stat
from pathlib import Path

import polars as pl

from gradlog.analysis.limits import too_many_events
from gradlog.analysis.readers.checks import (
    JsonPlace,
    SchemaViolation,
    check,
    parse_float,
    reject_constant,
)
from gradlog.analysis.readers.fast import FastReadFailed, canonical, cast_storage, fast_text
from gradlog.analysis.readers.loaded import (
    JSON_BLANK,
    MAX_NOTED_LINES,
    UTF8_BOM,
    LoadedLog,
    Notes,
    first_line,
)
from gradlog.analysis.readers.streams import (
    Read,
    check_file_lines,
    ends_whole,
    gunzip,
    read_stream,
)
from gradlog.errors import LogFormatError
from gradlog.format import GZIP_MAGIC, KIND_EVENT
from gradlog.frames import COLUMNS
from gradlog.record_rules import validate_record

# The JSON text parsed at once. The columnar parse holds about ten times its text while it
# works, so a large log is parsed a piece at a time and only its typed columns are kept: the
# peak is the typed log plus one piece's parse, not ten times the log (benchmarks/bounds.py).
PIECE_BYTES = 16 << 20


def read_json_file(p: Path, name: str, notes: Notes, max_events: int | None = None) -> LoadedLog:
    pieces = _Pieces(name, notes, max_events)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below, whichever way the read goes
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    with fh:
        try:
            info = os.fstat(fh.fileno())
            head = fh.read(3)
            fh.seek(0)
            if head[:2] == GZIP_MAGIC:
                gunzip(fh.read, name, notes, sink=pieces.feed)
                return pieces.finish()
            if not stat.S_ISREG(info.st_mode):  # a pipe or a device: read it as a stream
                read_stream(fh.read, name, sink=pieces.feed)
                return pieces.finish()
            check_file_lines(fh, info.st_size, name)
            if head == UTF8_BOM or info.st_size > PIECE_BYTES or not ends_whole(fh, info.st_size):
                while chunk := fh.read(PIECE_BYTES):
                    pieces.feed(chunk)
                return pieces.finish()
        except OSError as exc:
            raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    # A whole file of one piece: Polars maps it from the path, which saves a copy in memory.
    pieces.parse(str(p))
    return pieces.finish()


def read_json_data(data: bytes, name: str, notes: Notes) -> LoadedLog:
    pieces = _Pieces(name, notes)
    pieces.feed(data)
    return pieces.finish()


def read_json_stream(
    read: Read, name: str, notes: Notes, *, gzipped: bool, max_events: int | None = None
) -> LoadedLog:
    """JSON Lines (gzipped or not) from a stream, parsed piece by piece as it arrives."""
    pieces = _Pieces(name, notes, max_events)
    if gzipped:
        gunzip(read, name, notes, sink=pieces.feed)
    else:
        read_stream(read, name, sink=pieces.feed)
    return pieces.finish()


class _Pieces:
    """A log's text, fed in any sizes, parsed in pieces of whole lines of about
    :data:`PIECE_BYTES`; the typed columns of each piece kept, and where its lines were.
    More than ``max_events`` events stop the read there."""

    def __init__(self, name: str, notes: Notes, max_events: int | None = None) -> None:
        self.name, self.notes, self.max_events = name, notes, max_events
        self.events = 0
        self.pending: list[bytes] = []
        self.size = 0
        self.line = 1  # the number of the first line not yet parsed
        self.frames: list[pl.DataFrame] = []
        self.places: list[tuple[int, int, list[int] | None]] = []  # (row, first line, numbers)
        self.rows = 0
        self.skipped: list[tuple[int, str]] = []
        self.started = False

    def feed(self, data: bytes) -> None:
        if not self.started and (self.size + len(data) < len(UTF8_BOM)):
            self.pending.append(data)  # too little yet to tell a byte-order mark
            self.size += len(data)
            return
        if not self.started:
            self.started = True
            data = b"".join([*self.pending, data])
            self.pending, self.size = [], 0
            if data.startswith(UTF8_BOM):  # editors on Windows add one; it is not JSON
                data = data[len(UTF8_BOM) :]
        self.pending.append(data)
        self.size += len(data)
        if self.size >= PIECE_BYTES:
            text = b"".join(self.pending)
            cut = text.rfind(b"\n") + 1
            self.pending = [text[cut:]] if cut < len(text) else []
            self.size = len(text) - cut
            if cut:
                self.parse(text[:cut])

    def parse(self, source: str | bytes) -> None:
        """Parse whole lines (bytes, or the path of a file of whole lines)."""
        first = self.line
        kept_lines: list[int] | None = None
        try:
            text = fast_text(source)
        except FastReadFailed:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            kept, kept_lines, skipped = _scan_lines(data, self.name, first)
            self.skipped += skipped
            source = data
            text = None
            if kept:
                try:  # the kept records, rewritten as a gradlog writer lays them out
                    text = fast_text(kept)
                except FastReadFailed as exc:
                    raise LogFormatError(
                        f"cannot be read as JSON Lines ({exc})", self.name
                    ) from None
        data_lines = _count_lines(source)
        self.line += data_lines
        if text is None or text.height == 0:
            return
        lines = _LineIndex(source, kept_lines, first)
        frame = cast_storage(text)
        check(text, frame, JsonPlace(self.name, lines, text.get_column("_meta_json")))
        if self.max_events is not None:
            self.events += frame.select((pl.col("kind") == KIND_EVENT).sum()).item()
            if self.events > self.max_events:
                raise too_many_events(self.name, self.max_events)
        self.frames.append(frame.select(COLUMNS))
        identity = kept_lines is None and text.height == data_lines  # no blank line among them
        self.places.append((self.rows, first, None if identity else lines.numbers()))
        self.rows += text.height

    def finish(self) -> LoadedLog:
        data = b"".join(self.pending)
        self.pending = []
        if not self.started and data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM) :]
        data = _drop_partial_last_line(data, self.name, self.notes, self.line, self.rows > 0)
        if data:
            self.parse(data)
        if not self.rows:
            line, reason = self.skipped[0] if self.skipped else (None, "empty log (no records)")
            raise LogFormatError(reason, self.name, line)
        for line, reason in self.skipped[:MAX_NOTED_LINES]:
            self.notes.skip(self.name, line, f"a line that is {reason}")
        if len(self.skipped) > MAX_NOTED_LINES:
            self.notes.skip(
                self.name,
                None,
                f"{len(self.skipped) - MAX_NOTED_LINES} more broken lines "
                f"({len(self.skipped)} in all)",
            )
        frame = self.frames[0] if len(self.frames) == 1 else pl.concat(self.frames, rechunk=False)
        log = LoadedLog(self.name, frame, self.notes.items)
        places = self.places
        starts = [p[0] for p in places]

        def where(row: int) -> str | None:
            start, first, numbers = places[bisect.bisect_right(starts, row) - 1]
            return f"line {first + row - start if numbers is None else numbers[row - start]}"

        log._where = where
        return log


def _count_lines(source: str | bytes) -> int:
    """The lines of a piece (its last one whether or not it ends with a newline)."""
    if isinstance(source, str):
        with open(source, "rb") as fh:
            data = fh.read()
    else:
        data = source
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _drop_partial_last_line(
    data: bytes, name: str, notes: Notes, first: int, any_before: bool
) -> bytes:
    """A crash mid-write leaves a last line without its newline: skip it, with a note."""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    if not tail.strip(JSON_BLANK):
        return data
    try:
        if validate_record(json.loads(tail)) is None:
            return data  # a whole record that only lacks its newline
    except (ValueError, RecursionError):
        pass
    line = first + data.count(b"\n")
    if not any_before and not data[:cut].strip(JSON_BLANK):
        raise LogFormatError("no whole record (the only line is partly written)", name, line)
    notes.skip(name, line, f"a partly written last line ({len(tail)} bytes)")
    return data[:cut]


class _LineIndex:
    """Maps a piece's row back to its line in the file, for messages (computed only when asked)."""

    def __init__(self, source: str | bytes, kept: list[int] | None, first: int) -> None:
        self.source = source
        self.kept = kept
        self.first = first

    def _data(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else Path(self.source).read_bytes()

    def numbers(self) -> list[int]:
        if self.kept is None:
            # the lines Polars reads: all but the blank ones
            self.kept = [
                n
                for n, line in enumerate(self._data().split(b"\n"), start=self.first)
                if line.strip(JSON_BLANK)
            ]
        return self.kept

    def number(self, row: int) -> int | None:
        numbers = self.numbers()
        return numbers[row] if 0 <= row < len(numbers) else None

    def text(self, row: int) -> bytes | None:
        number = self.number(row)
        return None if number is None else self._data().split(b"\n")[number - self.first]


def _scan_lines(
    data: bytes, name: str, first: int
) -> tuple[bytes, list[int], list[tuple[int, str]]]:
    """Check every line in Python; the slow path, taken only when the fast read failed.

    A line that is not JSON at all (cut short or corrupted, e.g. by a crash before a later run
    appended to the file; not UTF-8; nested beyond reason) is skipped, and counted in a note at
    the end of the read. A JSON record that breaks the schema (a wrong type, an unknown
    version, a bare NaN) stops the read with its line and field: that is a writer's bug, not an
    accident, and guessing would hide it. Returns the kept lines, their numbers (counting from
    ``first``) and the skipped lines' numbers and reasons.
    """
    kept: list[bytes] = []
    numbers: list[int] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=first):
        if not line.strip(JSON_BLANK):
            continue
        try:
            obj = json.loads(line, parse_constant=reject_constant, parse_float=parse_float)
        except SchemaViolation as exc:
            raise LogFormatError(str(exc), name, number) from None
        except UnicodeDecodeError as exc:
            skipped.append((number, f"not UTF-8 text ({exc.reason})"))
            continue
        except RecursionError:
            skipped.append((number, "nested too deeply to be a gradlog record"))
            continue
        except ValueError as exc:
            skipped.append((number, f"not valid JSON ({first_line(exc)})"))
            continue
        problem = validate_record(obj)
        if problem is not None:
            raise LogFormatError(problem[1], name, number, problem[0])
        text = canonical(obj)
        if b"\\u" in line and _lone_surrogate(obj):
            skipped.append((number, "not UTF-8 text (an escaped lone surrogate)"))
            continue
        kept.append(text.encode())
        numbers.append(number)
    return (b"\n".join(kept) + b"\n" if kept else b""), numbers, skipped


def _lone_surrogate(obj: object) -> bool:
    """Whether a parsed record holds a lone surrogate (an escape no UTF-8 text can hold)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
