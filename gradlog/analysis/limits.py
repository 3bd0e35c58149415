"""The reading limits in force, and how a log that passes one is refused.

Each limit has a default in :mod:`gradlog.format`, and an environment variable that its ``gradlog``
option sets (:mod:`gradlog.options`), so a library call and a command read the same value.
"""

from __future__ import annotations

import os

from gradlog.errors import GradlogError, LogFormatError
from gradlog.format import (
    MAX_EVENTS,
    MAX_EVENTS_ENV,
    MAX_EVENTS_FLAG,
    MAX_LINE_BYTES,
    MAX_STREAM_BYTES,
    MAX_STREAM_BYTES_ENV,
    MAX_STREAM_BYTES_FLAG,
    SIZE_EXAMPLE,
    parse_size,
)


def size_text(n: int) -> str:
    """``4 GiB``, ``16 MiB``, ``1,000 bytes``: a size as a message gives it."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size:,} {unit}"
    return f"{n:,} bytes"


def stream_limit() -> int:
    """The bound on a stream or decompressed log: MAX_STREAM_BYTES, or the environment's
    (which ``gradlog --max-stream-bytes`` sets)."""
    value = os.environ.get(MAX_STREAM_BYTES_ENV, "")
    if not value.strip():
        return MAX_STREAM_BYTES
    limit = parse_size(value)
    if limit is None:
        raise GradlogError(f"{MAX_STREAM_BYTES_ENV}={value!r}: {SIZE_EXAMPLE}")
    return limit


def event_limit() -> int:
    """The events of one log the analysis holds: MAX_EVENTS, or the environment's (which
    ``gradlog --max-events`` sets)."""
    value = os.environ.get(MAX_EVENTS_ENV, "").strip()
    if not value:
        return MAX_EVENTS
    if not value.isdigit() or int(value) == 0:
        raise GradlogError(f"{MAX_EVENTS_ENV}={value!r}: expected a number of events above 0")
    return int(value)


def too_many_events(path: str, limit: int) -> LogFormatError:
    return LogFormatError(
        f"more than {limit:,} events, the most one log's analysis holds in memory "
        f"({MAX_EVENTS_FLAG} or {MAX_EVENTS_ENV} raises it; gradlog convert reads any number)",
        path,
    )


def line_too_long(path: str, line: int) -> LogFormatError:
    return LogFormatError(
        f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB, the limit for one record; "
        "refusing to read it",
        path,
        line,
    )


def too_much(path: str, limit: int) -> LogFormatError:
    return LogFormatError(
        f"more than {size_text(limit)} to read, the limit for standard input, a pipe or a "
        f"decompressed log ({MAX_STREAM_BYTES_FLAG} or {MAX_STREAM_BYTES_ENV} changes it); "
        "refusing to read more",
        path,
    )
