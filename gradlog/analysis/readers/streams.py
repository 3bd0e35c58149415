"""Bytes in, bounded: standard input, pipes and FIFOs, devices, gzip streams and regular files.

Nothing is read into memory unbounded (docs/format.md, "Reading leniently, refusing clearly"):

* no line longer than :data:`~gradlog.format.MAX_LINE_BYTES`: a stream is checked chunk by chunk
  as it arrives, a gzipped log as it decompresses, a regular file by searching for newlines window
  by window without reading it;
* no more than :data:`~gradlog.format.MAX_STREAM_BYTES` in all (or the environment's
  :data:`~gradlog.format.MAX_STREAM_BYTES_ENV`) from a stream or a decompressed log, whose size
  is not known before it is read (a regular file's is);
* no stream whose first :data:`~gradlog.format.SNIFF_BYTES` of whole lines hold no JSON object:
  binary data (``/dev/urandom``, a picture) has newlines often enough to pass the line bound.

A pipe, FIFO or character device is opened without blocking (:class:`StreamFile`): a FIFO that
no program is writing to is refused at once instead of waiting for a writer forever.
"""

from __future__ import annotations

import json
import mmap
import os
import stat
import zlib
from collections.abc import Callable
from typing import BinaryIO

from gradlog.analysis.limits import line_too_long, size_text, stream_limit, too_much
from gradlog.analysis.readers.loaded import CHUNK, JSON_BLANK, Notes
from gradlog.errors import LogFormatError
from gradlog.format import (
    GZIP_MAGIC,
    MAX_LINE_BYTES,
    SNIFF_BYTES,
)

Read = Callable[[int], bytes]  # read(n): at most n bytes, b"" at the end
Sink = Callable[[bytes], None]  # takes the bytes read, piece by piece

NO_WRITER = (
    "is a named pipe (FIFO) that no program is writing to; start its writer first "
    "(gradlog does not wait for one)"
)


class _LineBound:
    """Checks, chunk by chunk, that no line of a stream is longer than MAX_LINE_BYTES."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.run = 0  # bytes since the last newline
        self.lines = 0  # newlines seen

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self.run += len(chunk)
        else:
            if self.run + first > MAX_LINE_BYTES:
                raise line_too_long(self.path, self.lines + 1)
            last = chunk.rfind(b"\n")
            # lines wholly inside a chunk are shorter than the chunk, itself at most the limit
            self.lines += chunk.count(b"\n")
            self.run = len(chunk) - last - 1
        if self.run > MAX_LINE_BYTES:
            raise line_too_long(self.path, self.lines + 1)


class _Sniff:
    """Refuses a stream whose first SNIFF_BYTES of whole lines hold no JSON object.

    Binary data has a newline every few hundred bytes, so the line bound alone would let it fill
    the memory up to the total bound before the reader found no record in it. A real log's
    first line is JSON (a crash cuts the end of a log, not its start); a broken line later on
    is skipped with a note as ever.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.pending = bytearray()  # the lines not judged yet
        self.searched = 0  # how far ``pending`` has been searched for a newline
        self.seen = 0  # bytes of whole lines judged
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self.pending += chunk
        start = 0
        while (end := self.pending.find(b"\n", max(start, self.searched))) >= 0:
            line = bytes(self.pending[start:end])
            self.seen += end + 1 - start
            start = end + 1
            if line.strip(JSON_BLANK) and _is_record(line):
                self.done = True
                self.pending = bytearray()
                return
            if self.seen >= SNIFF_BYTES:
                raise LogFormatError(
                    f"not a JSON Lines log: no line in its first {size_text(SNIFF_BYTES)} is "
                    "a JSON object (binary data?); refusing to read more",
                    self.path,
                )
        del self.pending[:start]
        self.searched = len(self.pending)


def _is_record(line: bytes) -> bool:
    """Whether a line is a JSON object (random bytes make a number or a string now and then)."""
    try:
        return isinstance(json.loads(line), dict)  # bytes: a byte-order mark is understood
    except (ValueError, RecursionError):
        return False


class _Bounded:
    """The bytes of a stream, collected within the bounds: total, and (for text) per line."""

    def __init__(
        self, path: str, *, text: bool = True, keep: bool = True, sink: Sink | None = None
    ) -> None:
        self.path = path
        self.limit = stream_limit()
        self.checks = [_LineBound(path).feed, _Sniff(path).feed] if text else []
        self.parts: list[bytes] | None = [] if keep and sink is None else None
        self.sink = sink
        self.size = 0
        self.chunks = 0

    def add(self, chunk: bytes) -> None:
        self.chunks += 1
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_much(self.path, self.limit)
        for check in self.checks:
            check(chunk)
        if self.sink is not None:
            self.sink(chunk)
        elif self.parts is not None:
            self.parts.append(chunk)

    def data(self) -> bytes:
        return b"".join(self.parts or ())


def read_stream(read: Read, path: str, *, text: bool = True, sink: Sink | None = None) -> bytes:
    """All of a stream (standard input, a pipe), within the bounds; ``text=False`` for Parquet.

    With ``sink``, each piece goes to it as it arrives, and nothing is kept (``b""`` returned).
    """
    out = _Bounded(path, text=text, sink=sink)
    while chunk := read(CHUNK):
        out.add(chunk)
    return out.data()


def peek(read: Read, n: int) -> tuple[bytes, Read]:
    """The first ``n`` bytes of a stream (fewer at its end), and the stream from its start."""
    first = b""
    while len(first) < n and (chunk := read(CHUNK)):
        first += chunk
    pending = [first] if first else []

    def again(size: int) -> bytes:
        return pending.pop() if pending else read(size)

    return first[:n], again


