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

JSON Lines are read by :mod:`gradlog.analysis.jsonl_scan`, Parquet here. Each function makes
one scan and one collect; what follows works on the frame in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from gradlog.analysis.readers.loaded import polars_path
from gradlog.analysis.sources import URL_PATTERN
from gradlog.analysis.validity import breaks_a_rule
from gradlog.format import KIND_RUN, REQUIRED_FIELDS, SCHEMA_VERSION
from gradlog.frames import IN_MEMORY, storage_schema
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


def meta_breaks_a_rule(metas: pl.Series) -> list[bool]:
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


def as_given(sources: list[str]) -> list[str]:
    """Local paths as Polars must see them to read each file as itself (``run[1].jsonl`` is a
    file, not a pattern); object-store URLs as given, where a glob is meant as one."""
    return [s if URL_PATTERN.match(s) else polars_path(s) for s in sources]


def read_parquet(sources: list[str], part: int, *, storage_options: dict | None = None) -> Chunk:
    """Parquet files scanned together; columns a file lacks read as null."""
    lf = pl.scan_parquet(
        as_given(sources),
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
        as_given([root])[0],
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


def row_numbers(part: int) -> pl.Expr:
    return (pl.int_range(pl.len(), dtype=pl.Int64) + part * ROW_BLOCK).alias("row")


def _invalid() -> pl.Expr:
    """A record that breaks the contract: :mod:`gradlog.analysis.validity`'s rules, as every reader."""
    return breaks_a_rule()


def by_steps(meta: pl.Expr) -> pl.Expr:
    """A run logged by steps labels its events "Step N", as the report does."""
    field = meta.struct.field
    return (field("log_every_steps").fill_null(0) != 0) | (
        field("balance_every_steps").fill_null(0) != 0
    )


def meta_extras(meta: pl.Expr) -> dict[str, pl.Expr]:
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
        .with_columns(row_numbers(part))
        # a log in memory is small work: the streaming engine's start would cost more than it
        .collect(engine=IN_MEMORY if report else "auto")
    )
    # a chunk per file, else: an expression over 125 chunks costs 50x one over one; the
    # metadata, read for the run records alone, is taken from them as it is (a tenth of a read)
    records = (
        raw.drop("meta")
        .rechunk()
        .select(
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
    )
    is_run = records.get_column("kind") == KIND_RUN
    run_rows = (
        records.select("source", "run", "row")
        .filter(is_run)
        .with_columns(raw.get_column("meta").filter(is_run).rechunk())
    )
    meta = pl.col("meta")
    runs = run_rows.select(
        "source",
        "run",
        "row",
        meta_tasks=meta.struct.field("tasks"),
        by_steps=by_steps(meta),
        meta_weights=meta.struct.field("weights"),
        **meta_extras(meta),
        # the careful reader has checked a report's log already
        bad=pl.Series(
            [False] * run_rows.height if report else meta_breaks_a_rule(run_rows["meta"]),
            dtype=pl.Boolean,
        ),
    )
    return Chunk(records, runs)
