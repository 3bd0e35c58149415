"""The one place where gradlog's output leaves the program: standard output, standard error
and ``--output`` files. Text that came from a log is neutralised here, and only here.

A log is data from anywhere (a fork's pull request, a shared disk, an old archive): its run ids,
task names, tags and file names may hold control characters and escape sequences (``ESC [``
moves the cursor or clears the screen, ``ESC ]52`` writes the clipboard, ``U+202E`` reverses
the text that follows, a newline forges a second message). Renderers build lines, tables and
documents from raw values; what leaves goes through one of:

* :meth:`Output.blocks` and :meth:`Output.lines` (terminal text): every character that is not
  printable, newlines included, becomes a visible escape (``\\x1b``), so a line stays one line;
* :meth:`Output.table` (Rich tables): the same, cell by cell, before Rich lays them out;
* :meth:`Output.document` (JSON, CSV, Markdown, HTML): the same except the newlines that
  structure the document; JSON is written with every non-ASCII character as ``\\uXXXX``, so its
  data is unchanged;
* :meth:`Output.html` (a page built as a tree): every text and attribute value through
  :func:`for_html` (entities), the script's data through :func:`json_for_html`.

Notes and errors go to standard error as one line each (:func:`note`, :func:`fail`). Scanning is
native: a regular expression finds the rare line that holds anything outside printable ASCII,
and only that line is escaped in Python.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import polars as pl

from gradlog.errors import ClosedOutput
from gradlog.format import encode_float

# Anything outside printable ASCII (and outside the newline, for documents): a superset of what
# needs escaping, found natively; each match is then judged by str.isprintable.
_SUSPECT = r"[^\x20-\x7e]"
_SUSPECT_IN_DOCUMENT = re.compile(r"[^\n\x20-\x7e]")
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
    Everything else, accents and CJK included, is kept. Idempotent on its output.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


_WORD_JOINER = "\u2060"  # invisible, inert: what Markdown escaping puts after @ and #


def _document_char(match: re.Match) -> str:
    char = match.group()
    return char if char.isprintable() or char == _WORD_JOINER else _escape(char)


def for_document(text: str) -> str:
    """A document (Markdown, CSV, HTML) with every non-printable character other than the
    newline escaped; the newlines are the document's own structure."""
    return _SUSPECT_IN_DOCUMENT.sub(_document_char, text)


def for_html(text: str) -> str:
    """``text`` as inert HTML text or attribute value: non-printable characters as visible
    escapes (:func:`for_terminal`), then ``& < > " '`` as character references."""
    import html  # here: its entity table is no text report's concern

    return html.escape(for_terminal(str(text)), quote=True)


# no "<", ">" or "&" in JSON inside <script> (no "</script" or "<!--"): \uXXXX escapes instead
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _neutral(value: object) -> object:
    if isinstance(value, str):
        return for_terminal(value)
    if isinstance(value, dict):
        return {for_terminal(str(k)): _neutral(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_neutral(v) for v in value]
    return value


def json_for_html(value: object) -> str:
    """Data as JSON for ``<script type="application/json">``, strings as :func:`for_terminal`."""
    return _encode(_neutral(value)).translate(_SCRIPT_SAFE)


def lines_for_terminal(lines: pl.Series) -> pl.Series:
    """:func:`for_terminal` of every line, natively for the printable-ASCII ones."""
    suspect = lines.str.contains(_SUSPECT).fill_null(False)
    if not suspect.any():
        return lines
    rows = suspect.arg_true()
    return lines.scatter(rows, [for_terminal(t) for t in lines.gather(rows).to_list()])


# the C encoder (no indent): ASCII only, and NaN refused (the renderers encode it as a token)
_encode = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
_PLAIN = {str, int, float, bool, type(None)}


def json_pieces(value: object, indent: str = "") -> Iterator[str]:
    """``value`` as JSON, in pieces: objects indented by two spaces, a list of plain values on
    one line.

    A report's events are columns of plain values (``"ratio": [1.2, 0.9, ...]``): one line per
    column reads as a table, and is written by the standard library's C encoder, where its
    indenting encoder (pure Python) writes each of 270,000 values of a 10,000-event report on
    its own line at ten times the cost of the whole text report. Pieces, not one string: a
    100,000-event report is 33 MB of JSON, which joins at every level of nesting would copy.
    A callable is JSON text written elsewhere (by Polars), made only when reached, so that a
    large report's event columns are never held whole; it is placed as it is, made ASCII.
    """
    if callable(value):
        text = value()
        yield text if text.isascii() else _encode(json.loads(text))
    elif isinstance(value, dict) and value:
        inner = indent + "  "
        for i, (key, item) in enumerate(value.items()):
            yield f"{',' if i else '{'}\n{inner}{_encode(str(key))}: "
            yield from json_pieces(item, inner)
        yield f"\n{indent}}}"
    elif isinstance(value, (list, tuple)) and value and not _PLAIN.issuperset(map(type, value)):
        inner = indent + "  "
        for i, item in enumerate(value):
            yield f"{',' if i else '['}\n{inner}"
            yield from json_pieces(item, inner)
        yield f"\n{indent}]"
    else:
        yield _encode(value)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return encode_float(value)  # the log format's tokens: a number, never text from a log
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA):
        value = "'" + value
    return for_terminal(value)


