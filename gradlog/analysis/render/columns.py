"""The documented templates of :mod:`gradlog.messages` as Polars string expressions.

A million-event report is built a block of events at a time by Polars, not line by line in
Python; the wording still comes from :mod:`gradlog.messages` alone. Numbers are formatted as
Python's ``format(x, ".4f")`` does: scaled and rounded in floating point where that is certainly
what Python's correctly rounded decimal conversion gives, and by Python itself for the rare value
too close to a rounding tie (or too large) to decide (:func:`format_numbers`).
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import polars as pl

_FORMATTER = string.Formatter()
# Below this many rows Python formats every number: the vectorised plan's fixed cost (4 ms)
# outweighs formatting a few hundred values, and a short report is mostly fixed costs.
PYTHON_FORMATS_BELOW = 256


def fields(templates: Iterable[str]) -> set[tuple[str, str]]:
    """Every (field, format spec) that ``templates`` use."""
    return {
        (name, spec or "")
        for t in templates
        for _, name, spec, _ in _FORMATTER.parse(t)
        if name is not None
    }


def number_column(name: str, spec: str) -> str:
    return f"{name}|{spec}"


def format_numbers(frame: pl.DataFrame, values: dict[str, pl.Expr], specs: set[tuple[str, str]]):
    """``frame`` with a text column per (field, ".Nf" spec) of ``specs`` found in ``values``."""
    wanted = {number_column(n, s): (n, s) for n, s in specs if s and n in values}
    if not wanted:
        return frame
    if frame.height < PYTHON_FORMATS_BELOW:
        done = frame.select(**{k: values[n] for k, (n, _) in wanted.items()})
        return frame.with_columns(
            pl.Series(k, [None if v is None else format(v, s) for v in done[k]], pl.String)
            for k, (_, s) in wanted.items()
        )
    exprs = {}
    for key, (name, spec) in wanted.items():
        text, needs_python = _fixed(values[name], int(spec[1:-1]))
        exprs[key] = text
        exprs[key + "?"] = needs_python
        exprs[key + "="] = values[name]
    done = frame.select(**exprs)  # one pass, the columns in parallel
    return frame.with_columns(
        _patch(done[k], done[k + "?"], done[k + "="], s).alias(k) for k, (_, s) in wanted.items()
    )


def template(text: str, **values: pl.Expr) -> pl.Expr:
    """``text`` with its fields filled: plain fields from ``values`` (string expressions),
    number fields from the columns :func:`format_numbers` made; null where any value is."""
    parts: list[pl.Expr] = []
    for literal, name, spec, _ in _FORMATTER.parse(text):
        if literal:
            parts.append(pl.lit(literal))
        if name is None:
            continue
        parts.append(pl.col(number_column(name, spec)) if spec else values[name])
    return pl.concat_str(parts) if parts else pl.lit("")


def title(name: pl.Expr) -> pl.Expr:
    """:func:`gradlog.messages.title` of each task name."""
    return pl.concat_str(name.str.slice(0, 1).str.to_uppercase(), name.str.slice(1))


def _fixed(x: pl.Expr, decimals: int) -> tuple[pl.Expr, pl.Expr]:
    """``format(x, f".{decimals}f")`` where float arithmetic decides it, and where it does not.

    The scaled value must be far enough from a rounding tie that the error of one
    multiplication cannot cross it; near-ties, huge values, NaN and infinities (a tiny share of
    any real log) are marked for :func:`_patch`, which formats them with Python itself.
    """
    scale = 10**decimals
    y = x.abs() * scale
    frac = y - y.floor()
    negative = (x < 0) | ((x == 0) & ((1.0 / x) < 0))  # -0.0 prints as "-0.0000"
    safe = (x.is_finite() & (x.abs() < 1e9) & ((frac - 0.5).abs() > y * 4e-16 + 1e-9)).fill_null(
        False
    )
    n = (y + 0.5).floor().cast(pl.Int64)
    text = pl.concat_str(
        pl.when(negative).then(pl.lit("-")).otherwise(pl.lit("")),
        (n // scale).cast(pl.String),
        pl.lit("."),
        (n % scale).cast(pl.String).str.zfill(decimals),
    )
    return pl.when(safe).then(text), ~safe & x.is_not_null()


def _patch(text: pl.Series, needs_python: pl.Series, values: pl.Series, spec: str) -> pl.Series:
    """``text`` with the values :func:`_fixed` left to Python formatted by Python."""
    if not needs_python.any():
        return text
    rows = needs_python.arg_true()
    python = [format(v, spec) for v in values.gather(rows).to_list()]
    return text.scatter(rows, python)
