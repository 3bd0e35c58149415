"""Gradient norms as pure torch functions: no I/O, no scheduling, nothing written to ``.grad``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor (all on one device), stacked."""
    tensors = list(tensors)
    if all(t.dtype in (torch.float32, torch.float64) for t in tensors):
        norms = torch._foreach_norm(tensors)  # one fused kernel, as clip_grad_norm_ uses
    else:  # half precision would overflow its own range: accumulate in float32
        norms = [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]
    return torch.stack(norms)  # float32 values convert to Python floats exactly


def parameter_grad_norms(params: Sequence[torch.nn.Parameter]) -> tuple[list[int], list[float]]:
    """Per-parameter L2 norms of ``.grad`` for the parameters that have one.

    Returns the indices (into ``params``) of those parameters and their norms, fetched from the
    device in one transfer.
    """
    index = [i for i, p in enumerate(params) if p.grad is not None]
    grads = [params[i].grad.detach() for i in index]
    if not grads:
        return [], []
    devices = {g.device for g in grads}
    if len(devices) == 1:
        norms = _norms(grads).tolist()
    else:  # parameters spread over devices (model parallel): one transfer per device
        norms = [float(torch.linalg.vector_norm(g)) for g in grads]
    return index, norms


def task_grad_norms(
    losses: Sequence[torch.Tensor], params: Sequence[torch.nn.Parameter]
) -> list[float]:
    """L2 norm, over ``params``, of the gradient of each loss alone.

    Uses ``torch.autograd.grad`` with the graph retained, so ``.grad`` and the graph the caller
    is about to backward through are left as they were. Parameters a loss does not reach
    contribute zero.
    """
    results: list[torch.Tensor] = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        present = [g for g in grads if g is not None]
        if not present:
            results.append(torch.zeros((), dtype=torch.float64))
            continue
        results.append(torch.linalg.vector_norm(_norms(present)).cpu())
    return torch.stack(results).tolist() if results else []


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


def parameter_gram(per_task: Sequence[Sequence[torch.Tensor | None]]) -> torch.Tensor:
    """The (n, n) float64 Gram matrix ``G[i, j] = <g_i, g_j>`` of per-task parameter gradients.

    Each task's gradient is the concatenation over all parameters (a missing one counts as
    zero). Computed one parameter at a time in float64, so the memory it needs beyond the
    gradients is that of the largest parameter, and the norms are exact to float64 rounding.
    """
    n = len(per_task)
    partial: dict[torch.device, torch.Tensor] = {}
    for grads in zip(*per_task):
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            continue
        rows = torch.stack([grads[i].detach().reshape(-1) for i in present]).to(torch.float64)
        sub = rows @ rows.t()
        device = rows.device
        gram = partial.get(device)
        if gram is None:
            gram = partial[device] = torch.zeros((n, n), dtype=torch.float64, device=device)
        index = torch.tensor(present, device=device)
        gram[index[:, None], index[None, :]] += sub
    if not partial:
        return torch.zeros((n, n), dtype=torch.float64)
    grams = list(partial.values())
    if len(grams) == 1:
        return grams[0]
    return torch.stack([g.cpu() for g in grams]).sum(dim=0)  # model parallel: several devices


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
