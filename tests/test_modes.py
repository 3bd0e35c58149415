"""The two measurement modes against an independent reference, and training left bit-identical.

The reference is plain autograd on each task's weighted loss alone, in float64: over all
trainable parameters for ``mode="parameters"``, with respect to the shared representation for
``mode="representation"``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.errors import RecorderConfigError, SkippedSampleWarning  # noqa: E402

TASKS = ["depth", "seg", "edges"]
WEIGHTS = {"depth": 0.7, "seg": 1.3, "edges": 2.0}


class ThreeHead(nn.Module):
    """A shared LSTM encoder read by three heads; ``seg`` reads it through two operations
    (mean and max pooling), as the example model's type head does."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(4, 6, batch_first=True)
        self.depth_head = nn.Linear(6, 1)
        self.seg_head = nn.Linear(12, 3)
        self.edges_head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor, shared: list | None = None):
        h, _ = self.encoder(x)  # (batch, time, 6): the shared representation
        if shared is not None:
            shared.append(h)
        depth = self.depth_head(h).squeeze(-1)
        seg = self.seg_head(torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1))
        edges = self.edges_head(h[:, -1])
        return depth, seg, edges


def make_batch(seed: int, n: int = 8, t: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, 4, generator=g)
    return x, torch.randn(n, t, generator=g), torch.randint(0, 3, (n,), generator=g)


def task_losses(model: ThreeHead, batch, shared: list | None = None) -> dict[str, torch.Tensor]:
    x, depth_target, seg_target = batch
    depth, seg, edges = model(x, shared)
    return {
        "depth": F.mse_loss(depth, depth_target),
        "seg": F.cross_entropy(seg, seg_target),
        "edges": edges.pow(2).mean(),
    }


def events(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "event"]


def flat(grads, like) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).double().reshape(-1)
            for g, p in zip(grads, like)
        ]
    )


