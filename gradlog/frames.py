"""The log schema as Polars dtypes, derived from :mod:`gradlog.format`."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import polars as pl

from gradlog.format import (
    CONFLICT_FLOAT_FIELDS,
    EVENT_STRING_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    META_INT_FIELDS,
    META_STRING_FIELDS,
    STRING_FIELDS,
    TASK_FLOAT_FIELDS,
    Record,
)

# The analysis works on frames already in memory (one log, or one chunk of a batch): Polars'
# in-memory engine plans its many small, branching queries in half the time of the streaming
# engine, the default since Polars 2 (benchmarks/report_speed.py).
IN_MEMORY = "in-memory"

# What reading a damaged file can raise: Polars panics on some (a PanicException derives from
# BaseException, not Exception), and a panic in a reader is a broken file, not a broken program.
READ_ERRORS: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)

COLUMNS = (
    "v",
    "run",
    "kind",
    "time",
    "epoch",
    "step",
    "mean_norm",
    "max_norm",
    "total_norm",
    "pre_clip_norm",
    "clip_coef",
    "n_grads",
    "n_vanishing",
    "n_exploding",
    "layers",
    "tasks",
    "meta",
    "conflicts",
    "rank",
    "skipped",
)


def _schema(float_dtype: pl.DataType) -> dict[str, pl.DataType]:
    task = pl.Struct({"name": pl.String, **{f: float_dtype for f in TASK_FLOAT_FIELDS}})
    meta = pl.Struct(
        {
            "tasks": pl.List(pl.String),
            **{f: pl.Int64 for f in META_INT_FIELDS},
            "weights": pl.List(pl.Struct({"name": pl.String, "weight": float_dtype})),
            **{f: pl.String for f in META_STRING_FIELDS},
            "tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
        }
    )
    dtypes: dict[str, pl.DataType] = {}
    dtypes.update({f: pl.Int64 for f in INT_FIELDS})
    dtypes.update({f: float_dtype for f in FLOAT_FIELDS})
    dtypes.update({f: pl.String for f in STRING_FIELDS + EVENT_STRING_FIELDS})
    dtypes["layers"] = pl.List(pl.Struct({"name": pl.String, "norm": float_dtype}))
    dtypes["tasks"] = pl.List(task)
    dtypes["meta"] = meta
    dtypes["conflicts"] = pl.List(
        pl.Struct(
            {"a": pl.String, "b": pl.String, **{f: float_dtype for f in CONFLICT_FLOAT_FIELDS}}
        )
    )
    return {name: dtypes[name] for name in COLUMNS}


def storage_schema() -> pl.Schema:
    """Column dtypes of a loaded log (and of a Parquet log on disk)."""
    return pl.Schema(_built(pl.Float64), check_dtypes=False)  # a copy: callers may change it


def json_schema() -> pl.Schema:
    """Dtypes for reading JSON Lines: floats as strings, so that NaN/Infinity tokens survive."""
    return pl.Schema(_built(pl.String), check_dtypes=False)


@functools.cache
def _built(float_dtype: type[pl.DataType]) -> pl.Schema:
    # built once: checking the nested dtypes takes a short report's read 1 ms each time
    return pl.Schema(_schema(float_dtype()))


def records_to_frame(records: Sequence[Record]) -> pl.DataFrame:
    """Records (as the recorder builds them, with Python floats) as a frame of the log schema."""
    return pl.DataFrame(list(records), schema=storage_schema(), strict=False)
