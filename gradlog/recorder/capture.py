"""Per-task gradients at the shared representation, captured during the one ordinary backward.

The recorder's ``mode="representation"``. For a multi-task model the task heads read a shared
representation ``h`` (the encoder's output). The backward of ``sum(w_i * L_i)`` sends each task's
gradient into ``h`` through the operations that read it: an operation reached only from task
``i``'s loss carries ``d(w_i * L_i)/dh`` and nothing else. Before the backward,
:class:`RepresentationCapture` walks the autograd graph from each task loss down to ``h``, finds
those operations (the *consumers* of ``h``) and hooks them; during the backward each hook copies
its contribution into a per-task buffer that gradlog owns. Nothing in the graph changes and no
tensor autograd uses is written to, so training is bit-identical with and without it; no extra
backward is run.

Torch only; no I/O. Raises :class:`~gradlog.errors.RecorderConfigError` when ``h`` cannot be
split by task (an operation on ``h`` feeds several tasks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradlog.recorder.gram import (
    DeviceGram,
    dots_matrix,
    index_on,
    pair_matrix,
    pair_matrix_on,
    square_matrix,
)
from gradlog.recorder.graph import Shared, task_consumers

__all__ = ["RepresentationCapture"]

# Pairwise dot products of the rows are faster than one skinny matrix product for a few tasks.
_DOTS_UP_TO = 4


class RepresentationCapture:
    """Captures each task's gradient with respect to one tensor during one backward.

    Use: :meth:`arm` after the forward (the task losses exist), then the ordinary backward,
    then :meth:`gram` for the Gram matrix ``G[i, j] = <g_i, g_j>`` of the per-task gradients
    ``g_i = d(w_i * L_i)/dh`` (the weights are whatever the backward's loss applied), flattened
    over the whole tensor, batch included.

    The work is done in the hooks, while a task's gradient is still in the cache. Each
    contribution is added into a buffer gradlog owns (one per task, kept between steps) and
    the engine's tensor is let go at once: keeping it would stop the engine from summing the
    tasks' contributions into it in place, which costs more than the copy. The exception is the
    task that completes last with a single contribution: its inner products are taken from the
    engine's tensor directly, inside the hook. Once a task is complete, its inner products with
    itself and with the tasks already complete are taken. Nothing is written to the engine's
    tensors.
    """

    def __init__(self, n_tasks: int) -> None:
        self.n_tasks = n_tasks
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._scratch_buffer: torch.Tensor | None = None
        self._handles: list[Any] = []
        self._indices: dict[tuple, torch.Tensor] = {}
        self._reset()

    def _reset(self) -> None:
        n = self.n_tasks
        self._armed = False
        self._remaining = [0] * n
        self._vectors: list[torch.Tensor | None] = [None] * n
        self._complete = [False] * n
        self._dots: dict[tuple[int, int], torch.Tensor] = {}
        self._scale: torch.Tensor | None = None
        # Two tasks whose weighted sum is the whole backward: read-only, see _arm_pair.
        self._pair = False
        self._squares: list[list[tuple[torch.Tensor, float | None]]] = [[] for _ in range(n)]
        self._held: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self._total_square: tuple[torch.Tensor, float | None] | None = None

    def arm(
        self,
        losses: Sequence[torch.Tensor],
        shared: torch.Tensor | Shared,
        total: torch.Tensor | None = None,
        *,
        exact: bool = False,
    ) -> None:
        """Hook the consumers of ``shared`` for the coming backward.

        ``total``: when the backward starts from a multiple ``c * total`` of the weighted task
        sum (a loss scaler, gradient accumulation), the gradient reaching ``total`` is ``c``;
        it is captured and divided out, so the result is that of ``total`` itself.
        ``exact``: the backward starts from exactly the weighted sum of ``losses`` (nothing
        else reaches ``shared``), which allows the read-only method for two tasks.
        """
        self.disarm()
        self._reset()
        if isinstance(shared, torch.Tensor):
            shared = Shared.of(shared)
        consumers = task_consumers(losses, shared)
        self._shape = shared.shape
        self._dtype = (
            shared.dtype if shared.dtype in (torch.float32, torch.float64) else torch.float32
        )
        self._device = shared.device
        self._pair = exact and total is None and self.n_tasks == 2
        hook = self._pair_hook if self._pair else self._hook
        for node, (task, slots) in consumers.items():
            self._remaining[task] += 1
            self._handles.append(node.register_hook(hook(task, slots)))
        if self._pair:  # the summed gradient, as the representation's node receives it
            nr = shared.output_nr
            self._handles.append(
                shared.node.register_prehook(lambda grads: self._capture_total(grads[nr]))
            )
        for task in range(self.n_tasks):
            self._complete[task] = self._remaining[task] == 0  # never reaches the representation
        if total is not None and total.grad_fn is not None:
            self._handles.append(total.grad_fn.register_prehook(self._capture_scale))
        self._armed = True

    def _hook(self, task: int, slots: list[int]):
        def hook(grad_inputs, grad_outputs):
            grads = [grad_inputs[slot] for slot in slots if grad_inputs[slot] is not None]
            self._remaining[task] -= 1
            with _outside_graph():
                if self._remaining[task] > 0:
                    for grad in grads:
                        self._accumulate(task, grad)
                    return
                last = grads.pop() if grads else None
                for grad in grads:
                    self._accumulate(task, grad)
                self._finish_task(task, last)

        return hook

    # -- two tasks, read-only ---------------------------------------------------------------
    #
    # With two tasks whose weighted sum is the whole backward, the gradient reaching the
    # representation is g_0 + g_1, so <g_0, g_1> = (|g_0 + g_1|^2 - |g_0|^2 - |g_1|^2) / 2. Each
    # squared norm is taken in a hook from the engine's own tensors, just computed and still in
    # the cache, and nothing is copied: memory traffic is reads only. A task read through
    # several operations keeps its earlier contributions only until its last one arrives (for
    # their inner products), which is before the engine sums that one in.

    def _pair_hook(self, task: int, slots: list[int]):
        def hook(grad_inputs, grad_outputs):
            grads = [grad_inputs[slot] for slot in slots if grad_inputs[slot] is not None]
            self._remaining[task] -= 1
            with _outside_graph():
                squares, held = self._squares[task], self._held[task]
                for grad in grads:
                    squares.append(_square(grad))  # (value, factor): value * factor
                    for earlier in held:
                        squares.append((_inner(grad, earlier, self._scratch), 2.0))
                    held.append(grad)
                if self._remaining[task] == 0:
                    held.clear()
            self._complete[task] = self._remaining[task] == 0

        return hook

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A buffer kept between steps for the products of two layouts: a fresh one of this
        size costs the kernel's page faults every step, as much again as the product itself."""
        buffer = self._scratch_buffer
        if (
            buffer is None
            or buffer.shape != like.shape
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = torch.empty(like.shape, dtype=like.dtype, device=like.device)
            self._scratch_buffer = buffer
        return buffer

    def _capture_total(self, grad: torch.Tensor | None) -> None:
        if grad is not None:
            with _outside_graph():
                self._total_square = _square(grad)

    def _pair_gram(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> DeviceGram:
        terms = [*self._squares[0], *self._squares[1]]
        if self._total_square is not None:
            terms.append(self._total_square)
        factors = [f for _, f in terms]
        counts = (len(self._squares[0]), len(self._squares[1]), self._total_square is not None)
        tensors = [t for t, _ in terms]
        if reduce is None:
            return DeviceGram(tensors, lambda values: pair_matrix(values, factors, *counts))
        # Summed over the ranks at every step (a collective): the same arithmetic, on the device
        matrix = pair_matrix_on(tensors, factors, *counts, device=self._device)
        return DeviceGram([reduce(matrix)], square_matrix(2))

    # -- any number of tasks ---------------------------------------------------------------

    def _buffer(self, task: int) -> torch.Tensor:
        key = (task, self._shape, self._dtype, self._device)
        buffer = self._buffers.get(key)
        if buffer is None:
            if len(self._buffers) >= 2 * self.n_tasks:  # e.g. full batches and a smaller last one
                self._buffers.pop(next(iter(self._buffers)))
            buffer = torch.empty(self._shape, dtype=self._dtype, device=self._device)
            self._buffers[key] = buffer
        return buffer

    def _accumulate(self, task: int, grad: torch.Tensor) -> None:
        """Add one contribution into the task's buffer. The engine's tensor is only read and
        never kept: holding it would stop the engine from summing into it in place."""
        if self._vectors[task] is None:
            buffer = self._buffer(task)
            buffer.copy_(grad)
            self._vectors[task] = buffer.view(-1)
        else:
            self._vectors[task].view(self._shape).add_(grad)

    def _finish_task(self, task: int, last: torch.Tensor | None = None) -> None:
        """The task's gradient is complete: take its inner products while it is in the cache.

        ``last`` is its final contribution, not yet accumulated. When this task completes
        after all the others and has no other contribution, ``last`` is used as it is (no
        copy): nothing needs it afterwards.
        """
        self._complete[task] = True
        direct = (
            last is not None
            and self._vectors[task] is None
            and last.dtype == self._dtype
            and all(self._complete)
            and self.n_tasks <= _DOTS_UP_TO
        )
        if direct:
            vector = last.reshape(-1)
        else:
            if last is not None:
                self._accumulate(task, last)
            vector = self._vectors[task]
        if vector is None or self.n_tasks > _DOTS_UP_TO:
            return  # a zero row, or one matrix product at the end
        self._dots[task, task] = torch.dot(vector, vector)
        for other, done in enumerate(self._complete):
            if done and other != task and self._vectors[other] is not None:
                self._dots[min(task, other), max(task, other)] = torch.dot(
                    vector, self._vectors[other]
                )

    def _capture_scale(self, grad_outputs):
        if grad_outputs and grad_outputs[0] is not None:
            self._scale = grad_outputs[0].detach().reshape(()).to(torch.float64)

    def gram(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DeviceGram:
        """The (n, n) Gram matrix of the captured gradients, still on the device. Disarms.

        A task whose gradient never reached the representation has a zero row. ``reduce``
        maps the (n, n) float64 matrix on the device (a sum over ranks).
        """
        if not self._armed:
            raise RuntimeError("RepresentationCapture.gram() before arm()")
        self.disarm()
        with torch.no_grad():
            if self._pair:
                result = self._pair_gram(reduce)
            else:
                for task in range(self.n_tasks):
                    if not self._complete[task]:  # an operation that never ran in the backward
                        self._finish_task(task)
                if self.n_tasks > _DOTS_UP_TO:
                    result = self._matrix_gram(reduce)
                else:
                    result = self._dots_gram(reduce)
        self._armed = False  # the rest is reset by the next arm(): once a step is enough
        return result

    def _dots_gram(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> DeviceGram:
        """The matrix of the inner products the hooks took, the loss scale divided out."""
        n, keys = self.n_tasks, list(self._dots)
        scalars = [self._dots[k] for k in keys]
        scaled = self._scale is not None
        if scaled:
            scalars.append(self._scale.to(self._dtype))
        if reduce is None:
            return DeviceGram(scalars, lambda values: dots_matrix(values, n, keys, scaled))
        # Summed over the ranks at every step: the same arithmetic in float64, on the device
        matrix = torch.zeros((n, n), dtype=torch.float64, device=self._device)
        if scalars:
            values = torch.stack(scalars).to(torch.float64)
            scale = values[-1] if scaled else 1.0
            for k, (i, j) in enumerate(keys):
                matrix[i, j] = matrix[j, i] = values[k] / (scale * scale)
        return DeviceGram([reduce(matrix)], square_matrix(n))

    def _matrix_gram(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> DeviceGram:
        """More tasks than pairwise dot products suit: one matrix product of the buffers."""
        n, vectors = self.n_tasks, self._vectors
        present = [i for i in range(n) if vectors[i] is not None]
        gram = torch.zeros((n, n), dtype=torch.float64, device=self._device)
        if present:
            rows = torch.stack([vectors[i] for i in present])
            product = torch.mm(rows, rows.t()).double()
            index = index_on(self._indices, present, self._device)
            gram[index[:, None], index[None, :]] = product
        if self._scale is not None:
            gram = gram / (self._scale * self._scale)
        if reduce is not None:
            gram = reduce(gram)
        return DeviceGram([gram], square_matrix(n))

    def disarm(self) -> None:
        """Remove the hooks (a retained graph must not call them later)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


_NOTHING = contextlib.nullcontext()


def _outside_graph():
    """Grad mode off in a hook. The engine already runs hooks with it off unless the backward
    builds a graph (``create_graph=True``); switching it costs as much as a hook's own work."""
    return torch.no_grad() if torch.is_grad_enabled() else _NOTHING


def _square(grad: torch.Tensor) -> tuple[torch.Tensor, float | None]:
    """``<g, g>`` as (value, factor), reading ``g`` once whatever its layout: a dot product
    (factor 1), or a norm to be squared once on the host (factor None: one op fewer)."""
    if grad.dtype not in (torch.float32, torch.float64):  # half precision: sum in float32
        return torch.linalg.vector_norm(grad, dtype=torch.float32), None
    if grad.is_contiguous():
        flat = grad.view(-1)
        return torch.dot(flat, flat), 1.0
    return torch.linalg.vector_norm(grad), None


def _inner(
    a: torch.Tensor,
    b: torch.Tensor,
    scratch: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``<a, b>`` of two tensors of one shape, whatever their layouts; ``scratch(a)`` gives a
    buffer for the elementwise product when the layouts differ."""
    if a.dtype not in (torch.float32, torch.float64):
        return torch.sum(a.float() * b.float())
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    if scratch is None or a.dtype != b.dtype:
        return (a * b).sum()
    out = scratch(a)
    torch.mul(a, b, out=out)
    return out.sum()
