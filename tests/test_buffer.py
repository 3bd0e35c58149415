"""The writers' bounded buffer: one write of whole lines per flush, on size, on a timer, at
close, at interpreter exit; what a crash can lose with it on; the recorder's defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.errors import RecorderConfigError  # noqa: E402
from gradlog.recorder import writers as writers_module  # noqa: E402
from gradlog.recorder.writers import JsonlWriter, ParquetWriter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def record(i: int) -> dict:
    return {"v": 1, "run": "r", "kind": "event", "step": i, "mean_norm": 0.1 * i}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every os.write the writers module issues, with what it wrote."""
    calls: list[bytes] = []
    real_write = os.write

    def write(fd: int, data) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(writers_module.os, "write", write)
    return calls


def test_unbuffered_is_one_write_per_record(tmp_path: Path, count_writes: list[bytes]) -> None:
    writer = JsonlWriter(tmp_path / "run.jsonl")
    for i in range(3):
        writer.write(record(i))
        assert len(lines(tmp_path / "run.jsonl")) == i + 1  # on disk before write() returns
    writer.close()
    assert len(count_writes) == 3


def test_buffer_flushes_whole_lines_when_full(tmp_path: Path, count_writes: list[bytes]) -> None:
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path, buffer_records=4, flush_seconds=3600)
    for i in range(3):
        writer.write(record(i))
    assert path.read_bytes() == b"" and writer.pending == 3 and count_writes == []
    writer.write(record(3))  # the fourth fills the buffer: one write of four whole lines
    assert writer.pending == 0
    assert len(count_writes) == 1 and count_writes[0].count(b"\n") == 4
    assert count_writes[0].endswith(b"\n")
    assert [r["step"] for r in lines(path)] == [0, 1, 2, 3]
    writer.write(record(4))
    writer.close()  # close writes the rest
    assert [r["step"] for r in lines(path)] == [0, 1, 2, 3, 4]
    assert len(count_writes) == 2


def test_buffer_flushes_on_its_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_writes: list[bytes]
) -> None:
    now = [1000.0]
    monkeypatch.setattr(writers_module.time, "monotonic", lambda: now[0])
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path, buffer_records=100, flush_seconds=5.0)
    writer.write(record(0))
    now[0] += 4.9
    writer.write(record(1))
    assert writer.pending == 2  # the oldest is 4.9 s old: kept
    now[0] += 0.1
    writer.write(record(2))  # the oldest is now 5 s old: everything goes out at once
    assert writer.pending == 0 and len(count_writes) == 1
    assert [r["step"] for r in lines(path)] == [0, 1, 2]
    now[0] += 100  # the timer is checked when a record is written, never in the background
    assert writer.pending == 0
    writer.write(record(3))
    assert writer.pending == 1  # a new buffer starts its clock at its first record
    writer.flush()  # flush() writes the buffer (and syncs the file)
    assert writer.pending == 0 and [r["step"] for r in lines(path)][-1] == 3
    writer.close()


def test_buffered_parquet_journal(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    writer = ParquetWriter(path, buffer_records=10, flush_seconds=3600)
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["a", "b"]}})
    for i in range(3):
        writer.write(record(i))
    journal = tmp_path / "run.parquet.journal"
    assert journal.read_bytes() == b""  # buffered: not yet in the journal
    writer.close()
    assert not journal.exists()
    assert read_log(path).frame.height == 4


CRASH = """
import os, sys, warnings
warnings.filterwarnings("ignore")
from gradlog.recorder.writers import JsonlWriter
writer = JsonlWriter(sys.argv[1], buffer_records=int(sys.argv[2]), flush_seconds=3600)
for i in range(10):
    writer.write({{"v": 1, "run": "r", "kind": "event", "step": i}})
{end}
"""


@pytest.mark.parametrize(
    ("buffer", "end", "kept"),
    [
        (0, "os._exit(1)", 10),  # unbuffered: a killed process loses nothing logged
        (4, "os._exit(1)", 8),  # buffered: a hard kill loses the buffer (here 2 records)
        (4, "sys.exit(3)", 10),  # a normal exit, even without close(): drained at exit
        (4, "raise SystemExit('boom')", 10),
    ],
)
def test_what_a_crash_loses(tmp_path: Path, buffer: int, end: str, kept: int) -> None:
    path = tmp_path / "run.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", CRASH.format(end=end), str(path), str(buffer)],
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    data = path.read_bytes()
    assert data.endswith(b"\n")  # whole lines only, whatever was lost
    assert [r["step"] for r in lines(path)] == list(range(kept))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_buffer_sizes(tmp_path: Path, bad) -> None:
    with pytest.raises(RecorderConfigError, match="buffer_records"):
        JsonlWriter(tmp_path / "run.jsonl", buffer_records=bad)


# -- the recorder's defaults ------------------------------------------------------------------


class Scalar(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))


def losses(model: Scalar) -> dict[str, torch.Tensor]:
    return {"a": 2.0 * model.w.sum(), "b": model.w.sum()}


def test_epoch_cadence_is_unbuffered_by_default(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, ["a", "b"], path, log_every=1, balance_every=1) as rec:
        rec.backward(losses(model), epoch=1)
        assert len(lines(path)) == 2  # the event is on disk as soon as it is logged


def test_step_cadence_is_buffered_by_default(tmp_path: Path, count_writes: list[bytes]) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    rec = GradientRecorder(
        model,
        ["a", "b"],
        path,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
    )
    for _ in range(50):
        model.zero_grad()
        rec.backward(losses(model))
    assert path.read_bytes() == b"" and count_writes == []  # 51 records, no write yet
    rec.flush()
    assert len(lines(path)) == 51 and len(count_writes) == 1
    rec.close()


def test_buffer_size_and_zero(tmp_path: Path) -> None:
    model = Scalar()
    for buffer, on_disk in ((0, 5), (2, 4)):
        path = tmp_path / f"b{buffer}.jsonl"
        rec = GradientRecorder(
            model,
            ["a", "b"],
            path,
            log_every=None,
            balance_every=None,
            balance_every_steps=1,
            buffer=buffer,
        )
        for _ in range(4):
            rec.backward(losses(model))
        assert len(lines(path)) == on_disk  # run record + 4 events; buffered: in pairs
        rec.close()
        assert len(lines(path)) == 5
