"""Reading logs into one Polars frame of the storage schema, leniently where nothing is lost.

What is read, skipped or refused is the table of docs/format.md ("Reading leniently, refusing
clearly"). In short: blank lines, a byte-order mark and unknown fields are ignored; a line that is
not JSON at all (cut short, corrupted, not UTF-8) is skipped with a counted note; a JSON record
that breaks the schema stops the read with its file, line and field; ``strict=True`` turns every
skip and note into that error. A log is data, never code: it is parsed as JSON or Parquet and
nothing else, and its size is bounded before it is parsed (:data:`~gradlog.format.MAX_LINE_BYTES`
per line, :data:`~gradlog.format.MAX_TASKS` tasks per record).

JSON Lines take a fast path: Polars reads the flat fields typed, the nested values (tasks,
metadata) are cut out of each line's text where the writer's layout makes that certain and
decoded afterwards (several times faster than parsing nested structs inside the read), and
every float is cast, which maps the ``"NaN"``/``"Infinity"`` tokens exactly. Every rule is then
checked on whole columns. Only a log that Polars cannot read is read line by line in Python,
with :func:`gradlog.format.validate_record`, to skip what is not JSON and name the line and
field of what breaks the schema.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import stat
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from gradlog.analysis.validity import record_rules
from gradlog.errors import LogFormatError
from gradlog.files import has_whole_line
from gradlog.format import (
    GZIP_MAGIC,
    JOURNAL_BYTES_KEY,
    KIND_RUN,
    MAX_LINE_BYTES,
    PARQUET_MAGIC,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    journal_path,
    validate_record,
)
from gradlog.frames import COLUMNS, storage_schema

UTF8_BOM = b"\xef\xbb\xbf"
JSON_BLANK = b" \t\r\n"  # what JSON (and Polars) treat as whitespace around a record
MAX_NOTED_LINES = 5  # skipped lines named one by one; the rest are counted in one note
CHUNK = 1 << 20


@dataclass
class LoadedLog:
    """A log read into memory: the records as one frame, and what had to be skipped."""

    path: str
    frame: pl.DataFrame
    notes: list[str] = field(default_factory=list)
    # where row i of the frame came from ("line 12", "row 12"), for messages about a record
    _where: Callable[[int], str | None] | None = field(default=None, repr=False, compare=False)

    def where(self, row: int) -> str | None:
        """Where record ``row`` (0-based) of :attr:`frame` is in the file, e.g. ``line 12``."""
        return self._where(row) if self._where is not None else None


def read_log(path: str | os.PathLike[str], *, strict: bool = False) -> LoadedLog:
    """Read a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` log, or ``-`` for standard input.

    Raises :class:`~gradlog.errors.LogFormatError` naming the file (line, field) when the log
    cannot be read. With ``strict=True``, whatever would be skipped with a note is refused.
    """
    notes = _Notes(strict)
    name = str(path)
    if name == "-":
        data = _read_stream(sys.stdin.buffer, "<stdin>")
        return _read_json_data(data, "<stdin>", notes)
    p = Path(path)
    if p.is_dir():
        raise LogFormatError("is a directory, expected a log file", name)
    if not p.exists():
        journal = journal_path(p)
        if journal.exists():
            if not has_whole_line(journal):
                raise LogFormatError(
                    f"no records yet: the recorder has written none to its journal {journal}",
                    name,
                )
            notes.note(
                name,
                f"not written yet (the recorder did not close); read its journal {journal}",
            )
            return _read_json_file(journal, str(journal), notes)
        raise LogFormatError("no such file", name)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    if head == PARQUET_MAGIC or name.endswith(".parquet"):
        return _read_parquet(p, name, notes)
    return _read_json_file(p, name, notes)


# -- notes, and --strict ------------------------------------------------------------------------


class _Notes:
    """The notes of one read; with ``strict``, each one is raised as an error instead."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[str] = []

    def skip(self, path: str, line: int | None, what: str) -> None:
        """``what`` (e.g. ``a line that is not valid JSON``) at ``path:line`` is left out."""
        if self.strict:
            raise LogFormatError(f"{what}; --strict refuses to skip it", path, line)
        where = f"{path}:{line}" if line is not None else path
        self.items.append(f"{where}: skipped {what}")

    def note(self, path: str, text: str) -> None:
        if self.strict:
            raise LogFormatError(f"{text}; refused with --strict", path)
        self.items.append(f"{path}: {text}")


# -- bytes in, with bounded lines ---------------------------------------------------------------


def _line_too_long(path: str, line: int) -> LogFormatError:
    return LogFormatError(
        f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB, the limit for one record; "
        "refusing to read it",
        path,
        line,
    )


class _LineBound:
    """Checks, chunk by chunk, that no line of a stream is longer than MAX_LINE_BYTES."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.run = 0  # bytes since the last newline
        self.lines = 0  # newlines seen

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self.run += len(chunk)
        else:
            if self.run + first > MAX_LINE_BYTES:
                raise _line_too_long(self.path, self.lines + 1)
            last = chunk.rfind(b"\n")
            # lines wholly inside a chunk are shorter than the chunk, itself at most the limit
            self.lines += chunk.count(b"\n")
            self.run = len(chunk) - last - 1
        if self.run > MAX_LINE_BYTES:
            raise _line_too_long(self.path, self.lines + 1)


def _read_stream(stream: BinaryIO, path: str) -> bytes:
    """All of a pipe or standard input, refusing a runaway line before it fills the memory."""
    bound = _LineBound(path)
    parts = []
    while chunk := stream.read(CHUNK):
        bound.feed(chunk)
        parts.append(chunk)
    return b"".join(parts)


def _gunzip(fh: BinaryIO, path: str, notes: _Notes) -> bytes:
    """A gzipped log, decompressed as a stream with bounded lines (no decompression bomb)."""
    bound = _LineBound(path)
    parts: list[bytes] = []
    decomp = zlib.decompressobj(wbits=31)
    try:
        while True:
            data = decomp.unconsumed_tail or fh.read(CHUNK)
            if not data:
                break
            out = decomp.decompress(data, CHUNK)
            bound.feed(out)
            parts.append(out)
            if decomp.eof:
                rest = decomp.unused_data + fh.read()
                if rest.startswith(GZIP_MAGIC):  # concatenated members (gzip -c a b > ab.gz)
                    decomp = zlib.decompressobj(wbits=31)
                    fh = io.BytesIO(rest)
                    continue
                break
    except zlib.error as exc:
        if not parts:
            raise LogFormatError(f"not a valid gzip file ({exc})", path) from exc
        notes.note(path, f"compressed stream is corrupt ({exc}); read what could be decompressed")
        return b"".join(parts)
    if not decomp.eof:
        # A compressed log cut short (a crash while gzip was writing): keep what decompresses.
        notes.note(path, "compressed stream is cut short; read what could be decompressed")
    return b"".join(parts)


def _check_file_lines(fh: BinaryIO, size: int, path: str) -> None:
    """No line of a regular file is longer than MAX_LINE_BYTES, found without reading it all.

    Looks, window by window of MAX_LINE_BYTES + 1 bytes from the start of the current line,
    for the last newline: a window without one is a line over the limit. Two windows cover at
    least MAX_LINE_BYTES bytes, so a 10 GB file takes about a thousand searches, each in a
    window mapped from the page cache (never the whole file: that much address space may not
    be there to map).
    """
    if size <= MAX_LINE_BYTES:
        return
    start = 0
    while size - start > MAX_LINE_BYTES:
        base = start - start % mmap.ALLOCATIONGRANULARITY
        end = min(size, start + MAX_LINE_BYTES + 1)
        with mmap.mmap(fh.fileno(), end - base, offset=base, access=mmap.ACCESS_READ) as mm:
            newline = mm.rfind(b"\n", start - base, end - base)
        if newline < 0:
            raise _line_too_long(path, _count_lines(fh, start) + 1)
        start = base + newline + 1


def _count_lines(fh: BinaryIO, end: int) -> int:
    fh.seek(0)
    count, pos = 0, 0
    while pos < end:
        chunk = fh.read(min(CHUNK, end - pos))
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    fh.seek(0)
    return count


def _read_json_file(p: Path, name: str, notes: _Notes) -> LoadedLog:
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
                return _read_json_data(_gunzip(fh, name, notes), name, notes)
            if not stat.S_ISREG(info.st_mode):  # a pipe or a device: read it as a stream
                return _read_json_data(_read_stream(fh, name), name, notes)
            _check_file_lines(fh, info.st_size, name)
            if head == UTF8_BOM or not _ends_whole(fh, info.st_size):
                return _read_json_data(fh.read(), name, notes)
        except OSError as exc:
            raise LogFormatError(f"cannot read: {exc.strerror}", name) from exc
    # A whole file: Polars maps it from the path, which saves a copy of it in memory.
    return _read_json(str(p), name, notes)


def _ends_whole(fh: BinaryIO, size: int) -> bool:
    if size == 0:
        return True
    fh.seek(size - 1)
    last = fh.read(1)
    fh.seek(0)
    return last == b"\n"


def _read_json_data(data: bytes, name: str, notes: _Notes) -> LoadedLog:
    if data.startswith(UTF8_BOM):  # editors on Windows add one; it is not part of the JSON
        data = data[len(UTF8_BOM) :]
    data = _drop_partial_last_line(data, name, notes)
    return _read_json(data, name, notes)


def _drop_partial_last_line(data: bytes, name: str, notes: _Notes) -> bytes:
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


# -- JSON Lines: the fast columnar read ---------------------------------------------------------


def _text_leaves(dtype: pl.DataType) -> pl.DataType:
    """``dtype`` with every numeric leaf as text: decoded as written, then cast and checked."""
    if isinstance(dtype, pl.List):
        return pl.List(_text_leaves(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _text_leaves(f.dtype) for f in dtype.fields})
    if dtype.is_numeric():
        return pl.String()
    return dtype


def _raw_schema() -> pl.Schema:
    """The read's schema: integers typed, floats and nested values as text."""
    out = {}
    for column, dtype in storage_schema().items():
        if isinstance(dtype, (pl.List, pl.Struct)) or dtype.is_float():
            out[column] = pl.String()
        else:
            out[column] = dtype
    return pl.Schema(out)


def _read_json(source: str | bytes, name: str, notes: _Notes) -> LoadedLog:
    """Read JSON Lines from a path or bytes; line by line only where the fast read fails."""
    kept_lines: list[int] | None = None
    try:
        text = _fast_text(source)
    except _FastReadFailed:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        kept, kept_lines = _scan_lines(data, name, notes)
        try:
            text = _fast_text(kept)  # the kept records, rewritten as a gradlog writer lays them out
        except _FastReadFailed as exc:
            raise LogFormatError(f"cannot be read as JSON Lines ({exc})", name) from None
        source = data
    if text.height == 0:
        raise LogFormatError("empty log (no records)", name)
    lines = _LineIndex(source, kept_lines)
    frame = _cast(text)
    _check(text, frame, _JsonPlace(name, lines, text.get_column("_meta_json")))
    log = LoadedLog(name, frame.select(COLUMNS), notes.items)
    log._where = lambda row: f"line {lines.number(row)}"
    return log


class _FastReadFailed(Exception):
    """Polars could not read or decode the text: some line is not JSON of the expected shape."""


def _fast_text(source: str | bytes) -> pl.DataFrame:
    """The records with nested JSON decoded and every number leaf as text (cast later).

    Decoding numbers as text and casting them afterwards never turns ``true`` into 1.0 or 1.5
    into 1 silently, as decoding straight to numbers would; a value lost by the cast is then
    found by :func:`_check`. ``meta`` is also kept as written (``_meta_json``) for the Python
    check of run records.
    """
    try:
        return _decode_nested(_sliced_read(source))
    except Exception:  # noqa: BLE001 - not laid out as gradlog writes: the general way
        pass
    try:
        return _decode_nested(_nested_as_text_read(source))
    except Exception as exc:  # noqa: BLE001 - Polars raises several types; the scan explains
        raise _FastReadFailed(_first_line(exc)) from None


def _decode_nested(raw: pl.DataFrame) -> pl.DataFrame:
    """Decode the nested columns' JSON text.

    Straight to numbers where that is exact: Polars' decoding refuses text where a number is
    expected but reads ``true`` as 1.0, so a column whose text holds ``true`` or ``false``
    anywhere (or where decoding to numbers fails: NaN tokens, numeric text) is decoded with
    number leaves as text, cast and checked afterwards. Run metadata is checked in Python.
    """
    schema = storage_schema()
    exprs: list[pl.Expr] = []
    for column in raw.columns:
        dtype = schema[column]
        if not _is_nested(dtype):
            exprs.append(pl.col(column))
            continue
        text = pl.col(column)
        if raw.get_column(column).null_count() == raw.height:
            exprs.append(pl.lit(None, dtype=dtype).alias(column))
            continue
        has_bool = raw.select(
            (
                text.str.contains("true", literal=True) | text.str.contains("false", literal=True)
            ).any()
        ).item()
        decoded = None
        if not has_bool or column == "meta":
            try:
                decoded = _json_decode(raw.get_column(column), dtype)
            except Exception:  # noqa: BLE001 - tokens or numeric text: decode as text below
                decoded = None
        if decoded is None:
            try:
                decoded = _json_decode(raw.get_column(column), _text_leaves(dtype))
            except Exception:  # noqa: BLE001 - Polars refuses its own text: see _python_decode
                decoded = _python_decode(raw.get_column(column), dtype)
        exprs.append(pl.lit(decoded).alias(column))
    return raw.select(*exprs, pl.col("meta").alias("_meta_json"))


def _json_decode(texts: pl.Series, dtype: pl.DataType) -> pl.Series:
    """``texts.str.json_decode(dtype)``, a long column in two halves side by side."""
    half = len(texts) // 2
    if half < 100_000:
        return texts.str.json_decode(dtype)
    with ThreadPoolExecutor(2) as pool:  # Polars releases the GIL while it decodes
        first, second = pool.map(
            lambda part: part.str.json_decode(dtype), (texts.slice(0, half), texts.slice(half))
        )
    return first.append(second)


def _python_decode(texts: pl.Series, dtype: pl.DataType) -> pl.Series:
    """The column decoded by Python's json, number leaves as their text (cast and checked later).

    The last resort, for the rare file read the general way that holds a huge number: Polars
    writes a nested 1e300 out as 301 digits, which its own JSON decoding then refuses. Slow,
    but only ever for such a file.
    """
    target = _text_leaves(dtype)
    try:
        values = [None if t is None else _leaves_as_text(json.loads(t)) for t in texts.to_list()]
        if not all(_fits(v, target) for v in values):
            # Polars would bend a wrong shape ({} for a list) to fit: let the line-by-line
            # read name the record and field instead
            raise _FastReadFailed(f"column '{texts.name}' does not have the expected shape")
        return pl.Series(texts.name, values, dtype=target, strict=True)
    except (ValueError, TypeError, RecursionError, pl.exceptions.PolarsError) as exc:
        raise _FastReadFailed(_first_line(exc)) from None


def _fits(value: object, dtype: pl.DataType) -> bool:
    """Whether a decoded JSON value has the shape of ``dtype`` (null fits anywhere)."""
    if value is None:
        return True
    if isinstance(dtype, pl.List):
        return isinstance(value, list) and all(_fits(v, dtype.inner) for v in value)
    if isinstance(dtype, pl.Struct):
        return isinstance(value, dict) and all(
            _fits(value.get(f.name), f.dtype) for f in dtype.fields
        )
    return not isinstance(value, (list, dict))


def _leaves_as_text(value: object) -> object:
    """``value`` with every number and boolean as the text JSON writes for it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return {k: _leaves_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_leaves_as_text(v) for v in value]
    return value


def _is_nested(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.List, pl.Struct))


_NESTED = tuple(c for c, dtype in storage_schema().items() if _is_nested(dtype))


def _polars_source(source: str | bytes) -> str | io.BytesIO:
    return source if isinstance(source, str) else io.BytesIO(source)


def _nested_as_text_read(source: str | bytes) -> pl.DataFrame:
    """Polars' own read, with every nested value as its JSON text (about three times slower)."""
    return pl.read_ndjson(_polars_source(source), schema=_raw_schema())


def _flat_read(source: str | bytes, schema: pl.Schema) -> pl.DataFrame:
    """The flat fields; floats read as numbers, or as text where a log holds NaN tokens."""
    flat = {c: t for c, t in schema.items() if c not in _NESTED}
    numbers = {c: (pl.Float64() if storage_schema()[c].is_float() else t) for c, t in flat.items()}
    try:
        return pl.read_ndjson(_polars_source(source), schema=numbers)
    except Exception:  # noqa: BLE001 - tokens ("NaN") or a broken line: read floats as text
        return pl.read_ndjson(_polars_source(source), schema=flat)


def _unescape_keys(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines holding ``\\u`` escapes, rewritten by Python's JSON with every key spelt plainly.

    A key may be written with escapes (``"\\u0074asks"`` is ``"tasks"``), which the search for
    ``"tasks":`` would miss; such lines are rare (gradlog writes text as UTF-8), so they are
    parsed and written again, the escapes of their values kept.
    """
    escaped = lines.select(pl.arg_where(pl.col("line").str.contains("\\u", literal=True)))
    rows = escaped.to_series()
    if rows.len() == 0:
        return lines
    texts = lines.get_column("line").gather(rows).to_list()
    try:
        fixed = [_canonical(json.loads(t)) for t in texts]
    except (ValueError, RecursionError):
        raise _NotSliceable from None
    return lines.with_columns(lines.get_column("line").scatter(rows, fixed))


def _canonical(obj: object) -> str:
    """A record as one line the way gradlog's writer lays it out: flat fields, then nested ones."""
    if not isinstance(obj, dict):
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    ordered = {k: v for k, v in obj.items() if k not in _NESTED}
    ordered.update((k, obj[k]) for k in _NESTED if k in obj)
    return json.dumps(ordered, ensure_ascii=True, separators=(",", ":"))


class _NotSliceable(Exception):
    """Some line is not laid out as gradlog writes it: read nested values the general way."""


def _sliced_read(source: str | bytes) -> pl.DataFrame:
    """Flat fields by Polars' JSON reader; nested values cut out of each line's text.

    Polars reads flat fields fast but spends most of its time turning nested values into text.
    A gradlog writer puts the nested fields (``layers``, ``tasks``, ``conflicts``; ``meta``)
    after every flat one, so each is the text between its key and the next nested key (or the
    closing brace). That cut is only trusted where it is certain: the key ``"tasks":`` can only
    be a key (inside a JSON string its quotes would be escaped), a key met inside another value
    leaves that value's text unbalanced, which the JSON decoding refuses, a line with ``\\u``
    escapes is first written again with its keys spelt plainly, and a file with a spaced-out
    key (``"tasks" :``) is not cut at all: :class:`_NotSliceable`, and the general read.
    """
    schema = _raw_schema()
    with ThreadPoolExecutor(2) as pool:  # two reads of one file: Polars releases the GIL
        flat = pool.submit(_flat_read, source, schema)
        lines = pool.submit(
            pl.read_csv,
            _polars_source(source),
            has_header=False,
            separator="\x00",
            quote_char=None,
            new_columns=["line"],
            schema={"line": pl.String},
        ).result()
        raw = flat.result()
    if lines.height != raw.height:  # whitespace-only lines: read the general way
        raise _NotSliceable
    lines = _unescape_keys(lines)
    line = pl.col("line")
    raw_bytes = line.cast(pl.Binary)  # str.find counts bytes, so cut by bytes too
    keys = {k: f'"{k}":' for k in _NESTED}
    found = {k: line.str.find(key, literal=True) for k, key in keys.items()}
    # A key spelt with blanks before its colon (`"tasks" :`) would not be found: such a file is
    # read the general way. The same name as a value (a task named "meta") is no key.
    odd = pl.any_horizontal(line.str.contains(f'"{k}"\\s+:') for k in _NESTED)
    # Run metadata holds a "tasks" key of its own: a key met after "meta": is taken as inside it
    # (were it not, the metadata's text would not decode, and the general read takes over).
    meta = found["meta"]
    starts = {
        k: found[k] if k == "meta" else pl.when(meta.is_null() | (found[k] < meta)).then(found[k])
        for k in _NESTED
    }
    odd = odd | ~line.str.ends_with("}")
    present = lines.select(line.str.contains(keys[k], literal=True).any().alias(k) for k in _NESTED)
    keys = {k: key for k, key in keys.items() if present.get_column(k)[0]}  # in this file
    ends = {}
    for k in keys:
        after = [pl.when(starts[j] > starts[k]).then(starts[j] - 1) for j in keys if j != k]
        ends[k] = pl.min_horizontal(*after, line.str.len_bytes() - 1)
    if lines.select(odd.any()).item():
        raise _NotSliceable
    cut = lines.select(
        pl.when(starts[k].is_not_null())
        .then(raw_bytes.bin.slice(starts[k] + len(key), ends[k] - starts[k] - len(key)))
        .cast(pl.String)  # cut next to ASCII quotes and commas: whole UTF-8 characters
        .alias(k)
        if k in keys
        else pl.lit(None, dtype=pl.String).alias(k)
        for k, key in {k: f'"{k}":' for k in _NESTED}.items()
    )
    return raw.hstack(cut).select(schema.names())


def _cast(text: pl.DataFrame) -> pl.DataFrame:
    schema = storage_schema()
    return text.with_columns(pl.col(c).cast(schema[c], strict=False) for c in COLUMNS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


# -- checking whole columns ---------------------------------------------------------------------


_UNREADABLE = object()


class _JsonPlace:
    """Where a JSON Lines record is, and the record as written: for the error message."""

    def __init__(self, path: str, lines: _LineIndex, meta_json: pl.Series) -> None:
        self.path, self.lines, self.meta_json = path, lines, meta_json

    def record(self, row: int) -> object:
        text = self.lines.text(row)
        if text is None:
            return _UNREADABLE
        try:
            return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
        except (ValueError, RecursionError):
            return _UNREADABLE

    def meta(self, row: int) -> object:
        try:
            return json.loads(self.meta_json[row])
        except (ValueError, RecursionError, TypeError):
            return _UNREADABLE

    def error(self, row: int, field: str | None, message: str) -> LogFormatError:
        return LogFormatError(message, self.path, self.lines.number(row), field)


class _ParquetPlace:
    """Where a Parquet record is (its row), and the record as stored."""

    def __init__(self, path: str, stored: pl.DataFrame) -> None:
        self.path, self.stored = path, stored

    def record(self, row: int) -> object:
        return {k: v for k, v in self.stored.row(row, named=True).items() if v is not None}

    def meta(self, row: int) -> object:
        return self.stored.get_column("meta")[row] if "meta" in self.stored.columns else None

    def error(self, row: int, field: str | None, message: str) -> LogFormatError:
        return LogFormatError(message, self.path, None, field, row=row + 1)


_NOT_A_NUMBER = "expected a number or one of NaN, Infinity, -Infinity"


def _rules(schema: pl.Schema) -> list[tuple[pl.Expr, str | None, str]]:
    """Every rule a column check can make: the records' rules (:mod:`gradlog.analysis.validity`), and
    numbers that were written as text that is no number (JSON's tokens aside)."""
    rules = record_rules()
    for c, dtype in schema.items():
        if dtype.is_numeric():  # written, but no number once cast: text that is no number
            rules.append(
                (pl.col(f"text:{c}").is_not_null() & pl.col(c).is_null(), c, _NOT_A_NUMBER)
            )
    return rules


def _check(text: pl.DataFrame, frame: pl.DataFrame, place: _JsonPlace | _ParquetPlace) -> None:
    """Check every rule of the schema on whole columns; raise for the first record breaking one.

    ``text`` holds the values as read (numbers as text for JSON), ``frame`` the same cast to the
    storage schema. The message comes from :func:`validate_record` on the record as written
    when it names the fault, else from the rule that found it.
    """
    schema = storage_schema()
    both = frame.select(COLUMNS).hstack(text.select(pl.col(COLUMNS).name.prefix("text:")))
    # A text field holding a list or an object arrives as its JSON text: rare, checked in Python.
    suspect = pl.any_horizontal(
        pl.col(c).str.starts_with("[") | pl.col(c).str.starts_with("{") for c in ("run", "kind")
    ).fill_null(False)
    for row in both.select(pl.arg_where(suspect)).to_series().to_list():
        _explain(place, row, None, None, required=False)
    # Run metadata: one record per run, many rules: checked in Python.
    for row in both.select(pl.arg_where(pl.col("meta").is_not_null())).to_series().to_list():
        meta = place.meta(row)
        if meta is _UNREADABLE:  # the metadata's text as Polars wrote it: check the line
            _explain(place, row, None, None, required=False)
            continue
        problem = validate_record({"v": SCHEMA_VERSION, "run": "-", "kind": KIND_RUN, "meta": meta})
        if problem is not None:
            raise place.error(row, problem[0], problem[1])

    rules = _rules(schema)
    firsts = both.select(
        pl.arg_where(rule.fill_null(False)).first().alias(str(i))
        for i, (rule, _, _) in enumerate(rules)
    ).row(0)
    found = [(row, rules[i][1], rules[i][2]) for i, row in enumerate(firsts) if row is not None]
    # Numbers inside lists of objects: compare how many were written with how many survived.
    for column in _lost_leaves(both, schema):
        found.append((_first_row_losing(both, column, schema[column]), column, _NOT_A_NUMBER))
    if found:
        row, field, message = min(found, key=lambda f: f[0])
        _explain(place, row, field, message, required=True)


def _numeric_fields(dtype: pl.DataType) -> list[str]:
    """The number fields of a list of objects (``tasks``: grad_norm, loss, weight)."""
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        return [f.name for f in dtype.inner.fields if f.dtype.is_numeric()]
    return []


def _lost_leaves(both: pl.DataFrame, schema: pl.Schema) -> list[str]:
    """Lists of objects where some number was written but did not survive the cast."""
    exprs: dict[str, pl.Expr] = {}
    for column, dtype in schema.items():
        if both.schema[f"text:{column}"] == dtype:
            continue  # decoded straight to numbers: nothing can have been lost
        for f in _numeric_fields(dtype):
            for side in ("", "text:"):
                values = pl.col(side + column).explode().struct.field(f)
                exprs[f"{side}{column}.{f}"] = values.is_not_null().sum()
    if not exprs:
        return []
    counts = both.select(**exprs).row(0, named=True)
    lost = [
        k.split(".")[0]
        for k in exprs
        if not k.startswith("text:") and counts[k] != counts["text:" + k]
    ]
    return list(dict.fromkeys(lost))


def _first_row_losing(both: pl.DataFrame, column: str, dtype: pl.DataType) -> int:
    fields = _numeric_fields(dtype)

    def per_row(expr: pl.Expr) -> pl.Expr:
        return expr.list.eval(
            pl.sum_horizontal(pl.element().struct.field(f).is_not_null() for f in fields)
        ).list.sum()

    differs = (per_row(pl.col(column)) != per_row(pl.col(f"text:{column}"))).fill_null(False)
    row = both.select(pl.arg_where(differs).first()).item()
    return 0 if row is None else row


def _explain(
    place: _JsonPlace | _ParquetPlace,
    row: int,
    field: str | None,
    message: str | None,
    *,
    required: bool,
) -> None:
    """Raise for record ``row``: in :func:`validate_record`'s words where it finds the fault."""
    record = place.record(row)
    if record is not _UNREADABLE:
        problem = validate_record(record)
        if problem is not None:
            raise place.error(row, problem[0], problem[1])
    if required:
        raise place.error(row, field, message or "invalid record")


# -- JSON Lines: the careful path, line by line -------------------------------------------------


def _scan_lines(data: bytes, name: str, notes: _Notes) -> tuple[bytes, list[int]]:
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
            obj = json.loads(line, parse_constant=_reject_constant, parse_float=_parse_float)
        except _SchemaViolation as exc:
            raise LogFormatError(str(exc), name, number) from None
        except UnicodeDecodeError as exc:
            skipped.append((number, f"not UTF-8 text ({exc.reason})"))
            continue
        except RecursionError:
            skipped.append((number, "nested too deeply to be a gradlog record"))
            continue
        except ValueError as exc:
            skipped.append((number, f"not valid JSON ({_first_line(exc)})"))
            continue
        problem = validate_record(obj)
        if problem is not None:
            raise LogFormatError(problem[1], name, number, problem[0])
        text = _canonical(obj)
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


# -- Parquet ------------------------------------------------------------------------------------


def _read_parquet(p: Path, name: str, notes: _Notes) -> LoadedLog:
    journal = journal_path(p)
    try:
        stored = pl.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - Polars raises several types for a broken file
        if has_whole_line(journal):
            notes.note(name, f"unreadable Parquet file; read the recorder's journal {journal}")
            return _read_json_file(journal, str(journal), notes)
        raise LogFormatError(f"not a readable Parquet file ({_first_line(exc)})", name) from None
    if stored.height == 0 and has_whole_line(journal):  # a snapshot of nothing, and a journal
        notes.note(name, f"the recorder did not close; read its journal {journal}")
        return _read_json_file(journal, str(journal), notes)
    frame = _conform_parquet(stored, name)
    log = LoadedLog(name, frame, notes.items)
    log._where = lambda row: f"row {row + 1}"
    if journal.exists():
        extra = _journal_records(p, frame, journal, name, notes)
        if extra is not None:
            log = LoadedLog(name, extra, notes.items)  # rows now span two files: no places
    return log


# -- a Parquet snapshot and its journal (docs/format.md, "Crash safety") ------------------------


def _journal_records(
    p: Path, frame: pl.DataFrame, journal: Path, name: str, notes: _Notes
) -> pl.DataFrame | None:
    """The snapshot ``frame`` with the journal's records that it does not hold, or None when
    the journal adds nothing. Never a record twice, never a partial journal over the snapshot."""
    covered = _journal_bytes_covered(p)
    if covered is None:
        return _merge_by_run(frame, journal, name, notes)
    try:
        with open(journal, "rb") as fh:
            prefix = _count_lines(fh, covered) if covered else 0
            fh.seek(covered)
            tail = fh.read()
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", str(journal)) from exc
    whole = tail[: tail.rfind(b"\n") + 1]
    if not whole.strip(JSON_BLANK):
        cut = tail[len(whole) :]
        if cut.strip(JSON_BLANK):  # a power loss cut the only record past the snapshot
            line = prefix + whole.count(b"\n") + 1
            notes.skip(str(journal), line, f"a partly written last line ({len(cut)} bytes)")
        notes.note(
            name,
            f"the recorder did not close; its journal {journal} holds nothing newer than the file",
        )
        return None
    # Blank lines in place of the records the snapshot holds: the reader skips them, and the
    # line numbers of its notes stay those of the journal.
    extra = _read_json_data(b"\n" * prefix + tail, str(journal), notes).frame
    notes.note(
        name,
        f"the recorder did not close; read the newest {extra.height} "
        f"record{'s' * (extra.height != 1)} from {journal}",
    )
    return pl.concat([frame, extra], how="vertical")


def _journal_bytes_covered(p: Path) -> int | None:
    """How many leading bytes of its journal the snapshot ``p`` holds; None if it does not say
    (written by gradlog before snapshots said so)."""
    try:
        value = pl.read_parquet_metadata(p).get(JOURNAL_BYTES_KEY)
        return int(value) if value is not None and int(value) >= 0 else None
    except Exception:  # noqa: BLE001 - an unreadable or foreign value: read as an old snapshot
        return None


def _merge_by_run(
    frame: pl.DataFrame, journal: Path, name: str, notes: _Notes
) -> pl.DataFrame | None:
    """An old snapshot, which does not say how much of the journal it holds: each run is taken
    from whichever of the two holds more of its records."""
    if not has_whole_line(journal):
        notes.note(name, f"the recorder did not close; its journal {journal} holds no record")
        return None
    extra = _read_json_file(journal, str(journal), notes).frame
    in_file = frame.group_by("run").len()
    in_journal = extra.group_by("run").len()
    fuller = (
        in_journal.join(in_file, on="run", how="left", suffix="_file")
        .filter(pl.col("len") >= pl.col("len_file").fill_null(0))
        .get_column("run")
        .implode()
    )
    notes.note(name, f"the recorder did not close; read the newest records from {journal}")
    return pl.concat(
        [frame.filter(~pl.col("run").is_in(fuller)), extra.filter(pl.col("run").is_in(fuller))]
    )


def _conform_parquet(stored: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = [c for c in REQUIRED_FIELDS if c not in stored.columns]
    if missing:
        raise LogFormatError(f"not a gradlog log: no column '{missing[0]}'", name)
    schema = storage_schema()
    text = stored.select(
        pl.col(c) if c in stored.columns else pl.lit(None, dtype=schema[c]).alias(c)
        for c in COLUMNS
    )
    try:
        frame = text.cast(schema, strict=False)
    except Exception as exc:  # noqa: BLE001
        raise LogFormatError(
            f"columns do not match the gradlog schema ({_first_line(exc)})", name
        ) from None
    for c in COLUMNS:
        if isinstance(schema[c], (pl.List, pl.Struct)) and text.schema[c] != schema[c]:
            if not isinstance(text.schema[c], (pl.List, pl.Struct, pl.Null)):
                raise LogFormatError(
                    f"column '{c}' is {text.schema[c]}, expected {schema[c]}", name
                )
    if frame.height == 0:
        raise LogFormatError("empty log (no records)", name)
    _check(text, frame, _ParquetPlace(name, text))
    return frame
