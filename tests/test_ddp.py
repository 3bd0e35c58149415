"""The recorder under torch.distributed: two processes, gloo backend, CPU.

Each rank trains a DistributedDataParallel model on its half of a batch. By default rank 0
alone writes, and what it writes equals a single process training on the whole batch (DDP
averages the gradients, and the task gradients are reduced the same way). With
``per_rank=True`` every rank writes its own file, measured on its own half. FSDP is refused.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3
WORLD = 2
PYPATH = os.environ.get("PYTHONPATH", "")

if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

# The model, data and training, shared by the worker processes and the reference below.
COMMON = """
import torch
from torch import nn
from torch.nn import functional as F

TASKS = ["pointer", "type"]
WEIGHTS = {"pointer": 0.5, "type": 2.0}


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.pointer_head = nn.Linear(6, 2)
        self.type_head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.encoder(x)
        return self.pointer_head(h), self.type_head(h.pow(2))


def batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(8, 4, generator=g), torch.rand(8, 2, generator=g), torch.randint(0, 3, (8,), generator=g)


def losses(model, x, pointers, types):
    p, t = model(x)
    return {"pointer": F.mse_loss(p, pointers), "type": F.cross_entropy(t, types)}
"""

WORKER = (
    COMMON
    + """
import sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from gradlog import GradientRecorder

rank, init, out, mode, per_rank = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
clip = float(sys.argv[6]) if len(sys.argv) > 6 else None
dist.init_process_group("gloo", init_method="file://" + init, rank=rank, world_size=2)
torch.manual_seed(0)
model = Model()
ddp = DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.5)
extra = {"shared": model.encoder} if mode == "representation" else {}
rec = GradientRecorder(ddp, TASKS, out, weights=WEIGHTS, mode=mode, log_every=None,
                       balance_every=None, log_every_steps=1, balance_every_steps=1,
                       per_rank=per_rank, run_id=f"rank{rank}-id", clip=clip, **extra)
for step in range(1, STEPS + 1):
    x, pointers, types = (t[rank * 4:(rank + 1) * 4] for t in batch(step))
    optimizer.zero_grad()
    rec.backward(losses(ddp, x, pointers, types))
    optimizer.step()
