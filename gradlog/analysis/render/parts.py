"""A renderer's line as parts: gradlog's own words, and identifiers taken from a log.

The Markdown and HTML reports say the same things; only how they mark an identifier differs
(a code span, a ``<code>`` element). A line built once as a list of ``str`` and :class:`Code`
parts is rendered by each format, so the wording exists once.
"""

from __future__ import annotations

from collections.abc import Callable


class Code(str):
    """An identifier from a log (run id, task name, tag, file name, flags to copy)."""


class Option(str):
    """gradlog's own words shown as code: an option of the command line (``--fail-on``)."""


Parts = list[str]  # str parts are gradlog's own text, Code parts identifiers


def join(parts: Parts, plain: Callable[[str], str], code: Callable[[str], str]) -> str:
    """``parts`` as one string: each identifier through ``code``, other text through ``plain``."""
    return "".join(code(p) if isinstance(p, Code) else plain(p) for p in parts)


def codes(values, sep: str = ", ") -> Parts:
    """Identifiers separated by ``sep`` (nothing for none)."""
    out: Parts = []
    for i, value in enumerate(values):
        if i:
            out.append(sep)
        out.append(Code(value))
    return out
