"""Two writers appending to one JSON Lines file (by mistake) never interleave partial lines.

Each record is one ``write(2)`` of a whole line to a file opened with ``O_APPEND``; on a local
filesystem the kernel appends each such write whole, even one far larger than a pipe's atomic
size. Two processes hammer one file at once, with lines of tens of kilobytes, and every line
must come back whole, each writer's records complete and in its own order; two real recorders
writing one log are then reported as two runs, told apart by run id.
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

from gradlog.analysis import analyse
from gradlog.readers import read_log

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from gradlog.writers import JsonlWriter

    path, name, count, size, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    writer = JsonlWriter(path)
    while not os.path.exists(go):  # start together
        time.sleep(0.001)
    pad = name * size
    for i in range(count):
        writer.write({"v": 1, "run": name, "kind": "event", "step": i + 1, "layers": [
            {"name": pad, "norm": float(i)}]})
    writer.close()
    """
)


def test_two_writers_never_interleave_partial_lines(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path, go = tmp_path / "shared.jsonl", tmp_path / "go"
    count = 300
    sizes = {"a": 40_000, "b": 9_000}  # lines far beyond PIPE_BUF (4 KiB), of unequal length
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), name, str(count), str(size), str(go)]
        )
        for name, size in sizes.items()
    ]
    time.sleep(0.5)  # both imported and waiting
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON
    for name, size in sizes.items():
        mine = [r for r in records if r["run"] == name]
        assert [r["step"] for r in mine] == list(range(1, count + 1))  # complete, in order
        assert all(r["layers"][0]["name"] == name * size for r in mine)
    # they did run at the same time: the two writers' lines alternate somewhere
    runs = [r["run"] for r in records]
    assert sum(a != b for a, b in zip(runs, runs[1:])) > 1
    frame = read_log(path).frame
    assert frame.height == 2 * count


RECORDER = textwrap.dedent(
    """
    import os, sys, time, warnings
    warnings.filterwarnings("ignore")
    import torch
    from gradlog import GradientRecorder

    path, run_id, ratio, go = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    model = torch.nn.Module()
    model.w = w
    with GradientRecorder(model, ["pointer", "type"], path, log_every=1, balance_every=1,
                          run_id=run_id) as rec:
        while not os.path.exists(go):
            time.sleep(0.001)
        for epoch in range(1, 201):
            model.zero_grad()
            rec.backward({"pointer": ratio * w.sum(), "type": w.sum()}, epoch=epoch)
    """
)


def test_two_recorders_in_one_file_are_told_apart_by_run_id(tmp_path: Path) -> None:
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    path, go = tmp_path / "runs.jsonl", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), run_id, ratio, str(go)], env=env)
        for run_id, ratio in (("balanced", "1.0"), ("collapsed", "10.0"))
    ]
    deadline = time.monotonic() + 120
    while not (path.exists() and path.read_bytes().count(b"\n") >= 2):  # both run records
        assert time.monotonic() < deadline, "the recorders did not start"
        time.sleep(0.05)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    log = read_log(path)
    assert log.notes == []
    result = analyse(log)
    assert sorted(r.run_id for r in result.runs) == ["balanced", "collapsed"]
    by_id = {r.run_id: r for r in result.runs}
    for run in by_id.values():
        assert run.events.get_column("epoch").to_list() == list(
            range(1, 201)
        )  # no event lost, none out of order
    assert by_id["balanced"].summary.window_ratio == 1.0
    assert by_id["collapsed"].summary.window_ratio == pytest.approx(10.0)  # through logs
