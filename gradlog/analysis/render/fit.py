"""Cutting a Markdown document between runs so that it fits a size limit.

GitHub refuses a pull-request comment over 65,536 characters (``Body is too long``) and drops a
job summary over 1 MiB whole, with nothing shown. A report of many runs passes both easily, so
every Markdown renderer hands its document over as :class:`Runs` (whole runs or rows, and which
to keep first), and :func:`fit` keeps as many whole runs as the limit allows, the worst first,
and ends the document with a note that says how many were left out and where the full report
is. One place cuts, for every command.

Sizes are measured on the text as it leaves the program (``measure``: the output boundary's
neutralisation, which may lengthen a log's odd characters). Characters are counted as UTF-16
code units, never fewer than code points, so a text that fits here fits however GitHub counts;
a job summary's limit is in bytes of UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradlog.analysis.render import md
from gradlog.errors import GradlogError

COMMENT_LIMIT = 65_536  # characters in one issue or pull-request comment
SUMMARY_LIMIT = 1 << 20  # bytes in one step's job summary
# a --max-chars this close under GitHub's limit is that limit, less room for a marker
_COMMENT_SLACK = 1024


@dataclass(frozen=True)
class Runs:
    """A document that can be cut between runs.

    ``render(keep)`` is the document holding only the runs at the indices ``keep`` (ascending,
    each in ``range(total)``); ``order`` lists every index, the one to keep first first (worst
    first); ``None`` keeps them in document order.
    """

    total: int
    render: Callable[[Sequence[int]], str]
    order: Sequence[int] | None = None

    def whole(self) -> str:
        return self.render(range(self.total))


@dataclass(frozen=True)
class Limit:
    """How large the document may be, in what, whose limit that is, and where the rest is."""

    size: int
    unit: str  # "characters" or "bytes"
    name: str
    where: str  # completes "the full report is ..."

    def measure(self, text: str) -> int:
        if self.unit == "bytes":
            return len(text.encode("utf-8"))
        return len(text.encode("utf-16-le")) // 2


def comment_limit(chars: int, where: str) -> Limit:
    """``--max-chars``: GitHub's comment limit, or another of the user's choosing."""
    if COMMENT_LIMIT - _COMMENT_SLACK <= chars <= COMMENT_LIMIT:
        name = f"GitHub's {COMMENT_LIMIT:,}-character limit for a comment"
    else:
        name = f"{chars:,} characters (--max-chars)"
    return Limit(chars, "characters", name, where)


def summary_limit(room: int, where: str) -> Limit:
    """What is left of GitHub's 1 MiB job summary (``--github``)."""
    return Limit(room, "bytes", "GitHub's 1 MiB limit for a job summary", where)


def cut_note(left_out: int, total: int, limit: Limit) -> str:
    """The paragraph that ends a cut document."""
    return (
        f"\n**Note:** {left_out:,} of {total:,} runs left out to fit {limit.name}; "
        f"the full report is {md.escape(limit.where)}.\n"
    )


def fit(doc: Runs, limit: Limit, measure: Callable[[str], str] = str) -> str:
    """The whole document if it fits ``limit``; else the most runs that fit, and the note.

    The runs kept are the first of ``doc.order``, shown in document order. Raises
    :class:`GradlogError` when not even the document without any run fits.
    """
    whole = doc.whole()
    if limit.measure(measure(whole)) <= limit.size:
        return whole
    order = list(doc.order) if doc.order is not None else list(range(doc.total))

    def attempt(k: int) -> str | None:
        text = doc.render(sorted(order[:k])) + cut_note(doc.total - k, doc.total, limit)
        return text if limit.measure(measure(text)) <= limit.size else None

    # a document grows with every run it holds: the largest k that fits, by bisection
    low, high = -1, doc.total  # attempt(low) fits (or low is -1), attempt(high) does not
    best = None
    while high - low > 1:
        mid = (low + high) // 2
        text = attempt(mid)
        if text is None:
            high = mid
        else:
            low, best = mid, text
    if best is None:
        why = "raise --max-chars" if limit.unit == "characters" else "the job summary is full"
        raise GradlogError(
            f"the Markdown does not fit {limit.size:,} {limit.unit} even without any run ({why})"
        )
    return best
