"""The original monitor's measurement moments, and a representation mode that never stops training.

Real models on the CPU: a shared encoder (with batch normalisation, so that eval mode matters)
read by two heads. The references are plain autograd on each task's weighted loss alone, and
every recorded run is compared, gradient for gradient, with the same run unrecorded.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import pytest
from conftest import run_gradlog

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.errors import RecorderConfigError, SkippedSampleWarning  # noqa: E402
from gradlog.recorder.config import RecorderConfig  # noqa: E402

TASKS = ["pointer", "type"]
WEIGHTS = {"pointer": 1.0, "type": 0.3}
EPOCHS = 3
BATCHES = 4
TWO_VIEWS = (
    "the task losses read 2 outputs of the shared module 'encoder' (a second view of the "
    "batch?), so there is no one representation to measure at: pass the tensor the task heads "
    "read as shared=h"
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh())
        self.pointer_head = nn.Linear(16, 1)
        self.type_head = nn.Linear(16, 3)


def make_batch(seed: int, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, generator=g), torch.randint(0, 3, (n,))


def losses_at(model: Net, h: torch.Tensor, batch) -> dict[str, torch.Tensor]:
    _, pointer, kind = batch
    return {
        "pointer": F.mse_loss(model.pointer_head(h).squeeze(-1), pointer),
        "type": F.cross_entropy(model.type_head(h), kind),
    }


def at_representation(losses: dict, h: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        t: torch.autograd.grad(WEIGHTS[t] * losses[t], h, retain_graph=True)[0].double().flatten()
        for t in TASKS
    }


def over_parameters(losses: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    params = list(model.parameters())
    vectors = {}
    for t in TASKS:
        grads = torch.autograd.grad(
            WEIGHTS[t] * losses[t], params, retain_graph=True, allow_unused=True
        )
        vectors[t] = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).double().flatten()
                for g, p in zip(grads, params)
            ]
        )
    return vectors


def events(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "event"]


def assert_sample(event: dict, vectors: dict[str, torch.Tensor], rel: float = 1e-5) -> None:
    norms = {t["name"]: t["grad_norm"] for t in event["tasks"]}
    assert norms == {t: pytest.approx(float(v.norm()), rel=rel) for t, v in vectors.items()}
    a, b = vectors["pointer"], vectors["type"]
    (conflict,) = event["conflicts"]
    assert conflict["cosine"] == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=rel)


def assert_same_training(recorded: tuple, plain: tuple) -> None:
    (model_a, grads_a), (model_b, grads_b) = recorded, plain
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(p, q)  # parameters and batch-norm statistics


def skip_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning)]


# -- (1) representation mode with extra forwards of the shared module ----------------------


def train_with_views(path: Path | None, own_backward: bool = False):
    """Each step runs the encoder twice (a second view, read by the type loss on even steps
    only); each epoch ends with an evaluation under no_grad and one in eval mode with
    gradients enabled, as the original's balance pass ran."""
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rec = None
    if path is not None:
        rec = GradientRecorder(
            model,
            TASKS,
            path,
            weights=WEIGHTS,
            mode="representation",
            shared=model.encoder,
            log_every=None,
            balance_every=None,
            log_every_steps=1,
            balance_every_steps=1,
            buffer=0,
        )
    held = make_batch(1000)
    expected: dict[int, dict | None] = {}
    grads = []
    step = 0
    for epoch in range(1, EPOCHS + 1):
        for _ in range(BATCHES):
            step += 1
            batch = make_batch(step)
            optimizer.zero_grad()
            h = model.encoder(batch[0])
            view = model.encoder(batch[0] + 0.1 * torch.randn_like(batch[0]))
            losses = losses_at(model, h, batch)
            if step % 2 == 0:  # a consistency term: the type loss reads both views
                losses["type"] = losses["type"] + (view - h).pow(2).mean()
            else:
                view.detach().norm()  # a metric: the second view reaches no loss
            expected[step] = at_representation(losses, h) if step % 2 else None
            if rec is None:
                sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
            elif own_backward:
                rec.before_backward(losses, epoch=epoch)
                sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
                rec.record(losses, epoch=epoch)
            else:
                rec.backward(losses, epoch=epoch)
            grads.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
        model.eval()
        with torch.no_grad():
            model.encoder(held[0])
        losses_at(model, model.encoder(held[0]), held)  # with gradients, never backwarded
        model.train()
    if rec is not None:
        rec.close()
    return (model, grads), expected


