"""JSON Lines, the fast columnar read.

Polars reads the flat fields typed; the nested values (tasks, metadata) are cut out of each
line's text where the writer's layout makes that certain and decoded afterwards (several times
faster than parsing nested structs inside the read), and every float is read as text to be cast,
which maps the ``"NaN"``/``"Infinity"`` tokens exactly. A short log (under :data:`SLICED_FROM`)
is read by Polars' own reader, the nested values as its JSON text, and decoded alike: the two
reads give the same frame. :class:`FastReadFailed` when Polars cannot read the text:
:mod:`.jsonl` then reads it line by line.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from gradlog.analysis.readers.loaded import first_line, polars_path
from gradlog.frames import COLUMNS, storage_schema

# Below this size a log is read by Polars' own reader first: the slicing's dozen small queries
# cost more than the reading they save (1 ms against 4 ms for a 10 KB log, 13 against 16 at
# 1 MB: benchmarks/short_read.py), and a short report's start-up is mostly such fixed costs.
SLICED_FROM = 1 << 20


class FastReadFailed(Exception):
    """Polars could not read or decode the text: some line is not JSON of the expected shape."""


def fast_text(source: str | bytes) -> pl.DataFrame:
    """The records with nested JSON decoded and every number leaf as text (cast later).

    Decoding numbers as text and casting them afterwards never turns ``true`` into 1.0 or 1.5
    into 1 silently, as decoding straight to numbers would; a value lost by the cast is then
    found by :func:`check`. ``meta`` is also kept as written (``_meta_json``) for the Python
    check of run records.
    """
    if _size(source) < SLICED_FROM:
        try:
            return _decode_nested(_nested_as_text_read(source))
        except Exception as exc:  # noqa: BLE001 - the slicing may still read it
            failed = exc
        try:
            return _decode_nested(_sliced_read(source))
        except Exception:  # noqa: BLE001 - the general read's reason explains it better
            raise FastReadFailed(first_line(failed)) from None
    try:
        return _decode_nested(_sliced_read(source))
    except Exception:  # noqa: BLE001 - not laid out as gradlog writes: the general way
        pass
    try:
        return _decode_nested(_nested_as_text_read(source))
    except Exception as exc:  # noqa: BLE001 - Polars raises several types; the scan explains
        raise FastReadFailed(first_line(exc)) from None


def _size(source: str | bytes) -> int:
    return len(source) if isinstance(source, bytes) else os.path.getsize(source)


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
            raise FastReadFailed(f"column '{texts.name}' does not have the expected shape")
        return pl.Series(texts.name, values, dtype=target, strict=True)
    except (ValueError, TypeError, RecursionError, pl.exceptions.PolarsError) as exc:
        raise FastReadFailed(first_line(exc)) from None


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


NESTED = tuple(c for c, dtype in storage_schema().items() if _is_nested(dtype))


def _polars_source(source: str | bytes) -> str | io.BytesIO:
    return polars_path(source) if isinstance(source, str) else io.BytesIO(source)


def _nested_as_text_read(source: str | bytes) -> pl.DataFrame:
    """Polars' own read, with every nested value as its JSON text (about three times slower)."""
    return pl.read_ndjson(_polars_source(source), schema=_raw_schema())


def _flat_read(source: str | bytes, schema: pl.Schema) -> pl.DataFrame:
    """The flat fields; floats read as numbers, or as text where a log holds NaN tokens."""
    flat = {c: t for c, t in schema.items() if c not in NESTED}
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
        fixed = [canonical(json.loads(t)) for t in texts]
    except (ValueError, RecursionError):
        raise _NotSliceable from None
    return lines.with_columns(lines.get_column("line").scatter(rows, fixed))


def canonical(obj: object) -> str:
    """A record as one line the way gradlog's writer lays it out: flat fields, then nested ones."""
    if not isinstance(obj, dict):
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    ordered = {k: v for k, v in obj.items() if k not in NESTED}
    ordered.update((k, obj[k]) for k in NESTED if k in obj)
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
    keys = {k: f'"{k}":' for k in NESTED}
    found = {k: line.str.find(key, literal=True) for k, key in keys.items()}
    # A key spelt with blanks before its colon (`"tasks" :`) would not be found: such a file is
    # read the general way. The same name as a value (a task named "meta") is no key.
    odd = pl.any_horizontal(line.str.contains(f'"{k}"\\s+:') for k in NESTED)
    # Run metadata holds a "tasks" key of its own: a key met after "meta": is taken as inside it
    # (were it not, the metadata's text would not decode, and the general read takes over).
    meta = found["meta"]
    starts = {
        k: found[k] if k == "meta" else pl.when(meta.is_null() | (found[k] < meta)).then(found[k])
        for k in NESTED
    }
    odd = odd | ~line.str.ends_with("}")
    present = lines.select(line.str.contains(keys[k], literal=True).any().alias(k) for k in NESTED)
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
        for k, key in {k: f'"{k}":' for k in NESTED}.items()
    )
    return raw.hstack(cut).select(schema.names())


def cast_storage(text: pl.DataFrame) -> pl.DataFrame:
    schema = storage_schema()
    return text.with_columns(pl.col(c).cast(schema[c], strict=False) for c in COLUMNS)
