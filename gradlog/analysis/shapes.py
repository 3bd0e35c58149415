"""The nested lists a batch's scan checks but never uses (``layers``, ``conflicts``).

The careful reader refuses a record whose ``layers`` or ``conflicts`` break the format's rules
(:func:`gradlog.record_rules.validate_record`: a list of objects, names as text, numbers or
the ``NaN``/``Infinity`` tokens), and ``gradlog batch`` must refuse what ``gradlog report``
refuses. The scan reads them with their types: a value of another type fails the scan (the
batch then finds the file and lets the careful reader name the line and field), a number
written as text that is no number is found as the tasks' are, and what the decoding lets
through (a list or an object where a name belongs, read as its JSON text) is flagged here.
"""

from __future__ import annotations

import polars as pl

from gradlog.format import CONFLICT_FLOAT_FIELDS
from gradlog.frames import json_schema, storage_schema

# each list's numbers and names, as record_rules checks them
NESTED = {"layers": (("norm",), ("name",)), "conflicts": (CONFLICT_FLOAT_FIELDS, ("a", "b"))}


def nested_dtypes(tokens: bool) -> dict[str, pl.DataType]:
    """How the scan reads them: numbers as numbers, or as text (``tokens``)."""
    schema = json_schema() if tokens else storage_schema()
    return {name: schema[name] for name in NESTED}


def nested_breaks(tokens: bool) -> pl.Expr:
    """A record whose lists hold a name that is a list or an object, or (``tokens``) a number
    whose text is no number."""
    flags = []
    for name, (floats, names) in NESTED.items():
        items = pl.col(name)
        odd = pl.any_horizontal(
            pl.element().struct.field(n).str.contains(r"^\s*[\[{]") for n in names
        )
        flags.append(items.list.eval(odd).list.any())
        if tokens:
            typed = items.cast(storage_schema()[name], strict=False)

            def count(expr: pl.Expr, field: str) -> pl.Expr:
                return expr.list.eval(pl.element().struct.field(field).is_not_null()).list.sum()

            flags += [count(items, f) != count(typed, f) for f in floats]
    return pl.any_horizontal(flags).fill_null(False)
