"""What the recorder costs a training loop, as a ratio to the same loop without it.

Trains the example model (``examples/train_multitask.py``: a bidirectional LSTM encoder with a
pointer head and a type head, on CPU, batch 256, two steps per epoch) in these configurations:

* ``bare``: ``sum(w * loss).backward()``, no gradlog at all (the example's unmonitored path),
  twice: the second copy measures the noise floor;
* ``representation`` (the cheap mode, ``shared=model.encoder``) and ``parameters``, each at
  three cadences, statistics and task balance together: every step, every 10 steps, every 10
  epochs (JSON Lines log in a temporary directory, the recorder's default buffering).

All configurations train side by side, from the same seed on the same batches (the recorder
never changes training, so each step does identical work but for the recorder), interleaved
**step by step** in a rotating order: load from other processes on the machine falls on every
configuration alike. Time is summed per block of 10 epochs (each block holds exactly one
every-10-epochs measurement), each block's sum is divided by the bare loop's sum for the same
block, and the table gives the median of those ratios over the blocks (the first block is a
warm-up and is dropped). Run from the repository root::

    python benchmarks/overhead.py [--blocks 30] [--threads 1]

Targets (issue 4): the representation mode at every step within 3% of the bare loop, and
every-10-epochs logging in any mode within 1%.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
from train_multitask import MultiTaskLSTM, make_data, task_losses  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402

TASKS = ["pointer", "type"]
WEIGHTS = {"pointer": 1.0, "type": 1.0}
BLOCK_EPOCHS = 10
CADENCES = {
    "every step": {
        "log_every": None,
        "balance_every": None,
        "log_every_steps": 1,
        "balance_every_steps": 1,
    },
    "every 10 steps": {
        "log_every": None,
        "balance_every": None,
        "log_every_steps": 10,
        "balance_every_steps": 10,
    },
    "every 10 epochs": {"log_every": 10, "balance_every": 10},
}
# A second bare loop shows how far two identical configurations drift apart on this machine.
CONFIGS = [("bare", None, None), ("bare again (noise floor)", None, None)] + [
    (f"{mode} {cadence}", mode, cadence)
    for mode in ("representation", "parameters")
    for cadence in CADENCES
]


@dataclass
class Trainer:
    """One configuration's model, optimizer and recorder, advanced one step at a time."""

    name: str
    model: MultiTaskLSTM
    optimizer: torch.optim.Optimizer
    recorder: GradientRecorder | None
    wall: list[float] = field(default_factory=list)  # seconds per block
    cpu: list[float] = field(default_factory=list)

    def step(self, epoch: int, x, pointers, types) -> None:
        self.optimizer.zero_grad()
        losses = task_losses(self.model, x, pointers, types)
        if self.recorder is None:
            total = sum(WEIGHTS[name] * loss for name, loss in losses.items())
            total.backward()
        else:
            total = self.recorder.backward(losses, epoch=epoch)
        self.optimizer.step()
        total.item()  # as the example does, for its epoch means


def make_trainer(name: str, mode: str | None, cadence: str | None, hidden: int, log_dir: Path):
    torch.manual_seed(0)
    model = MultiTaskLSTM(hidden=hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    recorder = None
    if mode is not None:
        extra = {"shared": model.encoder} if mode == "representation" else {}
        path = log_dir / (name.replace(" ", "_") + ".jsonl")
        recorder = GradientRecorder(
            model, TASKS, path, weights=WEIGHTS, mode=mode, **CADENCES[cadence], **extra
        )
    return Trainer(name, model, optimizer, recorder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="blocks of 10 epochs, plus one")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--only", action="append", default=[], help="run only configurations containing this"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = make_data(args.samples, 32, seed=0)
    shuffle = torch.Generator().manual_seed(1)
    load_before = os.getloadavg()
    clock = time.perf_counter
    cpu_clock = time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        configs = [
            c for c in CONFIGS if c[1] is None or not args.only or any(o in c[0] for o in args.only)
        ]
        trainers = [make_trainer(*config, args.hidden, Path(tmp)) for config in configs]
        turn = 0
        for block in range(args.blocks + 1):
            for trainer in trainers:
                trainer.wall.append(0.0)
                trainer.cpu.append(0.0)
            for epoch in range(block * BLOCK_EPOCHS + 1, (block + 1) * BLOCK_EPOCHS + 1):
                order = torch.randperm(len(data), generator=shuffle)
                for batch in order.split(args.batch_size):
                    x, pointers, types = data.x[batch], data.pointers[batch], data.types[batch]
                    turn += 1
                    shift = turn % len(trainers)
                    for trainer in trainers[shift:] + trainers[:shift]:
                        start, start_cpu = clock(), cpu_clock()
                        trainer.step(epoch, x, pointers, types)
                        trainer.wall[-1] += clock() - start
                        trainer.cpu[-1] += cpu_clock() - start_cpu
        closing = {}
        for trainer in trainers:
            start = clock()
            if trainer.recorder is not None:
                trainer.recorder.close()
            closing[trainer.name] = clock() - start
    load_after = os.getloadavg()

    steps_per_block = BLOCK_EPOCHS * -(-args.samples // args.batch_size)
    bare = trainers[0]
    print(
        f"gradlog recorder overhead on the examples/train_multitask.py model (hidden "
        f"{args.hidden}, batch {args.batch_size}, {args.samples} samples: "
        f"{steps_per_block} steps per block of {BLOCK_EPOCHS} epochs), {args.blocks} blocks "
        f"after one warm-up block, configurations interleaved step by step"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s); load average before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print()
    print(
        "| configuration | ms per step | ratio to bare (median over blocks) | overhead "
        "| overhead, CPU time | close() ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for trainer in trainers:
        wall = trainer.wall[1:]
        ratio = statistics.median(t / b for t, b in zip(wall, bare.wall[1:]))
        cpu_ratio = statistics.median(t / b for t, b in zip(trainer.cpu[1:], bare.cpu[1:]))
        ms = 1000 * statistics.median(wall) / steps_per_block
        print(
            f"| {trainer.name} | {ms:.2f} | {ratio:.4f} | {100 * (ratio - 1):+.1f}% "
            f"| {100 * (cpu_ratio - 1):+.1f}% | {1000 * closing[trainer.name]:.1f} |"
        )
    print()
    print(
        "Overheads are medians over blocks of (configuration time / bare time) in the same "
        "block, wall clock (perf_counter) and process CPU time (process_time). close() (the "
        "last buffered write) is outside the blocks."
    )


if __name__ == "__main__":
    main()
