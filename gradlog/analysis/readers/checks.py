"""Checking whole columns against the rules of the schema, and the messages that name a record.

The rules are :mod:`gradlog.analysis.validity`'s, the one list every reader uses; the message
comes from :func:`gradlog.record_rules.validate_record` on the record as written where it names the
fault, so a JSON line and a Parquet row break a rule in the same words.
"""

from __future__ import annotations

import json
import math
from typing import Protocol

import polars as pl

from gradlog.analysis.validity import record_rules
from gradlog.errors import LogFormatError
from gradlog.format import KIND_RUN, SCHEMA_VERSION
from gradlog.frames import COLUMNS, storage_schema
from gradlog.record_rules import validate_record

_UNREADABLE = object()


class Lines(Protocol):
    """Line numbers and texts of a JSON Lines log's records (the line index of :mod:`.jsonl`)."""

    def number(self, row: int) -> int | None: ...

    def text(self, row: int) -> bytes | None: ...


class JsonPlace:
    """Where a JSON Lines record is, and the record as written: for the error message."""

    def __init__(self, path: str, lines: Lines, meta_json: pl.Series) -> None:
        self.path, self.lines, self.meta_json = path, lines, meta_json

    def record(self, row: int) -> object:
        text = self.lines.text(row)
        if text is None:
            return _UNREADABLE
        try:
            return json.loads(text, parse_constant=reject_constant, parse_float=parse_float)
        except (ValueError, RecursionError):
            return _UNREADABLE

    def meta(self, row: int) -> object:
        try:
            return json.loads(self.meta_json[row])
        except (ValueError, RecursionError, TypeError):
            return _UNREADABLE

    def error(self, row: int, field: str | None, message: str) -> LogFormatError:
        return LogFormatError(message, self.path, self.lines.number(row), field)


class ParquetPlace:
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


def check(text: pl.DataFrame, frame: pl.DataFrame, place: JsonPlace | ParquetPlace) -> None:
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


def _written_fields(dtype: pl.DataType) -> set[str]:
    """The fields a list of objects was written with: a damaged or hand-made Parquet file may
    lack some of the schema's (the cast fills them with nulls) or hold no objects at all."""
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        return {f.name for f in dtype.inner.fields}
    return set()


def _lost_leaves(both: pl.DataFrame, schema: pl.Schema) -> list[str]:
    """Lists of objects where some number was written but did not survive the cast."""
    exprs: dict[str, pl.Expr] = {}
    read = both.schema  # built anew at each call: once, not per column
    for column, dtype in schema.items():
        written = read[f"text:{column}"]
        if written == dtype:
            continue  # decoded straight to numbers: nothing can have been lost
        present = _written_fields(written)
        for f in _numeric_fields(dtype):
            exprs[f"{column}.{f}"] = _count(pl.col(column), f)
            # a field never written has nothing to lose (and the cast left it null)
            exprs[f"text:{column}.{f}"] = (
                _count(pl.col(f"text:{column}"), f) if f in present else pl.lit(0, pl.UInt32)
            )
    if not exprs:
        return []
    counts = both.select(**exprs).row(0, named=True)
    lost = [
        k.split(".")[0]
        for k in exprs
        if not k.startswith("text:") and counts[k] != counts["text:" + k]
    ]
    return list(dict.fromkeys(lost))


def _count(objects: pl.Expr, field: str) -> pl.Expr:
    return objects.explode().struct.field(field).is_not_null().sum()


def _first_row_losing(both: pl.DataFrame, column: str, dtype: pl.DataType) -> int:
    def per_row(expr: pl.Expr, fields: list[str]) -> pl.Expr:
        if not fields:
            return pl.lit(0, pl.UInt32)
        return expr.list.eval(
            pl.sum_horizontal(pl.element().struct.field(f).is_not_null() for f in fields)
        ).list.sum()

    fields = _numeric_fields(dtype)
    present = _written_fields(both.schema[f"text:{column}"])
    written = per_row(pl.col(f"text:{column}"), [f for f in fields if f in present])
    differs = (per_row(pl.col(column), fields) != written).fill_null(False)
    row = both.select(pl.arg_where(differs).first()).item()
    return 0 if row is None else row


def _explain(
    place: JsonPlace | ParquetPlace,
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


class SchemaViolation(ValueError):
    """Valid-looking JSON that no gradlog writer produces."""


def reject_constant(token: str) -> float:
    raise SchemaViolation(
        f'bare {token} is not JSON; gradlog logs write it as the string "{token}"'
    )


def parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise SchemaViolation(f"number {text[:40]} is out of range for a 64-bit float")
    return value
