"""An HTML page as a small tree, where text and markup cannot be confused.

Renderers build :class:`El` elements whose children are other elements or plain ``str`` text,
and whose attribute values are ``str``: all of it is text, which the serialiser hands to the
escaping function it is given (:func:`gradlog.analysis.output.for_html`, the one place log text
is neutralised). Only :class:`Asset` (gradlog's own stylesheet and script, read from package
files) is written as it is, and :class:`Data` (numbers and names for the script) is written as
JSON by the data function it is given. Tag and attribute names are gradlog's own literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Union

Child = Union["El", "Asset", "Data", str]
_VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})


@dataclass(frozen=True)
class El:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: tuple[Child, ...] = ()


@dataclass(frozen=True)
class Asset:
    """gradlog's own CSS or JavaScript (never anything from a log), placed verbatim."""

    text: str


@dataclass(frozen=True)
class Data:
    """Plain data for the page's script, inside ``<script type="application/json">``."""

    value: object


def h(tag: str, *children: Child | None | Iterable[Child], **attrs: str | None) -> El:
    """An element: ``h("td", "text", class_="num")``; ``None`` children and attributes are left
    out, lists of children flattened; a trailing ``_`` of an attribute name is dropped and other
    ``_`` become ``-`` (``data_x`` is ``data-x``)."""
    flat: list[Child] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, (El, Asset, Data, str)):
            flat.append(child)
        else:
            flat.extend(c for c in child if c is not None)
    named = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items() if v is not None}
    return El(tag, named, tuple(flat))


def serialise(
    node: Child, text: Callable[[str], str], data: Callable[[object], str]
) -> Iterable[str]:
    """The markup of ``node`` in pieces: every text and attribute value through ``text``."""
    if isinstance(node, str):
        yield text(node)
    elif isinstance(node, Asset):
        yield node.text
    elif isinstance(node, Data):
        yield data(node.value)
    else:
        attrs = "".join(f' {k}="{text(v)}"' for k, v in node.attrs.items())
        yield f"<{node.tag}{attrs}>"
        if node.tag in _VOID:
            return
        for child in node.children:
            yield from serialise(child, text, data)
        yield f"</{node.tag}>"


def document(page: El, text: Callable[[str], str], data: Callable[[object], str]) -> str:
    """The whole document: the doctype, then :func:`serialise`."""
    return "<!DOCTYPE html>\n" + "".join(serialise(page, text, data)) + "\n"
