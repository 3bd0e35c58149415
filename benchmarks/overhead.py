"""What the recorder costs a training loop, as a ratio to the same loop without it.

Two models (``--model``, default both, one after the other):

* ``mlp``, the benchmark of issue 14: two tasks on a shared trunk of 4 x Linear(512, 512) with
  ReLU, heads Linear(512, 10) (cross-entropy) and Linear(512, 1) (MSE), batch 64, Adam. Beside
  gradlog it trains the reference rows, what logging a gradient norm costs without gradlog, at
  every step: ``clip_grad_norm_(...).item()`` (with a bound no gradient reaches, so training is
  unchanged), Lightning's ``grad_norm(model, 2)`` (where ``lightning`` imports), and
  ``torch._foreach_norm`` + ``.tolist()``; and the extra backward passes of the parameter mode
  without gradlog (``autograd.grad`` of each task's loss every 10 steps), the floor of that
  mode. The loop reads nothing back from the device (no ``loss.item()``), as a GPU loop
  should not. Blocks of 20 steps.
* ``example``: ``examples/train_multitask.py`` (a bidirectional LSTM encoder, a pointer and a
  type head, batch 256, two steps per epoch), each mode at three cadences: every step, every
  10 steps, every 10 epochs. Blocks of 10 epochs (20 steps).

gradlog's rows log statistics and task balance together at their cadence, to a JSON Lines log
in a temporary directory with the recorder's default buffering. Every configuration of a model
trains side by side, from the same seed on the same batches (the recorder never changes
training, so each step does identical work but for what is measured), interleaved **step by
step** in a rotating order: load from other processes falls on every configuration alike. Time
is summed per block, each block's sum is divided by the bare loop's in the same block, and the
table gives the median of those ratios (the first block is a warm-up and is dropped). A second
bare loop shows the noise floor. Run from the repository root::

    python benchmarks/overhead.py [--model mlp|example|both] [--blocks 30] [--threads 1]

Targets (issue 14, on the MLP): the representation mode every step within 3% of the bare loop;
the parameter mode every 10 steps within its extra backward passes plus 2%. Issue 4, on the
example: every-10-epochs logging in any mode within 1%.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from train_multitask import MultiTaskLSTM, make_data, task_losses  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402

BLOCK_STEPS = 20
EVERY = {
    "every step": {"log_every_steps": 1, "balance_every_steps": 1},
    "every step, statistics only": {"log_every_steps": 1},
    "every step, task balance only": {"balance_every_steps": 1},
    "every 10 steps": {"log_every_steps": 10, "balance_every_steps": 10},
    "every 10 epochs": {"log_every": 10, "balance_every": 10},
}


@dataclass
class Trainer:
    """One configuration: a step function over (epoch, step, batch) and its closing."""

    name: str
    step: Callable[[int, int, tuple], None]
    recorder: GradientRecorder | None = None
    wall: list[float] = field(default_factory=list)  # seconds per block
    cpu: list[float] = field(default_factory=list)


def recorder(model, tasks, weights, mode, cadence, shared, path) -> GradientRecorder:
    cadences = {"log_every": None, "balance_every": None, **EVERY[cadence]}
    extra = {"shared": shared} if mode == "representation" else {}
    return GradientRecorder(model, tasks, path, weights=weights, mode=mode, **cadences, **extra)


# -- the MLP of issue 14 ----------------------------------------------------------------------


class TwoTaskMLP(nn.Module):
    def __init__(self, width: int = 512, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.classes = nn.Linear(width, 10)
        self.value = nn.Linear(width, 1)

    def losses(self, batch: tuple) -> dict[str, torch.Tensor]:
        x, label, target = batch
        h = self.trunk(x)
        return {
            "classes": F.cross_entropy(self.classes(h), label),
            "value": F.mse_loss(self.value(h).squeeze(-1), target),
        }


def lightning_norm() -> Callable[[nn.Module], object] | None:
    try:
        from lightning.pytorch.utilities import grad_norm
    except ImportError:  # the foreach row below does the same work by hand
        return None
    return lambda model: grad_norm(model, 2)


def _foreach_tolist(model: nn.Module) -> list[float]:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.stack(torch._foreach_norm(grads)).tolist()


def mlp_trainers(log_dir: Path) -> list[Trainer]:
    after_backward = {  # what each reference row does between backward and optimizer step
        "bare": None,
        "bare again (noise floor)": None,
        "clip_grad_norm_(...).item() every step": lambda m: nn.utils.clip_grad_norm_(
            m.parameters(), 1e30
        ).item(),
        "Lightning grad_norm(model, 2) every step": lightning_norm(),
        "torch._foreach_norm + .tolist() every step": _foreach_tolist,
    }
    trainers = [
        _mlp_trainer(name, extra=extra)
        for name, extra in after_backward.items()
        if extra is not None or name.startswith("bare")
    ]
    trainers.append(_mlp_trainer("extra backward every 10 steps (no gradlog)", extra_backward=10))
    trainers.append(  # the parameter mode's own arithmetic, done by hand: its floor
        _mlp_trainer(
            "extra backward + float64 Gram every 10 steps (no gradlog)",
            extra_backward=10,
            gram=True,
        )
    )
    rows = [
        ("representation", "every step"),
        ("representation", "every step, statistics only"),  # the gradients' norms: a floor
        ("representation", "every step, task balance only"),
        ("parameters", "every 10 steps"),
    ]
    for mode, cadence in rows:
        name = f"gradlog {mode} {cadence}"
        trainers.append(
            _mlp_trainer(name, mode=mode, cadence=cadence, log=log_dir / f"{len(trainers)}.jsonl")
        )
    return trainers


def _mlp_trainer(
    name: str, *, extra=None, extra_backward: int = 0, gram=False, mode=None, cadence=None, log=None
) -> Trainer:
    torch.manual_seed(0)
    model = TwoTaskMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    params = [p for p in model.parameters() if p.requires_grad]
    rec = None
    if mode is not None:
        rec = recorder(model, ["classes", "value"], None, mode, cadence, model.trunk, log)
    scratch = torch.empty(2 * max(p.numel() for p in params), dtype=torch.float64)

    def step(epoch: int, number: int, batch: tuple) -> None:
        optimizer.zero_grad()
        losses = model.losses(batch)
        if rec is not None:
            rec.backward(losses)
        else:
            total = losses["classes"] + losses["value"]
            if extra_backward and number % extra_backward == 0:
                grads = [  # as the parameter mode measures, before the backward
                    torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                    for loss in losses.values()
                ]
                if gram:
                    float64_gram(grads, scratch)
            total.backward()
            if extra is not None:
                extra(model)
        optimizer.step()

    return Trainer(name, step, rec)


def float64_gram(grads: list[tuple], scratch: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of the tasks' parameter gradients in float64, as the parameter mode
    takes it (norms exact to float64 rounding): one parameter at a time, each task's gradient
    copied to float64 and multiplied a cache-sized piece (32k values) at a time."""
    n = len(grads)
    gram = torch.zeros((n, n), dtype=torch.float64)
    for pair in zip(*grads):
        present = [i for i, g in enumerate(pair) if g is not None]  # a head: one task
        flat = [pair[i].reshape(-1) for i in present]
        numel, piece = flat[0].numel(), min(flat[0].numel(), 1 << 15)
        sub = None
        for start in range(0, numel, piece):
            width = min(piece, numel - start)
            rows = scratch[: len(present) * width].view(len(present), width)
            for row, g in zip(rows, flat):
                row.copy_(g[start : start + width])
            sub = rows @ rows.t() if sub is None else sub.addmm_(rows, rows.t())
        index = torch.tensor(present)
        gram[index[:, None], index[None, :]] += sub
    return gram


