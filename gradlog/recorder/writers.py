"""Crash-safe log writers: JSON Lines and Parquet.

JSON Lines: each record is one ``os.write`` of a whole line to a file opened with O_APPEND,
so a record is in the operating system's hands the moment it is written (a killed process
loses nothing already logged), and several writers appending to one file never interleave
partial lines. ``fsync=True`` also survives power loss, at the cost of a disk flush per record.

Parquet cannot be appended to: its footer is written last, so a file cut short is unreadable.
The Parquet writer therefore keeps a JSON Lines journal beside the file (``RUN.parquet.journal``)
that receives every record as above, and rewrites the Parquet file atomically (a private
temporary file renamed over it) at most every ``snapshot_seconds``, on ``flush()`` and at close,
after which the journal is removed. Each snapshot says in its file metadata how many bytes of the
journal it holds (:data:`JOURNAL_BYTES_KEY`), and the journal is written out before the snapshot,
so the readers add exactly the journal's records past that point: never a record twice, never a
partial journal in place of a fuller snapshot. One process at a time writes a Parquet log (an
``flock`` on ``RUN.parquet.lock``); a second is refused at construction.

Buffering (``buffer_records > 0``, the recorder's default for step cadences): records are kept in
memory and written together, still as one ``os.write`` of whole lines, when the buffer holds
``buffer_records`` records, when a write finds the oldest buffered record ``flush_seconds`` old,
on ``flush()``, on ``close()``, on a Parquet snapshot, and when the interpreter exits. The
trade-off: a process killed with SIGKILL (or by the OOM killer, or a power loss) loses the records
still in the buffer, at most ``buffer_records`` of them and, while training keeps logging, at most
``flush_seconds`` worth; an exception that unwinds through the recorder's ``with`` block loses
nothing. Lines are never cut by buffering: a flush writes whole lines only.

Pending records: ``write`` also takes a record whose values are still on the device (the
recorder's :class:`~gradlog.recorder.pending.PendingRecord`: anything with a ``resolve()`` that
returns the record). Buffered, it is kept as it is and resolved when the buffer is written out,
which fetches the values of every pending record in one transfer per device: a flush is the
only moment a buffered log waits for the device. Unbuffered, it is resolved at once. This module
never imports torch.

A write that fails (disk full, no permission) raises one :class:`~gradlog.errors.GradlogError`
naming the file and the cause, and says how many records it could not write.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import weakref
from pathlib import Path
from typing import Protocol

from gradlog.errors import GradlogError, RecorderConfigError
from gradlog.files import has_whole_line, write_error, write_parquet
from gradlog.format import JOURNAL_BYTES_KEY, Record, dumps, journal_path, log_kind
from gradlog.presence import hold
from gradlog.recorder.lock import WriterLock


class Pending(Protocol):
    """A record whose values are not fetched yet (:mod:`gradlog.recorder.pending`)."""

    def resolve(self) -> Record: ...


def _resolved(record: Record | Pending) -> Record:
    return record if isinstance(record, dict) else record.resolve()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class JsonlWriter:
    """Appends records to a JSON Lines file: one write per record, or per flush when buffered."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        buffer_records: int = 0,
        flush_seconds: float = 5.0,
    ) -> None:
        self.path = _log_path(path, buffer_records, flush_seconds)
        self._fsync = fsync
        self._buffer_records = buffer_records
        self._flush_seconds = flush_seconds
        self._pending: list[bytes | Pending] = []  # a pending record is encoded when written out
        self._pending_since = 0.0
        try:
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            raise RecorderConfigError(write_error(self.path, exc, "cannot open")) from None
        hold(self._fd)  # "being written", until closed: what gradlog watch waits on to end
        # A crash cut the last line short: our first write ends it, so that our records start a
        # line of their own (readers skip the cut line with a note rather than refuse the log).
        self._cut = not _ends_with_newline(self.path)
        self.records_written = 0
        # Where the file ends, as far as this writer knows: exact while no other process
        # appends (the Parquet writer's journal, which its lock keeps to one writer).
        self.end = os.fstat(self._fd).st_size
        self._pid = os.getpid()
        if buffer_records:
            _BUFFERED.add(self)  # drained at interpreter exit if never closed

    @property
    def pending(self) -> int:
        """Records accepted but not yet handed to the operating system (buffered mode)."""
        return len(self._pending)

    def write(self, record: Record | Pending) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        if not self._buffer_records:
            self._write_bytes(dumps(_resolved(record)), 1)
            self.records_written += 1
            return
        self.records_written += 1
        if not self._pending:
            self._pending_since = time.monotonic()
        # A plain record is encoded now, in case its dict is reused; a pending one, whose
        # values are still on the device, when the buffer is written out.
        self._pending.append(dumps(record) if isinstance(record, dict) else record)
        if (
            len(self._pending) >= self._buffer_records
            or time.monotonic() - self._pending_since >= self._flush_seconds
        ):
            self._drain()

    def _drain(self) -> None:
        if self._pending and self._fd is not None:
            pending, self._pending = self._pending, []
            count = len(pending)
            try:
                data = b"".join(p if isinstance(p, bytes) else dumps(p.resolve()) for p in pending)
                self._write_bytes(data, count)
            except Exception:
                self.records_written -= count  # counted when buffered, and now lost (said so)
                raise

    def _write_bytes(self, data: bytes, count: int) -> None:
        if self._cut:
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:  # a regular file takes it all at once unless the disk fills up
                written = os.write(self._fd, view)
                view = view[written:]
                self.end += written
                self._cut = bool(view) or data[-1:] != b"\n"
        except OSError as exc:
            lost = f"{count} record{'s' if count > 1 else ''} not written"
            raise GradlogError(write_error(self.path, exc) + f"; {lost}") from exc
        if self._fsync:
            self._sync()

    def _sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise GradlogError(write_error(self.path, exc, "cannot flush to disk")) from exc

    def flush(self) -> None:
        """Write out the buffer and flush the file to disk."""
        if self._fd is not None:
            self._drain()
            self._sync()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self._drain()
            finally:
                os.close(self._fd)
                self._fd = None
                _BUFFERED.discard(self)


