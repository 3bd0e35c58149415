"""What ``gradlog watch`` costs the training it watches: the recorder's steps with and without
a watcher following the log, as ratios.

One process trains two identical two-task MLPs (a trunk of Linear(64, 256) and Linear(256, 256)
with ReLU, heads Linear(256, 10) and Linear(256, 1)), each with its own recorder in the parameter
mode, statistics and task balance at every step, unbuffered (one write per step: the most a
reader can meet), interleaved step by step. Each block writes two fresh logs, A and B; every
other block a watcher (``gradlog watch B --interval 0.1``, plain lines, a subprocess) follows B,
started before the block and waited for (its first line), stopped with Ctrl-C after it. Two
ratios, medians over the blocks (the first pair is a warm-up and dropped):

* **through the file**: in a watched block, B's steps over A's, against the same ratio in an
  unwatched block. A and B share the process and the CPU, so the watcher's CPU use falls on both
  alike; what remains is anything the watcher does to the log B's writer writes (locks, I/O).
  Target: none measurable (within the noise of the unwatched blocks).
* **whole training**: all steps of a watched block over an unwatched one: the CPU the watcher
  takes on this machine too (it re-reads and re-judges the log at each refresh), shown beside
  the watcher's own CPU time per second of training.

    python benchmarks/watch_overhead.py [--blocks 10] [--steps 150] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradlog import GradientRecorder  # noqa: E402


class Trainer:
    def __init__(self, seed: int, path: Path) -> None:
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.cls, self.reg = nn.Linear(256, 10), nn.Linear(256, 1)
        model = nn.ModuleList([self.trunk, self.cls, self.reg])
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.rec = GradientRecorder(
            model,
            ["cls", "reg"],
            path,
            log_every=None,
            balance_every=None,
            log_every_steps=1,
            balance_every_steps=1,
            buffer=0,
        )
        self.seconds = 0.0

    def step(self, n: int, x, y_cls, y_reg) -> None:
        started = time.perf_counter()
        self.opt.zero_grad()
        h = self.trunk(x)
        losses = {"cls": F.cross_entropy(self.cls(h), y_cls), "reg": F.mse_loss(self.reg(h), y_reg)}
        self.rec.backward(losses, step=n)
        self.opt.step()
        self.seconds += time.perf_counter() - started


def start_watcher(log: Path, interval: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradlog",
            "watch",
            str(log),
            "--interval",
            str(interval),
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    first = proc.stdout.readline()  # it is running and looking: "waiting for the log..."
    assert b"waiting" in first, first
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc


def stop_watcher(proc: subprocess.Popen) -> float:
    """Ctrl-C; the watcher's CPU seconds (user + system)."""
    proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 130, proc.returncode
    return usage.ru_utime + usage.ru_stime


def block(folder: Path, index: int, steps: int, watched: bool, interval: float) -> dict:
    a, b = folder / f"a{index}.jsonl", folder / f"b{index}.jsonl"
    watcher = start_watcher(b, interval) if watched else None
    trainers = [Trainer(0, a), Trainer(0, b)]
    gen = torch.Generator().manual_seed(index)
    wall = time.perf_counter()
    for n in range(1, steps + 1):
        x = torch.randn(64, 64, generator=gen)
        y_cls, y_reg = torch.randint(0, 10, (64,), generator=gen), torch.randn(64, 1, generator=gen)
        for t in trainers if n % 2 else trainers[::-1]:  # neither always goes first
            t.step(n, x, y_cls, y_reg)
    wall = time.perf_counter() - wall
    for t in trainers:
        t.rec.close()
    cpu = stop_watcher(watcher) if watcher else 0.0
    return {"a": trainers[0].seconds, "b": trainers[1].seconds, "wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10, help="pairs of blocks (one watched)")
    parser.add_argument("--steps", type=int, default=150, help="steps of each trainer per block")
    parser.add_argument("--interval", type=float, default=0.1, help="the watcher's --interval")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    watched, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.blocks):
            order = (True, False) if i % 2 else (False, True)
            for on in order:
                result = block(Path(tmp), 2 * i + on, args.steps, on, args.interval)
                (watched if on else bare).append(result)
    watched, bare = watched[1:], bare[1:]  # warm-up
    through_on = statistics.median(r["b"] / r["a"] for r in watched)
    through_off = statistics.median(r["b"] / r["a"] for r in bare)
    whole = statistics.median(w["a"] + w["b"] for w in watched) / statistics.median(
        r["a"] + r["b"] for r in bare
    )
    step_ms = 1000 * statistics.median((r["a"] + r["b"]) / (2 * args.steps) for r in bare)
    cpu = statistics.median(w["cpu"] / w["wall"] for w in watched)
    load = os.getloadavg()
    print(f"step (one trainer, unwatched): {step_ms:.2f} ms; {args.steps} steps x 2 per block")
    print(f"through the file: watched B/A {through_on:.4f}, unwatched B/A {through_off:.4f}")
    print(f"  -> {through_on / through_off:.4f}x (1.0: no effect)")
    print(f"whole training, watched over unwatched blocks: {whole:.4f}x")
    print(f"the watcher's CPU: {cpu:.2f} s per second of training (interval {args.interval} s)")
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