def mlp_batches(blocks: int, batch_size: int = 64, width: int = 512):
    """(block, epoch, step, batch) for every step: 8 fixed batches in turn."""
    g = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(batch_size, width, generator=g),
            torch.randint(0, 10, (batch_size,), generator=g),
            torch.randn(batch_size, generator=g),
        )
        for _ in range(8)
    ]
    for number in range(1, (blocks + 1) * BLOCK_STEPS + 1):
        yield (number - 1) // BLOCK_STEPS, 1, number, data[number % len(data)]


# -- the example model ------------------------------------------------------------------------


def example_trainers(log_dir: Path, hidden: int, only: list[str]) -> list[Trainer]:
    tasks, weights = ["pointer", "type"], {"pointer": 1.0, "type": 1.0}
    configs = [("bare", None, None), ("bare again (noise floor)", None, None)] + [
        (f"gradlog {mode} {cadence}", mode, cadence)
        for mode in ("representation", "parameters")
        for cadence in ("every step", "every 10 steps", "every 10 epochs")
    ]
    trainers = []
    for name, mode, cadence in configs:
        if mode is not None and only and not any(o in name for o in only):
            continue
        torch.manual_seed(0)
        model = MultiTaskLSTM(hidden=hidden)
        optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
        path = log_dir / (name.replace(" ", "_") + ".jsonl")
        rec = recorder(model, tasks, weights, mode, cadence, model.encoder, path) if mode else None
        trainers.append(Trainer(name, _example_step(model, optimizer, rec, weights), rec))
    return trainers


