"""Which operations of the autograd graph read the shared representation, task by task.

What :class:`gradlog.recorder.capture.RepresentationCapture` hooks: walked from each task loss
down to the representation before the backward, never below it. Torch only; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch.autograd.graph import get_gradient_edge

from gradlog.errors import RecorderConfigError


class Shared(NamedTuple):
    """What the capture needs of the representation, without holding the tensor itself (so
    that its memory is freed during the backward as it would be without gradlog): where its
    gradient enters the graph, and its shape, dtype and device."""

    node: Any  # the autograd node that receives the representation's gradient
    output_nr: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, tensor: torch.Tensor) -> Shared:
        if not tensor.requires_grad:
            raise RecorderConfigError(
                "the shared representation does not require grad: pass the tensor the task "
                "heads read, computed with gradients enabled (not under torch.no_grad() or "
                "detached)"
            )
        node = tensor.grad_fn
        if node is not None:  # the usual case, and faster than get_gradient_edge's checks
            return cls(node, tensor.output_nr, tuple(tensor.shape), tensor.dtype, tensor.device)
        edge = get_gradient_edge(tensor)  # a leaf: its AccumulateGrad node
        return cls(edge.node, edge.output_nr, tuple(tensor.shape), tensor.dtype, tensor.device)


def task_consumers(
    losses: Sequence[torch.Tensor], shared: torch.Tensor | Shared
) -> dict[Any, tuple[int, list[int]]]:
    """The autograd nodes that read ``shared``, each with its task and the input slots it reads.

    Walks the graph from each loss down to ``shared`` (never below it). A consumer reached from
    two tasks would mix their gradients, so it is refused with a message saying what to pass.
    """
    if isinstance(shared, torch.Tensor):
        shared = Shared.of(shared)
    target, target_nr = shared.node, shared.output_nr
    consumers: dict[Any, tuple[int, list[int]]] = {}
    for task, loss in enumerate(losses):
        root = loss.grad_fn
        if root is None:
            continue
        seen = {root}
        stack = [root]
        while stack:
            node = stack.pop()
            slots = None
            for slot, (child, nr) in enumerate(node.next_functions):
                if child is None:
                    continue
                if child is target:  # never walk below the representation
                    if nr == target_nr:
                        slots = [slot] if slots is None else [*slots, slot]
                    continue
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
            if slots is None:
                continue
            owner = consumers.get(node)
            if owner is not None and owner[0] != task:
                raise RecorderConfigError(
                    f"the shared representation is read by an operation ({node.name()}) that "
                    f"feeds task #{owner[0] + 1} and task #{task + 1}: their gradients cannot "
                    "be told apart there. Pass the tensor the task heads read (the output of "
                    "the last layer the tasks share), so that each operation reading it "
                    "belongs to one task"
                )
            consumers[node] = (task, slots)
    return consumers


def reached_outputs(losses: Sequence[torch.Tensor], outputs: Sequence[Shared]) -> set[int]:
    """The indices of ``outputs`` that the losses read.

    Walks the graph from the losses and never below an output: one reached only through
    another (a module applied to its own output) is not what the heads read. A loss the
    walk does not reach from an output's node adds nothing.
    """
    targets: dict[Any, list[tuple[int, int]]] = {}
    for index, output in enumerate(outputs):
        targets.setdefault(output.node, []).append((output.output_nr, index))
    found: set[int] = set()
    roots = []
    for loss in losses:
        node = loss.grad_fn
        if node is None:
            continue
        if node in targets:  # the loss is itself an output of the module
            found.update(i for nr, i in targets[node] if nr == loss.output_nr)
        else:
            roots.append(node)
    seen = set(roots)
    stack = list(roots)
    while stack:
        for child, nr in stack.pop().next_functions:
            if child is None:
                continue
            hits = targets.get(child)
            if hits is not None:
                found.update(i for output_nr, i in hits if output_nr == nr)
            elif child not in seen:
                seen.add(child)
                stack.append(child)
    return found
