"""One writer per Parquet log: an ``flock`` on ``NAME.lock`` beside it, held while it is open.

A Parquet writer rewrites the whole file at each snapshot, so two writers of one path would
overwrite each other's runs. The first takes the lock; a second (in another process, or another
recorder in the same one) is refused at construction with a message naming the log, instead of
losing runs silently. JSON Lines logs take no lock: their appends are whole lines, safe side by
side (docs/format.md, "Crash safety").
"""

from __future__ import annotations

import os
from pathlib import Path

from gradlog.errors import RecorderConfigError
from gradlog.files import write_error
from gradlog.format import lock_path

__all__ = ["WriterLock", "lock_path"]


class WriterLock:
    """An exclusive ``flock`` on ``PATH.lock``, taken without waiting; removed on release.

    The lock belongs to the open file, so it is released however the process ends, SIGKILL
    included: a stale lock file never blocks the next writer. It is removed while still held
    (an unlinked file locks nothing new), and a writer that locked a file just removed by
    another one sees that its file is no longer at the path and takes the new one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock = lock_path(self.path)
        self._fd: int | None = None
        self._pid = os.getpid()
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): no lock, as documented in docs/format.md
            return
        while self._fd is None:
            try:
                fd = os.open(
                    self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
                )
            except OSError as exc:
                raise RecorderConfigError(
                    write_error(self.path, exc, f"cannot create the lock file {self.lock}")
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RecorderConfigError(
                    f"{self.path}: another process is writing this log (it holds the lock "
                    f"{self.lock}; so may another recorder of this process); give each run its "
                    "own log path, or wait until that writer closes"
                ) from None
            if _same_file(fd, self.lock):
                self._fd = fd
            else:
                os.close(fd)  # removed by the writer that just closed: lock the new one

    def release(self) -> None:
        if self._fd is not None:
            if self._pid == os.getpid():  # a forked child's copy must not free its parent's log
                try:
                    self.lock.unlink(missing_ok=True)
                except OSError:
                    pass  # left behind, it is only a name: the next writer locks it again
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # A writer dropped without close() (as if its process had died) frees the log.
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)