@pytest.mark.parametrize("own_backward", [False, True])
def test_extra_forwards_never_stop_representation_mode(tmp_path: Path, own_backward: bool) -> None:
    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorded, expected = train_with_views(path, own_backward)
    assert skip_warnings(caught) == [
        f"gradlog skipped the balance sample at epoch 1, step 2: {TWO_VIEWS}. Training goes on; "
        "every sample skipped for this reason is marked in the log (the event's 'skipped' "
        "field), without another warning"
    ]
    logged = events(path)
    assert [e["step"] for e in logged] == list(range(1, EPOCHS * BATCHES + 1))
    for event in logged:
        assert "mean_norm" in event  # the statistics of every step, skipped sample or not
        vectors = expected[event["step"]]
        if vectors is None:
            assert event["skipped"] == TWO_VIEWS and "tasks" not in event
        else:
            assert "skipped" not in event
            assert_sample(event, vectors)
    assert_same_training(recorded, train_with_views(None)[0])
    report = run_gradlog("report", str(path))
    assert report.returncode == 0, report.stderr
    assert "Gradient Monitoring Summary" in report.stdout.decode()
    n = sum("skipped" in e for e in logged)
    assert report.stderr.decode().splitlines() == [
        f"Note: {path}: run {logged[0]['run']}: {n} balance samples skipped by the recorder "
        f"(the first at epoch 1, step 2: {TWO_VIEWS})"
    ]


def test_an_epoch_cadence_skips_once_and_measures_the_next_epoch(tmp_path: Path) -> None:
    """A skipped sample counts as the epoch's: the cadence moves on, as for a taken one."""
    torch.manual_seed(1)
    model = Net()
    path = tmp_path / "run.jsonl"
    rec = GradientRecorder(
        model,
        TASKS,
        path,
        weights=WEIGHTS,
        mode="representation",
        shared="encoder",
        log_every=None,
        balance_every=1,
    )
    with pytest.warns(SkippedSampleWarning):
        for epoch in (1, 1, 2):
            batch = make_batch(epoch)
            h = model.encoder(batch[0])
            losses = losses_at(model, h, batch)
            if epoch == 1:
                losses["type"] = losses["type"] + model.encoder(batch[0]).mean()
            else:
                vectors = at_representation(losses, h)
            rec.backward(losses, epoch=epoch)
    rec.close()
    skipped, taken = events(path)
    assert (skipped["epoch"], skipped["step"], skipped["skipped"]) == (1, 1, TWO_VIEWS)
    assert (taken["epoch"], taken["step"]) == (2, 3)
    assert_sample(taken, vectors)


# -- (2) sample_balance at the end of each epoch, in eval mode, on a held batch ----------------


