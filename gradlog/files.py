"""Files replaced whole, through a private temporary file.

:func:`replacing` creates its temporary file with ``O_EXCL`` under a random name
(:func:`tempfile.mkstemp`) in the target's own directory, so that a file or symbolic link planted
at a predictable name is never followed or overwritten, and the final :func:`os.replace` stays on
one filesystem and is atomic: a reader sees the old file or the new one, never part of one. On any
failure the temporary file is removed, and an :class:`OSError` (disk full, no permission) becomes
one :class:`~gradlog.errors.GradlogError` naming the file and the cause.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from gradlog.errors import GradlogError
from gradlog.format import log_kind


def write_error(path: str | os.PathLike[str], exc: OSError, what: str = "cannot write") -> str:
    """``PATH: cannot write (No space left on device)``: the line an OSError becomes."""
    return f"{path}: {what} ({exc.strerror or exc})"


def check_output(
    path: str | os.PathLike[str] | None, *, force: bool, inputs: Sequence[str] = ()
) -> None:
    """The rule of every command's ``-o`` (docs/report.md, "Writing to a file"), checked before
    any work: an existing regular file is replaced only with ``--force``, and never when it is
    one of the command's own inputs (a log given by name or by glob, or one under a folder
    given); a target that is no regular file (``/dev/null``, a FIFO) is written to as it is."""
    if path is None:  # standard output
        return
    out = Path(path)
    if out.is_dir():
        raise GradlogError(f"{out}: is a directory, expected an output file")
    if not out.is_file():
        return
    for given in inputs:
        if _is_input(out, given):
            raise GradlogError(
                f"{out}: is one of this command's inputs; write the output elsewhere"
            )
    if not force:
        raise GradlogError(f"{out}: exists; pass --force to overwrite it")


def _is_input(out: Path, given: str) -> bool:
    if given == "-" or "://" in given:
        return False
    if os.path.isdir(given):  # a folder's logs are its inputs
        inside = os.path.commonpath([os.path.realpath(given), os.path.realpath(out)])
        return inside == os.path.realpath(given) and log_kind(out) is not None
    names = [given] if os.path.lexists(given) else glob.glob(given, recursive=True)
    for name in names:
        try:
            if os.path.samefile(out, name):
                return True
        except OSError:
            continue
    return False


@contextmanager
def replacing(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; renamed over ``path`` if the block
    succeeds, removed if anything fails. A target that exists and is no regular file (``-o
    /dev/null``, a FIFO, ``/dev/stdout``) is written to as it is: renaming over it would replace
    the device with a file."""
    out = Path(path)
    if out.exists() and not out.is_file():
        try:
            with open(out, "wb") as fh:
                yield fh
        except OSError as exc:
            raise GradlogError(write_error(out, exc)) from exc
        return
    mode = _mode_for(out)
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise GradlogError(write_error(out, exc)) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            # mkstemp makes the file private (0600); the result gets a new file's usual mode
            os.fchmod(fh.fileno(), mode)
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, out)
        if fsync:
            _fsync_directory(out.parent)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the error being raised says more than this one would
        if isinstance(exc, OSError):
            raise GradlogError(write_error(out, exc)) from exc
        raise


def write_parquet(
    frame, path: str | os.PathLike[str], *, fsync: bool = False, metadata: dict | None = None
) -> None:
    """Replace ``path`` with ``frame`` as Parquet (with file-level ``metadata``), atomically."""
    # Polars reports a failed write as a ComputeError that has lost the OSError ("os error 28"):
    # encode in memory, then write the bytes ourselves, so that disk full reads as disk full.
    buffer = io.BytesIO()
    frame.write_parquet(buffer, metadata=metadata)
    with replacing(path, fsync=fsync) as fh:
        fh.write(buffer.getbuffer())


def _mode_for(path: Path) -> int:
    """The permission bits the file would get from a plain ``open``, or keep if it exists."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask can only be read by setting it)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` survive power loss (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to sync a directory; the rename itself is done
    finally:
        os.close(fd)


def has_whole_line(path: str | os.PathLike[str], start: int = 0) -> bool:
    """Whether ``path`` holds, from byte ``start``, a line that is not blank and has its newline:
    a journal without one holds no record (created, or cut by a power loss, before its first)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return False
    with fh:
        fh.seek(start)
        content = False  # the line being read has something besides blanks
        while chunk := fh.read(1 << 16):
            *ended, rest = chunk.split(b"\n")
            for piece in ended:
                if content or piece.strip(b" \t\r"):
                    return True
                content = False
            content = content or bool(rest.strip(b" \t\r"))
    return False
