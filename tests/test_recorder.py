"""The recorder with real tiny torch models, real log files and the real CLI."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without NumPy

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.errors import RecorderConfigError  # noqa: E402
from gradlog.recorder.writers import journal_path  # noqa: E402

TASKS = ["pointer", "type"]


class TwoHead(nn.Module):
    """A shared encoder with a regression head and a classification head, plus a frozen part."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 8)
        self.pointer_head = nn.Linear(8, 2)
        self.type_head = nn.Linear(8, 3)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.frozen(torch.tanh(self.encoder(x))))
        return self.pointer_head(h), self.type_head(h)


def make_batch(seed: int = 0, n: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    pointers = torch.rand(n, 2, generator=g)
    types = torch.randint(0, 3, (n,), generator=g)
    return x, pointers, types


def task_losses(model: TwoHead, batch) -> dict[str, torch.Tensor]:
    x, pointers, types = batch
    p, t = model(x)
    return {"pointer": F.mse_loss(p, pointers), "type": F.cross_entropy(t, types)}


class Scalar(nn.Module):
    """One parameter: ``c * w.sum()`` has gradient ``c`` exactly, so every norm is known."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, dtype=torch.float64))


def scalar_losses(model: Scalar, pointer: float, type_: float) -> dict[str, torch.Tensor]:
    return {"pointer": pointer * model.w.sum(), "type": type_ * model.w.sum()}


def jsonl_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path) -> list[dict]:
    return [r for r in jsonl_records(path) if r["kind"] == "event"]


def run_cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        input=input,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"},
    )


# -- (a) per-task norms ---------------------------------------------------------------------


def reference_task_norm(model: nn.Module, loss: torch.Tensor, weight: float) -> float:
    """L2 norm over all trainable parameters of the gradient of ``weight * loss`` alone."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(weight * loss, params, retain_graph=True, allow_unused=True)
    squares = [g.double().pow(2).sum() for g in grads if g is not None]
    return math.sqrt(float(sum(squares)))


def test_task_norms_match_independent_reference(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHead()
    weights = {"pointer": 0.5, "type": 2.0}
    batch = make_batch()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, weights=weights, balance_every=1) as rec:
        losses = task_losses(model, batch)
        expected = {t: reference_task_norm(model, losses[t], weights[t]) for t in TASKS}
        rec.backward(losses, epoch=1)
    (event,) = events(path)
    logged = {t["name"]: t for t in event["tasks"]}
    assert set(logged) == set(TASKS)
    for task in TASKS:
        assert logged[task]["grad_norm"] == pytest.approx(expected[task], rel=1e-6)
        assert logged[task]["weight"] == weights[task]
        assert logged[task]["loss"] == pytest.approx(float(losses[task].detach()), rel=1e-6)
    # the tasks really do differ: the pointer loss never reaches the type head
    assert expected["pointer"] != pytest.approx(expected["type"])


def test_task_norms_exact_on_a_known_gradient(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model, TASKS, path, weights={"pointer": 2.0, "type": -0.5}, balance_every=1, log_every=1
    ) as rec:
        total = rec.backward(scalar_losses(model, 3.0, 4.0), epoch=1)
    assert float(total.detach()) == 2.0 * 3.0 - 0.5 * 4.0
    (event,) = events(path)
    norms = {t["name"]: t["grad_norm"] for t in event["tasks"]}
    assert norms == {"pointer": 6.0, "type": 2.0}  # |weight| * |gradient|
    assert event["mean_norm"] == event["max_norm"] == event["total_norm"] == 4.0
    assert event["n_grads"] == 1


def test_global_stats_match_the_gradients(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TwoHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=None, layers=True) as rec:
        rec.backward(task_losses(model, make_batch()), epoch=1)
    (event,) = events(path)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    per_param = {n: float(p.grad.double().norm()) for n, p in named.items()}
    assert {layer["name"] for layer in event["layers"]} == set(per_param)  # frozen left out
    for layer in event["layers"]:
        assert layer["norm"] == pytest.approx(per_param[layer["name"]], rel=1e-6)
    norms = list(per_param.values())
    assert event["n_grads"] == len(norms) == 6
    assert event["mean_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-6)
    assert event["max_norm"] == pytest.approx(max(norms), rel=1e-6)
    total = torch.nn.utils.get_total_norm([p.grad for p in named.values()])
    assert event["total_norm"] == pytest.approx(float(total), rel=1e-5)
    assert event["n_vanishing"] == 0 and event["n_exploding"] == 0
    assert "tasks" not in event


def test_layer_counts(tmp_path: Path) -> None:
    class Three(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tiny = nn.Parameter(torch.ones(1, dtype=torch.float64))
            self.huge = nn.Parameter(torch.ones(1, dtype=torch.float64))
            self.ok = nn.Parameter(torch.ones(1, dtype=torch.float64))

    model = Three()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=None) as rec:
        rec.backward(
            {
                "pointer": 1e-9 * model.tiny.sum() + 20.0 * model.huge.sum(),
                "type": 0.3 * model.ok.sum(),
            },
            epoch=1,
        )
    (event,) = events(path)
    assert event["n_vanishing"] == 1 and event["n_exploding"] == 1


# -- (b), (c) the recorder does not change training ----------------------------------------


def train(steps: int, path: Path | None) -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(123)
    model = TwoHead()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    weights = {"pointer": 0.7, "type": 1.3}
    rec = None
    if path is not None:
        rec = GradientRecorder(
            model, TASKS, path, weights=weights, log_every=1, balance_every=1, layers=True
        )
    grads = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        losses = task_losses(model, make_batch(seed=step))
        if rec is None:
            total = sum(weights[t] * losses[t] for t in TASKS)
            total.backward()
        else:
            rec.backward(losses, epoch=step)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        opt.step()
    if rec is not None:
        rec.close()
    return model, grads


def test_recorder_leaves_training_bit_identical(tmp_path: Path) -> None:
    plain, plain_grads = train(5, None)
    recorded, recorded_grads = train(5, tmp_path / "run.jsonl")
    # (c) .grad after every recorder backward is exactly the plain total.backward gradient
    for a, b in zip(plain_grads, recorded_grads):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name
    # (b) the parameters after the optimizer steps are bit-identical
    for (name, p), (name2, q) in zip(plain.named_parameters(), recorded.named_parameters()):
        assert name == name2
        assert torch.equal(p, q), name
    assert len(events(tmp_path / "run.jsonl")) == 5


def test_backward_returns_the_weighted_total(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHead()
    losses = task_losses(model, make_batch())
    with GradientRecorder(model, TASKS, tmp_path / "r.jsonl", weights={"type": 3.0}) as rec:
        total = rec.backward(losses, epoch=1)  # epoch 1: nothing due, still trains
    assert torch.equal(total.detach(), (1.0 * losses["pointer"] + 3.0 * losses["type"]).detach())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert events(tmp_path / "r.jsonl") == []


# -- (d) cadence ----------------------------------------------------------------------------


def kinds(event: dict) -> tuple[bool, bool]:
    return ("mean_norm" in event, "tasks" in event)


@pytest.mark.parametrize("batches", [1, 3])
def test_epoch_cadence(tmp_path: Path, batches: int) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    due = []
    with GradientRecorder(model, TASKS, path, log_every=2, balance_every=1) as rec:
        for epoch in range(1, 7):
            for _ in range(batches):
                model.zero_grad()
                due.append(rec.needs_graph(epoch=epoch))
                rec.backward(scalar_losses(model, 1.0, 1.0), epoch=epoch)
    got = [(e["epoch"], e["step"], *kinds(e)) for e in events(path)]
    # stats on even epochs, balance every epoch, each once, on the epoch's first batch
    assert got == [
        (epoch, (epoch - 1) * batches + 1, epoch % 2 == 0, True) for epoch in range(1, 7)
    ]
    assert due == [i % batches == 0 for i in range(6 * batches)]


def test_epoch_cadence_skipped_epochs(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=10, balance_every=5) as rec:
        for epoch in range(1, 21):
            rec.backward(scalar_losses(model, 1.0, 1.0), epoch=epoch)
    got = [(e["epoch"], *kinds(e)) for e in events(path)]
    assert got == [(5, False, True), (10, True, True), (15, False, True), (20, True, True)]


def test_step_cadence(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    due = []
    with GradientRecorder(
        model,
        TASKS,
        path,
        log_every=None,
        balance_every=None,
        log_every_steps=3,
        balance_every_steps=2,
    ) as rec:
        for _ in range(6):
            due.append(rec.needs_graph())
            rec.backward(scalar_losses(model, 1.0, 1.0))
    got = [(e["step"], e.get("epoch"), *kinds(e)) for e in events(path)]
    assert got == [
        (2, None, False, True),
        (3, None, True, False),
        (4, None, False, True),
        (6, None, True, True),
    ]
    assert due == [False, True, False, True, False, True]
    meta = jsonl_records(path)[0]["meta"]
    assert meta["log_every_steps"] == 3 and meta["balance_every_steps"] == 2
    assert meta["log_every"] is None and meta["balance_every"] is None


def test_step_cadence_with_explicit_steps(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model, TASKS, path, log_every=None, balance_every=None, log_every_steps=100
    ) as rec:
        for step in (50, 100, 150, 200, 250):
            rec.backward(scalar_losses(model, 1.0, 1.0), step=step)
    assert [(e["step"], *kinds(e)) for e in events(path)] == [
        (100, True, False),
        (200, True, False),
    ]


def test_epoch_required_without_step_cadence(tmp_path: Path) -> None:
    model = Scalar()
    with GradientRecorder(model, TASKS, tmp_path / "run.jsonl") as rec:
        with pytest.raises(RecorderConfigError, match="epoch="):
            rec.backward(scalar_losses(model, 1.0, 1.0))


# -- (e) constructor validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"nope": 1.0}}, "unknown tasks"),
        ({"weights": {"pointer": math.nan}}, "finite"),
        ({"weights": {"pointer": math.inf}}, "finite"),
        ({"weights": {"pointer": "1"}}, "finite"),
        ({"weights": {"pointer": True}}, "finite"),
        ({"log_every": 0}, "log_every"),
        ({"log_every": -5}, "log_every"),
        ({"log_every": 2.5}, "log_every"),
        ({"log_every": True}, "log_every"),
        ({"balance_every": 0}, "balance_every"),
        ({"log_every_steps": 0}, "log_every_steps"),
        ({"balance_every_steps": -1}, "balance_every_steps"),
        ({"log_every": None, "balance_every": None}, "nothing would ever be logged"),
        ({"tasks": []}, "non-empty"),
        ({"tasks": ["pointer", "pointer"]}, "unique"),
        ({"tasks": ["pointer", ""]}, "non-empty"),
        ({"tasks": ["pointer", 3]}, "non-empty"),
        ({"window": 0}, "window"),
        ({"min_samples": 0}, "min_samples"),
        ({"model": "not a model"}, "torch.nn.Module"),
        ({"model": "frozen"}, "no trainable parameters"),
    ],
)
def test_constructor_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"model": Scalar(), "tasks": TASKS, "path": tmp_path / "run.jsonl", **kwargs}
    if args["model"] == "frozen":
        args["model"] = Scalar().requires_grad_(False)
    with pytest.raises(RecorderConfigError, match=match):
        GradientRecorder(**args)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("name", ["run.txt", "run.csv", "run", "run.jsonl.gz"])
def test_constructor_rejects_unknown_suffix(tmp_path: Path, name: str) -> None:
    with pytest.raises(RecorderConfigError, match="unknown log format"):
        GradientRecorder(Scalar(), TASKS, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_constructor_rejects_a_directory(tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").mkdir()
    with pytest.raises(RecorderConfigError, match="directory"):
        GradientRecorder(Scalar(), TASKS, tmp_path / "logs.jsonl")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(RecorderConfigError, ValueError)


def test_losses_must_match_the_tasks(tmp_path: Path) -> None:
    model = Scalar()
    with GradientRecorder(model, TASKS, tmp_path / "run.jsonl", balance_every=1) as rec:
        with pytest.raises(KeyError, match="missing"):
            rec.backward({"pointer": model.w.sum()}, epoch=1)
        with pytest.raises(KeyError, match="unknown"):
            rec.backward({**scalar_losses(model, 1.0, 1.0), "extra": model.w.sum()}, epoch=1)


@pytest.mark.parametrize("plain", [0.5, 2])
def test_a_loss_that_is_not_a_tensor_is_named(tmp_path: Path, plain: float) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1) as rec:
        losses = {"pointer": model.w.sum(), "type": plain}  # loss.item() by mistake
        expected = r"losses\['type'\] must be the task's loss as a torch.Tensor .* got "
        with pytest.raises(TypeError, match=expected + type(plain).__name__):
            rec.backward(losses, epoch=1)
        with pytest.raises(TypeError, match=expected):
            rec.before_backward(losses, epoch=1)
        with pytest.raises(TypeError, match=expected):
            rec.record(losses, epoch=1)
        record_epochs(rec, model, [1])  # the recorder is unharmed
    assert read_log(path).frame.height == 2


def test_closed_recorder_refuses(tmp_path: Path) -> None:
    model = Scalar()
    rec = GradientRecorder(model, TASKS, tmp_path / "run.jsonl")
    rec.close()
    rec.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        rec.backward(scalar_losses(model, 1.0, 1.0), epoch=1)


# -- (f) record() after the user's own backward ---------------------------------------------


def test_record_after_own_backward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHead()
    batch = make_batch()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=2, balance_every=1) as rec:
        for epoch in (1, 2):
            model.zero_grad()
            losses = task_losses(model, batch)
            expected = {t: reference_task_norm(model, losses[t], 1.0) for t in TASKS}
            keep = rec.needs_graph(epoch=epoch)
            assert keep is True
            (losses["pointer"] + losses["type"]).backward(retain_graph=keep)
            rec.record(losses, epoch=epoch)
            logged = {t["name"]: t["grad_norm"] for t in events(path)[-1]["tasks"]}
            for task in TASKS:
                assert logged[task] == pytest.approx(expected[task], rel=1e-6)
    got = [(e["epoch"], *kinds(e)) for e in events(path)]
    assert got == [(1, False, True), (2, True, True)]


def test_record_without_retained_graph_explains(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1) as rec:
        losses = task_losses(model, make_batch())
        (losses["pointer"] + losses["type"]).backward()
        with pytest.raises(RuntimeError) as info:
            rec.record(losses, epoch=1)
        message = str(info.value)
        assert message.startswith("gradlog needs the graph")
        assert "retain_graph=recorder.needs_graph(" in message
        assert "recorder.backward(losses)" in message
        # nothing was half-written; the same epoch still asks for the graph
        assert events(path) == []
        assert rec.needs_graph(epoch=1)


def test_record_without_balance_due_needs_no_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=2) as rec:
        assert rec.needs_graph(epoch=1) is False
        losses = task_losses(model, make_batch())
        (losses["pointer"] + losses["type"]).backward()
        rec.record(losses, epoch=1)
    assert [kinds(e) for e in events(path)] == [(True, False)]


