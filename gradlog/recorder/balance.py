"""The per-task gradients of one step, from before its backward until they are logged.

Parameter mode measures them before the backward (``autograd.grad`` needs the graph, which
the backward frees); representation mode arms hooks that capture them during it. Either way
the Gram matrix of the weighted task losses' gradients is taken after the backward, and until
then the measurement stays tied to the step it was prepared for, so that it is never logged
for another. The matrix stays on the device (:class:`~gradlog.recorder.pending.DeviceGram`)
until the writer flushes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

import gradlog.recorder.distributed as distributed
from gradlog.recorder.capture import RepresentationCapture
from gradlog.recorder.gram import DeviceGram, index_on, square_matrix
from gradlog.recorder.graph import Shared
from gradlog.recorder.norms import parameter_gram, task_parameter_grads

# A fresh buffer of a few megabytes costs the kernel's page faults at every use, as much as the
# copy into it; past this size the memory kept would matter more than that.
_KEEP_BYTES = 64 << 20


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
        self._outer: dict[torch.device, torch.Tensor] = {}  # w_i w_j, copied to each device once
        self._indices: dict[tuple, torch.Tensor] = {}
        self._scratch: dict[torch.device, torch.Tensor] = {}
        self._params = list(params)
        self._world_size = world_size
        self._capture = RepresentationCapture(n_tasks) if representation else None
        self._pending: tuple[int, DeviceGram | RepresentationCapture | str] | None = None

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

    def skip(self, step: int, reason: str) -> None:
        """The measurement due on ``step`` cannot be taken, for ``reason``: logged as skipped."""
        self._pending = (step, reason)

    def sample(self, losses: list[torch.Tensor], shared: torch.Tensor | None) -> DeviceGram:
        """The task gradients of ``losses`` now, one ``autograd.grad`` per task with the graph
        kept: over the parameters (``shared`` None) or at the representation ``shared``."""
        return self._parameter_gram(losses, shared)

    def drop(self) -> None:
        if self._pending is not None and isinstance(self._pending[1], RepresentationCapture):
            self._pending[1].disarm()
        self._pending = None

    def take(self) -> DeviceGram | str | None:
        """The pending measurement's Gram matrix (after the backward), or the reason it was
        skipped, no longer pending."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        measured = pending[1]
        if not isinstance(measured, RepresentationCapture):
            return measured
        reduce = None
        if self._world_size is not None:
            world = self._world_size
            reduce = lambda g: distributed.sum_gram(g, world)  # noqa: E731
        return measured.gram(reduce)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.disarm()

    def _parameter_gram(
        self, losses: list[torch.Tensor], shared: torch.Tensor | None = None
    ) -> DeviceGram:
        grads = task_parameter_grads(losses, self._params if shared is None else [shared])
        if self._world_size is not None and shared is None:
            grads = distributed.average_task_grads(grads, self._params, self._world_size)
        grams = parameter_gram(grads, partial(index_on, self._indices), self._rows)
        n, w = len(losses), self._weights
        if len(grams) > 1:  # model parallel: summed on the host once fetched, as it always was
            return DeviceGram(grams, lambda values: _host_sum(values, n, w))
        gram = grams[0]
        outer = self._outer.get(gram.device)
        if outer is None:
            outer = self._outer[gram.device] = torch.outer(w, w).to(gram.device)
        gram = gram * outer  # that of the weighted losses
        if self._world_size is not None and shared is not None:
            # each rank's representation is its own shard of the batch, as in the capture
            gram = distributed.sum_gram(gram, self._world_size)
        return DeviceGram([gram], square_matrix(n))

    def _rows(self, size: int, device: torch.device) -> torch.Tensor:
        """A float64 buffer for the rows of one parameter (the tasks times its size; on the
        CPU, times one piece of it, ``norms.CPU_PIECE``), kept between measurements up to
        64 MiB; a larger one is made each time, as before."""
        buffer = self._scratch.get(device)
        if buffer is not None and buffer.numel() >= size:
            return buffer
        buffer = torch.empty(size, dtype=torch.float64, device=device)
        if size * 8 <= _KEEP_BYTES:
            self._scratch[device] = buffer
        return buffer


def _host_sum(values: list[float], n: int, weights: torch.Tensor) -> list[list[float]]:
    """The Gram matrix of partial sums fetched from several devices, weighted."""
    gram = torch.tensor(values, dtype=torch.float64).reshape(-1, n, n).sum(dim=0)
    return (gram * torch.outer(weights, weights)).tolist()
