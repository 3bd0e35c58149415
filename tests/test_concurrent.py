"""Several writers at one log path: JSON Lines appends are safe, a Parquet log is refused.

JSON Lines: each record (or each flush of a buffer) is one ``write(2)`` of whole lines to a file
opened with ``O_APPEND``; on a local filesystem the kernel appends each such write whole, even
one far larger than a pipe's atomic size. Writers hammer one file at once, with lines of tens of
kilobytes, and every line must come back whole, each writer's records complete and in its own
order; three real recorders writing one log are then reported as three runs, told apart by run id.

Parquet: a writer rewrites the whole file at each snapshot, so two would overwrite each other's
runs. The first holds a lock for its life; the others are refused at construction, with a
message that names the log. Nothing here waits on time: the processes signal each step with
marker files, and the test waits for those (with a bound only a stopped machine would reach).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gradlog.analysis.readers import read_log
from gradlog.analysis.report import analyse
from gradlog.errors import RecorderConfigError
from gradlog.recorder.lock import lock_path
from gradlog.recorder.writers import ParquetWriter, journal_path

PATIENCE_S = 300

WAIT = textwrap.dedent(
    """
    import os, time

    def wait_for(*paths):
        while not all(os.path.exists(p) for p in paths):
            time.sleep(0.001)
    """
)

WRITER = WAIT + textwrap.dedent(
    """
    import sys
    from gradlog.recorder.writers import JsonlWriter

    path, name, other, count, size, folder = sys.argv[1:7]
    count, size = int(count), int(size)
    writer = JsonlWriter(path)
    open(os.path.join(folder, "ready-" + name), "w").close()
    wait_for(os.path.join(folder, "go"))
    pad = name * size
    for i in range(count):
        if i == count // 2:  # halfway: wait until the other has written half of its records
            open(os.path.join(folder, "half-" + name), "w").close()
            wait_for(os.path.join(folder, "half-" + other))
        writer.write({"v": 1, "run": name, "kind": "event", "step": i + 1, "layers": [
            {"name": pad, "norm": float(i)}]})
    writer.close()
    """
)


def wait_for(*paths: Path, procs: list[subprocess.Popen] = ()) -> None:
    """Until every path exists; fails at once if one of ``procs`` ends first."""
    deadline = time.monotonic() + PATIENCE_S
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {[str(p) for p in paths]}"
        ended = [p.returncode for p in procs if p.poll() is not None]
        assert not ended, f"a process ended early with {ended}"
        time.sleep(0.01)


def test_two_writers_never_interleave_partial_lines(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "shared.jsonl"
    count = 300
    sizes = {"a": 40_000, "b": 9_000}  # lines far beyond PIPE_BUF (4 KiB), of unequal length
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), name, other, str(count), str(size)]
            + [str(tmp_path)]
        )
        for (name, size), other in zip(sizes.items(), "ba")
    ]
    wait_for(tmp_path / "ready-a", tmp_path / "ready-b", procs=procs)
    (tmp_path / "go").touch()
    for proc in procs:
        assert proc.wait(timeout=PATIENCE_S) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON
    for name, size in sizes.items():
        mine = [r for r in records if r["run"] == name]
        assert [r["step"] for r in mine] == list(range(1, count + 1))  # complete, in order
        assert all(r["layers"][0]["name"] == name * size for r in mine)
    # they did write at the same time: each waited halfway for the other, so the runs alternate
    runs = [r["run"] for r in records]
    assert sum(a != b for a, b in zip(runs, runs[1:])) > 1
    frame = read_log(path).frame
    assert frame.height == 2 * count


RECORDER = WAIT + textwrap.dedent(
    """
    import sys, warnings
    warnings.filterwarnings("ignore")
    import torch
    from gradlog import GradientRecorder
    from gradlog.errors import RecorderConfigError

    path, run_id, ratio, folder, cadence = sys.argv[1:6]
    ratio = float(ratio)
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    model = torch.nn.Module()
    model.w = w
    if cadence == "steps":  # buffered: whole buffers of lines go out in one write each
        kwargs = dict(log_every=None, balance_every=None, log_every_steps=1,
                      balance_every_steps=1, buffer=16)
    else:
        kwargs = dict(log_every=1, balance_every=1)
    try:
        rec = GradientRecorder(model, ["pointer", "type"], path, run_id=run_id, **kwargs)
    except RecorderConfigError as exc:
        print("refused:", exc, flush=True)
        sys.exit(3)
    with rec:
        open(os.path.join(folder, "ready-" + run_id), "w").close()
        wait_for(os.path.join(folder, "go"))
        for epoch in range(1, 201):
            model.zero_grad()
            rec.backward({"pointer": ratio * w.sum(), "type": w.sum()}, epoch=epoch, step=epoch)
    """
)

RUNS = (("balanced", "1.0", "epochs"), ("collapsed", "10.0", "epochs"), ("stepped", "3.0", "steps"))


def start_recorders(folder: Path, path: Path, runs=RUNS) -> list[subprocess.Popen]:
    script = folder / "recorder.py"
    script.write_text(RECORDER)
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    return [
        subprocess.Popen(
            [sys.executable, str(script), str(path), run_id, ratio, str(folder), cadence],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for run_id, ratio, cadence in runs
    ]


def test_three_recorders_in_one_jsonl_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    procs = start_recorders(tmp_path, path)
    wait_for(*(tmp_path / f"ready-{run_id}" for run_id, _, _ in RUNS), procs=procs)
    (tmp_path / "go").touch()  # all three write at once
    for proc in procs:
        assert proc.wait(timeout=PATIENCE_S) == 0, proc.stderr.read().decode()[-2000:]
    log = read_log(path)
    assert log.notes == []
    result = analyse(log)
    assert sorted(r.run_id for r in result.runs) == ["balanced", "collapsed", "stepped"]
    by_id = {r.run_id: r for r in result.runs}
    for run in by_id.values():
        assert run.events.get_column("epoch").to_list() == list(
            range(1, 201)
        )  # no event lost, none out of order
    assert by_id["balanced"].summary.window_ratio == 1.0
    assert by_id["collapsed"].summary.window_ratio == pytest.approx(10.0)  # through logs
    assert by_id["stepped"].summary.window_ratio == pytest.approx(3.0)


def test_a_second_parquet_writer_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.parquet"
    first = start_recorders(tmp_path, path, RUNS[:1])[0]
    wait_for(tmp_path / "ready-balanced", procs=[first])
    others = start_recorders(tmp_path, path, RUNS[1:])
    for proc in others:  # refused at construction: before training, never silently
        assert proc.wait(timeout=PATIENCE_S) == 3
        said = proc.stdout.read().decode()
        assert said.startswith(f"refused: {path}: another process is writing this log"), said
    (tmp_path / "go").touch()
    assert first.wait(timeout=PATIENCE_S) == 0, first.stderr.read().decode()[-2000:]
    frame = read_log(path).frame
    assert frame["run"].unique().to_list() == ["balanced"] and frame.height == 201
    assert not lock_path(path).exists() and not journal_path(path).exists()
    # closed: the next writer is welcome, and appends its run
    again = start_recorders(tmp_path, path, RUNS[1:2])[0]
    assert again.wait(timeout=PATIENCE_S) == 0, again.stderr.read().decode()[-2000:]
    assert read_log(path).frame["run"].unique(maintain_order=True).to_list() == [
        "balanced",
        "collapsed",
    ]


def test_three_parquet_recorders_at_once_never_lose_a_run_silently(tmp_path: Path) -> None:
    """Started together: whichever runs overlap are refused, loudly; every run that was not
    refused is in the log, whole."""
    path = tmp_path / "shared.parquet"
    (tmp_path / "go").touch()  # no waiting: each trains as soon as it has the log
    procs = start_recorders(tmp_path, path)
    written = []
    for proc, (run_id, _, _) in zip(procs, RUNS):
        code = proc.wait(timeout=PATIENCE_S)
        assert code in (0, 3), proc.stderr.read().decode()[-2000:]
        if code == 0:
            written.append(run_id)
        else:
            assert b"another process is writing this log" in proc.stdout.read()
    frame = read_log(path).frame
    assert sorted(frame["run"].unique().to_list()) == sorted(written)
    for run_id in written:
        assert frame.filter(frame["run"] == run_id).height == 201


def test_two_parquet_writers_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    first = ParquetWriter(path)
    first.write({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["a", "b"]}})
    with pytest.raises(RecorderConfigError, match="another process is writing this log"):
        ParquetWriter(path)
    first.close()
    assert not lock_path(path).exists()
    second = ParquetWriter(path)
    second.close()
    assert read_log(path).frame.height == 1