def train_with_samples(path: Path | None, mode: str):
    torch.manual_seed(2)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rec = None
    if path is not None:
        extra = {"shared": model.encoder} if mode == "representation" else {}
        rec = GradientRecorder(
            model, TASKS, path, weights=WEIGHTS, mode=mode, log_every=2, balance_every=None, **extra
        )
    held, other = make_batch(1000), make_batch(2000)
    expected = {}
    grads = []
    for epoch in range(1, EPOCHS + 1):
        for b in range(BATCHES):
            batch = make_batch(100 * epoch + b)
            optimizer.zero_grad()
            losses = losses_at(model, model.encoder(batch[0]), batch)
            if rec is None:
                sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
            else:
                rec.backward(losses, epoch=epoch)
            grads.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
        model.eval()
        losses_at(model, model.encoder(other[0]), other)  # a validation batch, with gradients
        h = model.encoder(held[0])
        losses = losses_at(model, h, held)
        if mode == "representation":
            expected[epoch] = at_representation(losses, h)
        else:
            expected[epoch] = over_parameters(losses, model)
        before = [p.grad.clone() for p in model.parameters()]
        if rec is not None:
            rec.sample_balance(losses, epoch=epoch)
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))
        model.train()
    if rec is not None:
        rec.close()
    return (model, grads), expected


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_sample_balance_on_a_held_batch_in_eval_mode(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedSampleWarning)
        recorded, expected = train_with_samples(path, mode)
    logged = events(path)
    samples = [e for e in logged if "tasks" in e]
    assert [(e["epoch"], e.get("step")) for e in samples] == [
        (epoch, None) for epoch in range(1, EPOCHS + 1)
    ]
    for event in samples:
        assert "mean_norm" not in event and "skipped" not in event  # balance-only
        assert_sample(event, expected[event["epoch"]], rel=1e-6 if mode == "parameters" else 1e-5)
    assert [e["epoch"] for e in logged if "mean_norm" in e] == [2]  # log_every=2, unchanged
    assert_same_training(recorded, train_with_samples(None, mode)[0])
    report = run_gradlog("report", str(path))
    assert report.returncode == 0, report.stderr


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_a_sample_that_cannot_be_taken_is_skipped(tmp_path: Path, mode: str) -> None:
    torch.manual_seed(3)
    model = Net()
    path = tmp_path / "run.jsonl"
    extra = {"shared": model.encoder} if mode == "representation" else {}
    held = make_batch(7)
    with GradientRecorder(model, TASKS, path, mode=mode, log_every=1, **extra) as rec:
        losses = losses_at(model, model.encoder(held[0]), held)
        rec.backward(losses, epoch=1)
        model.eval()
        with torch.no_grad():
            losses = losses_at(model, model.encoder(held[0]), held)
        with pytest.warns(SkippedSampleWarning, match="sample at epoch 2: the .* no graph"):
            rec.sample_balance(losses, epoch=2)
        losses = losses_at(model, model.encoder(held[0]), held)
        sum(losses.values()).backward()
        with pytest.warns(SkippedSampleWarning, match="freed"):
            rec.sample_balance(losses, epoch=3, step=9)
    reasons = [(e["epoch"], e.get("step"), e.get("skipped", "")[:23]) for e in events(path)[1:]]
    assert reasons == [(2, None, "the task losses have no"), (3, 9, "the graph of the task l")]


def test_sample_balance_with_the_representation_passed(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = Net()
    path = tmp_path / "run.jsonl"
    held = make_batch(8)
    with GradientRecorder(
        model, TASKS, path, weights=WEIGHTS, mode="representation", log_every=1
    ) as rec:
        model.eval()
        h = model.encoder(held[0])
        model.encoder(held[0])  # another output of the encoder: not the one passed
        losses = losses_at(model, h, held)
        rec.sample_balance(losses, epoch=1, shared=h)
        expected = at_representation(losses, h)
    (event,) = events(path)
    assert event.get("step") is None
    assert_sample(event, expected)


def test_a_sample_of_a_run_labelled_by_steps_has_the_last_steps_number(tmp_path: Path) -> None:
    torch.manual_seed(8)
    model = Net()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every_steps=2, balance_every=None) as rec:
        for step in (1, 2, 3):
            batch = make_batch(step)
            rec.backward(losses_at(model, model.encoder(batch[0]), batch))
        rec.sample_balance(losses_at(model, model.encoder(batch[0]), batch))
    assert [(e["step"], "tasks" in e) for e in events(path)] == [(2, False), (3, True)]
    rec = GradientRecorder(
        model, TASKS, tmp_path / "b.jsonl", log_every_steps=1, balance_every=None
    )
    with rec:
        rec.backward(losses_at(model, model.encoder(batch[0]), batch))
        rec.sample_balance(losses_at(model, model.encoder(batch[0]), batch))
    # the sample shares its step's number (1) without repeating the step's event
    result = run_gradlog("report", str(tmp_path / "b.jsonl"))
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()


# -- (3) statistics on every batch of a logged epoch ------------------------------------------


