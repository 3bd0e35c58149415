"""Measuring at the original monitor's moments, and samples that cannot be taken.

The original sampled task balance at the end of an epoch, in eval mode, on one fresh batch, by
one full backward per task; :meth:`Moments.sample_balance` does that on the batch the caller
holds, whatever mode the model is in, without touching ``.grad`` or the step. (Its statistics,
every batch of a logged epoch, are the schedule's ``stats_every_batch``.)

A representation-mode sample that cannot be taken at a step (the shared module's outputs do
not resolve to one representation, the representation cannot be split by task) must not stop
a training run that may be hours old: it is warned about once per reason and logged as an
event whose ``skipped`` field says why (docs/recorder.md, "What representation mode needs").

:class:`Moments` is a part of :class:`~gradlog.GradientRecorder`, kept apart for the size of
core.py; it uses the recorder's own attributes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import torch

from gradlog.errors import RecorderConfigError, SkippedSampleWarning
from gradlog.format import Record
from gradlog.recorder.config import REPRESENTATION
from gradlog.recorder.graph import Shared
from gradlog.recorder.pending import pending_event, task_losses
from gradlog.recorder.records import event_record

NO_GRAPH = (
    "the task losses have no graph (computed under torch.no_grad()?): a balance sample "
    "differentiates each of them"
)
FREED = (
    "the graph of the task losses was freed by a backward before the sample: take the sample "
    "first, or keep the graph (retain_graph=True)"
)

NOT_HOOKED = (
    "the representation mode hooks the backward, and record() came after one that "
    "before_backward() had not prepared: call recorder.before_backward(losses, ...) before "
    "your backward, or use recorder.backward(losses)"
)


class Moments:
    """:meth:`sample_balance`, and the skipped samples of the representation mode."""

    def sample_balance(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
        shared: torch.Tensor | None = None,
    ) -> None:
        """Measure the task balance of ``losses`` now and log it as a balance-only event.

        For the original monitor's moment: at the end of an epoch, on a batch held for it, in
        whatever mode the model is in (``model.eval()`` for the original's), with the losses
        of that batch's forward. Each task's gradient of its weighted loss is taken with one
        ``torch.autograd.grad`` per task, the graph kept: ``.grad``, the optimizer and the
        cadences are left as they were, and no value is fetched from the device (the writer
        fetches it with the rest). Parameter mode: over every trainable parameter.
        Representation mode: at the output of the ``shared=`` module in that forward (the one
        the losses read, if it ran more than once since the last step), or at ``shared``.

        ``epoch``: the event's epoch (the original labelled these 1-based). ``step``: default
        none, the sample belonging to its epoch (and never repeating the epoch and step of the
        last batch's event); with a step cadence, the step of the last call to :meth:`backward`
        or :meth:`record`, by which such a run's events are labelled. A sample that cannot be
        taken is logged as skipped, with a warning the first time for its reason.
        """
        self._check_losses(losses)
        self._schedule.check_epoch(epoch)
        self._check_representation(shared)
        if step is None and self.config.by_steps:
            step = self._schedule.last_step
        ordered = [losses[t] for t in self.tasks]
        found = self._sampled(ordered, shared)
        if isinstance(found, str):
            self._log_sample(epoch, step, self._skip(found, epoch, step, stacklevel=3))
            return
        self._log_sample(epoch, step, None, (found, task_losses(ordered)))

    def _sampled(self, losses: list[torch.Tensor], shared: torch.Tensor | None):
        """The Gram matrix of ``losses`` now, or why it cannot be taken."""
        if not any(loss.requires_grad for loss in losses):
            return NO_GRAPH
        if self.mode == REPRESENTATION:
            if shared is None:
                shared = self._shared.take(losses)
                if isinstance(shared, str):
                    return shared
            try:
                Shared.of(shared)
            except RecorderConfigError as exc:
                return str(exc)
        else:
            shared = None
        try:
            return self._balance.sample(losses, shared)
        except RuntimeError as exc:
            if "second time" in str(exc) or "freed" in str(exc):
                return FREED
            raise

    def _log_sample(self, epoch, step, skipped, balance=None) -> None:
        if self._writes_nothing:
            return  # the reductions, collective, are done; nothing is written on this rank
        entry = pending_event(
            self._values,
            self._event_header(epoch, step, skipped),
            stats=None,
            names=None,
            balance=balance,
            tasks=self.tasks,
            weights=self.weights,
            at_step=self._schedule.last_step,  # a sample without a step follows the last one
        )
        self._write(entry)
        if self._echo is not None and balance is not None and len(self.tasks) > 1:
            record = entry.resolve()  # the echo prints now: one transfer
            self._echo.record(record, [t["grad_norm"] for t in record["tasks"]])

    def _event_header(self, epoch: int | None, step: int | None, skipped: str | None) -> Record:
        header = event_record(self.run_id, epoch, step, self._record_rank)
        if skipped is not None:
            header["skipped"] = skipped
        return header

    # -- representation mode at a step --------------------------------------------------------

    def _check_representation(self, shared: torch.Tensor | None) -> None:
        if self.mode == REPRESENTATION and shared is None and self._shared is None:
            raise RecorderConfigError(
                "mode='representation' needs the shared representation: "
                "GradientRecorder(..., shared=model.encoder) or backward(losses, shared=h)"
            )

    def _arm_representation(self, epoch, step, losses, shared, total, *, exact: bool) -> None:
        """Hook the step's backward at the representation, or mark the sample skipped."""
        if shared is None:
            shared = self._shared.take(losses)
        # Keep only where the representation's gradient enters the graph, never the tensor
        # itself through the backward: its memory is freed there as it is without gradlog.
        if self._shared is not None:
            self._shared.reset()
        if not isinstance(shared, str):
            try:
                self._balance.arm(step, losses, shared, total, exact=exact)
                return
            except RecorderConfigError as exc:  # the representation cannot be split by task
                shared = str(exc)
        self._balance.skip(step, self._skip(shared, epoch, step, stacklevel=5))

    def _skip(self, reason: str, epoch: int | None, step: int | None, *, stacklevel: int) -> str:
        """``reason``, warned about the first time a sample is skipped for it. ``stacklevel``:
        that of ``warnings.warn`` here, to name the user's call."""
        key = re.sub(r"\d+", "#", reason)  # counts vary from step to step; the reason doesn't
        if key not in self._warned_skips:
            self._warned_skips.add(key)
            when = ", ".join(
                f"{k} {v}" for k, v in (("epoch", epoch), ("step", step)) if v is not None
            )
            at = f" at {when}" if when else ""
            warnings.warn(
                f"gradlog skipped the balance sample{at}: {reason}. Training goes on; "
                "every sample skipped for this reason is marked in the log (the event's "
                "'skipped' field), without another warning",
                SkippedSampleWarning,
                stacklevel=stacklevel,
            )
        return reason
