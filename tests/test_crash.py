"""Crash safety, proven: a real training is killed with SIGKILL, in every writer mode.

Each trial starts a small two-task network training with the recorder in a subprocess. After
every step the script prints how many records the recorder has flushed: handed to the operating
system (the journal, for Parquet) or put in a snapshot, that is the writer's count less what it
still buffers. The test waits for a line reporting at least a randomly chosen number of flushed
records, an event, never a length of time, and kills the process with SIGKILL right away, while
it goes on training (writing, buffering, snapshotting). Then every record reported as flushed
must be read back by ``read_log`` in order, and reported by the real CLI, which notes what it
recovered (docs/format.md, "Crash safety"). Every mode is in the default suite; many more
trials run under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradlog.analysis.readers import read_log
from gradlog.recorder.writers import journal_path, open_writer

TRAIN = textwrap.dedent(
    """
    import sys, warnings
    warnings.filterwarnings("ignore")
    import torch
    from torch.nn import functional as F
    from gradlog import GradientRecorder

    path, mode = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    encoder, pointer_head, type_head = (
        torch.nn.Linear(8, 32), torch.nn.Linear(32, 2), torch.nn.Linear(32, 3)
    )
    model = torch.nn.ModuleList([encoder, pointer_head, type_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y_pointer, y_type = torch.randn(64, 8), torch.rand(64, 2), torch.randint(0, 3, (64,))
    if mode.endswith("buffered"):  # by steps: a buffer, drained when full or on flush()
        kwargs = dict(log_every=None, balance_every=None, log_every_steps=1,
                      balance_every_steps=2, buffer=50 if "parquet" in mode else 8)
    else:  # unbuffered: every record is written before backward() returns
        kwargs = dict(log_every=1, balance_every=1, buffer=0)
    rec = GradientRecorder(model, ["pointer", "type"], path, **kwargs)

    def flushed():
        # records handed to the operating system or snapshotted: written, less those buffered
        return rec._writer.records_written - rec._writer.pending

    print("flushed", flushed(), flush=True)
    step = 0
    while True:
        step += 1
        opt.zero_grad()
        h = torch.tanh(encoder(x))
        losses = {
            "pointer": F.mse_loss(pointer_head(h), y_pointer),
            "type": F.cross_entropy(type_head(h), y_type),
        }
        rec.backward(losses, epoch=step, step=step)
        opt.step()
        if path.endswith(".parquet") and step % 7 == 0:
            rec.flush()  # an atomic snapshot: something else for the kill to interrupt
        print("flushed", flushed(), flush=True)
    """
)

MODES = {  # writer mode: the log's suffix
    "jsonl": ".jsonl",
    "jsonl-buffered": ".jsonl",
    "parquet": ".parquet",
    "parquet-buffered": ".parquet",
}
# Generous: reached within seconds; only a machine that has stopped would run into it.
PATIENCE_S = 600


@dataclass
class Trial:
    path: Path
    mode: str
    reported: int  # records the recorder reported as flushed before it was killed
    output: str


def run_trial(folder: Path, mode: str, seed: int, most: int = 60) -> Trial:
    """Train in a subprocess; SIGKILL it once it reports a random number of flushed records."""
    target = random.Random(seed).randint(1, most)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "train.py"
    script.write_text(TRAIN)
    path = folder / f"run{MODES[mode]}"
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # the process is gone

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[bytes] = []
    deadline = time.monotonic() + PATIENCE_S
    try:
        while True:  # the event: a line saying that at least `target` records are flushed
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            if line is None:
                raise AssertionError(f"training ended: {proc.stderr.read().decode()[-2000:]}")
            seen.append(line)
            if _flushed(line) >= target:
                break
    except queue.Empty:
        raise AssertionError(f"no {target} records flushed in {PATIENCE_S} s") from None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    reader.join(timeout=60)
    while (line := lines.get()) is not None:  # printed before the kill: reports all the same
        seen.append(line)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    reported = max(_flushed(x) for x in seen)
    assert reported >= target
    return Trial(path, mode, reported, b"".join(seen).decode(errors="replace"))


def _flushed(line: bytes) -> int:
    # only whole lines count: a line cut by the kill was never reported
    return int(line.split()[1]) if line.startswith(b"flushed ") and line.endswith(b"\n") else -1


def gradlog(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args], capture_output=True, timeout=120, env=env
    )


def check_remains(trial: Trial) -> None:
    """Every reported record is readable, in order; the CLI reports them and says what it
    recovered."""
    log = read_log(trial.path)
    frame = log.frame
    assert frame.height >= trial.reported, (trial.mode, frame.height, trial.reported, log.notes)
    kinds = frame["kind"].to_list()
    assert kinds[0] == "run"
    steps = frame["step"].to_list()[1:]
    # the records came in order, each step once: the first `reported` of them are all there
    assert steps == list(range(1, len(steps) + 1)), (trial.mode, steps[:20])
    result = gradlog("report", str(trial.path))
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "[PHASE 4] Gradient Monitoring Summary:" in result.stdout.decode()
    assert "Traceback" not in stderr
    if trial.path.suffix == ".parquet":
        # killed before close(): the journal is still there, and the report says it read it
        assert journal_path(trial.path).exists()
        assert "Note: " in stderr and "journal" in stderr, stderr
    data = _jsonl_of(trial.path).read_bytes()
    if data and not data.endswith(b"\n"):  # a record cut by the kill: skipped, and said so
        assert "skipped a partly written last line" in stderr, stderr
    if stderr:
        strict = gradlog("report", str(trial.path), "--strict")
        assert strict.returncode == 2 and strict.stderr.decode().startswith("Error: ")
    # the CLI's own count of what it read back
    copy = trial.path.with_name("copy.jsonl")
    converted = gradlog("convert", str(trial.path), "-o", str(copy))
    assert converted.returncode == 0, converted.stderr.decode()
    wrote = re.search(rb"Wrote (\d+) records", converted.stderr)
    assert wrote is not None and int(wrote.group(1)) == frame.height >= trial.reported


def check_a_cut_at_every_kind_of_place(trial: Trial, seed: int) -> None:
    """The remains cut once more inside their last record (as a power loss can leave them):
    exactly that record is lost, with a note naming its line."""
    source = _jsonl_of(trial.path)
    data = source.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) < 2:
        return
    last = lines[-1]
    cut = random.Random(seed).randrange(1, len(last) - 1)
    damaged = trial.path.with_name("cut.jsonl")
    damaged.write_bytes(b"".join(lines[:-1]) + last[:cut])
    log = read_log(damaged)
    assert log.frame.height == len(lines) - 1
    assert log.notes == [
        f"{damaged}:{len(lines)}: skipped a partly written last line ({cut} bytes)"
    ]


def check_the_next_writer(trial: Trial) -> None:
    """The killed writer's lock went with it: the next one opens the log and keeps it all."""
    kept = read_log(trial.path).frame
    open_writer(trial.path).close()
    log = read_log(trial.path)
    assert log.notes == [] and log.frame.equals(kept)
    assert not journal_path(trial.path).exists()


def _jsonl_of(path: Path) -> Path:
    return journal_path(path) if path.suffix == ".parquet" else path


def _run_all(tmp_path: Path, trials: list[tuple[str, int]]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            # a folder per trial: trials may share a seed (one log file each, never two runs)
            pool.submit(run_trial, tmp_path / f"trial{k}-{seed}", mode, seed)
            for k, (mode, seed) in enumerate(trials)
        ]
        done = [f.result() for f in futures]
    for (_, seed), trial in zip(trials, done):
        check_remains(trial)
        check_a_cut_at_every_kind_of_place(trial, seed)
        check_the_next_writer(trial)


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_loses_nothing_flushed(tmp_path: Path, mode: str) -> None:
    _run_all(tmp_path, [(mode, 1)])


@pytest.mark.slow
def test_sigkill_many_trials(tmp_path: Path) -> None:
    seeds = random.Random(os.environ.get("GRADLOG_CRASH_SEED", "crash")).sample(range(10**6), 40)
    _run_all(tmp_path, [(mode, seed) for mode, seed in zip(list(MODES) * 10, seeds)])


def test_the_documented_guarantee_is_written_down() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "format.md").read_text()
    section = doc[doc.index("## Crash safety") :]
    assert "SIGKILL" in section and "at most" in section
    json.dumps(section)  # plain text
