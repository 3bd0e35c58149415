"""The recorder: what needs the model, and the order in which the other modules are called.

Arguments are checked by :mod:`gradlog.recorder.config`, cadences kept by
:mod:`gradlog.recorder.schedule`, a step's per-task gradients measured by
:mod:`gradlog.recorder.balance` (on :mod:`~gradlog.recorder.norms` and
:mod:`~gradlog.recorder.capture`), records laid out by :mod:`gradlog.recorder.records` and
stored by :mod:`gradlog.recorder.writers`; clipping is :mod:`gradlog.recorder.clipping`'s.
docs/recorder.md explains the two measurement modes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import IO, Any

import torch

import gradlog.recorder.distributed as distributed
from gradlog import classify
from gradlog.format import STATS_AFTER_CLIPPING, Record
from gradlog.recorder.balance import PendingBalance
from gradlog.recorder.clipping import ClipMethods, Clipping, clip_values
from gradlog.recorder.config import (
    DEFAULT_FLUSH_SECONDS,
    PARAMETERS,
    REPRESENTATION,
    RecorderConfig,
)
from gradlog.recorder.echo import LiveEcho
from gradlog.recorder.mirror import Mirror, MirrorMethods
from gradlog.recorder.model import (
    check_losses,
    check_module,
    resolve_shared,
    trainable_parameters,
    weighted_sum,
)
from gradlog.recorder.moments import NOT_HOOKED, Moments
from gradlog.recorder.norms import parameter_grad_norms
from gradlog.recorder.outputs import SharedOutput
from gradlog.recorder.pending import DeviceValues, PendingRecord, pending_event, task_losses
from gradlog.recorder.records import run_record
from gradlog.recorder.schedule import BALANCE, STATS, Schedule
from gradlog.recorder.writers import NullWriter

__all__ = ["GradientRecorder", "PARAMETERS", "REPRESENTATION"]


class GradientRecorder(ClipMethods, Moments, MirrorMethods):
    """Records per-task gradient norms, gradient conflict and global gradient statistics.

    Typical use, replacing ``loss.backward()``::

        with GradientRecorder(model, ["pointer", "type"], "run.jsonl",
                              weights={"pointer": beta, "type": alpha}) as rec:
            for epoch in range(1, epochs + 1):
                for batch in loader:
                    optimizer.zero_grad()
                    total = rec.backward({"pointer": lp, "type": lt}, epoch=epoch)
                    optimizer.step()

    The cheap mode, for every step: name the module whose output the task heads share, and
    per-task gradients are captured by hooks during the one ordinary backward::

        rec = GradientRecorder(model, tasks, "run.jsonl", mode="representation",
                               shared=model.encoder, log_every_steps=1, balance_every_steps=1)

    To keep your own backward, call :meth:`before_backward` before it (representation mode)
    or retain the graph when a balance measurement is due (parameter mode), then
    :meth:`record` after it::

        rec.before_backward(losses, epoch=epoch)
        loss.backward(retain_graph=rec.needs_graph(epoch=epoch))
        rec.record(losses, epoch=epoch)

    Args:
        model: the module whose trainable parameters are measured (resolved once, here). A
            ``DistributedDataParallel`` wrapper is looked through; FSDP is refused.
        tasks: task names, in the order reports use (the first two form the default ratio,
            except that ``pointer``/``type`` are always ``pointer/type``). Any number.
        path: the log file, ``.jsonl`` or ``.parquet``; a run is appended to an existing log.
        weights: the loss weight of each task (default 1.0). ``backward`` trains with them and
            each task's gradient is that of its weighted loss.
        mode: ``"parameters"`` (default): each task's gradient over all trainable parameters,
            one extra backward per task when due. ``"representation"``: each task's gradient
            with respect to the shared representation, captured during the ordinary backward.
        shared: representation mode: the module (or its name in ``model``) whose output is the
            representation the task heads read; or pass ``shared=tensor`` to each call.
        log_every: global statistics every N epochs (default 10; None: not by epoch).
        log_every_steps: global statistics every N steps (default None).
        balance_every: per-task gradients every N epochs (default 5; None: not by epoch).
        balance_every_steps: per-task gradients every N steps (default None).
        stats_every_batch: statistics on every call of an epoch ``log_every`` names, each its
            own event, as the original logged them (default False: the epoch's first call).
        layers: also write each parameter's gradient norm (default False: counts only).
        echo: print the documented report lines as they are logged; True for stdout, or a
            text stream.
        run_id: the run's id (default: a new random id; under torch.distributed, rank 0's).
        tags: free-form ``str -> str`` metadata to tell runs apart (model, seed, commit, ...).
        fsync: flush every write to disk (survives power loss, not only a crash).
        buffer: records kept in memory and written together. Default: 1000 when a step
            cadence is set, else 0 (one write per record). See docs/recorder.md for what a
            crash can lose with buffering on.
        flush_seconds: with a buffer, write it out once its oldest record is this old.
        per_rank: under torch.distributed, every rank writes its own file
            (``NAME.rankR.jsonl``, records carrying ``rank``) from its own batch; default:
            rank 0 alone writes, with task gradients reduced over the ranks.
        window, min_samples: the collapse window of the live echo.
        original: the live echo judges as ``gradlog report --original`` does.
        clip: a max norm: the recorder clips every step (``clip_grad_norm_``) after the backward,
            or at :meth:`clip_grad_norm_`, and the statistics are of the clipped gradients,
            with the norm before clipping; ``"external"``: you clip (see :meth:`clipped`).
        mirror: a TensorBoard ``SummaryWriter`` or a callable ``(scalars, step)`` that also
            gets each event's few scalars (docs/format.md) when the writer fetches its values.

    Epoch cadences fire on the first call of an epoch number divisible by N; step cadences on
    steps divisible by N, ``step`` counting calls from 1 unless passed. Both may be set.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tasks: list[str] | tuple[str, ...],
        path: str | os.PathLike[str],
        *,
        weights: Mapping[str, float] | None = None,
        mode: str = PARAMETERS,
        shared: torch.nn.Module | str | None = None,
        log_every: int | None = 10,
        log_every_steps: int | None = None,
        balance_every: int | None = 5,
        balance_every_steps: int | None = None,
        stats_every_batch: bool = False,
        layers: bool = False,
        echo: bool | IO[str] = False,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        fsync: bool = False,
        buffer: int | None = None,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        per_rank: bool = False,
        window: int = classify.DEFAULT_WINDOW,
        min_samples: int = classify.DEFAULT_MIN_SAMPLES,
        original: bool = False,
        clip: float | str | None = None,
        mirror: Any = None,
    ) -> None:
        check_module(model)
        config = RecorderConfig(
            tasks=tasks,
            weights=weights,
            mode=mode,
            shared=shared,
            log_every=log_every,
            log_every_steps=log_every_steps,
            balance_every=balance_every,
            balance_every_steps=balance_every_steps,
            stats_every_batch=stats_every_batch,
            layers=layers,
            echo=echo,
            run_id=run_id,
            tags=tags,
            fsync=fsync,
            buffer=buffer,
            flush_seconds=flush_seconds,
            per_rank=per_rank,
            window=window,
            min_samples=min_samples,
            original=original,
            clip=clip,
            mirror=mirror,
        )
        inner = distributed.unwrap(model)
        distributed.refuse_sharded(inner)
        self.config = config
        self.model = model
        self.mode = config.mode
        self.tasks = list(config.tasks)
        self.weights = dict(config.weights)
        self.layers = config.layers
        self.log_every, self.log_every_steps = config.log_every, config.log_every_steps
        self.balance_every = config.balance_every
        self.balance_every_steps = config.balance_every_steps
        self._names, self._params = trainable_parameters(inner)
        shared_name, shared_module = resolve_shared(inner, config.shared)
        self._join_ranks(config.per_rank, config.run_id)

        self._schedule = Schedule(config)
        self._balance = PendingBalance(
            len(self.tasks),
            [self.weights[t] for t in self.tasks],
            self._params,
            self.world_size if self._reduce else None,
            representation=self.mode == REPRESENTATION,
        )
        self._clipping = Clipping(config.clip, self._params)
        self._writer = distributed.open_rank_writer(path, config, self.rank, self.per_rank)
        self._writes_nothing = isinstance(self._writer, NullWriter)
        self._values = DeviceValues()
        if config.mirror is not None:
            self._values.listeners.append(Mirror(config.mirror))
        self.path = self._writer.path
        self._closed = False
        self._echo = LiveEcho.of(config) if self.rank == 0 else None
        self._shared = None if shared_module is None else SharedOutput(shared_name, shared_module)
        self._warned_skips: set[str] = set()
        self._write(
            run_record(
                config,
                run_id=self.run_id,
                rank=self._record_rank,
                shared=shared_name,
                world_size=self.world_size if self._distributed else None,
                model=type(inner).__name__,
                n_params=sum(p.numel() for p in self._params),
                torch_version=torch.__version__,
                stats_at=self._clipping.stats_at,
            )
        )
        if self._echo is not None:
            after = self._clipping.stats_at == STATS_AFTER_CLIPPING
            self._echo.start(self.log_every, self.log_every_steps, after_clipping=after)

    def _join_ranks(self, per_rank: bool, run_id: str | None) -> None:
        dist = distributed.current()
        self.rank, self.world_size = dist if dist is not None else (0, 1)
        self._distributed = dist is not None
        self.per_rank = per_rank and self._distributed
        # Reduce the task gradients over the ranks unless each rank reports its own batch.
        self._reduce = self._distributed and not self.per_rank and self.world_size > 1
        # One log speaks for all ranks; only a per-rank file needs to say whose it is.
        self._record_rank = self.rank if self.per_rank else None
        run_id = run_id or uuid.uuid4().hex[:12]
        self.run_id = distributed.broadcast_text(run_id) if self._distributed else run_id

    # -- scheduling ---------------------------------------------------------------------------

    def _balance_due(self, epoch: int | None, step: int | None) -> bool:
        return self._schedule.due(BALANCE, epoch, self._schedule.next_step(step))

    def needs_graph(self, *, epoch: int | None = None, step: int | None = None) -> bool:
        """Whether :meth:`record` will measure per-parameter task gradients on this step, so
        that your backward must keep the graph. Always False in representation mode, and once
        :meth:`before_backward` has measured the step."""
        if self.mode == REPRESENTATION or self._balance.step is not None:
            return False
        return self._balance_due(epoch, step)

    # -- measuring ----------------------------------------------------------------------------

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
        shared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``sum(weight * loss).backward()``, measuring what is due on this step.

        Task gradients are measured around the backward (parameter mode: before it, with
        ``autograd.grad``, which leaves ``.grad`` alone; representation mode: during it),
        global statistics after it (and after clipping, with ``clip=``). ``shared``: the
        representation tensor, in representation mode without ``shared=`` at construction.
        Returns the weighted total loss.
        """
        self._before(losses, epoch, step, shared, None, exact=True)
        total = weighted_sum(losses, self.weights)
        total.backward()
        self._finish(losses, epoch, step)
        return total

    def before_backward(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
        shared: torch.Tensor | None = None,
        total: torch.Tensor | None = None,
    ) -> None:
        """Prepare the measurement of this step, before your own backward; then :meth:`record`.

        Parameter mode: measures the per-task gradients now (the graph is still there).
        Representation mode: hooks the backward that follows. ``total``: the loss your
        backward starts from, or a tensor it is a constant multiple of (a scaled or
        accumulated loss); its scale is divided out.
        """
        self._before(losses, epoch, step, shared, total, exact=False)

    def _before(self, losses, epoch, step, shared, total, *, exact: bool) -> None:
        self._check_losses(losses)
        self._schedule.check_epoch(epoch)
        self._check_representation(shared)
        self._balance.drop()
        if not self._balance_due(epoch, step):
            if self._shared is not None:
                self._shared.reset()  # never hold the representation through the backward
            return
        step = self._schedule.next_step(step)
        ordered = [losses[t] for t in self.tasks]
        if self.mode == PARAMETERS:
            self._balance.measure(step, ordered)
        else:  # never raises: a sample that cannot be taken is logged as skipped
            self._arm_representation(epoch, step, ordered, shared, total, exact=exact)

    def record(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        """Measure what is due, after your own backward (see :meth:`before_backward`)."""
        self._check_losses(losses)
        self._schedule.check_epoch(epoch)
        step_no = self._schedule.next_step(step)
        if self._balance.step not in (None, step_no):
            self._balance.drop()  # prepared for another step: never misattribute it
        if self._balance.step is None and self._balance_due(epoch, step):
            if self.mode == REPRESENTATION:  # the backward is over: too late to hook it
                self._balance.skip(step_no, self._skip(NOT_HOOKED, epoch, step_no, stacklevel=3))
            else:
                self._balance.measure_after_backward(step_no, [losses[t] for t in self.tasks])
        self._finish(losses, epoch, step)

    def _check_losses(self, losses: Mapping[str, torch.Tensor]) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: recorder is closed")
        check_losses(losses, self.tasks)

    def _finish(self, losses, epoch, step) -> None:
        step = self._schedule.advance(step)
        clipped = self._clipping.finish()  # every step is clipped, recorded or not
        if self._shared is not None:
            self._shared.reset()
        gram = self._balance.take()
        skipped, gram = (gram, None) if isinstance(gram, str) else (None, gram)
        stats_due = self._schedule.due(STATS, epoch, step)
        if not stats_due and gram is None and skipped is None:
            return
        if stats_due:
            self._schedule.done(STATS, epoch)
        if gram is not None or skipped is not None:
            self._schedule.done(BALANCE, epoch)
        if self._writes_nothing:
            return  # the reductions, collective, are done; nothing is written on this rank
        # Queued on the device, fetched when the writer flushes (pending.py): no waiting here.
        stats = parameter_grad_norms(self._params) if stats_due else None
        entry = pending_event(
            self._values,
            self._event_header(epoch, step, skipped),
            stats=stats,
            clip=None if stats is None or clipped is None else clip_values(clipped, stats[1]),
            names=self._names if self.layers else None,
            balance=None if gram is None else (gram, task_losses([losses[t] for t in self.tasks])),
            tasks=self.tasks,
            weights=self.weights,
        )
        self._write(entry)
        if self._echo is not None and (stats_due or len(self.tasks) > 1):
            # The echo prints now, so it needs the values now: a transfer at each step it prints.
            record = entry.resolve()
            norms = [t["grad_norm"] for t in record["tasks"]] if gram is not None else None
            self._echo.record(record, norms)

    # -- output -------------------------------------------------------------------------------

    def _write(self, record: Record | PendingRecord) -> None:
        self._writer.write(record)

    def flush(self) -> None:
        """Write out the buffer and force everything so far to disk (Parquet: a snapshot)."""
        self._writer.flush()

    def close(self) -> None:
        """Finish the log (and echo the summary, as the original did at the end). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._shared is not None:
                self._shared.remove()
            self._balance.close()
            self._writer.close()
            if self._echo is not None:
                self._echo.summary()

    def __enter__(self) -> GradientRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
