"""Putting text from a log into GitHub-flavoured Markdown, inertly (standard library only).

A log is written by whatever trained the model, and its run ids, task names and tags end up in
pull-request comments. Nothing in them may become HTML, a link, an image, a mention, an issue
reference or a new table cell. Two functions, for the two places such text goes:

* :func:`escape` for prose and table cells: every ASCII punctuation character that Markdown
  could act on is backslash-escaped (so ``[x](y)``, ``**``, ``https://`` and ``www.`` stay
  text), ``<``, ``>`` and ``&`` become entities (no HTML), and an invisible word joiner follows
  ``@`` and ``#`` (GitHub finds mentions and issue references in the rendered text, after
  escapes are gone, so only breaking the pattern stops them);
* :func:`code` for identifiers: a code span, inside which GitHub renders nothing, with a fence
  longer than any run of backticks in the text and ``|`` escaped for table cells.

Both replace line breaks and other control characters (which could end a table row or reorder
text, as bidirectional overrides do) by a space.
"""

from __future__ import annotations

import re
import unicodedata

WORD_JOINER = "\u2060"

# ASCII punctuation that (GitHub-flavoured) Markdown gives a meaning to somewhere; escaping
# any ASCII punctuation with a backslash is always allowed, so erring on the side of more is safe.
_PUNCTUATION = set("\\`*_{}[]()#+-.!|~:\"'=^$/%?;,")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKTICKS = re.compile(r"`+")
# GitHub also links "GH-123" (escaped here as "GH\\-123") to issue 123
_GH_REF = re.compile(r"(?i)\b(gh\\-)(?=\d)")


def _clean(text: str) -> str:
    """Control, format and separator characters (newlines, bidi overrides...) as spaces."""
    out = []
    for ch in str(text):
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or (category == "Cf" and ch != WORD_JOINER):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def escape(text: str) -> str:
    """``text`` as literal Markdown: safe in prose and in a table cell."""
    out = []
    for ch in _clean(text):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch == "#":
            out.append("\\#" + WORD_JOINER)
        elif ch == "@":
            out.append("@" + WORD_JOINER)
        elif ch in _PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return _GH_REF.sub(lambda m: m.group(1) + WORD_JOINER, "".join(out))


def code(text: str, *, in_table: bool = True) -> str:
    """``text`` as an inline code span (escaped prose when it is blank)."""
    text = _clean(text)
    if not text.strip():
        return escape(text) or "&nbsp;"
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if in_table:
        # GFM splits cells at every unescaped "|", code spans included; "\|" is a literal pipe
        text = text.replace("|", "\\|")
    # one space each side is stripped again by the renderer: it lets text start or end with `
    return f"{fence} {text} {fence}"


def cell(text: str) -> str:
    """A table cell from text that gradlog wrote itself (numbers, labels): pipes escaped."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """A GFM table; cells must already be escaped. ``align``: one of ``lrc`` per column."""
    spec = {"l": ":--", "r": "--:", "c": ":-:"}
    rule = [spec[a] for a in align] if align else ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
