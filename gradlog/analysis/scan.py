"""Scans of many logs at once, into the two frames ``gradlog batch`` analyses.

Every source, however it is stored, becomes the same columns:

``records`` (:data:`RECORDS_SCHEMA`)
    one row per record: ``source, run, row, kind, epoch, step, mean_norm, max_norm, tasks,
    bad``; ``row`` orders the records (file order) and is unique across the whole batch;
    ``tasks`` is the list of ``{name, grad_norm, loss, weight}``;
``meta`` (:data:`META_SCHEMA`)
    one row per run record: ``source, run, row, meta_tasks, by_steps, meta_weights, bad``.

Only what the analysis needs is read (``layers``, for one, never is). ``bad`` marks a record
the careful reader (:func:`gradlog.analysis.readers.read_log`) may refuse: one breaking a rule of
:mod:`gradlog.analysis.validity`, a float whose text is no number, a value of the wrong kind that
the decoding would let through (a list for a run id, ``true`` among a task's numbers), or run
metadata that :func:`gradlog.format.validate_record` refuses. A source with a bad record is read
again, alone, by that reader, which names the line and the field (or, on a false alarm, reads it).

JSON Lines are scanned with the nested ``tasks`` and ``meta`` read as text: Polars reads text
fast and decodes nested JSON afterwards several times faster than it parses nested structs inside
a scan. Floats are read as numbers (``tokens=False``); a log holding the ``"NaN"``/``"Infinity"``
tokens of docs/format.md makes that fail, and is then read with every float as text and cast
(``tokens=True``), which maps the tokens to floats exactly. Each function makes one scan and one
collect (the decoding runs inside it); what follows works on the frame in memory.

A gzipped local log is first decompressed once without being kept, to hold it to the bounds of
``gradlog report`` (:mod:`gradlog.analysis.readers.streams`: no line over
:data:`~gradlog.format.MAX_LINE_BYTES`, no more than :data:`~gradlog.format.MAX_STREAM_BYTES`
in all), which the scan would not: one that breaks them fails the scan, and ``gradlog batch``
then reads it alone with the careful reader, which names the line or the limit. (A plain file's
lines are checked where it is found, :mod:`gradlog.analysis.sources`.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import polars as pl

from gradlog.analysis.readers.loaded import polars_path
from gradlog.analysis.shapes import NESTED, nested_breaks
from gradlog.analysis.sources import ALONE_BYTES, URL_PATTERN
from gradlog.analysis.validity import breaks_a_rule
from gradlog.format import (
    FLOAT_FIELDS,
    GZIP_MAGIC,
    INT_FIELDS,
    KIND_RUN,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    STRING_FIELDS,
)
from gradlog.frames import json_schema, storage_schema
from gradlog.record_rules import validate_record

F64 = pl.Float64
# A Parquet log written before (or after) a field was added within version 1 lacks (or has
# more) fields in its structs (meta.stats_at): read as null, or ignored, as a reader of JSON
# Lines does, never refused.
LOGS_OF_ANY_MINOR_VERSION = pl.ScanCastOptions(
    missing_struct_fields="insert", extra_struct_fields="ignore"
)
ROW_BLOCK = 1 << 40  # row numbers of part k start at k * ROW_BLOCK: unique across parts

TASKS = pl.List(pl.Struct({"name": pl.String, "grad_norm": F64, "loss": F64, "weight": F64}))
WEIGHTS = pl.List(pl.Struct({"name": pl.String, "weight": F64}))
RECORDS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "run": pl.String,
        "row": pl.Int64,
        "kind": pl.String,
        "epoch": pl.Int64,
        "step": pl.Int64,
        "mean_norm": F64,
        "max_norm": F64,
        "total_norm": F64,
        "n_vanishing": pl.Int64,
        "n_exploding": pl.Int64,
        "pre_clip_norm": F64,
        "clip_coef": F64,
        "tasks": TASKS,
        "bad": pl.Boolean,
    }
)
META_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "run": pl.String,
        "row": pl.Int64,
        "meta_tasks": pl.List(pl.String),
        "by_steps": pl.Boolean,
        "meta_weights": WEIGHTS,
        "log_every": pl.Int64,
        "log_every_steps": pl.Int64,
        "started_at": pl.String,
        "stats_at": pl.String,
        "tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
        "bad": pl.Boolean,
    }
)

_FLOATS = FLOAT_FIELDS  # read and checked as the reader does; mean_norm and max_norm are used
_INTS = INT_FIELDS
# Read only to be checked: kept in the collected frame, and dropped after it, since the scan
# parses no column that its query's result leaves out.
_CHECKED_ONLY = tuple(c for c in (*_INTS, *_FLOATS) if c not in RECORDS_SCHEMA and c != "v")
_TASKS_TEXT = json_schema()["tasks"]  # {name, grad_norm, loss, weight}, floats as text
_META_TEXT = json_schema()["meta"]


def _json_schema(tokens: bool) -> pl.Schema:
    """JSON Lines as the batch reads them: nested values as text, floats as numbers or text."""
    fields: dict[str, pl.DataType] = {c: pl.String() for c in STRING_FIELDS}
    fields.update({c: pl.Int64() for c in _INTS})
    fields.update({c: pl.String() if tokens else F64() for c in _FLOATS})
    # skipped, layers and conflicts are only checked (the last two: gradlog.analysis.shapes)
    fields.update({c: pl.String for c in ("tasks", "meta", "skipped", *NESTED)})
    return pl.Schema(fields)


@dataclass(frozen=True)
class Chunk:
    """The records and run metadata of some sources, in memory."""

    records: pl.DataFrame
    meta: pl.DataFrame

    @staticmethod
    def concat(chunks: list[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        return Chunk(pl.concat([c.records for c in chunks]), pl.concat([c.meta for c in chunks]))


def read_json(
    sources: list[str], part: int, *, tokens: bool = False, storage_options: dict | None = None
) -> Chunk:
    """JSON Lines files (plain or gzipped, local or object-store URLs), scanned together."""
    _check_gzipped(sources)
    lost = pl.lit(False)  # a number written as text that is no number (tokens=True only)
    if tokens:
        floats = {c: pl.col(c).cast(F64, strict=False) for c in _FLOATS}
        text = pl.col("tasks").str.json_decode(_TASKS_TEXT)
        tasks = text.cast(TASKS, strict=False)
        lost = pl.any_horizontal(_lost(pl.col(c), v) for c, v in floats.items()) | _lost_in_list(
            text, tasks, ("grad_norm", "loss", "weight")
        )
    else:
        floats = {c: pl.col(c) for c in _FLOATS}
        tasks = pl.col("tasks").str.json_decode(TASKS)
    # the decoding runs inside the scan's query, in parallel over the streamed batches; the
    # rules are judged on the decoded columns (in the select, "tasks" would still be its text)
    frame = (
        pl.scan_ndjson(
            _as_given(sources),
            schema=_json_schema(tokens),
            include_file_paths="source",
            storage_options=storage_options,
        )
        .with_columns(_row(part))
        .select(
            "source",
            "run",
            "row",
            "kind",
            "v",
            "epoch",
            "step",
            floats["mean_norm"].alias("mean_norm"),
            floats["max_norm"].alias("max_norm"),
            floats["total_norm"].alias("total_norm"),
            "n_vanishing",
            "n_exploding",
            floats["pre_clip_norm"].alias("pre_clip_norm"),
            floats["clip_coef"].alias("clip_coef"),
            tasks.alias("tasks"),
            *_CHECKED_ONLY,
            *NESTED,
            lost=lost | _odd(),
            meta="meta",
        )
        .with_columns(bad=_invalid() | pl.col("lost"))
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
    # only run records carry metadata: decode it there, on a handful of rows
    meta_text = pl.col("meta").str.json_decode(_META_TEXT)
    weights_text = meta_text.struct.field("weights")
    weights = weights_text.cast(WEIGHTS, strict=False)
    runs = frame.filter(pl.col("kind") == KIND_RUN)
    meta = runs.select(
        "source",
        "run",
        "row",
        meta_tasks=meta_text.struct.field("tasks"),
        by_steps=_by_steps(meta_text),
        meta_weights=weights,
        **_meta_extras(meta_text),
        bad=_lost_in_list(weights_text, weights, ("weight",))
        | pl.Series(_meta_breaks_a_rule(runs.get_column("meta")), dtype=pl.Boolean),
    )
    return Chunk(frame.drop("meta"), meta)


def _odd() -> pl.Expr:
    """What the JSON decoding would let through and the careful reader refuses, found on the
    text: a list or an object where a string belongs (read as its JSON text), a true or false
    among a task's numbers (decoded as 1 or 0). A false alarm costs a careful read, no more."""
    nested = pl.any_horizontal(
        (pl.col(c).str.starts_with("[") | pl.col(c).str.starts_with("{")).fill_null(False)
        for c in ("run", "kind", "skipped")
    )
    flag = pl.col("tasks").str.contains(r":\s*(?:true|false)\s*[,}\]]").fill_null(False)
    return nested | flag


