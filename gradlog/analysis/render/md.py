"""Putting text from a log into GitHub-flavoured Markdown, inertly (standard library only).

A log is written by whatever trained the model, and its run ids, task names and tags end up in
pull-request comments. Nothing in them may become HTML, a link, an image, a mention, an issue
reference or a new table cell. Two functions, for the two places such text goes:

* :func:`escape` for prose and table cells: every character Markdown acts on wherever it stands
  is backslash-escaped (``\\ ` * _ [ ] | ~ $ #``: code, emphasis, links and images, table
  cells, strikethrough, math, headings); ``<``, ``>`` and ``&`` become entities (no HTML, no
  ``<url>`` autolink); an invisible word joiner follows ``@`` and ``#`` (GitHub finds mentions
  and issue references in the rendered text, after escapes are gone, so only breaking the
  pattern stops them). Characters that act only in one place are escaped only there: ``:``
  before anything but a digit or a space (``https://``, ``mailto:``), ``.`` after ``www``
  (GitHub's bare-domain autolink), and a list or heading marker at the start (``-``, ``+``,
  ``=``, ``1.``), and ``_`` outside a word. So a timestamp (``2026-11-25T16:27:54+00:00``) or a sentence of gradlog's
  own reads in the raw Markdown as it does rendered, without backslashes;
* :func:`code` for identifiers: a code span, inside which GitHub renders nothing, with a fence
  longer than any run of backticks in the text and ``|`` escaped for table cells.

Both replace line breaks and other control characters (which could end a table row or reorder
text, as bidirectional overrides do) by a space.
"""

from __future__ import annotations

import re
import unicodedata

WORD_JOINER = "\u2060"

# What Markdown acts on wherever it stands (GitHub-flavoured: "~" strikes through, "$" is math)
_ALWAYS = set("\\`*_[]|~$")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKTICKS = re.compile(r"`+")
# acting only where they stand: a scheme's colon ("https:", "mailto:"), the dot of "www." (an
# autolink), and a list, heading or setext marker at the start of the text
_COLON = re.compile(r":(?![0-9\s]|$)")
_WWW_DOT = re.compile(r"(?i)(?<=www)\.")
_LEADING = re.compile(r"^(\s*)(?:([-+=])|(\d{1,9})([.)]))")
# GitHub also links "GH-123" to issue 123
_GH_REF = re.compile(r"(?i)\b(gh-)(?=\d)")


def _clean(text: str) -> str:
    """Control, format and separator characters (newlines, bidi overrides...) as spaces."""
    out = []
    for ch in str(text):
        category = unicodedata.category(ch)
        # a log's word joiner too (a format character): escape() adds its own after this
        if category in ("Cc", "Cf", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def escape(text: str) -> str:
    """``text`` as literal Markdown: safe in prose and in a table cell."""
    out = []
    clean = _clean(text)
    for i, ch in enumerate(clean):
        if (
            ch == "_"
            and 0 < i < len(clean) - 1
            and clean[i - 1].isalnum()
            and clean[i + 1].isalnum()
        ):
            out.append(ch)  # inside a word "_" opens and closes nothing (snake_case stays)
        elif ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch == "#":
            out.append("\\#" + WORD_JOINER)
        elif ch == "@":
            out.append("@" + WORD_JOINER)
        elif ch in _ALWAYS:
            out.append("\\" + ch)
        else:
            out.append(ch)
    escaped = _WWW_DOT.sub(r"\\.", _COLON.sub(r"\\:", "".join(out)))
    escaped = _LEADING.sub(
        lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}"),
        escaped,
    )
    return _GH_REF.sub(lambda m: m.group(1) + WORD_JOINER, escaped)


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