def _log_path(path: str | os.PathLike[str], buffer_records: int, flush_seconds: float) -> Path:
    """The log's path, its folder made; a folder, or a bad buffer, refused at construction."""
    path = Path(path)
    if path.is_dir():
        raise RecorderConfigError(f"{path}: is a directory, expected a log file path")
    _check_buffer(buffer_records, flush_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_buffer(buffer_records: int, flush_seconds: float) -> None:
    if (
        isinstance(buffer_records, bool)
        or not isinstance(buffer_records, int)
        or buffer_records < 0
    ):
        raise RecorderConfigError(
            f"buffer_records must be a non-negative integer (0: unbuffered), got {buffer_records!r}"
        )
    if not isinstance(flush_seconds, (int, float)) or not flush_seconds > 0:
        raise RecorderConfigError(f"flush_seconds must be a positive number, got {flush_seconds!r}")


_BUFFERED: weakref.WeakSet[JsonlWriter] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """A buffered log whose recorder was never closed still gets its records at normal exit."""
    for writer in list(_BUFFERED):
        if writer._pid != os.getpid():  # a forked child (a DataLoader worker) does not own it
            continue
        try:
            writer._drain()
        except OSError:  # nothing more can be done at exit; never mask the real exit status
            pass
        except Exception as exc:  # pending values the device could not give back: say so
            print(f"gradlog: {writer.path}: records lost at exit: {exc}", file=sys.stderr)


class NullWriter:
    """Writes nothing: the recorder of a rank that does not write (``torch.distributed``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records_written = 0
        self.pending = 0

    def write(self, record: Record | Pending) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class ParquetWriter:
    """Writes a Parquet log through a JSON Lines journal and atomic snapshots (module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        snapshot_seconds: float = 30.0,
        buffer_records: int = 0,
        flush_seconds: float = 5.0,
    ) -> None:
        # Imported here so that importing the recorder stays free of Polars until Parquet is used.
        from gradlog.frames import records_to_frame

        self.path = _log_path(path, buffer_records, flush_seconds)
        self._to_frame = records_to_frame
        self._fsync = fsync
        self._snapshot_seconds = snapshot_seconds
        self._lock = WriterLock(self.path)  # before anything is read or rewritten
        try:
            # Everything snapshotted so far, as a frame; only the records since are kept as
            # dicts. Converting just those keeps a snapshot's cost to one write of the file, not
            # a conversion of the whole run each time (seconds per snapshot at 100,000 records).
            self._frame = self._recover()
            self._journal: JsonlWriter | None = JsonlWriter(
                journal_path(self.path),
                fsync=fsync,
                buffer_records=buffer_records,
                flush_seconds=flush_seconds,
            )
        except BaseException:
            self._lock.release()
            raise
        self._records: list[Record | Pending] = []
        self._last_snapshot = time.monotonic()
        self._dirty = False
        self.records_written = 0

    @property
    def pending(self) -> int:
        """Records accepted but neither in the journal nor in a snapshot yet (buffered mode)."""
        return self._journal.pending if self._journal is not None else 0

    def _recover(self):
        """The rows already logged at this path, an interrupted run's journal included, written
        out as one snapshot that covers none of the journal (this writer starts a new one)."""
        from gradlog.analysis.readers import read_log

        journal = journal_path(self.path)
        if not self.path.exists():
            if not has_whole_line(journal):
                # killed before its first record reached the journal: nothing to keep
                journal.unlink(missing_ok=True)
                return None
        try:
            previous = read_log(self.path).frame
        except GradlogError as exc:
            raise RecorderConfigError(
                f"{self.path}: exists but is not a readable gradlog log ({exc}); "
                "choose another path"
            ) from exc
        if journal.exists():
            # First a snapshot that covers the whole old journal, so that a crash before the
            # journal is gone cannot read its records twice; then one that covers none of it.
            self._write(previous, journal.stat().st_size)
            journal.unlink()
        self._write(previous, 0)
        return previous

    def _write(self, frame, journal_bytes: int) -> None:
        metadata = {JOURNAL_BYTES_KEY: str(journal_bytes)}
        write_parquet(frame, self.path, fsync=self._fsync, metadata=metadata)

    def write(self, record: Record | Pending) -> None:
        if self._journal is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._journal.write(record)
        self._records.append(record)
        self._dirty = True
        self.records_written += 1
        if time.monotonic() - self._last_snapshot >= self._snapshot_seconds:
            self.snapshot()

    def flush(self) -> None:
        self.snapshot()

    def snapshot(self) -> None:
        """Rewrite the Parquet file atomically with every record so far."""
        if self._journal is None:
            return
        # The journal first: it then holds every record of the snapshot, which says where it
        # stops in the journal, and a reader adds only the records past that point.
        self._journal._drain()
        if not self._dirty and self.path.exists():
            return
        import polars as pl

        frame = self._to_frame([_resolved(r) for r in self._records])
        if self._frame is not None:
            frame = pl.concat([self._frame, frame], how="vertical", rechunk=False)
            if frame.n_chunks() > 32:  # a chunk per snapshot would pile up over a long run
                frame = frame.rechunk()
        self._write(frame, self._journal.end)
        self._frame = frame
        self._records = []
        self._last_snapshot = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        journal = self._journal
        if journal is None:
            return
        try:
            self.snapshot()
        except BaseException:
            # The file could not be written (disk full): the journal keeps the records for the
            # readers, and the log is left free for the next writer.
            self._journal = None
            try:
                journal.close()
            finally:
                self._lock.release()
            raise
        self._journal = None
        journal.close()
        journal.path.unlink(missing_ok=True)
        self._lock.release()


def check_log_path(path: str | os.PathLike[str]) -> str:
    """The log format of ``path`` from its suffix, ``"parquet"`` or ``"jsonl"``; else an error."""
    kind = log_kind(path)
    if kind is None or str(path).lower().endswith(".gz"):
        raise RecorderConfigError(
            f"{path}: unknown log format; use a path ending in .jsonl or .parquet"
        )
    return kind


def open_writer(
    path: str | os.PathLike[str],
    *,
    fsync: bool = False,
    snapshot_seconds: float = 30.0,
    buffer_records: int = 0,
    flush_seconds: float = 5.0,
) -> JsonlWriter | ParquetWriter:
    """The writer for ``path``'s suffix: ``.parquet`` or ``.jsonl`` (``.ndjson``, ``.json``)."""
    buffering = {"buffer_records": buffer_records, "flush_seconds": flush_seconds}
    if check_log_path(path) == "parquet":
        return ParquetWriter(path, fsync=fsync, snapshot_seconds=snapshot_seconds, **buffering)
    return JsonlWriter(path, fsync=fsync, **buffering)
