"""Gradient norms as pure torch functions: no I/O, no scheduling, nothing written to ``.grad``."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor (all on one device), stacked as float64."""
    tensors = list(tensors)
    if all(t.dtype in (torch.float32, torch.float64) for t in tensors):
        norms = torch._foreach_norm(tensors)  # one fused kernel, as clip_grad_norm_ uses
    else:  # half precision would overflow its own range: accumulate in float32
        norms = [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]
    return torch.stack([n.to(torch.float64) for n in norms])


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
