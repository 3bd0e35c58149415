"""gradlog for the Hugging Face ``Trainer``: ``GradlogCallback`` records a multi-task model.

``pip install 'gradlog-mtl[huggingface]'``. The model's ``forward`` returns a dict (or a
``ModelOutput``) with the total ``loss`` (what the Trainer backpropagates) and the per-task
``losses``, unweighted::

    def forward(self, input_ids, attention_mask, tag_labels, label):
        hidden = self.encoder(input_ids, attention_mask=attention_mask).last_hidden_state
        tag_loss, label_loss = ...
        return {"loss": tag_loss + label_loss,
                "losses": {"tags": tag_loss, "label": label_loss}, "logits": ...}

    trainer = Trainer(model, args, train_dataset=..., callbacks=[GradlogCallback(
        ["tags", "label"], "runs/run.jsonl", mode="representation", shared="encoder",
        log_every_steps=1, balance_every_steps=1)])

(Give the config ``keys_to_ignore_at_inference = ["losses"]``, or the Trainer's ``evaluate``
collects the dict as logits.) A forward hook on the model reads the losses of the first
micro-batch of each optimizer step and measures the task gradients around its backward; the
global statistics are taken in ``on_pre_optimizer_step``, after the last micro-batch and
AMP's unscaling. The Trainer clips gradients (``max_grad_norm``, 1.0 by default) *before*
any callback can see them and keeps the norm before clipping to itself (it only logs it, as
``grad_norm``, at its logging steps), so with its clipping on the log says ``stats_at:
"after_clipping"`` and holds no ``pre_clip_norm`` (a warning says so). To log the norm before
clipping, let gradlog clip: ``max_grad_norm=0`` in the ``TrainingArguments`` and
``GradlogCallback(..., clip=1.0)`` (not under ``fp16``, whose loss scaler may not have
unscaled the gradients when callbacks see them); training is the same. The task norms and
cosines are measured during the backward, before any clipping. Steps are optimizer steps
(``state.global_step + 1``), epochs ``floor(state.epoch) + 1``. Under DDP rank 0 writes.

``log_to_trainer=True`` also adds each event's few scalars (``grad_norm/{task}``,
``cos_grad_sim/{a}_vs_{b}``, ``grad_stats/...``: docs/format.md) to the Trainer's logs: in
``on_log``, every key takes its latest value among the events since the last log (fetched
then, in one transfer, where the Trainer reads its own loss from the device), in the ``logs``
the callbacks after this one receive and in ``state.log_history`` (``trainer_state.json``).
The Trainer runs its ``report_to`` integrations (TensorBoard, W&B...) *before* the callbacks
it is given: for them to see the keys, put this callback ahead of them with
``callback.attach(trainer)`` after making the Trainer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import DefaultFlowCallback

from gradlog.errors import RecorderConfigError
from gradlog.format import Record
from gradlog.recorder.core import GradientRecorder
from gradlog.recorder.integrations._common import StepRecorder
from gradlog.recorder.mirror import scalars

__all__ = ["GradlogCallback"]


class GradlogCallback(TrainerCallback):
    """Records per-task gradient norms, gradient conflict and gradient statistics.

    Args:
        tasks: task names, as the keys of the ``losses`` the model's forward returns.
        path: the log file (``.jsonl`` or ``.parquet``).
        weights: the loss weight of each task, as the model's ``loss`` applies them
            (checked once).
        log_to_trainer: also add each event's scalars to the Trainer's logs (module
            docstring; see :meth:`attach`); default False.
        **recorder_args: any other :class:`~gradlog.GradientRecorder` argument (``mode``,
            ``shared`` as a module name, cadences, ``tags``, ``buffer``, ``per_rank``...).
    """

    def __init__(
        self,
        tasks: list[str],
        path: str,
        *,
        weights: Mapping[str, float] | None = None,
        log_to_trainer: bool = False,
        **recorder_args: Any,
    ) -> None:
        self._steps = StepRecorder(tasks, path, weights, recorder_args)
        self._handle = None
        self._when: dict[str, int] | None = None  # set for the first micro-batch of a step
        self._log_to_trainer = bool(log_to_trainer)
        self._latest: dict[str, float] = {}  # each key's latest value since the last log
        self._attached = False

    def attach(self, trainer: Any) -> GradlogCallback:
        """Put this callback ahead of ``trainer``'s ``report_to`` integrations (after its
        ``DefaultFlowCallback``), adding it if it is not there, so that the keys it adds to the
        logs reach them. Returns the callback."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        first = next(
            (i for i, c in enumerate(callbacks) if not isinstance(c, DefaultFlowCallback)),
            len(callbacks),
        )
        callbacks.insert(first, self)
        self._attached = True
        return self

    @property
    def recorder(self) -> GradientRecorder | None:
        return self._steps.recorder

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.recorder is not None:
            return
        if model is None:
            raise ValueError("gradlog: the Trainer passed no model to the callback")
        clips = bool(args.max_grad_norm and args.max_grad_norm > 0)
        if self._steps.recorder_args.get("clip") is not None and getattr(args, "fp16", False):
            raise RecorderConfigError(
                "gradlog: clip= under fp16: the Trainer's loss scaler may not have unscaled the "
                "gradients when callbacks see them; let the Trainer clip (max_grad_norm)"
            )
        framework_clip = f"max_grad_norm={args.max_grad_norm}" if clips else None
        self._steps.start(model, framework_clip, clips_first=True)
        if clips:
            warnings.warn(
                f"gradlog: the Trainer clips gradients (max_grad_norm={args.max_grad_norm}) "
                "before callbacks see them: the logged mean/max/total gradient norms are after "
                "clipping and the norm before clipping is not logged (task norms and cosines "
                "are not affected). To log it, set max_grad_norm=0 and pass clip= to the "
                "callback.",
                stacklevel=2,
            )
        self._handle = model.register_forward_hook(self._on_forward)
        if self._log_to_trainer:
            self.recorder._listen(self._keep)
            if args.report_to and not self._attached:
                warnings.warn(
                    f"gradlog: log_to_trainer=True, and the Trainer's integrations "
                    f"{list(args.report_to)} log before this callback: call "
                    "callback.attach(trainer) for them to get gradlog's keys",
                    stacklevel=2,
                )

    def _keep(self, record: Record, step: int | None) -> None:
        if record.get("kind") == "event":
            self._latest.update(scalars(record))

    def on_step_begin(self, args, state, control, **kwargs):
        self._when = {"epoch": math.floor(state.epoch or 0) + 1, "step": state.global_step + 1}

    def _on_forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if self._when is None or not (module.training and torch.is_grad_enabled()):
            return
        when, self._when = self._when, None
        self._steps.before_backward(output, "the model's forward", when)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._steps.after_backward()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._log_to_trainer or self.recorder is None or logs is None:
            return
        self.recorder.fetch()  # the events since the last log reach _keep
        if not self._latest:
            return
        latest, self._latest = self._latest, {}
        logs.update(latest)
        # The Trainer appended a copy of the logs to its history before calling the callbacks.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(latest)

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._steps.close()