# -- (g) non-finite gradients ---------------------------------------------------------------


def reject_bare_constant(token: str) -> float:
    raise AssertionError(f"bare {token} in a log line: not standard JSON")


def test_nonfinite_gradients_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.rand(4, 3) + 0.5  # positive inputs: inf * x stays inf, never nan
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, layers=True) as rec:
        out = model(x)
        rec.backward(
            {
                "pointer": out[:, 0].sum() * math.inf,
                "type": out[:, 1].pow(2).mean() * math.nan,
            },
            epoch=1,
        )
    text = path.read_text()
    for line in text.splitlines():
        json.loads(line, parse_constant=reject_bare_constant)
    assert '"NaN"' in text and '"Infinity"' in text
    (event,) = events(path)
    tasks = {t["name"]: t for t in event["tasks"]}
    assert tasks["pointer"]["grad_norm"] == "Infinity"
    assert tasks["type"]["grad_norm"] == "NaN"
    assert event["mean_norm"] == "NaN"

    frame = read_log(path).frame
    row = frame.filter(frame["kind"] == "event").row(0, named=True)
    read_tasks = {t["name"]: t for t in row["tasks"]}
    assert read_tasks["pointer"]["grad_norm"] == math.inf
    assert read_tasks["pointer"]["loss"] in (math.inf, -math.inf)
    assert math.isnan(read_tasks["type"]["grad_norm"])
    assert math.isnan(read_tasks["type"]["loss"])
    assert math.isnan(row["mean_norm"]) and math.isnan(row["max_norm"])
    assert all(math.isnan(layer["norm"]) for layer in row["layers"])
    assert read_tasks["type"]["weight"] == 1.0


