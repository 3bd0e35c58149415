"""The recorder: decides when to measure, turns norms into records, hands them to a writer.

Measuring lives in :mod:`gradlog.recorder.norms` (parameter gradients) and :mod:`gradlog.recorder.capture`
(representation gradients), storage in :mod:`gradlog.recorder.writers`, ranks in
:mod:`gradlog.recorder.distributed`, the live echo in :mod:`gradlog.recorder.echo`; this module only schedules
and assembles. docs/recorder.md explains the two measurement modes.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

import gradlog.recorder.distributed as distributed
from gradlog import __version__, classify
from gradlog.errors import RecorderConfigError
from gradlog.format import KIND_EVENT, KIND_RUN, SCHEMA_VERSION, Record
from gradlog.recorder.capture import RepresentationCapture, Shared, first_tensor
from gradlog.recorder.echo import LiveEcho
from gradlog.recorder.norms import (
    norms_and_cosines,
    parameter_grad_norms,
    parameter_gram,
    task_parameter_grads,
)
from gradlog.recorder.writers import NullWriter, check_log_path, open_writer

__all__ = ["GradientRecorder", "PARAMETERS", "REPRESENTATION"]

PARAMETERS = "parameters"
REPRESENTATION = "representation"
MODES = (PARAMETERS, REPRESENTATION)

# With a step cadence the log is buffered by default: at most this many records, or this many
# seconds (checked when a record is written), stay in memory before one write.
DEFAULT_BUFFER_RECORDS = 1000
DEFAULT_FLUSH_SECONDS = 10.0


def _positive_or_none(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecorderConfigError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _rank_path(path: str | os.PathLike[str], rank: int) -> Path:
    """``runs/train.jsonl`` -> ``runs/train.rank1.jsonl`` (the per-rank file of rank 1)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


