"""Clip-aware recording: a tiny model trained with clipping, next to an unrecorded twin.

The twin is the same model, data and optimizer, clipped with ``torch.nn.utils.clip_grad_norm_``
at the same moment; its return values are the pre-clip norms the log must hold, its clipped
gradients the statistics, and its parameters what the recorded training must end with, bit for
bit. The loss is scaled up so that clipping bites (and a layer explodes before clipping).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.errors import RecorderConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["pointer", "type"]
MAX_NORM = 1.5
STEPS = 6
SCALE = 400.0  # large losses: pre-clip norms of tens, a layer above 10 (exploding)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
        self.pointer_head = nn.Linear(16, 2)
        self.type_head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.encoder(x)
        return self.pointer_head(h), self.type_head(h)


def batches(n: int):
    g = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(16, 6, generator=g),
            torch.rand(16, 2, generator=g),
            torch.randint(0, 3, (16,), generator=g),
        )
        for _ in range(n)
    ]


def task_losses(model: Net, batch) -> dict[str, torch.Tensor]:
    x, pointers, types = batch
    p, t = model(x)
    return {
        "pointer": SCALE * nn.functional.mse_loss(p.float(), pointers),
        "type": nn.functional.cross_entropy(t.float(), types),
    }


def fresh() -> tuple[Net, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=1e-3)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recorder(model: Net, path: Path, mode: str, **kwargs) -> GradientRecorder:
    extra = {"shared": model.encoder} if mode == "representation" else {}
    return GradientRecorder(
        model,
        TASKS,
        path,
        mode=mode,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        layers=True,
        **extra,
        **kwargs,
    )


def clipped_grad_norms(model: Net) -> list[float]:
    """The twin's per-parameter gradient norms, computed independently of gradlog (float64)."""
    return [torch.linalg.vector_norm(p.grad.double()).item() for p in model.parameters()]


def twin_run(how: str, amp: bool = False, accumulate: int = 1):
    """The unrecorded loop: per optimizer step, clip_grad_norm_'s return and the clipped norms."""
    model, optimizer = fresh()
    scaler = torch.amp.GradScaler("cpu") if amp else None
    norms, stats = [], []
    data = batches(STEPS * accumulate)
    for step in range(STEPS):
        optimizer.zero_grad()
        for micro in range(accumulate):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                losses = task_losses(model, data[step * accumulate + micro])
            total = sum(losses.values()) / accumulate if accumulate > 1 else sum(losses.values())
            (scaler.scale(total) if amp else total).backward()
        if amp:
            scaler.unscale_(optimizer)
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM))
        stats.append(clipped_grad_norms(model))
        if amp:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    return model, norms, stats


def check_clipped_log(path: Path, twin_norms, twin_stats) -> list[dict]:
    """The log holds clip_grad_norm_'s own numbers and the statistics of the clipped gradients."""
    log = records(path)
    assert log[0]["meta"]["stats_at"] == "after_clipping"
    events = log[1:]
    assert len(events) == STEPS
    for event, norm, layer_norms in zip(events, twin_norms, twin_stats):
        assert event["pre_clip_norm"] == norm.item()  # bit for bit: the float32 value itself
        coef = torch.clamp(MAX_NORM / (norm + 1e-6), max=1.0).item()
        assert event["clip_coef"] == coef
        assert event["clip_coef"] == pytest.approx(min(1.0, MAX_NORM / (norm.item() + 1e-6)))
        logged = [layer["norm"] for layer in event["layers"]]
        assert logged == pytest.approx(layer_norms, rel=1e-5)
        assert event["max_norm"] == pytest.approx(max(layer_norms), rel=1e-5)
        assert event["total_norm"] == pytest.approx(min(norm.item(), MAX_NORM), rel=1e-5)
    assert read_log(path).frame.height == STEPS + 1
    return events