def train_every_batch(path: Path | None, mode: str, first_epoch: int):
    torch.manual_seed(5)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = None
    if path is not None:
        extra = {"shared": model.encoder} if mode == "representation" else {}
        rec = GradientRecorder(
            model,
            TASKS,
            path,
            weights=WEIGHTS,
            mode=mode,
            log_every=2,
            stats_every_batch=True,
            balance_every=None,
            **extra,
        )
    expected = []
    grads = []
    for epoch in range(first_epoch, first_epoch + 4):
        for b in range(BATCHES):
            batch = make_batch(10 * epoch + b)
            optimizer.zero_grad()
            losses = losses_at(model, model.encoder(batch[0]), batch)
            if rec is None:
                sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
            else:
                rec.backward(losses, epoch=epoch)
            norms = [float(p.grad.double().norm()) for p in model.parameters()]
            if epoch % 2 == 0:
                expected.append((epoch, norms))
            grads.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
    if rec is not None:
        rec.close()
    return (model, grads), expected


@pytest.mark.parametrize(("mode", "first_epoch"), [("parameters", 1), ("representation", 0)])
def test_statistics_on_every_batch_of_a_logged_epoch(
    tmp_path: Path, mode: str, first_epoch: int
) -> None:
    """One event per batch, each its own; from epoch 0, as the original's 0-based loop."""
    path = tmp_path / "run.jsonl"
    recorded, expected = train_every_batch(path, mode, first_epoch)
    logged = events(path)
    assert len(logged) == len(expected) == 2 * BATCHES
    steps = [e["step"] for e in logged]
    assert steps == sorted(set(steps))  # successive steps
    for event, (epoch, norms) in zip(logged, expected):
        assert event["epoch"] == epoch and "tasks" not in event
        assert event["n_grads"] == len(norms)
        assert event["mean_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-6)
        assert event["max_norm"] == pytest.approx(max(norms), rel=1e-6)
        assert event["total_norm"] == pytest.approx(math.hypot(*norms), rel=1e-6)
    assert_same_training(recorded, train_every_batch(None, mode, first_epoch)[0])
    report = run_gradlog("report", str(path))
    assert report.returncode == 0, report.stderr
    assert report.stdout.decode().count("Gradient Stats:") == 2 * BATCHES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stats_every_batch": 1}, "stats_every_batch must be True or False, got 1"),
        (
            {"stats_every_batch": True, "log_every": None, "log_every_steps": 1},
            "stats_every_batch=True logs every batch of the epochs log_every names: set log_every",
        ),
    ],
)
def test_stats_every_batch_is_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(RecorderConfigError) as info:
        RecorderConfig(TASKS, **kwargs)
    assert str(info.value) == message


def test_balance_by_sample_only_is_a_valid_config() -> None:
    config = RecorderConfig(TASKS, log_every=10, stats_every_batch=True, balance_every=None)
    assert config.stats_every_batch and config.balance_every is None


def test_an_evaluation_output_the_losses_do_not_read_is_no_sample(tmp_path: Path) -> None:
    """One output, of an evaluation pass, that the losses do not read: skipped, not zeros."""
    torch.manual_seed(6)
    model = Net()
    path = tmp_path / "run.jsonl"
    held = make_batch(9)
    with GradientRecorder(
        model, TASKS, path, mode="representation", shared=model.encoder, log_every=1
    ) as rec:
        model.eval()
        h = model.encoder(held[0]).detach().requires_grad_()  # the heads read a copy
        with pytest.warns(SkippedSampleWarning, match=r"read none of the outputs .* \(1\)"):
            rec.sample_balance(losses_at(model, h, held), epoch=1)
    (event,) = events(path)
    assert "tasks" not in event and event["skipped"].startswith("the task losses read none")


def test_an_evaluation_loop_with_gradients_and_too_many_views(tmp_path: Path) -> None:
    """Evaluation outputs are let go as newer ones come (only the last is kept); a step with
    more training-mode outputs than gradlog keeps cannot be resolved, and is skipped."""
    torch.manual_seed(7)
    model = Net()
    path = tmp_path / "run.jsonl"
    batch = make_batch(50)
    with GradientRecorder(
        model,
        TASKS,
        path,
        weights=WEIGHTS,
        mode="representation",
        shared=model.encoder,
        log_every=None,
        balance_every=None,
        balance_every_steps=1,
    ) as rec:
        model.eval()
        for i in range(40):
            model.encoder(make_batch(i)[0])
        model.train()
        h = model.encoder(batch[0])
        losses = losses_at(model, h, batch)
        vectors = at_representation(losses, h)
        rec.backward(losses)
        for i in range(16):
            model.encoder(make_batch(i)[0])
        losses = losses_at(model, model.encoder(batch[0]), batch)
        with pytest.warns(SkippedSampleWarning, match="ran more than 16 times"):
            rec.backward(losses)
    taken, skipped = events(path)
    assert_sample(taken, vectors)
    assert skipped["skipped"].startswith("the shared module 'encoder' ran more than 16 times")