def gunzip(
    read: Read, path: str, notes: Notes, *, keep: bool = True, sink: Sink | None = None
) -> bytes:
    """A gzipped log, decompressed as a stream within the bounds (no decompression bomb).

    ``keep=False`` checks the bounds only; with ``sink``, each decompressed piece goes to it
    and nothing is kept (``b""`` returned).
    """
    out = _Bounded(path, keep=keep, sink=sink)
    decomp = zlib.decompressobj(wbits=31)
    pending = b""
    try:
        while True:
            data = decomp.unconsumed_tail or pending or read(CHUNK)
            pending = b""
            if not data:
                break
            out.add(decomp.decompress(data, CHUNK))
            if decomp.eof:
                rest = decomp.unused_data
                while len(rest) < len(GZIP_MAGIC) and (more := read(CHUNK)):
                    rest += more
                if rest.startswith(GZIP_MAGIC):  # concatenated members (gzip -c a b > ab.gz)
                    decomp = zlib.decompressobj(wbits=31)
                    pending = rest
                    continue
                break
    except zlib.error as exc:
        if not out.chunks:
            raise LogFormatError(f"not a valid gzip file ({exc})", path) from exc
        notes.note(path, f"compressed stream is corrupt ({exc}); read what could be decompressed")
        return out.data()
    if not decomp.eof:
        # A compressed log cut short (a crash while gzip was writing): keep what decompresses.
        notes.note(path, "compressed stream is cut short; read what could be decompressed")
    return out.data()


class StreamFile:
    """A pipe, FIFO or character device, opened without blocking and read as a stream.

    Opening a FIFO for reading waits for a writer, forever if none comes; opened with
    ``O_NONBLOCK`` it does not, and its first read tells: data, or ``EAGAIN`` (a writer is
    there, with nothing written yet: wait for it), or the end at once (no writer: refused,
    :data:`NO_WRITER`). After that first read the file reads as usual, blocking.
    """

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        self.name = name
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.info = os.fstat(self.fd)
        except OSError as exc:
            raise LogFormatError(f"cannot read: {exc.strerror or exc}", name) from None
        self.first = True

    def read(self, n: int) -> bytes:
        try:
            if not self.first:
                return os.read(self.fd, n)
            self.first = False
            try:
                data = os.read(self.fd, n)
            except BlockingIOError:  # a writer, which has written nothing yet: wait for it
                os.set_blocking(self.fd, True)
                return os.read(self.fd, n)
            os.set_blocking(self.fd, True)
        except OSError as exc:
            raise LogFormatError(f"cannot read: {exc.strerror or exc}", self.name) from None
        if not data and stat.S_ISFIFO(self.info.st_mode) and not _anonymous_pipe(self.info):
            raise LogFormatError(NO_WRITER, self.name)
        return data

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> StreamFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _anonymous_pipe(info: os.stat_result) -> bool:
    """Whether a FIFO is a pipe (``<(cmd)``, ``/dev/stdin``), not a named one: pipes live on
    one pseudo filesystem; an empty pipe is an empty log, not a missing writer."""
    r, w = os.pipe()
    try:
        return os.fstat(r).st_dev == info.st_dev
    finally:
        os.close(r)
        os.close(w)


def is_regular(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (following links): safe to open without waiting."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_file_lines(fh: BinaryIO, size: int, path: str) -> None:
    """No line of a regular file is longer than MAX_LINE_BYTES, found without reading it all.

    Looks, window by window of MAX_LINE_BYTES + 1 bytes from the start of the current line,
    for the last newline: a window without one is a line over the limit. Two windows cover at
    least MAX_LINE_BYTES bytes, so a 10 GB file takes about a thousand searches, each in a
    window mapped from the page cache (never the whole file: that much address space may not
    be there to map).
    """
    if size <= MAX_LINE_BYTES:
        return
    start = 0
    while size - start > MAX_LINE_BYTES:
        base = start - start % mmap.ALLOCATIONGRANULARITY
        end = min(size, start + MAX_LINE_BYTES + 1)
        with mmap.mmap(fh.fileno(), end - base, offset=base, access=mmap.ACCESS_READ) as mm:
            newline = mm.rfind(b"\n", start - base, end - base)
        if newline < 0:
            raise line_too_long(path, count_lines(fh, start) + 1)
        start = base + newline + 1


# deflate expands at most about 1,032 times: a small gzip file cannot break the bounds
_GZIP_MAX_RATIO = 1032


def check_gzip(path: str | os.PathLike[str], size: int, most: int | None = None) -> None:
    """A gzipped log's bounds (line, total), checked by decompressing it without keeping it.

    For ``gradlog batch``, whose scan would decompress it whole: a file this refuses goes to
    the careful reader, which says why in the words of ``gradlog report``, or (over ``most``
    bytes decompressed) reads it a piece at a time.
    """
    bound = min(MAX_LINE_BYTES, stream_limit(), most if most is not None else stream_limit())
    if size * _GZIP_MAX_RATIO <= bound:
        return  # too small to hold a line, or a total, over the bounds
    total = 0

    def count(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)
        if most is not None and total > most:
            raise LogFormatError(
                f"decompresses to more than {size_text(most)}, read alone", str(path)
            )

    with open(path, "rb") as fh:
        gunzip(fh.read, str(path), Notes(strict=False), sink=count)


def count_lines(fh: BinaryIO, end: int) -> int:
    fh.seek(0)
    count, pos = 0, 0
    while pos < end:
        chunk = fh.read(min(CHUNK, end - pos))
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    fh.seek(0)
    return count


def ends_whole(fh: BinaryIO, size: int) -> bool:
    if size == 0:
        return True
    fh.seek(size - 1)
    last = fh.read(1)
    fh.seek(0)
    return last == b"\n"
