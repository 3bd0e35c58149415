"""JSON Lines logs: from a file or bytes to a :class:`~.loaded.LoadedLog`.

The fast columnar read (:mod:`.fast`) first, its columns checked as a whole (:mod:`.checks`).
Only a log that Polars cannot read is read line by line in Python, with
:func:`gradlog.format.validate_record`, to skip what is not JSON and name the line and field of
what breaks the schema.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

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
from gradlog.analysis.readers.streams import check_file_lines, ends_whole, gunzip, read_stream
from gradlog.errors import LogFormatError
from gradlog.format import GZIP_MAGIC, validate_record
from gradlog.frames import COLUMNS


def read_json_file(p: Path, name: str, notes: Notes) -> LoadedLog:
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
                return read_json_data(gunzip(fh.read, name, notes), name, notes)
            if not stat.S_ISREG(info.st_mode):  # a pipe or a device: read it as a stream
                return read_json_data(read_stream(fh.read, name), name, notes)
            check_file_lines(fh, info.st_size, name)
            if head == UTF8_BOM or not ends_whole(fh, info.st_size):
                return read_json_data(fh.read(), name, notes)
        except OSError as exc:
            raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    # A whole file: Polars maps it from the path, which saves a copy of it in memory.
    return _read_json(str(p), name, notes)


def read_json_data(data: bytes, name: str, notes: Notes) -> LoadedLog:
    if data.startswith(UTF8_BOM):  # editors on Windows add one; it is not part of the JSON
        data = data[len(UTF8_BOM) :]
    data = _drop_partial_last_line(data, name, notes)
    return _read_json(data, name, notes)


def _drop_partial_last_line(data: bytes, name: str, notes: Notes) -> bytes:
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
    line = data.count(b"\n") + 1
    if not data[:cut].strip(JSON_BLANK):
        raise LogFormatError("no whole record (the only line is partly written)", name, line)
    notes.skip(name, line, f"a partly written last line ({len(tail)} bytes)")
    return data[:cut]


def _read_json(source: str | bytes, name: str, notes: Notes) -> LoadedLog:
    """Read JSON Lines from a path or bytes; line by line only where the fast read fails."""
    kept_lines: list[int] | None = None
    try:
        text = fast_text(source)
    except FastReadFailed:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        kept, kept_lines = _scan_lines(data, name, notes)
        try:
            text = fast_text(kept)  # the kept records, rewritten as a gradlog writer lays them out
        except FastReadFailed as exc:
            raise LogFormatError(f"cannot be read as JSON Lines ({exc})", name) from None
        source = data
    if text.height == 0:
        raise LogFormatError("empty log (no records)", name)
    lines = _LineIndex(source, kept_lines)
    frame = cast_storage(text)
    check(text, frame, JsonPlace(name, lines, text.get_column("_meta_json")))
    log = LoadedLog(name, frame.select(COLUMNS), notes.items)
    log._where = lambda row: f"line {lines.number(row)}"
    return log


class _LineIndex:
    """Maps a frame row back to its line in the file, for messages (computed only when asked)."""

    def __init__(self, source: str | bytes, kept: list[int] | None) -> None:
        self.source = source
        self.kept = kept

    def _data(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else Path(self.source).read_bytes()

    def _numbers(self) -> list[int]:
        if self.kept is None:
            # the lines Polars reads: all but the blank ones
            self.kept = [
                n
                for n, line in enumerate(self._data().split(b"\n"), start=1)
                if line.strip(JSON_BLANK)
            ]
        return self.kept

    def number(self, row: int) -> int | None:
        numbers = self._numbers()
        return numbers[row] if 0 <= row < len(numbers) else None

    def text(self, row: int) -> bytes | None:
        number = self.number(row)
        return None if number is None else self._data().split(b"\n")[number - 1]


def _scan_lines(data: bytes, name: str, notes: Notes) -> tuple[bytes, list[int]]:
    """Check every line in Python; the slow path, taken only when the fast read failed.

    A line that is not JSON at all (cut short or corrupted, e.g. by a crash before a later run
    appended to the file; not UTF-8; nested beyond reason) is skipped with a note. A JSON record
    that breaks the schema (a wrong type, an unknown version, a bare NaN) stops the read with
    its line and field: that is a writer's bug, not an accident, and guessing would hide it.
    Returns the kept lines and their line numbers.
    """
    kept: list[bytes] = []
    numbers: list[int] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
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
    if not kept:
        number, reason = skipped[0] if skipped else (None, "empty log (no records)")
        raise LogFormatError(reason, name, number)
    for number, reason in skipped[:MAX_NOTED_LINES]:
        notes.skip(name, number, f"a line that is {reason}")
    if len(skipped) > MAX_NOTED_LINES:
        notes.skip(
            name,
            None,
            f"{len(skipped) - MAX_NOTED_LINES} more broken lines ({len(skipped)} in all)",
        )
    return b"\n".join(kept) + b"\n", numbers


def _lone_surrogate(obj: object) -> bool:
    """Whether a parsed record holds a lone surrogate (an escape no UTF-8 text can hold)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
