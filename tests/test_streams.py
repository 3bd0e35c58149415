"""Logs read as streams: process substitution, /dev/stdin, named pipes (FIFOs), devices.

Every check runs the real CLI on real pipes and FIFOs (``os.mkfifo``). Nothing here waits on the
clock: a FIFO's writer is a thread whose last write cannot finish before gradlog has opened the
FIFO and read from it, and the only timeout is the subprocess's, which guards against a hang.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_gradlog
from runlogs import to_parquet, write_run

from gradlog.format import MAX_STREAM_BYTES, MAX_STREAM_BYTES_ENV, SNIFF_BYTES

LIMIT_NOTE = (
    "the limit for standard input, a pipe or a decompressed log (--max-stream-bytes or "
    "GRADLOG_MAX_STREAM_BYTES changes it); refusing to read more"
)
NO_WRITER = (
    "is a named pipe (FIFO) that no program is writing to; start its writer first "
    "(gradlog does not wait for one)"
)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A real log of 2,000 events (about 600 kB: more than a pipe holds at once)."""
    return write_run(tmp_path / "run.jsonl", [1.0 + 0.001 * i for i in range(2000)])


def report_of(path: Path) -> bytes:
    result = run_gradlog("report", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@contextlib.contextmanager
def fifo_writer(fifo: Path, data: bytes) -> Iterator[None]:
    """A writer on ``fifo`` before gradlog starts, writing ``data`` and closing.

    The FIFO is opened read-write, so it has a writer at once and the open does not wait; its
    buffer is made small, so the writes cannot all finish before gradlog has opened the FIFO and
    read from it: the writer's close (gradlog's end of input) never comes too early.
    """
    fd = os.open(fifo, os.O_RDWR)
    capacity = 65536
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        capacity = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
    assert len(data) > capacity

    def write() -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if thread.is_alive():  # gradlog stopped reading early: drain so that the writer ends
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            while thread.is_alive():
                with contextlib.suppress(BlockingIOError):
                    os.read(reader, 1 << 16)
            os.close(reader)
        thread.join()


def test_process_substitution_reads_like_the_file(log: Path) -> None:
    """``gradlog report <(cat log.jsonl)`` said ``cannot read: None``."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash for <(...)")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GRADLOG_DEBUG", None)
    result = subprocess.run(
        ["bash", "-c", '"$0" -m gradlog report <(cat "$1") --format json', sys.executable, log],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert _without_source(result.stdout) == _without_source(report_of(log))


def _without_source(report: bytes) -> str:
    """A JSON report with the file's name left out (a pipe is named /dev/fd/N)."""
    data = json.loads(report)
    assert data["runs"] and not data["notes"]
    data.pop("path")
    for run in data["runs"]:
        run.pop("source")
    return json.dumps(data, sort_keys=True)


def test_dev_stdin_reads_like_the_file(log: Path) -> None:
    result = run_gradlog("report", "/dev/stdin", "--format", "json", stdin=log.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert _without_source(result.stdout) == _without_source(report_of(log))


def test_gzip_and_parquet_arrive_on_a_pipe_too(log: Path, tmp_path: Path) -> None:
    expected = _without_source(report_of(log))
    parquet = to_parquet(log, tmp_path / "run.parquet")
    for data in (gzip.compress(log.read_bytes()), parquet.read_bytes()):
        for name in ("-", "/dev/stdin"):
            result = run_gradlog("report", name, "--format", "json", stdin=data)
            assert result.returncode == 0, result.stderr.decode()
            assert _without_source(result.stdout) == expected
    out = tmp_path / "out.parquet"
    result = run_gradlog("convert", "/dev/stdin", "-o", str(out), stdin=log.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode() == f"Wrote 2001 records to {out}\n"


def test_a_named_fifo_with_a_writer_is_read(log: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "live.jsonl"
    os.mkfifo(fifo)
    with fifo_writer(fifo, log.read_bytes()):
        result = run_gradlog("report", str(fifo), "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    assert _without_source(result.stdout) == _without_source(report_of(log))


def test_a_named_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody.jsonl"
    os.mkfifo(fifo)
    for command in ("report", "convert"):
        extra = ["-o", str(tmp_path / "out.parquet")] if command == "convert" else []
        result = run_gradlog(command, str(fifo), *extra)
        assert result.returncode == 2
        assert result.stderr.decode() == f"Error: {fifo}: {NO_WRITER}\n"
    assert not (tmp_path / "out.parquet").exists()


def test_a_runaway_line_on_a_fifo_is_refused_before_it_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "runaway.jsonl"
    os.mkfifo(fifo)
    good = b'{"v":1,"run":"r","kind":"event","epoch":1}\n'
    data = good * 3 + b'{"v":1,"run":"r","kind":"event","x":"' + b"a" * (40 << 20)
    with fifo_writer(fifo, data):
        result = run_gradlog("report", str(fifo))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"Error: {fifo}:4: line is longer than 16 MiB, the limit for one record; "
        "refusing to read it\n"
    )


def test_the_total_is_bounded_on_every_stream(log: Path, tmp_path: Path) -> None:
    """More than the limit from a pipe, a FIFO or standard input: one line naming the file and
    the limit. The limit is 4 GiB unless the environment says otherwise."""
    assert MAX_STREAM_BYTES == 4 << 30
    small = {MAX_STREAM_BYTES_ENV: "64K"}
    data = log.read_bytes()
    for name in ("-", "/dev/stdin"):
        result = run_gradlog("report", name, stdin=data, env=small)
        assert result.returncode == 2
        shown = "<stdin>" if name == "-" else name
        assert result.stderr.decode() == f"Error: {shown}: more than 64 KiB to read, {LIMIT_NOTE}\n"
    fifo = tmp_path / "big.jsonl"
    os.mkfifo(fifo)
    with fifo_writer(fifo, data):
        result = run_gradlog("report", str(fifo), env=small)
    assert result.returncode == 2
    assert result.stderr.decode() == f"Error: {fifo}: more than 64 KiB to read, {LIMIT_NOTE}\n"
    # within the limit, the same input reads
    result = run_gradlog("report", "-", stdin=data, env={MAX_STREAM_BYTES_ENV: str(len(data))})
    assert result.returncode == 0, result.stderr.decode()
    # the command line's flag is the same setting, and wins over the environment
    flag = ("--max-stream-bytes", "64K")
    result = run_gradlog(*flag, "report", "-", stdin=data)
    assert result.stderr.decode() == f"Error: <stdin>: more than 64 KiB to read, {LIMIT_NOTE}\n"
    result = run_gradlog("--max-stream-bytes", str(len(data)), "report", "-", stdin=data, env=small)
    assert result.returncode == 0, result.stderr.decode()


def test_a_gzipped_file_is_bounded_as_it_decompresses(log: Path, tmp_path: Path) -> None:
    packed = tmp_path / "run.jsonl.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    small = {MAX_STREAM_BYTES_ENV: "100k"}
    expected = f"{packed}: more than 100 KiB to read, {LIMIT_NOTE}"
    result = run_gradlog("report", str(packed), env=small)
    assert result.returncode == 2
    assert result.stderr.decode() == f"Error: {expected}\n"
    result = run_gradlog("batch", str(packed), "--format", "csv", env=small)
    assert result.returncode == 2
    assert expected in result.stdout.decode()
    assert run_gradlog("report", str(packed)).returncode == 0


def test_a_limit_that_is_no_size_is_refused(log: Path) -> None:
    result = run_gradlog("report", "-", stdin=log.read_bytes(), env={MAX_STREAM_BYTES_ENV: "lots"})
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "Error: GRADLOG_MAX_STREAM_BYTES='lots': expected a size in bytes above 0, such as "
        "4294967296 or 4G\n"
    )
    result = run_gradlog("--max-stream-bytes", "lots", "report", "-", stdin=log.read_bytes())
    assert result.returncode == 2
    assert result.stderr.decode().startswith(
        "Error: Invalid value for '--max-stream-bytes': expected a size in bytes above 0, such "
        "as 4294967296 or 4G (see '"
    )


def test_dev_urandom_is_refused_early() -> None:
    """It grew to 1.77 GB: random bytes have a newline every few hundred, so the line bound
    alone never stops them. Exit 2 well within the subprocess's timeout is the proof that it
    stopped reading (at 4 GiB, or never, it would not)."""
    result = run_gradlog("report", "/dev/urandom")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "Error: /dev/urandom: not a JSON Lines log: no line in its first 1 MiB is a "
        "JSON object (binary data?); refusing to read more\n"
    )


def test_dev_zero_and_dev_null() -> None:
    result = run_gradlog("report", "/dev/zero")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "Error: /dev/zero:1: line is longer than 16 MiB, the limit for one record; "
        "refusing to read it\n"
    )
    result = run_gradlog("report", "/dev/null")
    assert result.returncode == 2
    assert result.stderr.decode() == "Error: /dev/null: empty log (no records)\n"


def test_broken_lines_before_the_records_of_a_stream(log: Path) -> None:
    """Some garbage first is skipped as ever; a megabyte of it with no JSON is binary data."""
    garbage = b"\x00\xff not json \x01\n"
    few = garbage * 10 + log.read_bytes()
    result = run_gradlog("report", "-", stdin=few)
    assert result.returncode == 0, result.stderr.decode()
    assert "Note: <stdin>:1: skipped a line that is not UTF-8 text" in result.stderr.decode()
    many = garbage * (SNIFF_BYTES // len(garbage) + 1) + log.read_bytes()
    result = run_gradlog("report", "-", stdin=many)
    assert result.returncode == 2
    assert "no line in its first 1 MiB is a JSON object" in result.stderr.decode()


def test_a_first_record_longer_than_the_sniffed_window_is_read() -> None:
    layers = [{"name": f"encoder.layer{i}.weight", "norm": 0.5} for i in range(60_000)]
    first = {"v": 1, "run": "r", "kind": "event", "epoch": 1, "layers": layers}
    line = json.dumps(first).encode() + b"\n"
    assert len(line) > 2 * SNIFF_BYTES
    result = run_gradlog("report", "-", "--format", "json", stdin=line * 2)
    assert result.returncode == 0, result.stderr.decode()
