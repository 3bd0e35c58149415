"""Reading logs into one Polars frame of the storage schema.

The fast path hands the whole file to Polars with an explicit schema. When that fails, or the
columns break a rule, a line-by-line pass with :func:`gradlog.schema.validate_record` finds the
first offending line and field, so the error can name them.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from gradlog.errors import LogFormatError
from gradlog.frames import COLUMNS, json_schema, storage_schema
from gradlog.schema import (
    FLOAT_FIELDS,
    KIND_EVENT,
    KIND_RUN,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    validate_record,
)
from gradlog.writers import journal_path

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class LoadedLog:
    """A log read into memory: the records as one frame, and what had to be skipped."""

    path: str
    frame: pl.DataFrame
    notes: list[str] = field(default_factory=list)


def read_log(path: str | os.PathLike[str]) -> LoadedLog:
    """Read a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` log, or ``-`` for standard input."""
    name = str(path)
    if name == "-":
        return _read_json_bytes(sys.stdin.buffer.read(), "<stdin>", [])
    p = Path(path)
    if p.is_dir():
        raise LogFormatError("is a directory, expected a log file", name)
    if not p.exists():
        journal = journal_path(p)
        if journal.exists():
            log = _read_json_bytes(journal.read_bytes(), str(journal), [])
            log.notes.insert(
                0,
                f"{name}: not written yet (the recorder did not close); read its journal {journal}",
            )
            return log
        raise LogFormatError("no such file", name)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    if head == PARQUET_MAGIC or name.endswith(".parquet"):
        return _read_parquet(p, name)
    data = p.read_bytes()
    notes: list[str] = []
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, name, notes)
    return _read_json_bytes(data, name, notes)


def _gunzip(data: bytes, name: str, notes: list[str]) -> bytes:
    try:
        return gzip.decompress(data)
    except EOFError:
        # A compressed log cut short (a crash while gzip was writing): keep what decompresses.
        out = zlib.decompressobj(wbits=31).decompress(data)
        notes.append(f"{name}: compressed stream is cut short; read what could be decompressed")
        return out
    except (OSError, zlib.error) as exc:
        raise LogFormatError(f"not a valid gzip file ({exc})", name) from exc


def _read_parquet(p: Path, name: str) -> LoadedLog:
    notes: list[str] = []
    journal = journal_path(p)
    try:
        frame = pl.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - Polars raises several types for a broken file
        if journal.exists():
            log = _read_json_bytes(journal.read_bytes(), str(journal), [])
            log.notes.insert(
                0, f"{name}: unreadable Parquet file; read the recorder's journal {journal}"
            )
            return log
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LogFormatError(f"not a readable Parquet file ({reason})", name) from exc
    frame = _conform_parquet(frame, name)
    if journal.exists():
        # The recorder did not close: the journal holds its run in full, the file a snapshot.
        extra = _read_json_bytes(journal.read_bytes(), str(journal), notes).frame
        runs = extra.get_column("run").unique()
        frame = pl.concat([frame.filter(~pl.col("run").is_in(runs.implode())), extra])
        notes.append(f"{name}: the recorder did not close; read the newest records from {journal}")
    return LoadedLog(name, frame, notes)


def _conform_parquet(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = [c for c in REQUIRED_FIELDS if c not in frame.columns]
    if missing:
        raise LogFormatError(f"not a gradlog log: no column '{missing[0]}'", name)
    schema = storage_schema()
    exprs = []
    for column in COLUMNS:
        if column in frame.columns:
            exprs.append(pl.col(column).cast(schema[column], strict=False))
        else:
            exprs.append(pl.lit(None, dtype=schema[column]).alias(column))
    try:
        frame = frame.select(exprs)
    except Exception as exc:  # noqa: BLE001
        raise LogFormatError(f"columns do not match the gradlog schema ({exc})", name) from exc
    _check_columns(frame, name, lines=None)
    return frame


def _read_json_bytes(data: bytes, name: str, notes: list[str]) -> LoadedLog:
    if data.startswith(UTF8_BOM):  # editors on Windows add one; it is not part of the JSON
        data = data[len(UTF8_BOM) :]
    if not data.strip():
        raise LogFormatError("empty log (no records)", name)
    data = _drop_partial_last_line(data, name, notes)
    try:
        # Fast path: numbers only. A log holding "NaN"/"Infinity" tokens (or a broken line)
        # fails here and takes the slower path, which reads floats as text and checks them.
        frame = pl.read_ndjson(data, schema=storage_schema())
    except Exception:  # noqa: BLE001
        data = _scan_lines(data, name, notes)
        frame = _read_json_tokens(data, name)
    _check_columns(frame, name, lines=data)
    return LoadedLog(name, frame, notes)


def _read_json_tokens(data: bytes, name: str) -> pl.DataFrame:
    try:
        raw = pl.read_ndjson(data, schema=json_schema())
    except Exception as exc:  # noqa: BLE001 - find the line ourselves, whatever Polars raised
        _scan_lines(data, name, [])
        raise LogFormatError(f"cannot be read as JSON Lines ({_first_line(exc)})", name) from exc
    frame = raw.with_columns(_cast_floats()).cast(storage_schema(), strict=False)
    _check_floats(raw, frame, data, name)
    return frame


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _drop_partial_last_line(data: bytes, name: str, notes: list[str]) -> bytes:
    """A crash mid-write leaves a last line without its newline: skip it, with a note."""
    if data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        if validate_record(json.loads(tail)) is None:
            return data  # a whole record that only lacks its newline
    except ValueError:
        pass
    line = data.count(b"\n") + 1
    notes.append(f"{name}:{line}: skipped a partly written last line ({len(tail)} bytes)")
    if not data[:cut].strip():
        raise LogFormatError("no whole record (the only line is partly written)", name, line)
    return data[:cut]


def _cast_floats() -> list[pl.Expr]:
    schema = storage_schema()
    return [
        pl.col(c).cast(schema[c], strict=False) for c in (*FLOAT_FIELDS, "tasks", "layers", "meta")
    ]


def _check_floats(raw: pl.DataFrame, frame: pl.DataFrame, data: bytes, name: str) -> None:
    """A float column that came back null where the text was not: a value that is no number."""
    for column in FLOAT_FIELDS:
        if (raw.get_column(column).is_not_null() & frame.get_column(column).is_null()).any():
            _scan_lines(data, name, [])
    nested = [
        pl.col(column)
        .list.eval(pl.element().struct.field(name).is_not_null())
        .list.sum()
        .sum()
        .alias(f"{column}.{name}")
        for column, name in (
            ("tasks", "grad_norm"),
            ("tasks", "loss"),
            ("tasks", "weight"),
            ("layers", "norm"),
        )
    ]
    before = raw.select(nested).row(0)
    after = frame.select(nested).row(0)
    if before != after:
        _scan_lines(data, name, [])


def _check_columns(frame: pl.DataFrame, name: str, lines: bytes | None) -> None:
    bad = frame.select(
        missing=pl.any_horizontal(pl.col(c).is_null() for c in REQUIRED_FIELDS).any(),
        version=(pl.col("v") != SCHEMA_VERSION).any(),
        kind=(~pl.col("kind").is_in([KIND_RUN, KIND_EVENT])).any(),
    ).row(0, named=True)
    if not any(bad.values()):
        return
    if lines is not None:
        _scan_lines(lines, name, [])
    row = (
        frame.with_row_index()
        .filter(
            pl.any_horizontal(pl.col(c).is_null() for c in REQUIRED_FIELDS)
            | (pl.col("v") != SCHEMA_VERSION)
            | ~pl.col("kind").is_in([KIND_RUN, KIND_EVENT])
        )
        .row(0, named=True)
    )
    record = {c: row[c] for c in COLUMNS}
    problem = validate_record(record) or (None, "invalid record")
    raise LogFormatError(problem[1], name, None, problem[0])


MAX_NOTED_LINES = 5


def _scan_lines(data: bytes, name: str, notes: list[str]) -> bytes:
    """Check every line in Python; the slow path, taken only when the fast read failed.

    A line that is not JSON at all (cut short or corrupted, e.g. by a crash before a later run
    appended to the file) is skipped with a note. A JSON record that breaks the schema (a
    wrong type, an unknown version, a bare NaN) stops the read with its line and field: that
    is a writer's bug, not an accident, and guessing would hide it. Returns the kept lines.
    """
    kept: list[bytes] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=_reject_constant, parse_float=_parse_float)
        except _SchemaViolation as exc:
            raise LogFormatError(str(exc), name, number) from None
        except UnicodeDecodeError as exc:
            skipped.append((number, f"not UTF-8 text ({exc.reason})"))
            continue
        except ValueError as exc:
            skipped.append((number, f"not valid JSON ({exc})"))
            continue
        problem = validate_record(obj)
        if problem is not None:
            raise LogFormatError(problem[1], name, number, problem[0])
        kept.append(line)
    if not kept:
        number, reason = skipped[0] if skipped else (None, "no records")
        raise LogFormatError(reason, name, number)
    for number, reason in skipped[:MAX_NOTED_LINES]:
        notes.append(f"{name}:{number}: skipped a line that is {reason}")
    if len(skipped) > MAX_NOTED_LINES:
        notes.append(f"{name}: skipped {len(skipped) - MAX_NOTED_LINES} more broken lines")
    return b"\n".join(kept) + b"\n"


class _SchemaViolation(ValueError):
    """Valid-looking JSON that no gradlog writer produces."""


def _reject_constant(token: str) -> float:
    raise _SchemaViolation(
        f'bare {token} is not JSON; gradlog logs write it as the string "{token}"'
    )


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _SchemaViolation(f"number {text[:40]} is out of range for a 64-bit float")
    return value
