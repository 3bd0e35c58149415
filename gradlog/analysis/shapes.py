"""The nested lists a batch's scan checks but never decodes (``layers``, ``conflicts``),
recognised on their JSON text.

The careful reader refuses a record whose ``layers`` or ``conflicts`` break the format's rules
(:func:`gradlog.record_rules.validate_record`: a list of objects, names as text, numbers or
the ``NaN``/``Infinity`` tokens), and ``gradlog batch`` must refuse what ``gradlog report``
refuses. Decoding every event's cosines to check them would cost the scan as much again as its
tasks; instead their text (as the scan gives a nested value back: written out again by Polars,
with its own spacing) is matched against the shape of what gradlog's writers write (their key
order). Text of any other shape marks the record as one the careful reader must look at: a
false alarm costs a careful read of that file, never a different answer.
"""

from __future__ import annotations

import polars as pl

_S = r"\s*"
_TEXT = r'(?:"(?:[^"\\]|\\.)*"|null)'
# a number as the scan gives it back (Polars writes 1.5e300 out in full: under 309 digits it is
# within a float's range), or a token; anything else is looked at
_NUMBER = r"-?\d{1,308}(?:\.\d+)?(?:[eE][+-]?\d{1,3})?"
_FLOAT = rf'(?:{_NUMBER}|null|"NaN"|"Infinity"|"-Infinity")'


def _list_of(*fields: tuple[str, str]) -> str:
    pairs = f"{_S},{_S}".join(f'"{name}"{_S}:{_S}{value}' for name, value in fields)
    item = rf"\{{{_S}{pairs}{_S}\}}"
    return rf"^{_S}\[{_S}(?:{item}(?:{_S},{_S}{item})*)?{_S}\]{_S}$"


SHAPES = {
    "layers": _list_of(("name", _TEXT), ("norm", _FLOAT)),
    "conflicts": _list_of(("a", _TEXT), ("b", _TEXT), ("cosine", _FLOAT)),
}


def odd_nested() -> pl.Expr:
    """A record whose ``layers`` or ``conflicts`` (read as text) is not of the writers' shape."""
    return pl.any_horizontal(
        (pl.col(name).is_not_null() & ~pl.col(name).str.contains(shape)).fill_null(False)
        for name, shape in SHAPES.items()
    )
