"""What the recorder needs from ``torch.distributed``: who writes, and reductions across ranks.

Under distributed data parallel (DDP) every rank holds the whole model and, after the
backward, the same averaged gradients. The recorder therefore measures on every rank (the
reductions below are collective: all ranks must call them at the same steps, which they do
since every rank runs the same cadence) and, by default, only rank 0 writes.

FSDP (and any other scheme whose parameters are sharded, DTensors included) is refused: each
rank holds a slice of every gradient, so a per-parameter norm would need a reduction across
ranks for every parameter tensor, and the flattened parameters of FSDP 1 no longer match the
model's parameter names. See docs/recorder.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gradlog.errors import RecorderConfigError
from gradlog.recorder.config import RecorderConfig
from gradlog.recorder.writers import NullWriter, check_log_path, open_writer


def current() -> tuple[int, int] | None:
    """(rank, world size) when a default process group is initialised, else None."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.get_rank(), dist.get_world_size()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


FSDP_MESSAGE = (
    "gradlog does not support FSDP or other sharded parameters ({what}): each rank holds only "
    "a shard of every gradient, so per-tensor norms would need a reduction across ranks for "
    "every parameter. Record an unsharded (DDP or single-process) run, or compute the global "
    "norm with your FSDP module's clip_grad_norm_()"
)


def refuse_sharded(model: torch.nn.Module) -> None:
    """Raise a clear error for FSDP (1 or 2) models and DTensor parameters."""
    for module in model.modules():  # FSDP 1 (FSDP 2's parameters are DTensors, below)
        if type(module).__name__ == "FullyShardedDataParallel":
            raise RecorderConfigError(FSDP_MESSAGE.format(what="FullyShardedDataParallel"))
    for name, param in model.named_parameters():
        kind = type(param).__name__
        if kind in ("DTensor", "FlatParameter") or getattr(param, "_is_flat_param", False):
            raise RecorderConfigError(FSDP_MESSAGE.format(what=f"parameter {name!r} is a {kind}"))


def rank_path(path: str | os.PathLike[str], rank: int) -> Path:
    """``runs/train.jsonl`` -> ``runs/train.rank1.jsonl`` (the per-rank file of rank 1)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def open_rank_writer(
    path: str | os.PathLike[str], config: RecorderConfig, rank: int, per_rank: bool
) -> Any:
    """The writer of this rank: its own file with ``per_rank``, else rank 0's log on rank 0."""
    if per_rank:
        path = rank_path(path, rank)
    if per_rank or rank == 0:
        return open_writer(
            path,
            fsync=config.fsync,
            buffer_records=config.buffer,
            flush_seconds=config.flush_seconds,
        )
    # other ranks measure (the reductions are collective) but write nothing
    check_log_path(path)
    return NullWriter(path)


def broadcast_text(text: str) -> str:
    """Rank 0's ``text`` on every rank (the run id, so per-rank files share it)."""
    box = [text]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def sum_gram(gram: torch.Tensor, world_size: int) -> torch.Tensor:
    """The Gram matrix of the representation gradient of the global batch.

    DDP averages the ranks' gradients, i.e. trains on ``mean_r L_r``; the representation of the
    global batch is the ranks' representations side by side, and its gradient on rank ``r`` is
    ``(1/R) dL_r/dh_r``. Inner products of side-by-side vectors add up, so the global Gram
    matrix is the sum of the ranks' divided by ``R**2``.
    """
    gram = gram.clone()
    torch.distributed.all_reduce(gram)
    return gram / (world_size * world_size)


def average_task_grads(
    per_task: list[tuple[torch.Tensor | None, ...]],
    params: list[torch.nn.Parameter],
    world_size: int,
) -> list[tuple[torch.Tensor, ...]]:
    """Each task's parameter gradient averaged over the ranks, as DDP averages ``.grad``.

    One all-reduce per task of all its gradients flattened together (a missing gradient
    counts as zero on that rank): the memory cost is one more copy of the gradients per task.
    """
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    averaged = []
    for grads in per_task:
        flat = torch.cat(
            [
                (g.detach() if g is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                for g, p in zip(grads, params)
            ]
        )
        torch.distributed.all_reduce(flat)
        flat /= world_size
        averaged.append(tuple(flat.split([p.numel() for p in params])))
    return averaged