def reference(vectors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    norms = {t: float(v.norm()) for t, v in vectors.items()}
    cosines = {}
    for i, a in enumerate(TASKS):
        for b in TASKS[i + 1 :]:
            cosines[a, b] = float(vectors[a] @ vectors[b]) / (norms[a] * norms[b])
    return norms, cosines


def logged(event: dict) -> tuple[dict, dict]:
    norms = {t["name"]: t["grad_norm"] for t in event["tasks"]}
    cosines = {(c["a"], c["b"]): c["cosine"] for c in event["conflicts"]}
    return norms, cosines


def assert_matches(event: dict, expected: tuple[dict, dict], rel: float) -> None:
    norms, cosines = logged(event)
    want_norms, want_cosines = expected
    assert list(norms) == TASKS
    assert list(cosines) == [("depth", "seg"), ("depth", "edges"), ("seg", "edges")]
    for task in TASKS:
        assert norms[task] == pytest.approx(want_norms[task], rel=rel), task
    for pair, value in want_cosines.items():
        assert cosines[pair] == pytest.approx(value, abs=rel), pair


# -- agreement with the reference ----------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_parameter_mode_matches_autograd_on_each_task_alone(
    tmp_path: Path, dtype: torch.dtype, rel: float
) -> None:
    torch.manual_seed(0)
    model = ThreeHead().to(dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    path = tmp_path / "run.jsonl"
    x, depth, seg = make_batch(0)
    with GradientRecorder(model, TASKS, path, weights=WEIGHTS, balance_every=1) as rec:
        losses = task_losses(model, (x.to(dtype), depth.to(dtype), seg))
        vectors = {
            t: flat(
                torch.autograd.grad(
                    WEIGHTS[t] * losses[t], params, retain_graph=True, allow_unused=True
                ),
                params,
            )
            for t in TASKS
        }
        rec.backward(losses, epoch=1)
    (event,) = events(path)
    # float64: exact but for the order of the sums; float32: gradients of w * L and w * (the
    # gradient of L) differ in their last bits.
    assert_matches(event, reference(vectors), rel=rel)
    # the tasks share the encoder and differ: a non-trivial check
    _, cosines = logged(event)
    assert all(abs(c) > 1e-4 for c in cosines.values())


@pytest.mark.parametrize("how", ["module", "module name", "tensor"])
def test_representation_mode_matches_autograd_at_the_representation(
    tmp_path: Path, how: str
) -> None:
    torch.manual_seed(1)
    model = ThreeHead()
    path = tmp_path / "run.jsonl"
    shared_arg = {"module": model.encoder, "module name": "encoder", "tensor": None}[how]
    rec = GradientRecorder(
        model,
        TASKS,
        path,
        weights=WEIGHTS,
        mode="representation",
        shared=shared_arg,
        log_every=None,
        balance_every=None,
        balance_every_steps=1,
        buffer=0,  # read each record as it is written
    )
    for step in (1, 2):
        model.zero_grad()
        captured: list = []
        losses = task_losses(model, make_batch(step), captured)
        h = captured[0]
        vectors = {
            t: torch.autograd.grad(WEIGHTS[t] * losses[t], h, retain_graph=True)[0]
            .double()
            .reshape(-1)
            for t in TASKS
        }
        rec.backward(losses, shared=h if how == "tensor" else None)
        assert_matches(events(path)[-1], reference(vectors), rel=1e-5)  # float32 products
    rec.close()
    meta = json.loads(path.read_text().splitlines()[0])["meta"]
    assert meta["mode"] == "representation"
    assert meta.get("shared") == (None if how == "tensor" else "encoder")


def test_representation_mode_gradients_are_those_of_the_weighted_losses(tmp_path: Path) -> None:
    """Linear losses of a representation: every gradient, norm and cosine is known exactly."""

    class Known(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, dtype=torch.float64))

        def forward(self):
            return self.w * 1.0  # the representation: gradient w.r.t. it == w.r.t. w

    model = Known()
    tasks = ["a", "b", "c", "d"]
    weights = {"a": 2.0, "b": 1.0, "c": 1.0, "d": 1.0}
    directions = {"a": (1.0, 0.0, 0.0), "b": (-3.0, 0.0, 0.0), "c": (0.0, 4.0, 0.0)}
    for mode in ("parameters", "representation"):
        path = tmp_path / f"{mode}.jsonl"
        with GradientRecorder(
            model, tasks, path, weights=weights, mode=mode, balance_every=1, log_every=None
        ) as rec:
            h = model()
            losses = {
                t: (torch.tensor(c, dtype=torch.float64) * h).sum() for t, c in directions.items()
            }
            losses["d"] = 0.0 * h.sum()  # reaches the representation with a zero gradient
            shared = {"shared": h} if mode == "representation" else {}
            rec.backward(losses, epoch=1, **shared)
        norms, cosines = logged(events(path)[0])
        assert norms == {"a": 2.0, "b": 3.0, "c": 4.0, "d": 0.0}, mode
        assert cosines[("a", "b")] == -1.0
        assert cosines[("a", "c")] == 0.0 and cosines[("b", "c")] == 0.0
        assert cosines[("a", "d")] is None  # no direction to compare with a zero gradient


def test_scaled_backward_is_divided_out(tmp_path: Path) -> None:
    """Frameworks backpropagate a multiple of the total (loss scaling, accumulation)."""
    results = []
    for scale in (1.0, 0.25, 1024.0):
        torch.manual_seed(2)
        model = ThreeHead()
        path = tmp_path / f"s{scale}.jsonl"
        with GradientRecorder(
            model,
            TASKS,
            path,
            weights=WEIGHTS,
            mode="representation",
            shared=model.encoder,
            balance_every=1,
            log_every=None,
        ) as rec:
            losses = task_losses(model, make_batch(3))
            total = sum(WEIGHTS[t] * losses[t] for t in TASKS)
            rec.before_backward(losses, epoch=1, total=total)
            (scale * total).backward()
            rec.record(losses, epoch=1)
        results.append(logged(events(path)[0]))
    for norms, cosines in results[1:]:
        for task in TASKS:
            assert norms[task] == pytest.approx(results[0][0][task], rel=1e-6)
        for pair in cosines:
            assert cosines[pair] == pytest.approx(results[0][1][pair], abs=1e-6)


