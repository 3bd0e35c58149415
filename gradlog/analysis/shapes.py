"""The nested lists a batch's scan checks but never uses (``layers``, ``conflicts``).

The careful reader refuses a record whose ``layers`` or ``conflicts`` break the format's rules
(:func:`gradlog.record_rules.validate_record`: a list of objects, names as text, numbers or
the ``NaN``/``Infinity`` tokens), and ``gradlog batch`` must refuse what ``gradlog report``
refuses. Decoding every event's cosines would cost the scan about as much as its tasks; it
reads them as text instead (which Polars writes out again in one form: ``[{"a": "x", "b": "y",
"cosine": 0.5}, ...]``) and looks, in one pass, for what a valid list never holds there: a list
or an object as a value, text or a boolean as a number, anything but an object as an item.
A hit marks the record as one the careful reader must look at: a false alarm (a number
written as text, which that reader accepts; a ``NaN`` token) costs a careful read of that file,
never a different answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

NESTED = {"layers": ("norm",), "conflicts": ("cosine",)}  # each list's numbers

_NEVER = [
    ": [",  # a list as a value (a name, a number)
    ": {",  # an object as a value
    *(f'"{number}": {start}' for number in ("norm", "cosine") for start in ('"', "t", "f")),
    *(f"}}, {start}" for start in '"-tfn[0123456789'),  # an item after the first not an object
]


def nested_breaks(names: Sequence[str] = tuple(NESTED)) -> pl.Expr:
    """A record whose ``layers`` or ``conflicts`` (``names``, read as text) may break a rule."""
    flags = []
    for name in names:
        text = pl.col(name)
        not_objects = ~(text.str.starts_with("[{") | (text == "[]"))
        flags.append((not_objects | text.str.contains_any(_NEVER)).fill_null(False))
    return pl.any_horizontal(flags)