def assert_same_training(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("mode", ["parameters", "representation"])
@pytest.mark.parametrize("how", ["backward", "record", "clip_grad_norm_", "clipped"])
def test_clipping_logs_the_norm_before_and_the_statistics_after(
    tmp_path: Path, mode: str, how: str
) -> None:
    """Four ways to clip with the recorder, each the twin's training and clip_grad_norm_'s norm."""
    twin, twin_norms, twin_stats = twin_run(how)
    model, optimizer = fresh()
    path = tmp_path / "run.jsonl"
    returned = []
    with recorder(model, path, mode, clip=MAX_NORM) as rec:
        for batch in batches(STEPS):
            optimizer.zero_grad()
            losses = task_losses(model, batch)
            if how == "backward":
                rec.backward(losses)  # the backward, clipping, then the statistics
            else:
                total = sum(losses.values())
                rec.before_backward(losses, total=total)
                total.backward(retain_graph=rec.needs_graph())
                if how == "clip_grad_norm_":
                    returned.append(rec.clip_grad_norm_())
                elif how == "clipped":  # the user's own clipping call, wrapped
                    rec.clipped(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM))
                rec.record(losses)  # how == "record": clips here, before the statistics
            optimizer.step()
    events = check_clipped_log(path, twin_norms, twin_stats)
    assert_same_training(twin, model)
    if returned:
        assert [n.item() for n in returned] == [n.item() for n in twin_norms]
    # the explosion clipping hid: above the explosion threshold before, nothing exploding after
    assert all(e["pre_clip_norm"] > 10 and e["clip_coef"] < 0.2 for e in events)
    assert all(e["n_exploding"] == 0 for e in events)
    assert all(len(e["tasks"]) == 2 for e in events)  # task balance unaffected


def test_amp_bfloat16_autocast_with_a_grad_scaler(tmp_path: Path) -> None:
    """CPU autocast in bfloat16 and a GradScaler: the recorder clips after ``unscale_``."""
    twin, twin_norms, twin_stats = twin_run("record", amp=True)
    model, optimizer = fresh()
    scaler = torch.amp.GradScaler("cpu")
    path = tmp_path / "run.jsonl"
    with recorder(model, path, "representation", clip=MAX_NORM) as rec:
        for batch in batches(STEPS):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses = task_losses(model, batch)
            total = sum(losses.values())
            rec.before_backward(losses, total=total)  # the scale is divided out of the tasks'
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            rec.record(losses)  # clips the unscaled gradients, as the twin does
            scaler.step(optimizer)
            scaler.update()
    check_clipped_log(path, twin_norms, twin_stats)
    assert_same_training(twin, model)
    assert scaler.get_scale() > 1  # the scaler was in use (not disabled on this machine)


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_gradient_accumulation_clips_and_records_the_accumulated_step(
    tmp_path: Path, mode: str
) -> None:
    accumulate = 3
    twin, twin_norms, twin_stats = twin_run("record", accumulate=accumulate)
    model, optimizer = fresh()
    path = tmp_path / "run.jsonl"
    data = batches(STEPS * accumulate)
    with recorder(model, path, mode, clip=MAX_NORM) as rec:
        for step in range(STEPS):
            optimizer.zero_grad()
            for micro in range(accumulate):
                losses = task_losses(model, data[step * accumulate + micro])
                total = sum(losses.values())
                if micro == 0:  # the task gradients of the first micro-batch
                    rec.before_backward(losses, total=total)
                    first = losses
                (total / accumulate).backward(retain_graph=micro == 0 and rec.needs_graph())
            rec.record(first)  # on the optimizer step: clips the accumulated gradient
            optimizer.step()
    check_clipped_log(path, twin_norms, twin_stats)
    assert_same_training(twin, model)