def _example_step(model, optimizer, rec, weights):
    def step(epoch: int, number: int, batch: tuple) -> None:
        optimizer.zero_grad()
        losses = task_losses(model, *batch)
        if rec is None:
            total = sum(weights[name] * loss for name, loss in losses.items())
            total.backward()
        else:
            total = rec.backward(losses, epoch=epoch)
        optimizer.step()
        total.item()  # as the example does, for its epoch means

    return step


def example_batches(blocks: int, samples: int, batch_size: int):
    data = make_data(samples, 32, seed=0)
    shuffle = torch.Generator().manual_seed(1)
    per_block_epochs = BLOCK_STEPS // -(-samples // batch_size) or 1
    number = 0
    for epoch in range(1, (blocks + 1) * per_block_epochs + 1):
        for index in torch.randperm(len(data), generator=shuffle).split(batch_size):
            number += 1
            batch = (data.x[index], data.pointers[index], data.types[index])
            yield (epoch - 1) // per_block_epochs, epoch, number, batch


# -- running and reporting --------------------------------------------------------------------


def interleave(trainers: list[Trainer], steps) -> int:
    """Every configuration on every step, in a rotating order; returns the steps run."""
    clock, cpu_clock = time.perf_counter, time.process_time
    count = 0
    for block, epoch, number, batch in steps:
        while len(trainers[0].wall) <= block:
            for trainer in trainers:
                trainer.wall.append(0.0)
                trainer.cpu.append(0.0)
        count += 1
        shift = count % len(trainers)
        for trainer in trainers[shift:] + trainers[:shift]:
            start, start_cpu = clock(), cpu_clock()
            trainer.step(epoch, number, batch)
            trainer.wall[-1] += clock() - start
            trainer.cpu[-1] += cpu_clock() - start_cpu
    return count


def report(title: str, trainers: list[Trainer], steps_per_block: int) -> None:
    for trainer in trainers:
        if trainer.recorder is not None:
            trainer.recorder.close()
    bare = trainers[0]
    print(f"### {title}")
    print()
    print("| configuration | ms per step | ratio to bare | overhead | overhead, CPU time |")
    print("|---|---:|---:|---:|---:|")
    for trainer in trainers:
        ratio = statistics.median(t / b for t, b in zip(trainer.wall[1:], bare.wall[1:]))
        cpu_ratio = statistics.median(t / b for t, b in zip(trainer.cpu[1:], bare.cpu[1:]))
        ms = 1000 * statistics.median(trainer.wall[1:]) / steps_per_block
        print(
            f"| {trainer.name} | {ms:.2f} | {ratio:.4f} | {100 * (ratio - 1):+.1f}% "
            f"| {100 * (cpu_ratio - 1):+.1f}% |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "example", "both"], default="both")
    parser.add_argument("--blocks", type=int, default=30, help="blocks of 20 steps, plus one")
    parser.add_argument("--samples", type=int, default=512, help="example: samples per epoch")
    parser.add_argument("--batch-size", type=int, default=256, help="example: batch size")
    parser.add_argument("--hidden", type=int, default=24, help="example: LSTM hidden size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--only", action="append", default=[], help="example: only gradlog rows containing this"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"gradlog recorder overhead, {args.blocks} blocks after one warm-up block, "
        f"configurations interleaved step by step; {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s); load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model in ("mlp", "both"):
            trainers = mlp_trainers(Path(tmp) / "mlp")
            interleave(trainers, mlp_batches(args.blocks))
            report("Two-task MLP (4 x Linear(512, 512), batch 64)", trainers, BLOCK_STEPS)
        if args.model in ("example", "both"):
            trainers = example_trainers(Path(tmp) / "example", args.hidden, args.only)
            steps = interleave(
                trainers, example_batches(args.blocks, args.samples, args.batch_size)
            )
            title = f"examples/train_multitask.py (hidden {args.hidden}, batch {args.batch_size})"
            report(title, trainers, steps // len(trainers[0].wall))
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        "Ratios are medians over blocks of (configuration time / bare time) in the same "
        "block, wall clock (perf_counter) and process CPU time (process_time); close() (the "
        "last buffered write) is outside the blocks."
    )


if __name__ == "__main__":
    main()