rec.close()
torch.save([p.detach() for p in model.parameters()], out + f".params{rank}")
# Both ranks leave the group together: a rank tearing gloo down while the other is still in
# a collective aborts it ("terminate called without an active exception"), seen under load.
dist.barrier()
dist.destroy_process_group()
"""
).replace("STEPS", str(STEPS))


def run_ranks(tmp_path: Path, mode: str, per_rank: bool, clip: float | None = None) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run.jsonl"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-W",
                "ignore",
                str(script),
                str(rank),
                str(tmp_path / "init"),
                str(out),
                mode,
                "1" if per_rank else "0",
                *([] if clip is None else [str(clip)]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            # the script's own folder comes first on sys.path, not the cwd: import this checkout
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), PYPATH]))},
        )
        for rank in range(WORLD)
    ]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err.decode()[-3000:]
    return out


def reference(mode: str, halves: tuple[int, ...], clip: float | None = None):
    """Single-process training on the whole batch, measuring task gradients on ``halves``
    (both: the whole batch, as DDP trains; one: that rank's own half)."""
    namespace: dict = {}
    exec(textwrap.dedent(COMMON), namespace)
    torch.manual_seed(0)
    model = namespace["Model"]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    params = list(model.parameters())
    weights, tasks = namespace["WEIGHTS"], namespace["TASKS"]
    expected = []
    for step in range(1, STEPS + 1):
        full = namespace["batch"](step)
        rows = torch.cat([torch.arange(4 * r, 4 * r + 4) for r in halves])
        part = [t[rows] for t in full]
        h = model.encoder(part[0])
        p, t = model.pointer_head(h), model.type_head(h.pow(2))
        import torch.nn.functional as F

        part_losses = {
            "pointer": F.mse_loss(p, part[1]),
            "type": F.cross_entropy(t, part[2]),
        }
        wrt = [h] if mode == "representation" else params
        vectors = {
            k: torch.cat(
                [
                    (g if g is not None else torch.zeros_like(w)).double().reshape(-1)
                    for g, w in zip(
                        torch.autograd.grad(
                            weights[k] * part_losses[k], wrt, retain_graph=True, allow_unused=True
                        ),
                        wrt,
                    )
                ]
            )
            for k in tasks
        }
        optimizer.zero_grad()
        whole = namespace["losses"](model, *full)
        sum(weights[k] * whole[k] for k in tasks).backward()
        pre_clip = None if clip is None else float(torch.nn.utils.clip_grad_norm_(params, clip))
        grad_norms = [float(q.grad.double().norm()) for q in params]
        optimizer.step()
        a, b = vectors["pointer"], vectors["type"]
        expected.append(
            {
                "norms": {"pointer": float(a.norm()), "type": float(b.norm())},
                "cosine": float(a @ b / (a.norm() * b.norm())),
                "mean_norm": sum(grad_norms) / len(grad_norms),
                "max_norm": max(grad_norms),
                "pre_clip_norm": pre_clip,
            }
        )
    return expected, [p.detach() for p in params]


def events(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "event"]


def check(logged: list[dict], expected: list[dict]) -> None:
    assert [e["step"] for e in logged] == list(range(1, STEPS + 1))
    for event, want in zip(logged, expected):
        norms = {t["name"]: t["grad_norm"] for t in event["tasks"]}
        for task, value in want["norms"].items():
            assert norms[task] == pytest.approx(value, rel=1e-5)
        (pair,) = event["conflicts"]
        assert pair["cosine"] == pytest.approx(want["cosine"], abs=1e-5)
        assert event["mean_norm"] == pytest.approx(want["mean_norm"], rel=1e-5)
        assert event["max_norm"] == pytest.approx(want["max_norm"], rel=1e-5)


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_rank_zero_writes_the_synchronised_measurements(tmp_path: Path, mode: str) -> None:
    out = run_ranks(tmp_path, mode, per_rank=False)
    assert sorted(p.name for p in tmp_path.glob("run*.jsonl")) == ["run.jsonl"]  # one writer
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["kind"] == "run" and records[0]["meta"]["world_size"] == WORLD
    assert {r["run"] for r in records} == {"rank0-id"}  # rank 0's id, broadcast
    assert all("rank" not in r for r in records)
    expected, params = reference(mode, halves=(0, 1))
    check(events(out), expected)
    # DDP trained as one process on the whole batch would (the recorder changed nothing)
    for rank in range(WORLD):
        trained = torch.load(f"{out}.params{rank}")
        for p, q in zip(trained, params):
            assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_every_rank_clips(tmp_path: Path) -> None:
    """clip=: every rank clips (rank 1, which writes nothing, too), so the ranks stay in step
    and train as one clipped process; rank 0 logs the synchronised norm before clipping."""
    clip = 0.05
    out = run_ranks(tmp_path, "parameters", per_rank=False, clip=clip)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["meta"]["stats_at"] == "after_clipping"
    expected, params = reference("parameters", halves=(0, 1), clip=clip)
    logged = events(out)
    check(logged, expected)
    for event, want in zip(logged, expected):
        assert want["pre_clip_norm"] > clip  # every step was clipped
        assert event["pre_clip_norm"] == pytest.approx(want["pre_clip_norm"], rel=1e-5)
    ranks = [torch.load(f"{out}.params{rank}") for rank in range(WORLD)]
    for p, q, r in zip(*ranks, params):
        assert torch.equal(p, q)
        assert torch.allclose(p, r, rtol=1e-5, atol=1e-7)


def test_per_rank_files(tmp_path: Path) -> None:
    run_ranks(tmp_path, "representation", per_rank=True)
    files = sorted(p.name for p in tmp_path.glob("run*.jsonl"))
    assert files == ["run.rank0.jsonl", "run.rank1.jsonl"]
    for rank in range(WORLD):
        records = [json.loads(line) for line in (tmp_path / files[rank]).read_text().splitlines()]
        assert {r["rank"] for r in records} == {rank}
        assert {r["run"] for r in records} == {"rank0-id"}  # one run id across the files
        expected, _ = reference("representation", halves=(rank,))
        logged = events(tmp_path / files[rank])
        for event, want in zip(logged, expected):
            norms = {t["name"]: t["grad_norm"] for t in event["tasks"]}
            for task, value in want["norms"].items():
                assert norms[task] == pytest.approx(value, rel=1e-5)  # the rank's own half
    # the reader keeps the rank column
    from gradlog.analysis.readers import read_log

    frame = read_log(tmp_path / "run.rank1.jsonl").frame
    assert set(frame["rank"].to_list()) == {1}


FSDP = """
import sys, warnings
warnings.filterwarnings("ignore")
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from gradlog import GradientRecorder
from gradlog.errors import RecorderConfigError
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
fully_shard(model)
try:
    GradientRecorder(model, ["a", "b"], sys.argv[2])
except RecorderConfigError as exc:
    print(exc)
dist.destroy_process_group()
"""


def test_fsdp_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FSDP, str(tmp_path / "init"), str(tmp_path / "run.jsonl")],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    message = result.stdout.decode()
    assert message.startswith("gradlog does not support FSDP")
    assert "DTensor" in message and "reduction across ranks" in message
    assert not (tmp_path / "run.jsonl").exists()


def test_no_process_group_means_single_process(tmp_path: Path) -> None:
    from gradlog import GradientRecorder

    assert not torch.distributed.is_initialized()
    model = torch.nn.Linear(2, 2)
    rec = GradientRecorder(model, ["a", "b"], tmp_path / "run.jsonl", per_rank=True)
    assert (rec.rank, rec.world_size, rec.per_rank) == (0, 1, False)
    rec.close()
    meta = json.loads((tmp_path / "run.jsonl").read_text().splitlines()[0])["meta"]
    assert meta["world_size"] is None
    assert math.isfinite(meta["n_params"])