def _meta_breaks_a_rule(metas: pl.Series) -> list[bool]:
    """Whether each run record's metadata (JSON text, or a Parquet struct) breaks a rule, by
    the careful reader's own check (:func:`gradlog.format.validate_record`): a handful of
    records per chunk, many rules, in Python as that reader does it."""
    out = []
    for meta in metas.to_list():
        try:
            meta = json.loads(meta) if isinstance(meta, str) else meta
        except (ValueError, RecursionError):
            out.append(True)
            continue
        record = {"v": SCHEMA_VERSION, "run": "-", "kind": KIND_RUN}
        if meta is not None:
            record["meta"] = meta
        out.append(validate_record(record) is not None)
    return out


def _as_given(sources: list[str]) -> list[str]:
    """Local paths as Polars must see them to read each file as itself (``run[1].jsonl`` is a
    file, not a pattern); object-store URLs as given, where a glob is meant as one."""
    return [s if URL_PATTERN.match(s) else polars_path(s) for s in sources]


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


def read_parquet(sources: list[str], part: int, *, storage_options: dict | None = None) -> Chunk:
    """Parquet files scanned together; columns a file lacks read as null."""
    lf = pl.scan_parquet(
        _as_given(sources),
        schema=storage_schema(),
        missing_columns="insert",
        extra_columns="ignore",
        cast_options=LOGS_OF_ANY_MINOR_VERSION,
        include_file_paths="source",
        storage_options=storage_options,
    )
    return _from_storage(lf, part)