def test_own_backward_in_representation_mode(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = ThreeHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model,
        TASKS,
        path,
        weights=WEIGHTS,
        mode="representation",
        shared=model.encoder,
        balance_every=1,
        log_every=1,
    ) as rec:
        assert rec.needs_graph(epoch=1) is False  # nothing to retain in this mode
        losses = task_losses(model, make_batch(4))
        rec.before_backward(losses, epoch=1)
        sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
        rec.record(losses, epoch=1)
        losses = task_losses(model, make_batch(5))
        sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
        with pytest.warns(SkippedSampleWarning, match="before_backward"):
            rec.record(losses, epoch=2)  # training goes on; the sample is marked skipped
    first, second = events(path)
    assert first["epoch"] == 1 and len(first["tasks"]) == 3 and "mean_norm" in first
    assert "tasks" not in second and "before_backward" in second["skipped"]
    assert "mean_norm" in second  # the step's statistics were due, and taken


# -- refusals at construction or at the first call; samples skipped, never a stop ------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fast"}, "mode must be one of"),
        ({"shared": "encoder"}, "mode='representation'"),
        ({"mode": "representation", "shared": "nope"}, "no submodule"),
        ({"mode": "representation", "shared": nn.Linear(2, 2)}, "not part of it"),
        ({"mode": "representation", "shared": 3}, "module of the model"),
        ({"buffer": -1}, "buffer"),
        ({"flush_seconds": 0}, "flush_seconds"),
    ],
)
def test_bad_mode_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(RecorderConfigError, match=match):
        GradientRecorder(ThreeHead(), TASKS, tmp_path / "run.jsonl", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_representation_mode_needs_the_representation(tmp_path: Path) -> None:
    model = ThreeHead()
    with GradientRecorder(model, TASKS, tmp_path / "run.jsonl", mode="representation") as rec:
        with pytest.raises(RecorderConfigError, match=r"shared=model.encoder"):
            rec.backward(task_losses(model, make_batch(0)), epoch=1)  # even when nothing is due


def skipped_events(path: Path) -> list[dict]:
    logged_events = events(path)
    assert all("tasks" not in e for e in logged_events)
    return [e["skipped"] for e in logged_events]


def test_an_operation_feeding_two_tasks_is_skipped(tmp_path: Path) -> None:
    """Found at the first measured step, which may be hours into a run: warned, not raised."""

    class Normed(ThreeHead):
        def forward(self, x, shared=None):
            h, _ = self.encoder(x)
            h = torch.tanh(h)  # read by the encoder's output's one consumer: all tasks
            return (
                self.depth_head(h).squeeze(-1),
                self.seg_head(torch.cat([h.mean(1), h.amax(1)], -1)),
                self.edges_head(h[:, -1]),
            )

    model = Normed()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model, TASKS, path, mode="representation", shared=model.encoder, balance_every=1
    ) as rec:
        with pytest.warns(SkippedSampleWarning, match=r"TanhBackward0.*cannot be told apart"):
            rec.backward(task_losses(model, make_batch(0)), epoch=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per reason
            rec.backward(task_losses(model, make_batch(1)), epoch=2)
    (first, second) = skipped_events(path)
    assert first == second and "TanhBackward0" in first


def test_a_shared_module_read_twice_is_skipped(tmp_path: Path) -> None:
    model = ThreeHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model, TASKS, path, mode="representation", shared=model.encoder, balance_every=1
    ) as rec:
        losses = task_losses(model, make_batch(0))
        extra = task_losses(model, make_batch(1))
        with pytest.warns(SkippedSampleWarning, match="read 2 outputs"):
            rec.backward({t: losses[t] + extra[t] for t in TASKS}, epoch=1)
    assert skipped_events(path) == [
        "the task losses read 2 outputs of the shared module 'encoder' (a second view of the "
        "batch?), so there is no one representation to measure at: pass the tensor the task "
        "heads read as shared=h"
    ]


