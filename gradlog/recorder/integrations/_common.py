"""What both framework callbacks share: reading a step's per-task losses, and recording it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from gradlog.errors import RecorderConfigError
from gradlog.recorder.config import CLIP_EXTERNAL

LOSSES_KEY = "losses"
SHARED_KEY = "shared"


def _get(output: Any, key: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(key)
    return getattr(output, key, None)


def step_losses(
    output: Any, tasks: list[str], where: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
    """The per-task losses, the total loss and the optional shared tensor of a step's output.

    ``output`` is what the user's code returned: a mapping (or an object with attributes)
    holding ``loss`` (the total the framework backpropagates), ``losses`` (``{task: loss}``,
    unweighted, still attached to the graph) and, optionally, ``shared`` (the representation
    for ``mode="representation"`` without ``shared=`` at construction).
    """
    losses = _get(output, LOSSES_KEY)
    if not isinstance(losses, Mapping):
        raise RecorderConfigError(
            f"gradlog: {where} must return a dict with 'loss' (the total) and "
            f"'{LOSSES_KEY}' ({{task: loss}} for the tasks {tasks}); got "
            f"{type(output).__name__}{'' if losses is None else ' whose losses are not a dict'}"
        )
    missing = [t for t in tasks if t not in losses]
    if missing:
        raise RecorderConfigError(
            f"gradlog: the '{LOSSES_KEY}' that {where} returned lack the tasks {missing} "
            f"(it has {list(losses)})"
        )
    total = _get(output, "loss")
    shared = _get(output, SHARED_KEY)
    return {t: losses[t] for t in tasks}, total, shared


def check_weights(
    losses: dict[str, torch.Tensor], total: torch.Tensor | None, weights: dict[str, float]
) -> str | None:
    """Why the total loss is not ``sum(weight * loss)`` with the recorder's weights, or None.

    The recorder reports each task's gradient of ``weight * loss`` (parameter mode) and the
    gradient the backward actually carried (representation mode): the two agree only if the
    callback was given the weights the training code uses.
    """
    if total is None:
        return None
    with torch.no_grad():
        expected = float(sum(weights[t] * loss.detach().double() for t, loss in losses.items()))
        actual = float(total.detach())
    if abs(expected - actual) <= 1e-4 * max(abs(expected), abs(actual), 1e-12):
        return None
    return (
        f"gradlog: the total loss ({actual:.6g}) is not the sum of the task losses times the "
        f"weights given to the callback ({expected:.6g}, weights {weights}); pass weights= "
        "with the weights your loss uses (an extra regularisation term also causes this)"
    )


class StepRecorder:
    """The part of a callback that is the same in every framework.

    It makes the recorder; then, on each optimizer step, it takes the first micro-batch's
    output before its backward (the per-task losses, checked against the weights once) and
    records the step after the backward. The callbacks only say when these moments are.
    """

    def __init__(
        self,
        tasks: list[str],
        path: str,
        weights: Mapping[str, float] | None,
        recorder_args: dict[str, Any],
    ) -> None:
        self.tasks = list(tasks)
        self.path = path
        self.weights = dict(weights or {})
        self.recorder_args = recorder_args
        self.recorder = None
        self._step: tuple[dict[str, torch.Tensor], dict[str, int]] | None = None
        self._checked = False

    def start(
        self, model: torch.nn.Module, framework_clip: str | None, *, clips_first: bool
    ) -> None:
        """Make the recorder. ``framework_clip``: how the framework clips (``"max_grad_norm=1.0"``),
        if it does, or None; ``clips_first``: whether it does so before the step is recorded
        (the statistics are then after clipping)."""
        from gradlog.recorder.core import GradientRecorder

        args = dict(self.recorder_args)
        if framework_clip is not None:
            if args.get("clip") is not None:
                # a step clipped twice is not the training the user configured
                raise RecorderConfigError(
                    f"gradlog: the trainer clips gradients ({framework_clip}) and the callback "
                    f"was given clip={args['clip']!r}: clip in one place (turn the trainer's "
                    "clipping off to let gradlog clip and log the norm before clipping)"
                )
            if clips_first:
                args["clip"] = CLIP_EXTERNAL
        self.recorder = GradientRecorder(model, self.tasks, self.path, weights=self.weights, **args)

    def before_backward(self, output: Any, where: str, when: dict[str, int]) -> None:
        """The step's output (``where`` names what returned it, for messages)."""
        losses, total, shared = step_losses(output, self.tasks, where)
        if not self._checked:
            self._checked = True
            problem = check_weights(losses, total, self.recorder.weights)
            if problem:
                warnings.warn(problem, stacklevel=3)
        self._step = (losses, when)
        self.recorder.before_backward(losses, shared=shared, total=total, **when)

    def after_backward(self, clip_ahead: float | None = None) -> None:
        """Record the step. ``clip_ahead``: the max norm the framework clips to after this."""
        if self.recorder is None or self._step is None:
            return
        (losses, when), self._step = self._step, None
        if clip_ahead is not None:
            self.recorder._clipping.ahead(clip_ahead)
        self.recorder.record(losses, **when)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
