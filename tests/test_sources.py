"""What ``gradlog batch`` and ``gradlog compare`` find, and how: FIFOs and devices among the logs,
folders that cannot be read, files with glob characters in their names, lines over the bound.

Real files, real FIFOs (``os.mkfifo``) and the real CLI; the only timeout is the subprocess's,
which guards against a hang (a FIFO without a writer would block a plain ``open`` forever).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_gradlog
from runlogs import to_parquet, write_run

from gradlog.format import MAX_LINE_BYTES

TOO_LONG = "line is longer than 16 MiB, the limit for one record; refusing to read it"
NO_WRITER = (
    "is a named pipe (FIFO) that no program is writing to; start its writer first "
    "(gradlog does not wait for one)"
)


def rows(result: subprocess.CompletedProcess) -> list[dict[str, str]]:
    """The rows of ``gradlog batch --format csv``."""
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def healthy(path: Path) -> Path:
    return write_run(path, [1.0, 1.1, 0.9, 1.0, 1.05, 1.0])


def fifo_note(path: Path) -> str:
    return f"Note: {path}: skipped, a named pipe (FIFO) (name it alone to read it as a stream)"


def test_a_fifo_in_a_folder_is_skipped_with_a_note(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    healthy(logs / "good.jsonl")
    for name in ("waiting.jsonl", "waiting.parquet", "old.parquet.journal"):
        os.mkfifo(logs / name)
    for given in (str(logs), str(logs / "*"), str(logs / "*.jsonl")):
        result = run_gradlog("batch", given, "--format", "csv")
        assert result.returncode == 0, result.stderr.decode()
        assert [(r["status"], r["file"]) for r in rows(result)] == [
            ("healthy", str(logs / "good.jsonl"))
        ]
        err = result.stderr.decode()
        assert fifo_note(logs / "waiting.jsonl") in err
        if given != str(logs / "*.jsonl"):
            assert fifo_note(logs / "waiting.parquet") in err
            assert fifo_note(logs / "old.parquet.journal") in err


def test_a_fifo_named_alone_is_read_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody.jsonl"
    os.mkfifo(fifo)
    result = run_gradlog(
        "batch", str(fifo), str(healthy(tmp_path / "good.jsonl")), "--format", "csv"
    )
    assert result.returncode == 2
    by_file = {r["file"]: r for r in rows(result)}
    assert by_file[str(fifo)]["error"] == f"{fifo}: {NO_WRITER}"
    assert by_file[str(tmp_path / "good.jsonl")]["status"] == "healthy"
    good = healthy(tmp_path / "again.jsonl").read_bytes()
    result = run_gradlog("batch", "/dev/stdin", "--format", "csv", stdin=good)
    assert result.returncode == 0, result.stderr.decode()
    assert [(r["status"], r["file"]) for r in rows(result)] == [("healthy", "/dev/stdin")]


def _unprivileged(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a process that permissions apply to (root reads a chmod 000 folder)."""
    if os.geteuid() != 0:
        return run_gradlog(*args)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no folder can be unreadable")
    drop = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GRADLOG_DEBUG", None)
    return subprocess.run(
        [*drop, sys.executable, "-m", "gradlog", *args],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_a_folder_that_cannot_be_read_is_noted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    locked = logs / "locked"
    locked.mkdir(parents=True)
    healthy(logs / "good.jsonl")
    healthy(locked / "hidden.jsonl")
    locked.chmod(0)
    try:
        result = _unprivileged("batch", str(logs), "--format", "csv")
    finally:
        locked.chmod(0o755)
    if result.returncode != 0 and b"Permission denied" not in result.stderr:
        pytest.skip(f"cannot drop the privilege to read any folder: {result.stderr!r}")
    assert result.returncode == 0, result.stderr.decode()
    assert [r["file"] for r in rows(result)] == [str(logs / "good.jsonl")]
    assert (
        f"Note: {locked}: cannot read this folder (Permission denied); its logs are left out"
        in result.stderr.decode()
    )


def _long_line_log(path: Path) -> bytes:
    """A real log with one line of 17 MiB among good ones (at line 3)."""
    good = healthy(path.with_name("source.jsonl")).read_bytes().splitlines(keepends=True)
    huge = json.loads(good[1])
    huge["padding"] = "x" * (MAX_LINE_BYTES + (1 << 20))
    return b"".join([*good[:2], json.dumps(huge).encode() + b"\n", *good[2:]])


def test_batch_refuses_a_line_over_the_bound_as_report_does(tmp_path: Path) -> None:
    """It exited 0, "healthy", while report refused the file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    data = _long_line_log(tmp_path / "x")
    plain = logs / "long.jsonl"
    plain.write_bytes(data)
    packed = logs / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(data))
    healthy(logs / "ok.jsonl")
    for path in (plain, packed):
        alone = run_gradlog("report", str(path))
        assert alone.returncode == 2
        assert alone.stderr.decode() == f"Error: {path}:3: {TOO_LONG}\n"
    for given in ([str(logs)], [str(plain)], [str(packed)]):
        result = run_gradlog("batch", *given, "--format", "csv")
        assert result.returncode == 2
        found = {r["file"]: (r["status"], r["error"]) for r in rows(result)}
        for path in (plain, packed):
            if str(logs) in given or str(path) in given:
                assert found[str(path)] == ("error", f"{path}:3: {TOO_LONG}")
        if str(logs) in given:
            assert found[str(logs / "ok.jsonl")] == ("healthy", "")


def test_names_with_glob_characters_are_taken_as_they_are(tmp_path: Path) -> None:
    """A real ``run[1].jsonl`` could not be given to batch or compare (taken as a glob)."""
    odd = healthy(tmp_path / "run[1].jsonl")
    starred = healthy(tmp_path / "what?*.jsonl")
    parquet = to_parquet(odd, tmp_path / "run[2].parquet")
    for path in (odd, starred, parquet):
        result = run_gradlog("batch", str(path), "--format", "csv")
        assert result.returncode == 0, result.stderr.decode()
        assert [(r["status"], r["file"]) for r in rows(result)] == [("healthy", str(path))]
        assert run_gradlog("report", str(path)).returncode == 0
    result = run_gradlog("compare", str(odd), str(parquet), "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    compared = json.loads(result.stdout)
    assert (compared["summary"], compared["errors"]) == ({"same": 1}, [])
    # a pattern that names no file is still a glob
    healthy(tmp_path / "a1.jsonl")
    healthy(tmp_path / "a2.jsonl")
    result = run_gradlog("batch", str(tmp_path / "a[12].jsonl"), "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    assert [r["file"] for r in rows(result)] == [str(tmp_path / f"a{i}.jsonl") for i in (1, 2)]
