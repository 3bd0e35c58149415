"""Neutralising log-derived text before it reaches a terminal (standard library only).

A log is data from anywhere: a fork's pull request, a shared disk, an old archive. Its run ids,
task names, tags and file names may hold control characters and escape sequences (``ESC [``
moves the cursor, clears the screen or rewrites the window title; ``U+202E`` reverses the text
that follows; a newline forges a second message). :func:`for_terminal` turns every character that
is not printable into a visible escape, so such text is shown, never obeyed. :func:`json_safe`
does the same inside JSON text, where the escape keeps the data unchanged.
"""

from __future__ import annotations

import json

__all__ = ["for_terminal", "json_safe"]


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def for_terminal(text: str) -> str:
    """``text`` with every non-printable character written as a ``\\x1b``-style escape.

    Non-printable is Python's :meth:`str.isprintable`: control characters (C0, DEL, C1: ESC,
    BEL, CSI ``U+009B``, newlines, tabs), format characters (bidirectional overrides, zero-width
    characters), surrogates, unassigned code points and separators other than the space.
    Everything else, accents and CJK included, is kept as it is. Pure and idempotent on its
    output: the result is always printable, and printable text comes back unchanged.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def json_safe(text: str) -> str:
    """JSON text with every non-printable character other than the newline as a ``\\uXXXX`` escape.

    ``json.dumps(..., ensure_ascii=False)`` escapes C0 controls but writes C1 controls,
    bidirectional overrides and lone surrogates as they are. Inside a JSON string a ``\\uXXXX``
    escape decodes to the same character, so the data is unchanged while the terminal sees
    only printable text. Outside strings, JSON text holds only printable ASCII and newlines.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == "\n":
            out.append(char)
        else:
            # json.dumps of one character gives its \uXXXX form (a surrogate pair above U+FFFF)
            out.append(json.dumps(char, ensure_ascii=True)[1:-1])
    return "".join(out)