def test_nonfinite_echo_and_report(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    echo = io.StringIO()
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, echo=echo) as rec:
        rec.backward(scalar_losses(model, math.nan, 1.0), epoch=1)
    out = echo.getvalue()
    assert "  WARNING: Non-finite gradient norms" in out
    assert "[PHASE 4] Task balance undefined at epoch 1: non-finite gradient norm" in out
    result = run_cli("report", str(path))
    assert result.returncode == 0, result.stderr
    assert b"Non-finite" in result.stdout


# -- (h) Parquet output ---------------------------------------------------------------------


def record_epochs(rec: GradientRecorder, model: Scalar, epochs) -> None:
    for epoch in epochs:
        model.zero_grad()
        rec.backward(scalar_losses(model, 2.0, 1.0), epoch=epoch)


def test_parquet_journal_while_open_and_gone_after_close(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.parquet"
    journal = journal_path(path)
    assert journal == tmp_path / "run.parquet.journal"
    rec = GradientRecorder(model, TASKS, path, log_every=1, balance_every=1)
    record_epochs(rec, model, range(1, 4))
    assert journal.exists()
    lines = journal.read_text().splitlines()
    assert len(lines) == 4  # the run record and three events
    assert [json.loads(line).get("epoch") for line in lines] == [None, 1, 2, 3]
    log = read_log(path)
    assert log.frame.height == 4
    assert any("did not close" in note for note in log.notes)

    rec.flush()  # a snapshot: the Parquet file now exists beside the journal
    assert path.exists() and journal.exists()
    record_epochs(rec, model, [4])
    log = read_log(path)
    assert log.frame.height == 5  # the snapshot's 4 and the journal's newer record
    assert sorted(log.frame["epoch"].drop_nulls().to_list()) == [1, 2, 3, 4]

    rec.close()
    assert not journal.exists()
    log = read_log(path)
    assert log.notes == []
    assert log.frame.height == 5
    assert log.frame["epoch"].drop_nulls().to_list() == [1, 2, 3, 4]
    norms = [{t["name"]: t["grad_norm"] for t in ts} for ts in log.frame["tasks"].drop_nulls()]
    assert norms == [{"pointer": 2.0, "type": 1.0}] * 4


def test_parquet_snapshots_hold_every_record_once_in_order(tmp_path: Path) -> None:
    """Each snapshot converts only the records since the last one: the file still holds the
    whole run, a previous run's rows included, after many snapshots (more than the chunks
    the writer lets pile up before it compacts them)."""
    model = Scalar()
    path = tmp_path / "run.parquet"
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1) as rec:
        record_epochs(rec, model, [1, 2])
    rec = GradientRecorder(model, TASKS, path, log_every=1, balance_every=1)
    for epoch in range(1, 41):
        record_epochs(rec, model, [epoch])
        rec.flush()
        assert read_log(path).frame.height == 3 + 1 + epoch  # both runs so far
    rec.close()
    frame = read_log(path).frame
    assert frame.height == 44
    assert frame["epoch"].drop_nulls().to_list() == [1, 2, *range(1, 41)]
    assert frame["run"].unique(maintain_order=True).len() == 2