# -- the original's console, from a real run recorded at its moments -------------------------


def original_training(path: Path | None, weights: dict[str, float], echo=None):
    """60 epochs of two batches, clipped at 0.5. With ``path``: recorded at the original's
    moments. Without: the original monitor's own measurement, by hand (tests/original_monitor.py
    turns it into its console): the statistics of every batch of every 10th epoch (0-based)
    after clip_grad_norm_, and at the end of every 5th epoch, in eval mode on one held batch,
    the raw norm of each unweighted task loss by a backward of its own."""
    from original_monitor import Epoch

    torch.manual_seed(9)
    model = Net()
    # a bias before batch normalisation has no gradient: a vanishing layer, whose warning
    # line the re-implementation leaves out
    model.encoder[0] = nn.Linear(6, 16, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    params = list(model.parameters())
    held = make_batch(5000, n=16)
    rec = None
    if path is not None:
        rec = GradientRecorder(
            model,
            TASKS,
            path,
            weights=weights,
            log_every=10,
            stats_every_batch=True,
            clip=0.5,
            balance_every=None,
            echo=echo or False,
            original=True,
        )
    epochs, grads = [], []
    for e in range(60):
        epoch = Epoch()
        for b in range(2):
            batch = make_batch(100 * e + b)
            optimizer.zero_grad()
            losses = losses_at(model, model.encoder(batch[0]), batch)
            if rec is not None:
                rec.backward(losses, epoch=e)
            else:
                sum(weights[t] * losses[t] for t in TASKS).backward()
                torch.nn.utils.clip_grad_norm_(params, 0.5)
                if e % 10 == 0:
                    norms = [p.grad.norm().item() for p in params]
                    epoch.batches.append((sum(norms) / len(norms), max(norms)))
            grads.append([p.grad.clone() for p in params])
            optimizer.step()
        if (e + 1) % 5 == 0:
            model.eval()
            losses = losses_at(model, model.encoder(held[0]), held)
            if rec is not None:
                rec.sample_balance(losses, epoch=e + 1)
            else:
                raw = []
                for t in TASKS:
                    task_grads = torch.autograd.grad(
                        losses[t], params, retain_graph=True, allow_unused=True
                    )
                    squares = [float(g.double().pow(2).sum()) for g in task_grads if g is not None]
                    raw.append(math.sqrt(sum(squares)))
                epoch.balance = (raw[0], raw[1])
            model.train()
        epochs.append(epoch)
    if rec is not None:
        rec.close()
    return (model, grads), epochs


@pytest.mark.parametrize(
    "weights",
    [
        {"pointer": 1.0, "type": 1.0},  # balanced
        {"pointer": 1.0, "type": 0.02},  # type-starved
        {"pointer": 0.02, "type": 1.0},  # pointer-starved
    ],
)
def test_the_originals_console_from_a_run_recorded_at_its_moments(
    tmp_path: Path, weights: dict[str, float]
) -> None:
    from original_monitor import console

    path, echo = tmp_path / "run.jsonl", io.StringIO()
    recorded, _ = original_training(path, weights, echo)
    plain, epochs = original_training(None, weights)
    assert_same_training(recorded, plain)
    result = run_gradlog("report", str(path), "--original")
    assert result.returncode == 0, result.stderr.decode()
    report = result.stdout.decode()
    lines = report.splitlines()
    expected = console(epochs)
    assert lines[: len(expected)] == expected
    assert echo.getvalue() == report[: report.index("\n" + "-" * 60)]  # the live echo too
    assert sum(line.startswith("Epoch 0 Gradient Stats:") for line in lines) == 2
    assert sum(line.startswith("[PHASE 4] Task imbalance detected") for line in lines) >= 1
