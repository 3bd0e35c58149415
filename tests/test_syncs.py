"""No host-device synchronisation per logged step: the recorder's values wait on the device.

On a GPU every ``.item()``, ``.tolist()``, ``.cpu()`` or ``float(tensor)`` makes the host wait
for the device to finish all the work queued so far. The recorder keeps what it measures as
tensors until its writer flushes (docs/recorder.md, "What is transferred when"), so a logged
step queues its work and returns. On the CPU the same calls are counted here: every
synchronising method of ``torch.Tensor`` is patched to count the calls made from gradlog's
recorder code (the nearest caller outside torch's own Python files is in
``gradlog/recorder``), separately inside a writer's flush (allowed: that is where the values
are fetched, once for all the records of the flush) and everywhere else (must be none). The
training loop's own ``.item()`` is counted apart, so that the test shows its patches see calls.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402

import gradlog.recorder  # noqa: E402
from gradlog import GradientRecorder  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.recorder import writers  # noqa: E402

STEPS = 100
# Each of these makes the host wait for the device (bool/int/index: a tensor in a condition or
# as a Python number).
SYNCING = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
RECORDER = Path(gradlog.recorder.__file__).resolve().parent
TORCH = Path(torch.__file__).resolve().parent
WRITERS = Path(writers.__file__).resolve()
# A writer's flush: where the pending records' values are fetched.
FLUSHES = {"_drain", "snapshot"}


class Syncs:
    """The synchronising calls seen, by where they came from."""

    def __init__(self) -> None:
        self.outside: Counter[str] = Counter()  # recorder code, not in a flush: must stay empty
        self.in_flush: Counter[str] = Counter()
        self.elsewhere: Counter[str] = Counter()  # the training loop's own
        self.where: list[str] = []

    def see(self, name: str, frame) -> None:
        while frame is not None and Path(frame.f_code.co_filename).is_relative_to(TORCH):
            frame = frame.f_back  # torch's own Python helpers count for their caller
        if frame is None or not Path(frame.f_code.co_filename).is_relative_to(RECORDER):
            self.elsewhere[name] += 1
            return
        caller = frame
        while frame is not None:
            code = frame.f_code
            if code.co_name in FLUSHES and Path(code.co_filename) == WRITERS:
                self.in_flush[name] += 1
                return
            frame = frame.f_back
        self.outside[name] += 1
        self.where.append(f"{name} at {caller.f_code.co_filename}:{caller.f_lineno}")


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    return count_syncs(monkeypatch)


def count_syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    """Patch every synchronising method to count its calls (other tests use it too)."""
    seen = Syncs()
    for name in SYNCING:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _real=real, **kwargs):
            seen.see(_name, sys._getframe(1))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return seen


class TwoTask(nn.Module):
    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(16, 2) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(x)
        return [head(h) for head in self.heads]


def train(
    path: Path,
    mode: str,
    n_tasks: int,
    *,
    own_backward: bool = False,
    echo: io.StringIO | None = None,
    clip: float | None = None,
    mirror=None,
) -> None:
    """100 logged steps, statistics and task balance at every one."""
    torch.manual_seed(0)
    model = TwoTask(n_tasks)
    tasks = [f"task{i}" for i in range(n_tasks)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    extra = {"shared": model.trunk} if mode == "representation" else {}
    rec = GradientRecorder(
        model,
        tasks,
        path,
        mode=mode,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        layers=True,
        buffer=16,  # several flushes during the run, each counted as one
        echo=echo or False,
        clip=clip,
        mirror=mirror,
        **extra,
    )
    generator = torch.Generator().manual_seed(1)
    for step in range(1, STEPS + 1):
        x = torch.randn(32, 8, generator=generator)
        optimizer.zero_grad()
        losses = {t: out.pow(2).mean() for t, out in zip(tasks, model(x))}
        if own_backward:
            total = sum(losses.values())
            rec.before_backward(losses, total=total)
            (total * 4.0).backward(retain_graph=rec.needs_graph())  # a loss scaler's multiple
            rec.record(losses)
        else:
            total = rec.backward(losses)
        optimizer.step()
        total.item()  # the training loop's own transfer, as most loops print their loss
        if step == 50:
            rec.flush()
    rec.close()


CASES = [
    ("parameters", 2, False),
    ("representation", 2, False),  # the read-only pair path
    ("representation", 3, True),  # dot products in the hooks, a scale divided out
    ("representation", 5, False),  # one matrix product
    ("parameters", 3, True),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize(("mode", "n_tasks", "own_backward"), CASES)
def test_no_transfer_outside_flushes(
    tmp_path: Path, syncs: Syncs, suffix: str, mode: str, n_tasks: int, own_backward: bool
) -> None:
    path = tmp_path / f"run{suffix}"
    train(path, mode, n_tasks, own_backward=own_backward)
    assert syncs.outside == Counter(), syncs.where[:10]
    # The values did come back, in a handful of transfers: one per flush (a flush every 16
    # records, the one asked for at step 50, the close), not one per record.
    assert 0 < sum(syncs.in_flush.values()) <= STEPS // 16 + 4
    assert syncs.elsewhere["item"] >= STEPS  # the loop's own calls: the patches see calls
    events = read_log(path).frame.filter(kind="event")
    assert events.height == STEPS
    assert events["tasks"].list.len().to_list() == [n_tasks] * STEPS


def test_echo_transfers_only_where_it_prints(tmp_path: Path, syncs: Syncs) -> None:
    """The echo needs the values on the host: one transfer per step it prints, and no more."""
    stream = io.StringIO()
    train(tmp_path / "run.jsonl", "representation", 2, echo=stream)
    printed = stream.getvalue().count("Step ")
    assert printed >= STEPS
    assert 0 < sum(syncs.outside.values()) <= STEPS  # one fetch per printed step at most


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_the_originals_moments_transfer_nothing_outside_flushes(
    tmp_path: Path, syncs: Syncs, mode: str
) -> None:
    """Statistics on every batch, a sample of a held batch in eval mode each epoch, and (in
    representation mode) a second view that makes every other step's sample a skipped one."""
    torch.manual_seed(0)
    model = TwoTask(2)
    tasks = ["task0", "task1"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    extra = {"shared": model.trunk, "balance_every_steps": 1} if mode == "representation" else {}
    path = tmp_path / "run.jsonl"
    rec = GradientRecorder(
        model,
        tasks,
        path,
        mode=mode,
        log_every=1,
        stats_every_batch=True,
        balance_every=None,
        buffer=16,
        **extra,
    )
    generator = torch.Generator().manual_seed(1)
    held = torch.randn(32, 8, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped samples' one warning
        for epoch in range(1, 6):
            for step in range(4):
                x = torch.randn(32, 8, generator=generator)
                optimizer.zero_grad()
                losses = {t: out.pow(2).mean() for t, out in zip(tasks, model(x))}
                if step % 2:
                    losses["task1"] = losses["task1"] + model.trunk(x).mean()
                rec.backward(losses, epoch=epoch)
                optimizer.step()
            model.eval()
            rec.sample_balance(
                {t: out.pow(2).mean() for t, out in zip(tasks, model(held))}, epoch=epoch
            )
            model.train()
    rec.close()
    assert syncs.outside == Counter(), syncs.where[:10]
    assert 0 < sum(syncs.in_flush.values()) <= 25 // 16 + 2
    events = read_log(path).frame.filter(kind="event")
    assert events.height == 25  # a step's statistics and sample share its event
    if mode == "representation":
        assert events["skipped"].drop_nulls().len() == 10


@pytest.mark.parametrize("mode", ["parameters", "representation"])
@pytest.mark.parametrize("own_backward", [False, True])
def test_clipping_adds_no_transfer(
    tmp_path: Path, syncs: Syncs, mode: str, own_backward: bool
) -> None:
    """clip=: clip_grad_norm_ at every step, its norm and factor logged, none of them fetched
    before the flush (clip_grad_norm_ itself never reads the norm on the host)."""
    path = tmp_path / "run.jsonl"
    train(path, mode, 2, own_backward=own_backward, clip=0.01)
    assert syncs.outside == Counter(), syncs.where[:10]
    assert 0 < sum(syncs.in_flush.values()) <= STEPS // 16 + 4
    events = read_log(path).frame.filter(kind="event")
    assert events.height == STEPS
    assert events["clip_coef"].max() < 1  # clipping did clip
    assert (events["total_norm"] < 0.0101).all()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_a_mirror_adds_no_transfer(tmp_path: Path, syncs: Syncs, suffix: str, mode: str) -> None:
    """mirror=: each event's scalars are handed over when the writer fetches its values, so the
    steps transfer nothing more, and the flushes no more than without a mirror."""
    got: list[int] = []
    path = tmp_path / f"run{suffix}"
    train(path, mode, 2, mirror=lambda values, step: got.append(step))
    assert syncs.outside == Counter(), syncs.where[:10]
    assert 0 < sum(syncs.in_flush.values()) <= STEPS // 16 + 4
    assert got == list(range(1, STEPS + 1))
