"""What a read gives back (:class:`LoadedLog`), and the notes of one read (:class:`Notes`).

Shared by every reader of the package: the constants of line handling, and the one place where
``strict=True`` turns a note into an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from gradlog.errors import LogFormatError

UTF8_BOM = b"\xef\xbb\xbf"
JSON_BLANK = b" \t\r\n"  # what JSON (and Polars) treat as whitespace around a record
MAX_NOTED_LINES = 5  # skipped lines named one by one; the rest are counted in one note
CHUNK = 1 << 20
_GLOB_CHAR = re.compile(r"[*?\[\]]")


def polars_path(path: str) -> str:
    """``path`` for a Polars reader, which expands glob patterns in every path it is given: a
    real file named ``run[1].jsonl`` is read as itself, each glob character in brackets."""
    return _GLOB_CHAR.sub(lambda m: f"[{m.group()}]", path)


@dataclass
class LoadedLog:
    """A log read into memory: the records as one frame, and what had to be skipped."""

    path: str
    frame: pl.DataFrame
    notes: list[str] = field(default_factory=list)
    # where row i of the frame came from ("line 12", "row 12"), for messages about a record
    _where: Callable[[int], str | None] | None = field(default=None, repr=False, compare=False)

    def where(self, row: int) -> str | None:
        """Where record ``row`` (0-based) of :attr:`frame` is in the file, e.g. ``line 12``."""
        return self._where(row) if self._where is not None else None


class Notes:
    """The notes of one read; with ``strict``, each one is raised as an error instead."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[str] = []

    def skip(self, path: str, line: int | None, what: str) -> None:
        """``what`` (e.g. ``a line that is not valid JSON``) at ``path:line`` is left out."""
        if self.strict:
            raise LogFormatError(f"{what}; --strict refuses to skip it", path, line)
        where = f"{path}:{line}" if line is not None else path
        self.items.append(f"{where}: skipped {what}")

    def note(self, path: str, text: str) -> None:
        if self.strict:
            raise LogFormatError(f"{text}; refused with --strict", path)
        self.items.append(f"{path}: {text}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