def test_representation_without_gradients_is_skipped(tmp_path: Path) -> None:
    model = ThreeHead()
    path = tmp_path / "run.jsonl"
    with GradientRecorder(model, TASKS, path, mode="representation", balance_every=1) as rec:
        losses = task_losses(model, make_batch(0))
        with pytest.warns(SkippedSampleWarning, match="does not require grad"):
            rec.backward(losses, epoch=1, shared=torch.zeros(3))
    (reason,) = skipped_events(path)
    assert reason.startswith("the shared representation does not require grad")


# -- the recorder never changes training ----------------------------------------------------

CADENCES = {
    "every step": {
        "log_every": None,
        "balance_every": None,
        "log_every_steps": 1,
        "balance_every_steps": 1,
    },
    "steps and epochs": {
        "log_every": 2,
        "balance_every": 3,
        "log_every_steps": 2,
        "balance_every_steps": 3,
    },
}


def train(
    steps: int, mode: str | None, cadence: str, path: Path | None, own_backward: bool = False
):
    torch.manual_seed(123)
    model = ThreeHead()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rec = None
    if mode is not None:
        extra = {"shared": model.encoder} if mode == "representation" else {}
        rec = GradientRecorder(
            model,
            TASKS,
            path,
            weights=WEIGHTS,
            mode=mode,
            layers=True,
            **CADENCES[cadence],
            **extra,
        )
    grads = []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        losses = task_losses(model, make_batch(step))
        epoch = (step + 1) // 2
        if rec is None:
            sum(WEIGHTS[t] * losses[t] for t in TASKS).backward()
        elif own_backward:
            rec.before_backward(losses, epoch=epoch)
            total = sum(WEIGHTS[t] * losses[t] for t in TASKS)
            total.backward(retain_graph=rec.needs_graph(epoch=epoch))
            rec.record(losses, epoch=epoch)
        else:
            rec.backward(losses, epoch=epoch)
        grads.append([p.grad.clone() for p in model.parameters()])
        optimizer.step()
    if rec is not None:
        rec.close()
    return model, grads


@pytest.mark.parametrize("cadence", list(CADENCES))
@pytest.mark.parametrize(
    ("mode", "own"),
    [
        ("parameters", False),
        ("parameters", True),
        ("representation", False),
        ("representation", True),
    ],
)
def test_training_is_bit_identical_with_and_without_the_recorder(
    tmp_path: Path, mode: str, own: bool, cadence: str
) -> None:
    plain, plain_grads = train(8, None, cadence, None)
    path = tmp_path / "run.jsonl"
    recorded, recorded_grads = train(8, mode, cadence, path, own_backward=own)
    for a, b in zip(plain_grads, recorded_grads):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    for p, q in zip(plain.parameters(), recorded.parameters()):
        assert torch.equal(p, q)
    logged_events = events(path)
    assert logged_events and any("conflicts" in e for e in logged_events)
    for event in logged_events:
        if "tasks" in event:
            assert all(math.isfinite(t["grad_norm"]) for t in event["tasks"])


def test_many_tasks_in_representation_mode(tmp_path: Path) -> None:
    """Beyond four tasks the inner products are one matrix product at the end."""
    torch.manual_seed(5)
    encoder = nn.Linear(3, 16)
    heads = nn.ModuleList(nn.Linear(16, 1) for _ in range(6))
    model = nn.ModuleDict({"encoder": encoder, "heads": heads})
    tasks = [f"t{i}" for i in range(6)]
    weights = {t: 0.5 + i for i, t in enumerate(tasks)}
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model,
        tasks,
        path,
        weights=weights,
        mode="representation",
        shared="encoder",
        balance_every=1,
        log_every=None,
    ) as rec:
        h = encoder(torch.randn(5, 3))
        losses = {
            t: head(h if i % 2 else torch.tanh(h)).pow(2).mean()
            for i, (t, head) in enumerate(zip(tasks, heads))
        }
        vectors = {
            t: torch.autograd.grad(weights[t] * losses[t], h, retain_graph=True)[0]
            .double()
            .reshape(-1)
            for t in tasks
        }
        rec.backward(losses, epoch=1)
    norms, cosines = logged(events(path)[0])
    assert len(cosines) == 15
    for t in tasks:
        assert norms[t] == pytest.approx(float(vectors[t].norm()), rel=1e-5)
    for (a, b), value in cosines.items():
        want = float(vectors[a] @ vectors[b]) / float(vectors[a].norm() * vectors[b].norm())
        assert value == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("path_taken", ["backward", "own backward"])
