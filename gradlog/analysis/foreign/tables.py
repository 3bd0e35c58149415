"""Hugging Face's ``trainer_state.json`` and W&B history exports (CSV, JSON Lines, Parquet).

Both are tables of logged values at steps. In ``trainer_state.json`` each ``log_history`` entry
is one row, its ``step`` and ``epoch`` (a fraction: Hugging Face counts part-epochs) beside the
values it logged (``grad_norm``, ``loss``, and whatever the model logged itself). A W&B history
export has one column per key and ``_step``, ``_timestamp``, ``_runtime`` beside them. Every
other number is a scalar of its key's tag; text, media and nested values are not scalars.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl

from gradlog.analysis.foreign.scalars import HUGGINGFACE, SCALARS_SCHEMA, WANDB, Scalars
from gradlog.analysis.limits import size_text, stream_limit
from gradlog.analysis.readers.loaded import first_line, polars_path
from gradlog.errors import LogFormatError
from gradlog.frames import READ_ERRORS

# W&B's own columns: when, not what was logged
WANDB_STEP = "_step"
WANDB_TIME = "_timestamp"
WANDB_COLUMNS = (WANDB_STEP, WANDB_TIME, "_runtime", "epoch")
# what pandas and spreadsheets add when they save a table: a row number, not a logged value
_INDEX_COLUMNS = ("", "Unnamed: 0", "index")


def run_name(path: str) -> str:
    """A run id for a file that names none: a checkpoint's folder for ``trainer_state.json``
    (every checkpoint holds one), else the file's name without its suffix."""
    p = Path(path)
    if p.name == "trainer_state.json" and p.parent.name:
        return p.parent.resolve().name
    return p.name.split(".")[0] or p.name


def _bounded_text(path: str) -> bytes:
    """The whole file, refused before it is read when it is larger than the stream bound."""
    limit = stream_limit()
    try:
        if os.path.getsize(path) > limit:
            raise LogFormatError(
                f"larger than {size_text(limit)}; raise the bound with --max-stream-bytes", path
            )
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", path) from None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def read_trainer_state(path: str) -> Scalars:
    """``trainer_state.json``: its ``log_history``, one scalar per number of each entry."""
    try:
        state = json.loads(_bounded_text(path))
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"not valid JSON ({first_line(exc)})", path) from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise LogFormatError("expected a list of logged entries", path, field="log_history")
    cols: dict[str, list] = {"step": [], "epoch": [], "tag": [], "value": []}
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise LogFormatError(f"entry {i} is not an object", path, field="log_history")
        step, epoch = entry.get("step"), _number(entry.get("epoch"))
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise LogFormatError(
                f"entry {i}: expected an integer step, got {step!r:.40}", path, field="step"
            )
        whole = math.floor(epoch) if epoch is not None and math.isfinite(epoch) else None
        for key, value in entry.items():
            number = _number(value)
            if key in ("step", "epoch") or number is None:
                continue
            cols["step"].append(step)
            cols["epoch"].append(whole)
            cols["tag"].append(key)
            cols["value"].append(number)
    n = len(cols["tag"])
    frame = pl.DataFrame(
        {"run": [run_name(path)] * n, **cols, "time": [None] * n}, schema=SCALARS_SCHEMA
    )
    return Scalars(path, HUGGINGFACE, frame)


def read_wandb(path: str) -> Scalars:
    """A W&B history export: CSV, JSON Lines or Parquet with a ``_step`` column."""
    table = _wandb_table(path)
    if WANDB_STEP not in table.columns:
        raise LogFormatError(f"no {WANDB_STEP} column: not a W&B history export", path)
    numeric = {
        name
        for name, dtype in table.schema.items()
        if dtype.is_numeric() or dtype == pl.String or dtype == pl.Null
    }
    tags = [c for c in table.columns if c in numeric and c not in WANDB_COLUMNS + _INDEX_COLUMNS]
    when = [
        _as_int(table, WANDB_STEP).alias("step"),
        _as_int(table, "epoch").alias("epoch"),
        _as_float(table, WANDB_TIME).alias("time"),
    ]
    long = (
        table.select(*when, *[pl.col(c).cast(pl.String) for c in tags])
        .with_row_index("_row")
        .unpivot(index=["_row", "step", "epoch", "time"], on=tags, variable_name="tag")
        .with_columns(value=pl.col("value").cast(pl.Float64, strict=False))
        .filter(pl.col("value").is_not_null())
        # point by point in the order W&B logged them, as the other readers give theirs
        .sort("_row", maintain_order=True)
    )
    frame = long.select(
        pl.lit(run_name(path)).alias("run"), "step", "epoch", "tag", "value", "time"
    )
    return Scalars(path, WANDB, frame.cast(dict(SCALARS_SCHEMA)).select(SCALARS_SCHEMA.names()))


def _as_float(table: pl.DataFrame, name: str) -> pl.Expr:
    if name not in table.columns:
        return pl.lit(None, pl.Float64)
    return pl.col(name).cast(pl.String).cast(pl.Float64, strict=False)


def _as_int(table: pl.DataFrame, name: str) -> pl.Expr:
    """W&B writes steps as numbers, sometimes as floats (``12.0``); an epoch may be a fraction."""
    value = _as_float(table, name)
    return pl.when(value.is_finite()).then(value.floor()).cast(pl.Int64, strict=False)


def _wandb_table(path: str) -> pl.DataFrame:
    kind = wandb_format(path)
    source = polars_path(path)
    try:
        if kind == "parquet":
            return pl.read_parquet(source, glob=False)
        if kind == "csv":
            return pl.read_csv(source, infer_schema=False, glob=False)
        return _read_json_lines(path)
    except LogFormatError:
        raise
    except READ_ERRORS as exc:
        raise LogFormatError(f"not a readable W&B history ({first_line(exc)})", path) from None


def _read_json_lines(path: str) -> pl.DataFrame:
    """JSON Lines rows: numbers kept, NaN and infinities included (W&B writes them bare)."""
    rows = []
    for number, line in enumerate(_bounded_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise LogFormatError(f"not valid JSON ({first_line(exc)})", path, number) from None
        if not isinstance(row, dict):
            raise LogFormatError("expected a JSON object", path, number)
        rows.append({k: n for k, v in row.items() if (n := _number(v)) is not None})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def wandb_format(path: str) -> str:
    """``parquet``, ``csv`` or ``jsonl``: by the first bytes, whatever the name says."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        return "parquet"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "csv"
