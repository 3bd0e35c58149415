"""gradlog for Lightning: ``GradlogCallback`` records a ``LightningModule``'s training.

``pip install 'gradlog-mtl[lightning]'``. The module's ``training_step`` returns a dict with the
total ``loss`` (what Lightning backpropagates) and the per-task ``losses``, unweighted::

    def training_step(self, batch, batch_idx):
        pointer_loss, type_loss = ...
        loss = beta * pointer_loss + alpha * type_loss
        return {"loss": loss, "losses": {"pointer": pointer_loss, "type": type_loss}}

    trainer = lightning.Trainer(callbacks=[GradlogCallback(
        ["pointer", "type"], "runs/run.jsonl", weights={"pointer": beta, "type": alpha},
        mode="representation", shared="encoder", log_every_steps=1, balance_every_steps=1)])

Lightning's hooks give the order gradlog needs: the callback reads the step's losses after
``training_step``, measures the task gradients around the backward (``on_before_backward``),
and takes the global statistics in ``on_before_optimizer_step``, after AMP's unscaling and the
last micro-batch, *before* Lightning's gradient clipping (``gradient_clip_val``): the log says
``stats_at: "before_clipping"``, and with ``gradient_clip_algorithm="norm"`` each statistics
event also holds the total norm (``pre_clip_norm``) and the factor Lightning's clipping then
applies (``clip_coef``). To log the statistics of the clipped gradients instead, let gradlog
clip: ``GradlogCallback(..., clip=1.0)`` and no ``gradient_clip_val`` (``stats_at:
"after_clipping"``; training is the same, ``clip_grad_norm_`` at the same moment). Steps are optimizer steps (``trainer.global_step + 1``), epochs
``trainer.current_epoch + 1``; with gradient accumulation, task gradients are those of the
first micro-batch of each step. Under DDP (``strategy="ddp"``) rank 0 writes, as for the
recorder. Automatic optimization with one optimizer only.

``log_to_trainer=True`` also logs each event's few scalars (``grad_norm/{task}``,
``cos_grad_sim/{a}_vs_{b}``, ``grad_stats/...``: docs/format.md) to the trainer's loggers,
``logger.log_metrics(metrics, step)``, at the step and with the ``epoch`` Lightning's own
``self.log`` gives that batch (both counted from 0). ``self.log`` cannot be used: the values stay
on the device until they are fetched (docs/recorder.md, "What is transferred when"), which
happens at Lightning's logging steps (``log_every_n_steps``), one transfer for every event
since the last, and at the writer's flushes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.enums import GradClipAlgorithmType

from gradlog.format import Record
from gradlog.recorder.core import GradientRecorder
from gradlog.recorder.integrations._common import StepRecorder
from gradlog.recorder.mirror import Mirror

__all__ = ["GradlogCallback"]


class GradlogCallback(pl.Callback):
    """Records per-task gradient norms, gradient conflict and gradient statistics.

    Args:
        tasks: task names, as the keys of the ``losses`` dict ``training_step`` returns.
        path: the log file (``.jsonl`` or ``.parquet``).
        weights: the loss weight of each task, as your ``loss`` applies them (checked once).
        log_to_trainer: also log each event's scalars to the trainer's loggers (module
            docstring); default False.
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
        self._log_to_trainer = bool(log_to_trainer)
        self._output: Any = None
        self._micro_batch = 0
        self._module = None
        self._clip_ahead: float | None = None

    @property
    def recorder(self) -> GradientRecorder | None:
        return self._steps.recorder

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.recorder is not None:
            return
        clip_val = trainer.gradient_clip_val
        by_norm = trainer.gradient_clip_algorithm in (None, GradClipAlgorithmType.NORM)
        framework_clip = f"gradient_clip_val={clip_val}" if clip_val else None
        self._steps.start(pl_module, framework_clip, clips_first=False)
        # A factor is what clipping by norm applies; clipping by value has none to log.
        self._clip_ahead = float(clip_val) if clip_val and by_norm else None
        if self._log_to_trainer:
            if not trainer.loggers:
                warnings.warn(
                    "gradlog: log_to_trainer=True but the trainer has no logger (logger=False)",
                    stacklevel=2,
                )
            self.recorder._listen(_ToLoggers(trainer))
        original = pl_module.training_step

        def training_step(*args: Any, **kwargs: Any) -> Any:
            self._output = output = original(*args, **kwargs)
            return output

        pl_module.training_step = training_step  # read the step's output; Lightning's as is
        self._module = pl_module

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss) -> None:
        if self.recorder is None:
            return
        output, self._output = self._output, None
        self._micro_batch += 1
        if self._micro_batch > 1:
            return  # gradient accumulation: the first micro-batch of the step is measured
        when = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step + 1}
        self._steps.before_backward(output, "training_step", when)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module, optimizer) -> None:
        self._micro_batch = 0
        self._steps.after_backward(clip_ahead=self._clip_ahead)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx):
        # Where Lightning writes its own logs, its loggers get gradlog's events since the last:
        # one transfer every log_every_n_steps, not one per step.
        if self._log_to_trainer and self.recorder is not None:
            if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
                self.recorder.fetch()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._module is not None:
            self._module.__dict__.pop("training_step", None)  # the class's method again
            self._module = None
        self._steps.close()


class _ToLoggers(Mirror):
    """Sends an event's scalars to every logger of ``trainer``, as Lightning's ``self.log``
    would have for the batch: gradlog's steps and epochs count from 1, Lightning's from 0."""

    def send(self, values: dict[str, float], record: Record, step: int | None) -> None:
        metrics = dict(values)
        if record.get("epoch") is not None:
            metrics["epoch"] = record["epoch"] - 1
        for logger in self.target.loggers:
            logger.log_metrics(metrics, step=step - 1)