@pytest.mark.parametrize("seg_weight", [1.3, 100.0])
def test_two_tasks_in_representation_mode(
    tmp_path: Path, path_taken: str, seg_weight: float
) -> None:
    """Two tasks through ``backward`` take the read-only method (the cosine from the norm of
    the summed gradient); through ``before_backward`` the general one. Both match the
    reference, also with one task's gradient 100 times the other's."""
    torch.manual_seed(6)
    model = ThreeHead()
    tasks = ["depth", "seg"]
    weights = {"depth": 1.0, "seg": seg_weight}
    path = tmp_path / "run.jsonl"
    expected = []
    rec = GradientRecorder(
        model,
        tasks,
        path,
        weights=weights,
        mode="representation",
        shared=model.encoder,
        balance_every=1,
        log_every=None,
    )
    for epoch in (1, 2):
        captured: list = []
        losses = task_losses(model, make_batch(epoch), captured)
        losses = {t: losses[t] for t in tasks}
        h = captured[0]
        expected.append(
            [
                torch.autograd.grad(weights[t] * losses[t], h, retain_graph=True)[0]
                .double()
                .reshape(-1)
                for t in tasks
            ]
        )
        model.zero_grad()
        if path_taken == "backward":
            rec.backward(losses, epoch=epoch)
        else:
            rec.before_backward(losses, epoch=epoch)
            sum(weights[t] * losses[t] for t in tasks).backward()
            rec.record(losses, epoch=epoch)
    rec.close()
    logged_events = events(path)
    assert len(logged_events) == 2
    for event, (a, b) in zip(logged_events, expected):
        norms, cosines = logged(event)
        assert norms["depth"] == pytest.approx(float(a.norm()), rel=1e-5)
        assert norms["seg"] == pytest.approx(float(b.norm()), rel=1e-5)
        assert cosines[("depth", "seg")] == pytest.approx(
            float(a @ b) / float(a.norm() * b.norm()), abs=1e-4 if seg_weight > 10 else 1e-5
        )


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_half_precision_representation(tmp_path: Path, n_tasks: int) -> None:
    """A bfloat16 representation: products summed in float32, the reference within bf16."""
    torch.manual_seed(7)
    encoder = nn.Linear(4, 16).to(torch.bfloat16)
    heads = nn.ModuleList(nn.Linear(16, 2).to(torch.bfloat16) for _ in range(n_tasks))
    model = nn.ModuleDict({"encoder": encoder, "heads": heads})
    tasks = [f"t{i}" for i in range(n_tasks)]
    path = tmp_path / "run.jsonl"
    with GradientRecorder(
        model,
        tasks,
        path,
        mode="representation",
        shared="encoder",
        balance_every=1,
        log_every=None,
    ) as rec:
        h = encoder(torch.randn(8, 4, dtype=torch.bfloat16))
        losses = {t: head(h).float().pow(2).mean() for t, head in zip(tasks, heads)}
        vectors = {
            t: torch.autograd.grad(losses[t], h, retain_graph=True)[0].double().reshape(-1)
            for t in tasks
        }
        rec.backward(losses, epoch=1)
    norms, cosines = logged(events(path)[0])
    for t in tasks:
        assert norms[t] == pytest.approx(float(vectors[t].norm()), rel=1e-3)
    for (a, b), value in cosines.items():
        want = float(vectors[a] @ vectors[b]) / float(vectors[a].norm() * vectors[b].norm())
        assert value == pytest.approx(want, abs=1e-3)