def read_dataset(root: str, part: int, *, storage_options: dict | None = None) -> Chunk:
    """A (hive-partitioned) Parquet dataset: one source, whichever files its runs span."""
    lf = pl.scan_parquet(
        _as_given([root])[0],
        hive_partitioning=True,
        schema=storage_schema(),
        missing_columns="insert",
        extra_columns="ignore",
        cast_options=LOGS_OF_ANY_MINOR_VERSION,
        storage_options=storage_options,
    ).with_columns(source=pl.lit(root))
    return _from_storage(lf, part)


def from_frame(frame: pl.DataFrame, source: str, part: int) -> Chunk:
    """A log already read (by the careful reader), in the storage schema, with its cosines."""
    return _from_storage(frame.lazy().with_columns(source=pl.lit(source)), part, report=True)


def _row(part: int) -> pl.Expr:
    return (pl.int_range(pl.len(), dtype=pl.Int64) + part * ROW_BLOCK).alias("row")


def _invalid() -> pl.Expr:
    """A record that breaks the contract: :mod:`gradlog.analysis.validity`'s rules, as every reader."""
    return breaks_a_rule()


def _lost(text: pl.Expr, value: pl.Expr) -> pl.Expr:
    """Text that was there but is no number (the cast made it null)."""
    return text.is_not_null() & value.is_null()


def _lost_in_list(text: pl.Expr, value: pl.Expr, fields: tuple[str, ...]) -> pl.Expr:
    """Some field of a list of structs had text that is no number."""

    def count(expr: pl.Expr, name: str) -> pl.Expr:
        return expr.list.eval(pl.element().struct.field(name).is_not_null()).list.sum()

    return pl.any_horizontal(count(text, f) != count(value, f) for f in fields).fill_null(False)


def _by_steps(meta: pl.Expr) -> pl.Expr:
    """A run logged by steps labels its events "Step N", as the report does."""
    field = meta.struct.field
    return (field("log_every_steps").fill_null(0) != 0) | (
        field("balance_every_steps").fill_null(0) != 0
    )


def _meta_extras(meta: pl.Expr) -> dict[str, pl.Expr]:
    """What the report prints of a run record: cadences, start time, tags."""
    field = meta.struct.field
    return {
        "log_every": field("log_every"),
        "log_every_steps": field("log_every_steps"),
        "started_at": field("started_at"),
        "stats_at": field("stats_at"),
        "tags": field("tags"),
    }


_FLAT = ("epoch", "step", "mean_norm", "max_norm")
# what only a report's events show
_DETAIL = ("total_norm", "n_vanishing", "n_exploding", "pre_clip_norm", "clip_coef")


def _from_storage(lf: pl.LazyFrame, part: int, *, report: bool = False) -> Chunk:
    """The chunk of a batch's Parquet scan, or of a log the careful reader read (``report``);
    a batch leaves out the columns only a report shows, since each column of each file costs a
    read (the first three, a sixth of the scan of 1,000 files)."""
    extra = ["conflicts"] if report else []
    detail = [pl.col(c) if report else pl.lit(None, RECORDS_SCHEMA[c]).alias(c) for c in _DETAIL]
    raw = (
        lf.select("source", *REQUIRED_FIELDS, *_FLAT, *detail, "tasks", "meta", *extra)
        .with_columns(_row(part))
        .collect()
        # a chunk per file, else: an expression over 125 chunks costs 50x one over one
        .rechunk()
    )
    records = raw.select(
        "source",
        "run",
        "row",
        "kind",
        *_FLAT,
        *_DETAIL,
        "tasks",
        *extra,
        bad=_invalid(),
    )
    meta = pl.col("meta")
    run_rows = raw.filter(pl.col("kind") == KIND_RUN)
    runs = run_rows.select(
        "source",
        "run",
        "row",
        meta_tasks=meta.struct.field("tasks"),
        by_steps=_by_steps(meta),
        meta_weights=meta.struct.field("weights"),
        **_meta_extras(meta),
        # the careful reader has checked a report's log already
        bad=pl.Series(
            [False] * run_rows.height if report else _meta_breaks_a_rule(run_rows["meta"]),
            dtype=pl.Boolean,
        ),
    )
    return Chunk(records, runs)
