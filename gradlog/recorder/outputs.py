"""The shared module's outputs, and which one is the representation a set of losses reads.

In representation mode the recorder watches the ``shared=`` module with a forward hook, so that
``backward(losses)`` needs no ``shared=h``. A training loop may run that module more than once
between two steps: an evaluation pass (under ``torch.no_grad()``, or in eval mode with
gradients enabled, as the original monitor's end-of-epoch balance pass did), a second view of
the batch, the held batch of :meth:`~gradlog.GradientRecorder.sample_balance`. Outputs made
without gradients cannot be the representation of a backward and are not kept; among the
others, the one the losses read is found in the autograd graph. What cannot be told apart is
returned as a reason, never raised: the recorder then skips the sample and says so in the log
(docs/recorder.md, "What representation mode needs").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradlog.recorder.graph import Shared, reached_outputs
from gradlog.recorder.model import first_tensor

# Outputs kept between two steps. Each keeps its forward's graph alive until the next step
# (as the one output of a step always did): enough for several views of a batch.
KEEP = 16


class SharedOutput:
    """The outputs of the shared module, with gradients enabled, since the previous step.

    Hooked only once the recorder is otherwise built, so that a refused construction leaves no
    hook on the user's model.
    """

    def __init__(self, name: str, module: torch.nn.Module) -> None:
        self.name = name
        self._outputs: list[tuple[torch.Tensor, bool]] = []  # (output, made in training mode)
        self._lost_training = False
        self._handle = module.register_forward_hook(self._on_output)

    def _on_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        # Without gradients no backward reaches the output: it cannot be the representation.
        if not torch.is_grad_enabled():
            return
        tensor = first_tensor(output)
        if tensor is None or not tensor.requires_grad:
            return
        if not module.training:
            # Of the evaluation passes only the last can be a held batch's: an evaluation loop
            # run with gradients enabled then keeps one graph alive, not sixteen.
            self._outputs = [kept for kept in self._outputs if kept[1]]
        if len(self._outputs) == KEEP:
            # An eval-mode output let go is an evaluation pass; a training one may have been
            # read by the step, which then cannot be resolved.
            self._lost_training |= self._outputs.pop(0)[1]
        self._outputs.append((tensor, module.training))

    def take(self, losses: Sequence[torch.Tensor]) -> torch.Tensor | str:
        """The output ``losses`` read, no longer held here; or why there is no single one.

        The other outputs stay (a sample of the held batch leaves the next step's alone).
        """
        found = resolve(self.name, self._outputs, losses, lost=self._lost_training)
        if isinstance(found, str):
            return found
        return self._outputs.pop(found)[0]

    def reset(self) -> None:
        """Forget every output: the backward that follows can free their memory."""
        self._outputs = []
        self._lost_training = False

    def remove(self) -> None:
        self._handle.remove()


def resolve(
    name: str,
    outputs: Sequence[tuple[torch.Tensor, bool]],
    losses: Sequence[torch.Tensor],
    *,
    lost: bool,
) -> int | str:
    """The index in ``outputs`` (each with whether it was made in training mode) of the one
    output ``losses`` read, or the reason for a skip.

    One output made in training mode is taken as it is, as it always was: the graph is walked
    only where there is a choice, or where the one output is an evaluation pass's, which the
    losses of a step usually do not read.
    """
    if not outputs:
        return (
            f"the shared module {name!r} has not run with gradients enabled since the last "
            "step: its output is the representation gradlog measures"
        )
    if lost:
        return (
            f"the shared module {name!r} ran more than {KEEP} times with gradients enabled "
            f"since the last step (gradlog keeps the last {KEEP}), so the output the task "
            "losses read is not known: pass it as shared=h"
        )
    if len(outputs) == 1 and outputs[0][1]:
        return 0
    found = reached_outputs(losses, [Shared.of(tensor) for tensor, _ in outputs])
    if len(found) == 1:
        return found.pop()
    if not found:
        return (
            f"the task losses read none of the outputs the shared module {name!r} made with "
            f"gradients enabled since the last step ({len(outputs)})"
        )
    return (
        f"the task losses read {len(found)} outputs of the shared module {name!r} (a second "
        "view of the batch?), so there is no one representation to measure at: pass the "
        "tensor the task heads read as shared=h"
    )
