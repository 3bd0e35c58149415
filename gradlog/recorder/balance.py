"""The per-task gradients of one step, from before its backward until they are logged.

Parameter mode measures them before the backward (``autograd.grad`` needs the graph, which
the backward frees); representation mode arms hooks that capture them during it. Either way
the Gram matrix of the weighted task losses' gradients is read after the backward, and until
then the measurement stays tied to the step it was prepared for, so that it is never logged
for another.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import gradlog.recorder.distributed as distributed
from gradlog.recorder.capture import RepresentationCapture
from gradlog.recorder.graph import Shared
from gradlog.recorder.norms import parameter_gram, task_parameter_grads


class PendingBalance:
    """The measurement prepared for one step, if any.

    ``weights``: each task's loss weight, in task order. ``world_size``: the ranks to reduce
    the task gradients over, or None where each rank reports its own batch (or there is one).
    """

    def __init__(
        self,
        n_tasks: int,
        weights: Sequence[float],
        params: Sequence[torch.nn.Parameter],
        world_size: int | None,
        *,
        representation: bool,
    ) -> None:
        self._weights = torch.tensor(list(weights), dtype=torch.float64)
        self._params = list(params)
        self._world_size = world_size
        self._capture = RepresentationCapture(n_tasks) if representation else None
        self._pending: tuple[int, torch.Tensor | RepresentationCapture] | None = None

    @property
    def step(self) -> int | None:
        """The step the pending measurement belongs to; None when nothing is pending."""
        return None if self._pending is None else self._pending[0]

    def measure(self, step: int, losses: list[torch.Tensor]) -> None:
        """Parameter mode: the task gradients of ``losses`` (in task order), now."""
        self._pending = (step, self._parameter_gram(losses))

    def measure_after_backward(self, step: int, losses: list[torch.Tensor]) -> None:
        """:meth:`measure` after the caller's own backward, which must have kept the graph."""
        try:
            self.measure(step, losses)
        except RuntimeError as exc:
            # torch's own message names neither gradlog nor the fix
            if "second time" in str(exc) or "freed" in str(exc):
                raise RuntimeError(
                    "gradlog needs the graph to measure per-task gradients on this step: "
                    "call loss.backward(retain_graph=recorder.needs_graph(epoch=..., "
                    "step=...)), or use recorder.backward(losses)"
                ) from exc
            raise

    def arm(
        self,
        step: int,
        losses: list[torch.Tensor],
        shared: torch.Tensor,
        total: torch.Tensor | None,
        *,
        exact: bool,
    ) -> None:
        """Representation mode: hook the backward that follows to capture the task gradients."""
        h = Shared.of(shared)
        self._capture.arm(losses, h, total, exact=exact)
        self._pending = (step, self._capture)

    def drop(self) -> None:
        if self._pending is not None and isinstance(self._pending[1], RepresentationCapture):
            self._pending[1].disarm()
        self._pending = None

    def take(self) -> list[list[float]] | None:
        """The pending measurement's Gram matrix (after the backward), no longer pending."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        measured = pending[1]
        if not isinstance(measured, RepresentationCapture):
            return measured.tolist()
        reduce = None
        if self._world_size is not None:
            world = self._world_size
            reduce = lambda g: distributed.sum_gram(g, world)  # noqa: E731
        return measured.gram(reduce)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.disarm()

    def _parameter_gram(self, losses: list[torch.Tensor]) -> torch.Tensor:
        grads = task_parameter_grads(losses, self._params)
        if self._world_size is not None:
            grads = distributed.average_task_grads(grads, self._params, self._world_size)
        gram = parameter_gram(grads)
        w = self._weights
        return gram * torch.outer(w, w).to(gram.device)  # the gradients of the weighted losses
