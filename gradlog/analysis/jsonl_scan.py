"""JSON Lines logs scanned together, into a :class:`gradlog.analysis.scan.Chunk`.

Two ways, the first for almost every log:

``lines`` (:func:`read_json`)
    each file's lines read as text (``pl.scan_lines``), each line decoded whole, typed, by
    ``str.json_decode``: one parse of each line. A scan (``pl.scan_ndjson``) parses the line,
    then writes the nested ``tasks`` out as text again for a second parse (reading them as
    structs inside the scan is slower still): the lines cost about two thirds of its CPU time
    (``benchmarks/README.md``, "Reading JSON Lines by lines").
``text`` (:func:`read_json_text`)
    the scan, every float read as text and cast, for a log the decoding refuses: the
    ``"NaN"``/``"Infinity"`` tokens of docs/format.md, numbers written as text, a byte-order
    mark, a blank line of spaces, a list or an object where text belongs. It maps the tokens
    to floats exactly, and marks what the careful reader would refuse.

The decoding is laxer than the careful reader (:func:`gradlog.analysis.readers.read_log`) in a
few ways, each found on the line's text by one pattern (:data:`_LAX`) and marked ``bad``: a
``true`` or ``false`` (decoded as 1 or 0 where a number belongs), an integer field in a
float's syntax (``"epoch": 1.5`` is decoded as 1; the careful reader refuses even ``1.0``), an
integer beyond 64 bits (decoded as null), a number in a float's syntax where text belongs
(decoded as ``"1"`` for ``1.0``). A false alarm costs a careful read of that file, never a
different answer; each case is in ``tests/test_broken.py``.
"""

from __future__ import annotations

import os
import re

import polars as pl

from gradlog.analysis.scan import (
    F64,
    RECORDS_SCHEMA,
    TASKS,
    WEIGHTS,
    Chunk,
    as_given,
    by_steps,
    meta_breaks_a_rule,
    meta_extras,
    row_numbers,
)
from gradlog.analysis.shapes import NESTED, nested_breaks
from gradlog.analysis.sources import ALONE_BYTES, URL_PATTERN
from gradlog.analysis.validity import breaks_a_rule
from gradlog.format import FLOAT_FIELDS, GZIP_MAGIC, INT_FIELDS, KIND_RUN, STRING_FIELDS
from gradlog.frames import json_schema

_FLOATS = FLOAT_FIELDS  # read and checked as the reader does; mean_norm and max_norm are used
_INTS = INT_FIELDS
# Read only to be checked: kept in the collected frame, and dropped after it, since the scan
# parses no column that its query's result leaves out.
_CHECKED_ONLY = tuple(c for c in (*_INTS, *_FLOATS) if c not in RECORDS_SCHEMA and c != "v")
_TASKS_TEXT = json_schema()["tasks"]  # {name, grad_norm, loss, weight}, floats as text
_META_TEXT = json_schema()["meta"]

# A line as the lines way decodes it: every field a record may carry but ``meta`` (decoded
# from its text, on the run records alone), each list typed, so that a list or an object where
# a number or a name belongs fails the decoding.
LINE = pl.Struct(
    {
        **{c: pl.String for c in (*STRING_FIELDS, "skipped")},
        **{c: pl.Int64 for c in _INTS},
        **{c: F64 for c in _FLOATS},
        "tasks": TASKS,
        "layers": pl.List(pl.Struct({"name": pl.String, "norm": F64})),
        "conflicts": pl.List(pl.Struct({"a": pl.String, "b": pl.String, "cosine": F64})),
    }
)
_TEXT_KEYS = (*STRING_FIELDS, "skipped", "name", "a", "b")
# What the decoding would let through and the careful reader reads otherwise (module docs):
# a number in a float's syntax, or beyond 64 bits, for an integer or a text;
_LAX = (
    r'"(?:'
    + "|".join(re.escape(k) for k in (*_INTS, *_TEXT_KEYS))
    + r')"\s*:\s*-?(?:\d+[.eE]|\d{19})'
)
# a boolean as a value (looked for on the few lines that hold the words at all: a run's tag
# "true" is text, and costs no careful read)
_MAY_BOOL = "true|false"
_BOOL = r"[:\[,]\s*(?:true|false)\b"


def read_json(
    sources: list[str], part: int, *, tokens: bool = False, storage_options: dict | None = None
) -> Chunk:
    """JSON Lines files (plain or gzipped, local or object-store URLs), read together: by
    lines, or (``tokens``) by the text scan."""
    _check_gzipped(sources)
    if tokens:
        return read_json_text(sources, part, storage_options=storage_options)
    line = pl.col("line")
    frame = (
        pl.scan_lines(
            as_given(sources), include_file_paths="source", storage_options=storage_options
        )
        .filter(line != "")  # a blank line; one of spaces fails the decoding
        .with_columns(row_numbers(part))
        .select(
            "source",
            "row",
            "line",
            line.str.json_decode(LINE).alias("record"),
            lax=line.str.contains(_LAX),
            may_bool=line.str.contains(_MAY_BOOL),
        )
        .unnest("record")
        .with_columns(
            bad=breaks_a_rule() | pl.col("lax"),
            # kept where it is read again: the run records' metadata, the booleans' check
            line=pl.when((pl.col("kind") == KIND_RUN) | pl.col("may_bool")).then(line),
        )
        # layers and conflicts are decoded (a wrong type fails), never kept
        .select(*RECORDS_SCHEMA.names(), "line", "may_bool")
        .collect(engine="streaming")
    )
    if frame.get_column("may_bool").any():
        frame = frame.with_columns(
            bad=pl.col("bad") | (pl.col("may_bool") & line.str.contains(_BOOL))
        )
    runs = frame.filter(pl.col("kind") == KIND_RUN).with_columns(
        meta=line.str.json_path_match("$.meta")
    )
    return Chunk(frame.drop("line", "may_bool"), _run_meta(runs))