# -- streams ------------------------------------------------------------------------------------


def _stream(stream: IO[str]) -> IO[str]:
    """A text stream that replaces what its encoding cannot write (an ASCII terminal gets
    ``?`` for ``±``, never half a report and a crash)."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):  # a stream already written to in another mode: leave it
            pass
    return stream


def note(text: str) -> None:
    """A note on standard error (a skipped line, a recovered journal): one line."""
    _line_to_stderr(f"Note: {for_terminal(text)}")


def say(text: str) -> None:
    """A status line on standard error ("Wrote out.md"): one line."""
    _line_to_stderr(for_terminal(text))


def fail(text: str) -> None:
    """The one line of a failed command, on standard error."""
    _line_to_stderr(f"Error: {for_terminal(text)}")


def _line_to_stderr(line: str) -> None:
    err = _stream(sys.stderr)
    err.write(line + "\n")
    err.flush()


class Output:
    """Where one command's result goes: standard output (a terminal, in colour when asked), or
    a file written whole (``--output``: a temporary file renamed over it)."""

    def __init__(self, path: Path | None = None, *, color: bool = False, width: int | None = None):
        self.path = path
        self.color = color and path is None
        self.width = width
        self._held: list[str] | None = [] if path is not None else None

    # plain text, from renderers that build lines
    def blocks(self, blocks: Iterable[pl.DataFrame]) -> None:
        """Frames of ``line`` and ``style`` (the text report), written as they come."""
        for block in blocks:
            lines = lines_for_terminal(block.get_column("line"))
            if self.color:
                self._styled(zip(lines.to_list(), block.get_column("style").to_list()))
            else:
                self._write("\n".join(lines.to_list()) + "\n" if lines.len() else "")

    def lines(self, lines: Iterable[tuple[str, str]] | Iterable[str]) -> None:
        """Lines (or ``(line, style)`` pairs) of terminal text."""
        pairs = [(x, "") if isinstance(x, str) else x for x in lines]
        safe = [(for_terminal(text), style) for text, style in pairs]
        if self.color:
            self._styled(safe)
        else:
            self._write("".join(text + "\n" for text, _ in safe))

    def table(self, table) -> None:
        """A :class:`gradlog.analysis.render.table.TableSpec`: cells neutralised, then laid out by Rich
        to the terminal's width (columns dropped by priority), or whole into a file or pipe."""
        from gradlog.analysis.render.table import render

        width = self.width
        if width is None and self.color:
            import shutil

            width = shutil.get_terminal_size().columns
        self._write(render(table.map_text(for_terminal), color=self.color, width=width))

    def document(self, text: str) -> None:
        """A Markdown or HTML document."""
        self._write(for_document(text))

    def html(self, page) -> None:
        """An HTML page (:mod:`gradlog.analysis.render.html_tree`), its text through for_html."""
        from gradlog.analysis.render.html_tree import document

        self.document(document(page, for_html, json_for_html))

    def json(self, data: object) -> None:
        """Plain data as JSON (:func:`json_pieces`); every non-ASCII character as a ``\\uXXXX``
        escape, which decodes to the same text, so the data is unchanged and the bytes inert."""
        pieces: list[str] = []
        size = 0
        for piece in json_pieces(data):
            pieces.append(piece)
            size += len(piece)
            if size > 1 << 20:  # written a megabyte at a time: neither a piece nor all at once
                self._write("".join(pieces))
                pieces, size = [], 0
        self._write("".join(pieces) + "\n")

    def csv(self, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """CSV with a header. Text cells are neutralised for spreadsheets (a cell starting with
        ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, as OWASP's
        CSV-injection guidance advises) and for terminals (control characters, line breaks
        included, as visible escapes: a cell is never split across rows); numbers stay numbers."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_csv_cell(v) for v in row] for row in rows)
        self._write(out.getvalue())

    def close(self) -> None:
        """Write the file of ``--output`` (nothing to do for standard output)."""
        if self._held is None:
            return
        from gradlog.analysis.publish import write_output

        write_output("".join(self._held), self.path)
        say(f"Wrote {self.path}")

    def _write(self, text: str) -> None:
        if self._held is not None:
            self._held.append(text)
        else:
            out = _stream(sys.stdout)
            try:
                # in pieces: one large write that a closed pipe cuts short raises nothing in Python
                for start in range(0, len(text), 1 << 16):
                    out.write(text[start : start + (1 << 16)])
                    out.flush()
            except BrokenPipeError:
                raise ClosedOutput from None

    def _styled(self, lines: Iterable[tuple[str, str]]) -> None:
        from rich.console import Console
        from rich.text import Text

        console = Console(file=_stream(sys.stdout), highlight=False, soft_wrap=True)
        try:
            for text, style in lines:
                console.print(Text(text, style=style or ""))
        except BrokenPipeError:
            raise ClosedOutput from None


def use_color(no_color: bool) -> bool:
    """Colour for a terminal, unless ``--no-color`` or ``NO_COLOR`` says otherwise."""
    return not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def table_width(wide: bool) -> int | None:
    """The terminal's width for tables; None (every column) for --wide, a file or a pipe."""
    if wide or not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


def fitted(doc, max_chars: int | None, full_report: str | None, github: bool) -> str:
    """A Markdown document (:class:`gradlog.analysis.render.fit.Runs`) whole, or cut between
    runs to ``--max-chars`` as it will leave here, with a note naming where the full report is
    (``--full-report``; by default the job summary when ``--github`` writes it)."""
    if max_chars is None:
        return doc.whole()
    from gradlog.analysis.render.fit import comment_limit, fit

    where = full_report or (
        "in this workflow run's job summary"
        if github
        else "the output of the same command without --max-chars"
    )
    return fit(doc, comment_limit(max_chars, where), for_document)


def to_github(doc, full_report: str | None = None, full_file: Path | None = None) -> None:
    """Append a Markdown document (:class:`gradlog.analysis.render.fit.Runs`) to GitHub's job
    summary (``--github``), neutralised like any document and cut between runs to what is left
    of its 1 MiB; a note when the variable naming that file is not set."""
    from gradlog.analysis.publish import STEP_SUMMARY, append_step_summary, step_summary_room
    from gradlog.analysis.render.fit import fit, summary_limit

    room = step_summary_room()
    if room is None:
        note(f"--github: {STEP_SUMMARY} is not set; nothing appended")
        return
    where = full_report or (
        f"in {full_file}" if full_file else "the output of the same command without --github"
    )
    append_step_summary(for_document(fit(doc, summary_limit(room, where), for_document)))


class Live:
    """A view redrawn in place on a terminal (``gradlog watch``), through Rich: lines with
    their styles, neutralised as every terminal line is. Use as a context manager; what was
    shown last stays on the screen."""

    def __init__(self, *, color: bool = True) -> None:
        from rich.console import Console
        from rich.live import Live as RichLive

        self.color = color
        console = Console(file=_stream(sys.stdout), highlight=False, no_color=not color)
        self._live = RichLive(
            console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        )

    def __enter__(self) -> Live:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._live.stop()
        except BrokenPipeError:
            raise ClosedOutput from None

    def show(self, lines: Iterable[tuple[str, str]]) -> None:
        from rich.console import Group
        from rich.text import Text

        texts = [Text(for_terminal(t), style=(s or "") if self.color else "") for t, s in lines]
        try:
            self._live.update(Group(*texts), refresh=True)
        except BrokenPipeError:
            raise ClosedOutput from None
