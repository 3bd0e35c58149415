"""Crash safety, proven: a real training is killed with SIGKILL at random moments.

Each trial starts a small two-task network training with the recorder in a subprocess. After
every step the script prints how many records the recorder has handed to the operating system
(the writer's count less what it still buffers). The test kills the process with SIGKILL at a
random moment, then checks that every record reported as written is readable, in order, and
that ``gradlog report`` works on the remains, noting what was cut off (docs/format.md, "Crash
safety"). Trials run side by side; a few are in the default suite, many more under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import random
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

from gradlog.readers import read_log
from gradlog.writers import journal_path

TRAIN = textwrap.dedent(
    """
    import sys, warnings
    warnings.filterwarnings("ignore")
    import torch
    from torch.nn import functional as F
    from gradlog import GradientRecorder

    path, cadence = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    encoder, pointer_head, type_head = (
        torch.nn.Linear(8, 32), torch.nn.Linear(32, 2), torch.nn.Linear(32, 3)
    )
    model = torch.nn.ModuleList([encoder, pointer_head, type_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y_pointer, y_type = torch.randn(64, 8), torch.rand(64, 2), torch.randint(0, 3, (64,))
    if cadence == "epochs":  # unbuffered: every record is written before backward() returns
        kwargs = dict(log_every=1, balance_every=1)
    else:  # by steps: buffered by default; a small buffer, drained often
        kwargs = dict(log_every=None, balance_every=None, log_every_steps=1,
                      balance_every_steps=2, buffer=8)
    rec = GradientRecorder(model, ["pointer", "type"], path, **kwargs)

    def handed():
        # records the recorder gave to the operating system: written, less those still buffered
        writer = rec._writer
        writer = getattr(writer, "_journal", None) or writer
        return writer.records_written - getattr(writer, "pending", 0)

    print("written", handed(), flush=True)
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
        print("written", handed(), flush=True)
    """
)


@dataclass
class Trial:
    path: Path
    reported: int  # records the recorder reported as handed to the operating system
    output: str


def run_trial(folder: Path, suffix: str, cadence: str, seed: int) -> Trial:
    """Train in a subprocess and SIGKILL it at a random moment after its first record."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "train.py"
    script.write_text(TRAIN)
    path = folder / f"run{suffix}"
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), cadence],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: list[bytes] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not started.wait(180):
        proc.kill()
        raise AssertionError(f"training never started: {proc.stderr.read().decode()[-2000:]}")
    time.sleep(rng.uniform(0.0, 0.7))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    reader.join(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    # only whole lines count: a line cut by the kill was never reported
    complete = [x for x in lines if x.endswith(b"\n") and x.startswith(b"written ")]
    reported = max(int(x.split()[1]) for x in complete)
    return Trial(path, reported, b"".join(lines).decode(errors="replace"))


def gradlog(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args], capture_output=True, timeout=120, env=env
    )


def check_remains(trial: Trial) -> None:
    """Every reported record is readable, in order; the report works and says what it skipped."""
    log = read_log(trial.path)
    frame = log.frame
    assert frame.height >= trial.reported, (frame.height, trial.reported, log.notes)
    kinds = frame["kind"].to_list()
    assert kinds[0] == "run"
    steps = frame["step"].to_list()[1:]
    # the records came in order, each step once: the first `reported` of them are all there
    assert steps == list(range(1, len(steps) + 1)), steps[:20]
    result = gradlog("report", str(trial.path))
    assert result.returncode == 0, result.stderr.decode()
    assert "[PHASE 4] Gradient Monitoring Summary:" in result.stdout.decode()
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    if trial.path.suffix == ".parquet":
        # killed before close(): the journal holds the run, and the report says it read it
        assert journal_path(trial.path).exists()
        assert "Note: " in stderr and "journal" in stderr, stderr
    data = _jsonl_of(trial.path).read_bytes()
    if not data.endswith(b"\n"):  # a record cut by the kill: skipped, and said so
        assert "skipped a partly written last line" in stderr, stderr
    if stderr:
        strict = gradlog("report", str(trial.path), "--strict")
        assert strict.returncode == 2 and strict.stderr.decode().startswith("Error: ")


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


def _jsonl_of(path: Path) -> Path:
    return journal_path(path) if path.suffix == ".parquet" else path


TRIALS = [
    (".jsonl", "epochs", 1),
    (".jsonl", "steps", 3),
    (".parquet", "epochs", 4),
    (".parquet", "epochs", 5),
]


def _run_all(tmp_path: Path, trials: list[tuple[str, str, int]]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            # a folder per trial: trials may share a seed (one log file each, never two runs)
            pool.submit(run_trial, tmp_path / f"trial{k}-{seed}", suffix, cadence, seed)
            for k, (suffix, cadence, seed) in enumerate(trials)
        ]
        done = [f.result() for f in futures]
    for (_, _, seed), trial in zip(trials, done):
        check_remains(trial)
        check_a_cut_at_every_kind_of_place(trial, seed)


def test_sigkill_at_random_moments_loses_nothing_reported(tmp_path: Path) -> None:
    _run_all(tmp_path, TRIALS)


@pytest.mark.slow
def test_sigkill_many_trials(tmp_path: Path) -> None:
    trials = [
        (suffix, cadence, 100 + i)
        for i in range(10)
        for suffix, cadence in ((".jsonl", "epochs"), (".jsonl", "steps"), (".parquet", "epochs"))
    ]
    _run_all(tmp_path, trials)


def test_the_documented_guarantee_is_written_down() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "format.md").read_text()
    section = doc[doc.index("## Crash safety") :]
    assert "SIGKILL" in section and "at most" in section
    json.dumps(section)  # plain text