class GradientRecorder:
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
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise RecorderConfigError(
                f"model must be a torch.nn.Module, got {type(model).__name__}"
            )
        tasks = list(tasks)
        if not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise RecorderConfigError(f"tasks must be a non-empty list of names, got {tasks!r}")
        if len(set(tasks)) != len(tasks):
            raise RecorderConfigError(f"task names must be unique, got {tasks!r}")
        weights = dict(weights or {})
        unknown = set(weights) - set(tasks)
        if unknown:
            raise RecorderConfigError(
                f"weights name unknown tasks {sorted(unknown)}; tasks are {tasks}"
            )
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                raise RecorderConfigError(
                    f"weight of task {name!r} must be a finite number, got {w!r}"
                )
        self.log_every = _positive_or_none("log_every", log_every)
        self.log_every_steps = _positive_or_none("log_every_steps", log_every_steps)
        self.balance_every = _positive_or_none("balance_every", balance_every)
        self.balance_every_steps = _positive_or_none("balance_every_steps", balance_every_steps)
        if not any(
            (self.log_every, self.log_every_steps, self.balance_every, self.balance_every_steps)
        ):
            raise RecorderConfigError("every cadence is None: nothing would ever be logged")
        if window < 1 or min_samples < 1:
            raise RecorderConfigError("window and min_samples must be at least 1")
        if mode not in MODES:
            raise RecorderConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if shared is not None and mode != REPRESENTATION:
            raise RecorderConfigError("shared= names the representation of mode='representation'")
        by_steps = bool(self.log_every_steps or self.balance_every_steps)
        if buffer is None:
            buffer = DEFAULT_BUFFER_RECORDS if by_steps else 0
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
            raise RecorderConfigError(
                f"buffer must be a non-negative number of records (0: unbuffered), got {buffer!r}"
            )
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)):
            raise RecorderConfigError(f"flush_seconds must be a number, got {flush_seconds!r}")
        if not flush_seconds > 0:
            raise RecorderConfigError(f"flush_seconds must be positive, got {flush_seconds!r}")

        inner = distributed.unwrap(model)
        distributed.refuse_sharded(inner)
        self.model = model
        self.mode = mode
        self.tasks = tasks
        self.weights = {name: float(weights.get(name, 1.0)) for name in tasks}
        self.layers = layers
        self._names: list[str] = []
        self._params: list[torch.nn.Parameter] = []
        for name, param in inner.named_parameters():
            if param.requires_grad:
                self._names.append(name)
                self._params.append(param)
        if not self._params:
            raise RecorderConfigError("the model has no trainable parameters")
        self._shared_name, self._shared_module = self._resolve_shared(inner, shared)

        dist = distributed.current()
        self.rank, self.world_size = dist if dist is not None else (0, 1)
        self._distributed = dist is not None
        self.per_rank = bool(per_rank) and self._distributed
        # Reduce the task gradients over the ranks unless each rank reports its own batch.
        self._reduce = self._distributed and not self.per_rank and self.world_size > 1
        run_id = run_id or uuid.uuid4().hex[:12]
        self.run_id = distributed.broadcast_text(run_id) if self._distributed else run_id

        self._calls = 0
        self._done_epochs: dict[str, int] = {}
        self._pending: tuple[int, Any] | None = None  # (step, measured gram or armed capture)
        self._capture = RepresentationCapture(len(tasks)) if mode == REPRESENTATION else None
        self._shared_tensor: torch.Tensor | None = None  # the shared module's last output
        self._shared_calls = 0
        self._hook_handle = None
        writes = self.per_rank or self.rank == 0
        if self.per_rank:
            path = _rank_path(path, self.rank)
        if writes:
            self._writer = open_writer(
                path, fsync=fsync, buffer_records=buffer, flush_seconds=flush_seconds
            )
        else:  # other ranks measure (the reductions are collective) but write nothing
            check_log_path(path)
            self._writer = NullWriter(path)
        self.path = self._writer.path
        self._closed = False
        stream = sys.stdout if echo is True else (echo or None)
        self._echo = None
        if stream is not None and self.rank == 0:
            self._echo = LiveEcho(
                stream, tasks, by_steps=by_steps, window=window, min_samples=min_samples
            )
        if self._shared_module is not None:
            self._hook_handle = self._shared_module.register_forward_hook(self._on_shared)
        self._write(self._run_record(inner, tags or {}))
        if self._echo is not None:
            self._echo.start(self.log_every, self.log_every_steps)

    def _resolve_shared(
        self, model: torch.nn.Module, shared: torch.nn.Module | str | None
    ) -> tuple[str | None, torch.nn.Module | None]:
        if shared is None:
            return None, None
        if isinstance(shared, str):
            try:
                return shared, model.get_submodule(shared)
            except AttributeError as exc:
                raise RecorderConfigError(
                    f"shared={shared!r}: the model has no submodule of that name"
                ) from exc
        if isinstance(shared, torch.nn.Module):
            for name, module in model.named_modules():
                if module is shared:
                    return name or type(model).__name__, module
            raise RecorderConfigError(
                f"shared= must be a submodule of the model, got a {type(shared).__name__} "
                "that is not part of it"
            )
        raise RecorderConfigError(
            f"shared= must be a module of the model or its name, got {type(shared).__name__}"
        )

    def _on_shared(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if torch.is_grad_enabled():
            tensor = first_tensor(output)
            if tensor is not None and tensor.requires_grad:
                self._shared_tensor = tensor  # let go before the backward (_before)
                self._shared_calls += 1

    # -- scheduling ---------------------------------------------------------------------------

    def _due(
        self, kind: str, every: int | None, every_steps: int | None, epoch: int | None, step: int
    ) -> bool:
        if every_steps and step % every_steps == 0:
            return True
        if every and epoch is not None and epoch % every == 0:
            return self._done_epochs.get(kind) != epoch
        return False

    def _check_epoch(self, epoch: int | None) -> None:
        if epoch is None and not (self.log_every_steps or self.balance_every_steps):
            raise RecorderConfigError(
                "pass epoch= to backward()/record(), or set log_every_steps/balance_every_steps"
            )

    def _balance_due(self, epoch: int | None, step: int | None) -> bool:
        step = self._calls + 1 if step is None else step
        return self._due("balance", self.balance_every, self.balance_every_steps, epoch, step)

    def needs_graph(self, *, epoch: int | None = None, step: int | None = None) -> bool:
        """Whether :meth:`record` will measure per-parameter task gradients on this step, so
        that your backward must keep the graph. Always False in representation mode, and once
        :meth:`before_backward` has measured the step."""
        if self.mode == REPRESENTATION or self._pending is not None:
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
        global statistics after it. ``shared``: the representation tensor, in representation
        mode without ``shared=`` at construction. Returns the weighted total loss.
        """
        self._before(losses, epoch, step, shared, None, exact=True)
        total = sum(self.weights[name] * losses[name] for name in self.tasks)
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
        self._check_epoch(epoch)
        if self.mode == REPRESENTATION and shared is None and self._shared_module is None:
            raise RecorderConfigError(
                "mode='representation' needs the shared representation: "
                "GradientRecorder(..., shared=model.encoder) or backward(losses, shared=h)"
            )
        self._drop_pending()
        # Keep only where the representation's gradient enters the graph, never the tensor
        # itself through the backward: its memory is freed there as it is without gradlog.
        module_output, self._shared_tensor = self._shared_tensor, None
        if not self._balance_due(epoch, step):
            return
        step = self._calls + 1 if step is None else step
        ordered = [losses[t] for t in self.tasks]
        if self.mode == PARAMETERS:
            self._pending = (step, self._parameter_gram(ordered))
        else:
            h = Shared.of(shared if shared is not None else self._take_shared(module_output))
            self._capture.arm(ordered, h, total, exact=exact)
            self._pending = (step, self._capture)

    def record(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        """Measure what is due, after your own backward (see :meth:`before_backward`)."""
        self._check_losses(losses)
        self._check_epoch(epoch)
        step_no = self._calls + 1 if step is None else step
        if self._pending is not None and self._pending[0] != step_no:
            self._drop_pending()  # prepared for another step: never misattribute it
        if self._pending is None and self._balance_due(epoch, step):
            if self.mode == REPRESENTATION:
                raise RuntimeError(
                    "gradlog's representation mode hooks the backward: call "
                    "recorder.before_backward(losses, epoch=..., step=...) before your "
                    "backward, or use recorder.backward(losses)"
                )
            try:
                self._pending = (step_no, self._parameter_gram([losses[t] for t in self.tasks]))
            except RuntimeError as exc:
                if "second time" in str(exc) or "freed" in str(exc):
                    raise RuntimeError(
                        "gradlog needs the graph to measure per-task gradients on this step: "
                        "call loss.backward(retain_graph=recorder.needs_graph(epoch=..., "
                        "step=...)), or use recorder.backward(losses)"
                    ) from exc
                raise
        self._finish(losses, epoch, step)

    def _drop_pending(self) -> None:
        if self._pending is not None and isinstance(self._pending[1], RepresentationCapture):
            self._pending[1].disarm()
        self._pending = None

    def _check_losses(self, losses: Mapping[str, torch.Tensor]) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: recorder is closed")
        missing = [t for t in self.tasks if t not in losses]
        extra = [t for t in losses if t not in self.weights]
        if missing or extra:
            raise KeyError(
                f"losses must hold exactly the tasks {self.tasks}: missing {missing}, unknown {extra}"
            )
        for task in self.tasks:
            loss = losses[task]
            if not isinstance(loss, torch.Tensor):
                # A float has no graph to differentiate: the usual slip is loss.item()
                raise TypeError(
                    f"losses[{task!r}] must be the task's loss as a torch.Tensor (with its "
                    f"graph, as returned by the loss function), got {type(loss).__name__} "
                    f"{loss!r:.40}"
                )

    def _take_shared(self, tensor: torch.Tensor | None) -> torch.Tensor:
        calls = self._shared_calls
        if tensor is None:
            raise RecorderConfigError(
                f"the shared module {self._shared_name!r} has not run with gradients enabled "
                "since the last step: its output is the representation gradlog measures"
            )
        if calls > 1:
            raise RecorderConfigError(
                f"the shared module {self._shared_name!r} ran {calls} times since the last "
                "step, so its output is not one representation: pass the tensor the task "
                "heads read as backward(losses, shared=h)"
            )
        return tensor

    def _parameter_gram(self, ordered: list[torch.Tensor]) -> torch.Tensor:
        grads = task_parameter_grads(ordered, self._params)
        if self._reduce:
            grads = distributed.average_task_grads(grads, self._params, self.world_size)
        gram = parameter_gram(grads)
        w = torch.tensor([self.weights[t] for t in self.tasks], dtype=torch.float64)
        return gram * torch.outer(w, w).to(gram.device)  # the gradients of the weighted losses

    def _finish(self, losses, epoch, step) -> None:
        self._calls += 1
        step = self._calls if step is None else step
        pending, self._pending = self._pending, None
        self._shared_tensor, self._shared_calls = None, 0
        gram = None
        if pending is not None:
            measured = pending[1]
            if isinstance(measured, RepresentationCapture):
                reduce = None
                if self._reduce:
                    world = self.world_size
                    reduce = lambda g: distributed.sum_gram(g, world)  # noqa: E731
                gram = measured.gram(reduce)
            else:
                gram = measured.tolist()
        stats_due = self._due("stats", self.log_every, self.log_every_steps, epoch, step)
        if not stats_due and gram is None:
            return
        record: Record = {
            "v": SCHEMA_VERSION,
            "run": self.run_id,
            "kind": KIND_EVENT,
            "time": time.time(),
            "epoch": epoch,
            "step": step,
        }
        if self.per_rank:
            record["rank"] = self.rank
        if stats_due:
            record.update(self._stats())
            if epoch is not None:
                self._done_epochs["stats"] = epoch
        balance = None
        if gram is not None:
            balance, cosines = norms_and_cosines(gram)
            record["tasks"] = [
                {
                    "name": t,
                    "grad_norm": n,
                    "loss": float(losses[t].detach()),
                    "weight": self.weights[t],
                }
                for t, n in zip(self.tasks, balance)
            ]
            if len(self.tasks) > 1:
                record["conflicts"] = [
                    {"a": self.tasks[i], "b": self.tasks[j], "cosine": c}
                    for (i, j), c in cosines.items()
                ]
            if epoch is not None:
                self._done_epochs["balance"] = epoch
        self._write(record)
        if self._echo is not None:
            self._echo.record(record, balance)

    def _stats(self) -> dict[str, Any]:
        index, norms = parameter_grad_norms(self._params)
        if not norms:
            return {"n_grads": 0}
        stats: dict[str, Any] = {
            "mean_norm": math.fsum(norms) / len(norms),
            "max_norm": max(norms, key=lambda n: (math.isnan(n), n)),
            "total_norm": math.sqrt(math.fsum(n * n for n in norms)),
            "n_grads": len(norms),
            "n_vanishing": sum(classify.layer_is_vanishing(n) for n in norms),
            "n_exploding": sum(classify.layer_is_exploding(n) for n in norms),
        }
        if self.layers:
            stats["layers"] = [{"name": self._names[i], "norm": n} for i, n in zip(index, norms)]
        return stats

    # -- output -------------------------------------------------------------------------------

    def _run_record(self, model: torch.nn.Module, tags: Mapping[str, Any]) -> Record:
        meta = {
            "tasks": self.tasks,
            "log_every": self.log_every,
            "log_every_steps": self.log_every_steps,
            "balance_every": self.balance_every,
            "balance_every_steps": self.balance_every_steps,
            "weights": [{"name": t, "weight": self.weights[t]} for t in self.tasks],
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": self.mode,
            "shared": self._shared_name,
            "world_size": self.world_size if self._distributed else None,
            "model": type(model).__name__,
            "n_params": sum(p.numel() for p in self._params),
            "host": socket.gethostname(),
            "gradlog_version": __version__,
            "torch_version": torch.__version__,
            "tags": [{"key": str(k), "value": str(v)} for k, v in tags.items()],
        }
        record: Record = {
            "v": SCHEMA_VERSION,
            "run": self.run_id,
            "kind": KIND_RUN,
            "time": time.time(),
            "meta": meta,
        }
        if self.per_rank:
            record["rank"] = self.rank
        return record

    def _write(self, record: Record) -> None:
        self._writer.write(record)

    def flush(self) -> None:
        """Write out the buffer and force everything so far to disk (Parquet: a snapshot)."""
        self._writer.flush()

    def close(self) -> None:
        """Finish the log (and echo the summary, as the original did at the end). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._hook_handle is not None:
                self._hook_handle.remove()
            if self._capture is not None:
                self._capture.disarm()
            self._writer.close()
            if self._echo is not None:
                self._echo.summary()

    def __enter__(self) -> GradientRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