def test_parquet_recorder_dropped_without_close(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.parquet"
    rec = GradientRecorder(model, TASKS, path, log_every=1, balance_every=1)
    record_epochs(rec, model, range(1, 6))
    del rec  # no close(): as if the process had died
    assert journal_path(path).exists()
    assert read_log(path).frame.height == 6
    result = run_cli("report", str(path))
    assert result.returncode == 0, result.stderr
    assert b"Note:" in result.stderr and b"journal" in result.stderr
    assert b"Epoch 5 Gradient Stats:" in result.stdout


def test_parquet_crash_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    script = f"""
import os, warnings
warnings.filterwarnings("ignore")
import torch
from gradlog import GradientRecorder
w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
model = torch.nn.Module()
model.w = w
rec = GradientRecorder(model, ["pointer", "type"], {str(path)!r}, log_every=1, balance_every=1)
for epoch in range(1, 5):
    model.zero_grad()
    rec.backward({{"pointer": 3.0 * w.sum(), "type": w.sum()}}, epoch=epoch)
    if epoch == 2:
        rec.flush()
os._exit(0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert path.exists() and journal_path(path).exists()
    log = read_log(path)
    assert log.frame.height == 5
    assert log.frame["epoch"].drop_nulls().to_list() == [1, 2, 3, 4]


def test_parquet_second_run_appends(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    for run_id in ("first", "second"):
        model = Scalar()
        with GradientRecorder(
            model, TASKS, path, log_every=1, balance_every=1, run_id=run_id
        ) as rec:
            record_epochs(rec, model, [1, 2])
    frame = read_log(path).frame
    assert frame["run"].to_list() == ["first"] * 3 + ["second"] * 3


def test_parquet_restart_after_crash_keeps_the_crashed_run(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    model = Scalar()
    crashed = GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, run_id="crashed")
    record_epochs(crashed, model, range(1, 4))
    del crashed  # never closed: its journal holds 4 records
    assert read_log(path).frame.height == 4
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, run_id="next") as rec:
        record_epochs(rec, model, [1])
    runs = read_log(path).frame["run"].to_list()
    assert runs.count("crashed") == 4 and runs.count("next") == 2


# -- (i) the live echo ----------------------------------------------------------------------


def test_echo_prints_the_documented_lines(tmp_path: Path) -> None:
    model = Scalar()
    echo = io.StringIO()
    with GradientRecorder(
        model,
        TASKS,
        tmp_path / "run.jsonl",
        weights={"pointer": 2.0},
        log_every=2,
        balance_every=1,
        echo=echo,
    ) as rec:
        record_epochs(rec, model, range(1, 4))  # pointer norm 2 * 2.0 = 4, type 1: ratio 4
    assert echo.getvalue() == (
        "[PHASE 4] Gradient monitoring enabled (log frequency: 2 epochs)\n"
        "\n"
        "[PHASE 4] Task imbalance detected at epoch 1!\n"
        "Pointer/Type gradient ratio: 4.00 (healthy range: 0.5-2.0)\n"
        "\n"
        "[PHASE 4] Task balance: Not enough data\n"
        "\n"
        "Epoch 2 Gradient Stats:\n"
        "  Mean norm: 5.0000\n"
        "  Max norm:  5.0000\n"
        "\n"
        "[PHASE 4] Task imbalance detected at epoch 2!\n"
        "Pointer/Type gradient ratio: 4.00 (healthy range: 0.5-2.0)\n"
        "\n"
        "[PHASE 4] Task balance: Not enough data\n"
        "\n"
        "[PHASE 4] Task imbalance detected at epoch 3!\n"
        "Pointer/Type gradient ratio: 4.00 (healthy range: 0.5-2.0)\n"
        "\n"
        "[PHASE 4] Task balance: Tasks balanced (ratio=4.00)\n"
        "\n"
        "[PHASE 4] Gradient Monitoring Summary:\n"
        "  Mean gradient norm: 5.0000 ± 0.0000\n"
        "  Max gradient norm: 5.0000 (peak: 5.0000)\n"
        "  Task balance: Tasks balanced (ratio=4.00)\n"
    )


def test_echo_collapse_both_ways(tmp_path: Path) -> None:
    for weights, expected in (
        ({"pointer": 3.0}, "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=6.00 > 5.0)"),
        ({"pointer": 0.05}, "[PHASE 4] TASK COLLAPSE: Type task dominating (ratio=0.10 < 0.20)"),
    ):
        model = Scalar()
        echo = io.StringIO()
        with GradientRecorder(
            model,
            TASKS,
            tmp_path / "run.jsonl",
            weights=weights,
            log_every=None,
            balance_every=1,
            echo=echo,
        ) as rec:
            record_epochs(rec, model, range(1, 4))
        lines = echo.getvalue().splitlines()
        assert lines.count(expected) == 1
        summary = lines.index("[PHASE 4] Gradient Monitoring Summary:")
        assert lines[summary - 2] == expected  # the third sample is the first judged


def test_echo_zero_denominator_is_reported_not_1e8(tmp_path: Path) -> None:
    model = Scalar()
    echo = io.StringIO()
    with GradientRecorder(
        model, TASKS, tmp_path / "run.jsonl", log_every=None, balance_every=1, echo=echo
    ) as rec:
        rec.backward(scalar_losses(model, 3.0, 0.0), epoch=1)
    assert echo.getvalue().splitlines()[2] == (
        "[PHASE 4] Task balance undefined at epoch 1: Type gradient norm is zero "
        "(Pointer=3, Type=0)"
    )


def test_echo_uses_step_labels_with_step_cadence(tmp_path: Path) -> None:
    model = Scalar()
    echo = io.StringIO()
    with GradientRecorder(
        model,
        TASKS,
        tmp_path / "run.jsonl",
        log_every=None,
        balance_every=None,
        log_every_steps=2,
        echo=echo,
    ) as rec:
        for _ in range(2):
            rec.backward(scalar_losses(model, 1.0, 1.0))
    lines = echo.getvalue().splitlines()
    assert lines[0] == "[PHASE 4] Gradient monitoring enabled (log frequency: 2 steps)"
    assert "Step 2 Gradient Stats:" in lines


def test_echo_matches_the_offline_report(tmp_path: Path) -> None:
    """The live echo and ``gradlog report`` judge the same numbers the same way."""
    torch.manual_seed(0)
    model = TwoHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    echo = io.StringIO()
    with GradientRecorder(
        model,
        TASKS,
        path,
        weights={"pointer": 4.0},
        log_every=2,
        balance_every=1,
        echo=echo,
    ) as rec:
        for epoch in range(1, 8):
            opt.zero_grad()
            rec.backward(task_losses(model, make_batch(epoch)), epoch=epoch)
            opt.step()
    result = run_cli("report", str(path))
    assert result.returncode == 0, result.stderr
    report = result.stdout.decode()
    # Everything up to the Recommended action section, the summary included.
    assert echo.getvalue() == report[: report.index("\n" + "-" * 60)]


def test_echo_matches_the_offline_report_with_three_tasks(tmp_path: Path) -> None:
    model = Scalar()
    path = tmp_path / "run.jsonl"
    echo = io.StringIO()
    tasks = ["depth", "seg", "normals"]
    with GradientRecorder(model, tasks, path, log_every=1, balance_every=1, echo=echo) as rec:
        for epoch in range(1, 4):
            model.zero_grad()
            rec.backward(
                {t: c * model.w.sum() for t, c in zip(tasks, (1.0, 2.0, 3.0))}, epoch=epoch
            )
    report = run_cli("report", str(path)).stdout.decode()
    assert "Task shares: Depth 16.7%, Seg 33.3%, Normals 50.0%" in report
    assert echo.getvalue() == report[: report.index("\n" + "-" * 60)]


def test_echo_true_prints_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Scalar()
    with GradientRecorder(model, TASKS, tmp_path / "run.jsonl", echo=True) as rec:
        record_epochs(rec, model, [5])
    out = capsys.readouterr().out
    assert out.startswith("[PHASE 4] Gradient monitoring enabled (log frequency: 10 epochs)\n")
    assert "[PHASE 4] Task balance: Not enough data" in out


# -- (j) several runs in one log ------------------------------------------------------------


def test_two_recorders_one_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    a_model, b_model = Scalar(), Scalar()
    a = GradientRecorder(a_model, TASKS, path, log_every=1, balance_every=1, tags={"seed": 1})
    b = GradientRecorder(b_model, TASKS, path, log_every=1, balance_every=1, tags={"seed": 2})
    assert a.run_id != b.run_id
    for epoch in range(1, 4):  # interleaved writes into one file
        a_model.zero_grad()
        a.backward(scalar_losses(a_model, 1.0, 1.0), epoch=epoch)
        b_model.zero_grad()
        b.backward(scalar_losses(b_model, 10.0, 1.0), epoch=epoch)
    a.close()
    b.close()
    records = jsonl_records(path)
    assert [r["run"] for r in records].count(a.run_id) == 4
    assert [r["run"] for r in records].count(b.run_id) == 4

    result = run_cli("report", str(path))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert f"=== Run {a.run_id} ({path}) ===" in text
    assert f"=== Run {b.run_id} ({path}) ===" in text
    part_a, part_b = text.split(f"=== Run {b.run_id}")
    assert "Tasks balanced (ratio=1.00)" in part_a
    assert "TASK COLLAPSE DETECTED: Pointer task dominating (ratio=10.00 > 5.0)" in part_b

    only_b = run_cli("report", str(path), "--run", b.run_id)
    assert only_b.returncode == 0, only_b.stderr
    assert a.run_id not in only_b.stdout.decode()
    assert "TASK COLLAPSE DETECTED" in only_b.stdout.decode()

    data = json.loads(run_cli("report", str(path), "--format", "json").stdout)
    assert [run["run"] for run in data["runs"]] == [a.run_id, b.run_id]
    assert [run["tags"] for run in data["runs"]] == [{"seed": "1"}, {"seed": "2"}]


def test_append_after_a_crash_cut_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    model = Scalar()
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, run_id="a") as rec:
        record_epochs(rec, model, [1, 2])
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # a crash mid-write: the last line is cut short
    assert read_log(path).frame.height == 2  # readable, the partial line skipped
    with GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, run_id="b") as rec:
        record_epochs(rec, model, [1])
    runs = read_log(path).frame["run"].to_list()
    assert runs == ["a", "a", "b", "b"]
