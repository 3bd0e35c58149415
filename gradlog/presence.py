"""Whether a process is writing a log: the writer's shared ``flock`` (standard library only).

A JSON Lines writer (the log itself, or a Parquet log's journal) holds a *shared* lock on the
file from the moment it opens it until it closes it, which the operating system also releases
however the process ends (``SIGKILL`` included). Shared locks never conflict with each other,
so several writers of one JSON Lines log stay free to append side by side. A reader
(``gradlog watch``) tells that nobody writes the file any more when an *exclusive* lock can be
taken at once; it gives it back straight away, and never waits for one. The log's bytes are
unchanged by all this (docs/format.md, "Is the run still being written?").

Without ``flock`` (Windows) writers hold nothing and readers cannot tell.
"""

from __future__ import annotations

import os
import time

# A reader's probe holds its exclusive lock for two system calls: a writer that opens the
# file just then tries again, this many times, a millisecond apart, and then writes unlocked
# rather than wait (a writer is never held up by a reader).
_TRIES = 20


def hold(fd: int) -> None:
    """Mark the open file ``fd`` as being written, until it is closed (writers)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no signal
        return
    for _ in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:  # a filesystem without flock (some network mounts): no signal
            return


def being_written(path: str | os.PathLike[str]) -> bool | None:
    """True while a writer holds ``path`` open, False once none does, None when it cannot be
    told (no such file, no ``flock`` here or on that filesystem)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        # O_NONBLOCK: a FIFO at the path must not hold the reader up either
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