def test_without_clip_the_statistics_are_before_clipping(tmp_path: Path) -> None:
    model, _ = fresh()
    path = tmp_path / "run.jsonl"
    with recorder(model, path, "parameters") as rec:
        rec.backward(task_losses(model, batches(1)[0]))
        with pytest.raises(RecorderConfigError, match="needs clip= at construction"):
            rec.clip_grad_norm_(1.0)
        with pytest.raises(RecorderConfigError, match="needs clip= at construction"):
            rec.clipped(torch.tensor(3.0), 1.0)
    log = records(path)
    assert log[0]["meta"]["stats_at"] == "before_clipping"
    assert "pre_clip_norm" not in log[1] and "clip_coef" not in log[1]
    assert log[1]["n_exploding"] >= 1  # what clipping would have hidden


def test_external_clipping_with_and_without_the_norm(tmp_path: Path) -> None:
    """clip="external": the recorder never clips; the norm, when given, is logged."""
    model, optimizer = fresh()
    path = tmp_path / "run.jsonl"
    with recorder(model, path, "parameters", clip="external") as rec:
        for step, batch in enumerate(batches(2)):
            optimizer.zero_grad()
            losses = task_losses(model, batch)
            sum(losses.values()).backward(retain_graph=True)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            if step == 0:
                with pytest.raises(RecorderConfigError, match="pass max_norm="):
                    rec.clipped(norm)
                rec.clipped(norm.item(), max_norm=2.0)  # a float, as some frameworks return
            rec.record(losses)
            optimizer.step()
    log = records(path)
    assert log[0]["meta"]["stats_at"] == "after_clipping"
    assert log[1]["pre_clip_norm"] > 10
    assert log[1]["clip_coef"] == pytest.approx(2.0 / log[1]["pre_clip_norm"])
    assert log[1]["total_norm"] == pytest.approx(2.0, rel=1e-5)
    assert "pre_clip_norm" not in log[2] and log[2]["total_norm"] == pytest.approx(2.0, rel=1e-5)


def test_unclipped_steps_have_a_factor_of_one(tmp_path: Path) -> None:
    model, _ = fresh()
    path = tmp_path / "run.jsonl"
    with recorder(model, path, "parameters", clip=1e6) as rec:
        rec.backward(task_losses(model, batches(1)[0]))
    event = records(path)[1]
    assert event["clip_coef"] == 1.0
    assert event["total_norm"] == pytest.approx(event["pre_clip_norm"], rel=1e-6)


def test_steps_without_statistics_are_clipped_too(tmp_path: Path) -> None:
    twin, twin_norms, _ = twin_run("backward")
    model, optimizer = fresh()
    path = tmp_path / "run.jsonl"
    rec = GradientRecorder(
        model, TASKS, path, log_every=None, balance_every=None, log_every_steps=3, clip=MAX_NORM
    )
    for batch in batches(STEPS):
        optimizer.zero_grad()
        rec.backward(task_losses(model, batch))
        optimizer.step()
    rec.close()
    assert_same_training(twin, model)
    events = records(path)[1:]
    assert [e["step"] for e in events] == [3, 6]
    assert [e["pre_clip_norm"] for e in events] == [twin_norms[2].item(), twin_norms[5].item()]


@pytest.mark.parametrize("clip", [0, -1.0, True, "yes", math.nan])
def test_bad_clip_is_refused_at_construction(tmp_path: Path, clip) -> None:
    model, _ = fresh()
    with pytest.raises(RecorderConfigError, match="clip must be a positive max norm"):
        GradientRecorder(model, TASKS, tmp_path / "run.jsonl", clip=clip)


def test_report_reads_a_clipped_log(tmp_path: Path) -> None:
    model, optimizer = fresh()
    path = tmp_path / "run.jsonl"
    with recorder(model, path, "parameters", clip=MAX_NORM) as rec:
        for batch in batches(STEPS):
            optimizer.zero_grad()
            rec.backward(task_losses(model, batch))
            optimizer.step()
    result = subprocess.run(
        [sys.executable, "-m", "gradlog", "report", str(path), "--format", "json"],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()
    frame = read_log(path).frame.filter(kind="event")
    assert frame["pre_clip_norm"].min() > 10
    assert frame["clip_coef"].max() < 0.2