def read_json_text(sources: list[str], part: int, *, storage_options: dict | None = None) -> Chunk:
    """The text scan: nested values read as text and decoded after, every float as text and
    cast (the tokens map to floats exactly; text that is no number marks its record)."""
    floats = {c: pl.col(c).cast(F64, strict=False) for c in _FLOATS}
    text = pl.col("tasks").str.json_decode(_TASKS_TEXT)
    tasks = text.cast(TASKS, strict=False)
    lost = pl.any_horizontal(_lost(pl.col(c), v) for c, v in floats.items()) | _lost_in_list(
        text, tasks, ("grad_norm", "loss", "weight")
    )
    # the decoding runs inside the scan's query, in parallel over the streamed batches; the
    # rules are judged on the decoded columns (in the select, "tasks" would still be its text)
    frame = (
        pl.scan_ndjson(
            as_given(sources),
            schema=_text_schema(),
            include_file_paths="source",
            storage_options=storage_options,
        )
        .with_columns(row_numbers(part))
        .select(
            "source",
            "run",
            "row",
            "kind",
            "v",
            "epoch",
            "step",
            *(floats[c].alias(c) for c in _FLOATS if c in RECORDS_SCHEMA),
            "n_vanishing",
            "n_exploding",
            tasks.alias("tasks"),
            *_CHECKED_ONLY,
            *NESTED,
            lost=lost | _odd(),
            meta="meta",
        )
        .with_columns(bad=breaks_a_rule() | pl.col("lost"))
        .select(*RECORDS_SCHEMA.names(), "meta", *_CHECKED_ONLY, *NESTED)
        .collect(engine="streaming")
        .drop(*_CHECKED_ONLY)
    )
    # after the collect, and only where a log has them: in the scan, the check cost every
    # chunk 8% whether or not its logs held a cosine
    present = [c for c in NESTED if frame.get_column(c).null_count() < frame.height]
    if present:
        frame = frame.with_columns(bad=pl.col("bad") | nested_breaks(present))
    frame = frame.drop(*NESTED)
    return Chunk(frame.drop("meta"), _run_meta(frame.filter(pl.col("kind") == KIND_RUN)))


def _run_meta(runs: pl.DataFrame) -> pl.DataFrame:
    """The run records' metadata (:data:`~gradlog.analysis.scan.META_SCHEMA`), from the text
    of their ``meta``."""
    meta_text = pl.col("meta").str.json_decode(_META_TEXT)
    weights_text = meta_text.struct.field("weights")
    weights = weights_text.cast(WEIGHTS, strict=False)
    return runs.select(
        "source",
        "run",
        "row",
        meta_tasks=meta_text.struct.field("tasks"),
        by_steps=by_steps(meta_text),
        meta_weights=weights,
        **meta_extras(meta_text),
        bad=_lost_in_list(weights_text, weights, ("weight",))
        | pl.Series(meta_breaks_a_rule(runs.get_column("meta")), dtype=pl.Boolean),
    )


def _text_schema() -> pl.Schema:
    """JSON Lines as the text scan reads them: nested values and floats as text."""
    fields: dict[str, pl.DataType] = {c: pl.String() for c in STRING_FIELDS}
    fields.update({c: pl.Int64() for c in _INTS})
    fields.update({c: pl.String() for c in _FLOATS})
    # skipped, layers and conflicts are only checked (the last two: gradlog.analysis.shapes)
    fields.update({c: pl.String for c in ("tasks", "meta", "skipped", *NESTED)})
    return pl.Schema(fields)


def _odd() -> pl.Expr:
    """What the text scan's decoding would let through and the careful reader refuses, found
    on the text: a list or an object where a string belongs (read as its JSON text), a true or
    false among a task's numbers (decoded as 1 or 0). A false alarm costs a careful read."""
    nested = pl.any_horizontal(
        (pl.col(c).str.starts_with("[") | pl.col(c).str.starts_with("{")).fill_null(False)
        for c in ("run", "kind", "skipped")
    )
    flag = pl.col("tasks").str.contains(r":\s*(?:true|false)\s*[,}\]]").fill_null(False)
    return nested | flag


def _check_gzipped(sources: list[str]) -> None:
    """Raise :class:`~gradlog.errors.LogFormatError` for a local gzipped log that decompresses
    to a line or a total over the readers' bounds, or to more than a scan should hold at once
    (:data:`~gradlog.analysis.sources.ALONE_BYTES`: the careful reader reads it in pieces)."""
    from gradlog.analysis.readers.streams import check_gzip

    for path in sources:
        if URL_PATTERN.match(path):
            continue
        with open(path, "rb") as fh:
            if fh.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
                continue
            size = os.fstat(fh.fileno()).st_size
        check_gzip(path, size, most=ALONE_BYTES)


def _lost(text: pl.Expr, value: pl.Expr) -> pl.Expr:
    """Text that was there but is no number (the cast made it null)."""
    return text.is_not_null() & value.is_null()


def _lost_in_list(text: pl.Expr, value: pl.Expr, fields: tuple[str, ...]) -> pl.Expr:
    """Some field of a list of structs had text that is no number."""

    def count(expr: pl.Expr, name: str) -> pl.Expr:
        return expr.list.eval(pl.element().struct.field(name).is_not_null()).list.sum()

    return pl.any_horizontal(count(text, f) != count(value, f) for f in fields).fill_null(False)
