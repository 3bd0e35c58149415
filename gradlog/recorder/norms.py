"""Gradient norms as pure torch functions: no I/O, no scheduling, nothing written to ``.grad``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def _norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor (all on one device), stacked."""
    tensors = list(tensors)
    if all(t.dtype in (torch.float32, torch.float64) for t in tensors):
        norms = torch._foreach_norm(tensors)  # one fused kernel, as clip_grad_norm_ uses
    else:  # half precision would overflow its own range: accumulate in float32
        norms = [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]
    return torch.stack(norms)  # float32 values convert to Python floats exactly


def parameter_grad_norms(
    params: Sequence[torch.nn.Parameter],
) -> tuple[list[int], list[torch.Tensor]]:
    """Per-parameter L2 norms of ``.grad`` for the parameters that have one, on the device.

    Returns the indices (into ``params``) of those parameters and tensors holding their norms
    in that order: one stacked tensor, or one per parameter when the parameters are spread
    over devices (model parallel). Nothing is fetched to the host.
    """
    index = [i for i, p in enumerate(params) if p.grad is not None]
    if not index:
        return [], []
    with torch.no_grad():  # rather than a detach of each gradient: one switch, not one op each
        grads = [params[i].grad for i in index]
        if len({g.device for g in grads}) == 1:
            return index, [_norms(grads)]
        return index, [torch.linalg.vector_norm(g) for g in grads]


def task_parameter_grads(
    losses: Sequence[torch.Tensor], params: Sequence[torch.nn.Parameter]
) -> list[tuple[torch.Tensor | None, ...]]:
    """The gradient of each loss alone with respect to ``params`` (None where it does not reach).

    ``torch.autograd.grad`` with the graph retained: ``.grad`` and the graph the caller is about
    to backward through are left as they were (one extra backward per task).
    """
    return [
        torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        if loss.requires_grad
        else (None,) * len(params)
        for loss in losses
    ]


def parameter_gram(
    per_task: Sequence[Sequence[torch.Tensor | None]],
    index: Callable[[list[int], torch.device], torch.Tensor] | None = None,
    scratch: Callable[[int, torch.device], torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """The (n, n) float64 Gram matrix ``G[i, j] = <g_i, g_j>`` of per-task parameter gradients,
    as partial sums, one per device the parameters are on (their sum is the matrix).

    Each task's gradient is the concatenation over all parameters (a missing one counts as
    zero). Computed one parameter at a time in float64 (on the CPU, a cache-sized piece of it
    at a time: :func:`_float64_gram`), so the memory it needs beyond the gradients is at most
    that of the largest parameter, and the norms are exact to float64 rounding.
    ``index(present, device)``: the tasks a parameter's gradient reaches, as an index tensor on
    ``device``; a cache of them spares a copy from the host at every step (default: made anew).
    ``scratch(size, device)``: a flat float64 buffer of at least ``size`` elements for the rows
    of one parameter (or of one piece of it); one kept between steps spares the page faults of a fresh one each time
    (default: made anew).
    """
    n = len(per_task)
    if index is None:
        index = lambda present, device: torch.tensor(present, device=device)  # noqa: E731
    if scratch is None:
        scratch = lambda size, device: torch.empty(size, dtype=torch.float64, device=device)  # noqa: E731
    partial: dict[torch.device, torch.Tensor] = {}
    for grads in zip(*per_task):
        present = [g for g in grads if g is not None]
        if not present:
            continue
        device = present[0].device
        sub = _float64_gram([g.detach().reshape(-1) for g in present], scratch)
        gram = partial.get(device)
        if gram is None:
            gram = partial[device] = torch.zeros((n, n), dtype=torch.float64, device=device)
        if len(present) == n:
            gram += sub
        else:
            rows_at = index([i for i, g in enumerate(grads) if g is not None], device)
            gram[rows_at[:, None], rows_at[None, :]] += sub
    if not partial:
        return [torch.zeros((n, n), dtype=torch.float64)]
    return list(partial.values())


# On the CPU a parameter's float64 rows are made and multiplied this many values at a time:
# 2 tasks x 32k float64 values (512 KiB) stay in the core's cache between the copy that makes
# them and the product that reads them, where whole rows of a 512 x 512 layer (4 MiB) go out
# to memory and back. Measured on issue 14's MLP: the Gram matrix in 0.75x the time of whole
# rows (benchmarks/README.md, "Recorder overhead after the rec work").
CPU_PIECE = 1 << 15


def _float64_gram(rows32: list[torch.Tensor], scratch) -> torch.Tensor:
    """The (m, m) float64 Gram matrix of 1-d gradients of one size and device: each copied to
    float64 (exact) and multiplied, a piece of ``CPU_PIECE`` values at a time on the CPU (the
    pieces' products summed in float64), whole elsewhere (a GPU's launches cost more than its
    memory traffic). A parameter of one piece is multiplied exactly as a whole one."""
    m, numel, device = len(rows32), rows32[0].numel(), rows32[0].device
    piece = min(numel, CPU_PIECE) if device.type == "cpu" else numel
    buffer = scratch(m * piece, device)
    sub = None
    for start in range(0, numel, piece):
        width = min(piece, numel - start)
        rows = buffer[: m * width].view(m, width)
        for row, grad in zip(rows, rows32):
            row.copy_(grad[start : start + width])  # to float64, exactly
        if sub is None:
            sub = rows @ rows.t()
        else:
            sub.addmm_(rows, rows.t())
    return sub


def norms_and_cosines(
    gram: Sequence[Sequence[float]],
) -> tuple[list[float], dict[tuple[int, int], float | None]]:
    """Each task's gradient norm and the cosine of every pair ``i < j``, from a Gram matrix.

    A cosine is None where either gradient is zero (no direction to compare); non-finite
    gradients give NaN. Cosines are clamped to [-1, 1] against rounding.
    """
    n = len(gram)
    norms = [math.sqrt(gram[i][i]) if gram[i][i] >= 0 else math.nan for i in range(n)]
    cosines: dict[tuple[int, int], float | None] = {}
    for i in range(n):
        for j in range(i + 1, n):
            a, b = norms[i], norms[j]
            if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(gram[i][j])):
                cosines[i, j] = math.nan
            elif a == 0 or b == 0:
                cosines[i, j] = None
            else:
                cosines[i, j] = max(-1.0, min(1.0, gram[i][j] / (a * b)))
    return norms, cosines
