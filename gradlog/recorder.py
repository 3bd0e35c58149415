"""The recorder: decides when to measure, turns norms into records, hands them to a writer.

Measuring lives in :mod:`gradlog.norms`, storage in :mod:`gradlog.writers`, judging in
:mod:`gradlog.classify`; this module only schedules and assembles.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import IO, Any

import torch

from gradlog import __version__, classify, messages
from gradlog.errors import RecorderConfigError
from gradlog.norms import parameter_grad_norms, task_grad_norms
from gradlog.schema import KIND_EVENT, KIND_RUN, SCHEMA_VERSION, Record
from gradlog.writers import open_writer

__all__ = ["GradientRecorder"]


def _positive_or_none(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecorderConfigError(f"{name} must be a positive integer or None, got {value!r}")
    return value


class GradientRecorder:
    """Records per-task gradient norms and global gradient statistics of a multi-task model.

    Typical use, replacing ``loss.backward()``::

        with GradientRecorder(model, ["pointer", "type"], "run.jsonl",
                              weights={"pointer": beta, "type": alpha}) as rec:
            for epoch in range(1, epochs + 1):
                for batch in loader:
                    optimizer.zero_grad()
                    total = rec.backward({"pointer": lp, "type": lt}, epoch=epoch)
                    optimizer.step()

    Or keep your own backward and call :meth:`record` after it, retaining the graph when a
    balance measurement is due::

        loss.backward(retain_graph=rec.needs_graph(epoch=epoch))
        rec.record({"pointer": lp, "type": lt}, epoch=epoch)

    Args:
        model: the module whose trainable parameters are measured (resolved once, here).
        tasks: task names, in the order reports use (the first two form the default ratio,
            except that ``pointer``/``type`` are always ``pointer/type``).
        path: the log file, ``.jsonl`` or ``.parquet``; a run is appended to an existing log.
        weights: the loss weight of each task (default 1.0). ``backward`` trains with them and
            each task's gradient norm is that of its weighted loss.
        log_every: global statistics every N epochs (default 10; None: not by epoch).
        log_every_steps: global statistics every N steps (default None).
        balance_every: per-task gradient norms every N epochs (default 5; None: not by epoch).
        balance_every_steps: per-task gradient norms every N steps (default None).
        layers: also write each parameter's gradient norm (default False: counts only).
        echo: print the documented report lines as they are logged; True for stdout, or a
            text stream.
        run_id: the run's id (default: a new random id).
        tags: free-form ``str -> str`` metadata to tell runs apart (model, seed, commit, ...).
        fsync: flush every record to disk (survives power loss, not only a crash).
        window, min_samples: the collapse window of the live echo.

    Epoch cadences fire on the first call of an epoch number divisible by N; step cadences on
    steps divisible by N, ``step`` counting calls from 1 unless passed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tasks: list[str] | tuple[str, ...],
        path: str | os.PathLike[str],
        *,
        weights: Mapping[str, float] | None = None,
        log_every: int | None = 10,
        log_every_steps: int | None = None,
        balance_every: int | None = 5,
        balance_every_steps: int | None = None,
        layers: bool = False,
        echo: bool | IO[str] = False,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        fsync: bool = False,
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

        self.model = model
        self.tasks = tasks
        self.weights = {name: float(weights.get(name, 1.0)) for name in tasks}
        self.layers = layers
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._names: list[str] = []
        self._params: list[torch.nn.Parameter] = []
        for name, param in model.named_parameters():
            if param.requires_grad:
                self._names.append(name)
                self._params.append(param)
        if not self._params:
            raise RecorderConfigError("the model has no trainable parameters")
        self._echo: IO[str] | None = sys.stdout if echo is True else (echo or None)
        self._window = window
        self._min_samples = min_samples
        self._ratios: deque[float] = deque(maxlen=window)  # the echo's collapse window
        self._echo_means: list[float] = []  # finite logged mean norms, for the echo's summary
        self._echo_maxes: list[float] = []
        self._echo_stats = 0
        self._shares: deque[dict[str, float]] = deque(maxlen=window)
        self._pair = classify.default_pair(tasks)
        self._calls = 0
        self._done_epochs: dict[str, int] = {}
        self._writer = open_writer(path, fsync=fsync)
        self.path = self._writer.path
        self._closed = False
        self._write(self._run_record(tags or {}))
        if self._echo is not None:
            self._print([messages.enabled_line(self.log_every, self.log_every_steps), ""])

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

    def needs_graph(self, *, epoch: int | None = None, step: int | None = None) -> bool:
        """Whether the next call measures task balance (then keep the graph for :meth:`record`)."""
        step = self._calls + 1 if step is None else step
        return self._due("balance", self.balance_every, self.balance_every_steps, epoch, step)

    # -- measuring ----------------------------------------------------------------------------

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
    ) -> torch.Tensor:
        """``sum(weight * loss).backward()``, measuring what is due on this step.

        Per-task norms are taken before the backward (with ``autograd.grad``, which leaves
        ``.grad`` alone), global statistics after it. Returns the weighted total loss.
        """
        self._check_losses(losses)
        total = sum(self.weights[name] * losses[name] for name in self.tasks)
        balance = self._measure_balance(losses, epoch, step)
        total.backward()
        self._finish(losses, epoch, step, balance)
        return total

    def record(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        """Measure what is due, after your own ``backward(retain_graph=rec.needs_graph(...))``."""
        self._check_losses(losses)
        try:
            balance = self._measure_balance(losses, epoch, step)
        except RuntimeError as exc:
            if "second time" in str(exc) or "freed" in str(exc):
                raise RuntimeError(
                    "gradlog needs the graph to measure per-task gradients on this step: call "
                    "loss.backward(retain_graph=recorder.needs_graph(epoch=..., step=...)), "
                    "or use recorder.backward(losses)"
                ) from exc
            raise
        self._finish(losses, epoch, step, balance)

    def _check_losses(self, losses: Mapping[str, torch.Tensor]) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: recorder is closed")
        missing = [t for t in self.tasks if t not in losses]
        extra = [t for t in losses if t not in self.weights]
        if missing or extra:
            raise KeyError(
                f"losses must hold exactly the tasks {self.tasks}: missing {missing}, unknown {extra}"
            )

    def _measure_balance(self, losses, epoch, step):
        self._check_epoch(epoch)
        step = self._calls + 1 if step is None else step
        if not self._due("balance", self.balance_every, self.balance_every_steps, epoch, step):
            return None
        norms = task_grad_norms([losses[t] for t in self.tasks], self._params)
        return [abs(self.weights[t]) * n for t, n in zip(self.tasks, norms)]

    def _finish(self, losses, epoch, step, balance) -> None:
        self._calls += 1
        step = self._calls if step is None else step
        stats_due = self._due("stats", self.log_every, self.log_every_steps, epoch, step)
        if not stats_due and balance is None:
            return
        record: Record = {
            "v": SCHEMA_VERSION,
            "run": self.run_id,
            "kind": KIND_EVENT,
            "time": time.time(),
            "epoch": epoch,
            "step": step,
        }
        if stats_due:
            record.update(self._stats())
            if epoch is not None:
                self._done_epochs["stats"] = epoch
        if balance is not None:
            record["tasks"] = [
                {
                    "name": t,
                    "grad_norm": n,
                    "loss": float(losses[t].detach()),
                    "weight": self.weights[t],
                }
                for t, n in zip(self.tasks, balance)
            ]
            if epoch is not None:
                self._done_epochs["balance"] = epoch
        self._write(record)
        if self._echo is not None:
            self._echo_record(record, balance)

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

    def _run_record(self, tags: Mapping[str, Any]) -> Record:
        meta = {
            "tasks": self.tasks,
            "log_every": self.log_every,
            "log_every_steps": self.log_every_steps,
            "balance_every": self.balance_every,
            "balance_every_steps": self.balance_every_steps,
            "weights": [{"name": t, "weight": self.weights[t]} for t in self.tasks],
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": "parameters",
            "model": type(self.model).__name__,
            "n_params": sum(p.numel() for p in self._params),
            "host": socket.gethostname(),
            "gradlog_version": __version__,
            "torch_version": torch.__version__,
            "tags": [{"key": str(k), "value": str(v)} for k, v in tags.items()],
        }
        return {
            "v": SCHEMA_VERSION,
            "run": self.run_id,
            "kind": KIND_RUN,
            "time": time.time(),
            "meta": meta,
        }

    def _write(self, record: Record) -> None:
        self._writer.write(record)

    def _print(self, lines: list[str]) -> None:
        self._echo.write("\n".join(lines) + "\n")
        self._echo.flush()

    def _echo_record(self, record: Record, balance: list[float] | None) -> None:
        lines: list[str] = []
        by_steps = bool(self.log_every_steps or self.balance_every_steps)
        label = (
            f"Step {record['step']}"
            if by_steps or record["epoch"] is None
            else f"Epoch {record['epoch']}"
        )
        if "mean_norm" in record:
            self._echo_stats += 1
            if math.isfinite(record["mean_norm"]) and math.isfinite(record["max_norm"]):
                self._echo_means.append(record["mean_norm"])
                self._echo_maxes.append(record["max_norm"])
            lines += messages.stats_block(
                label,
                record["mean_norm"],
                record["max_norm"],
                record["n_vanishing"],
                record["n_exploding"],
            )
            lines.append("")
        if balance is not None and self._pair is not None:
            num, den = self._pair
            norms = dict(zip(self.tasks, balance))
            r = classify.ratio(norms[num], norms[den])
            when = label.lower()
            if r is None:
                lines += [messages.undefined_ratio_line(when, num, den, norms[num], norms[den]), ""]
            else:
                self._ratios.append(r)
                if classify.outside_healthy_range(r):
                    lines += [*messages.imbalance_lines(when, num, den, r), ""]
            mean = classify.window_mean(list(self._ratios), self._window, self._min_samples)
            lines.append(messages.collapse_line(classify.collapse_check(mean), num, den, mean))
            shares = classify.shares(norms) if len(self.tasks) > 2 else None
            if shares is not None:
                lines.append(messages.shares_line(shares))
                if r is not None:
                    self._shares.append(shares)
            lines.append("")
        if lines:
            self._print(lines)

    def flush(self) -> None:
        """Force everything written so far to disk (and the Parquet file to be rewritten)."""
        self._writer.flush()

    def close(self) -> None:
        """Finish the log (and echo the summary, as the original did at the end). Idempotent."""
        if not self._closed:
            self._closed = True
            self._writer.close()
            if self._echo is not None:
                self._print(self._summary_lines())

    def _summary_lines(self) -> list[str]:
        means, maxes = self._echo_means, self._echo_maxes
        num, den = self._pair or ("", "")
        mean = classify.window_mean(list(self._ratios), self._window, self._min_samples)
        lines = messages.summary_lines(
            statistics.fmean(means) if means else None,
            statistics.pstdev(means) if means else None,
            statistics.fmean(maxes) if maxes else None,
            max(maxes) if maxes else None,
            classify.collapse_check(mean),
            num,
            den,
            mean,
        )
        if self._echo_stats > len(means):
            lines.append(
                messages.nonfinite_summary_line(self._echo_stats - len(means), self._echo_stats)
            )
        if self._shares:
            n = len(self._shares)
            final = {t: math.fsum(s[t] for s in self._shares) / n for t in self.tasks}
            lines.append("  " + messages.shares_line(final))
        return lines

    def __enter__(self) -> GradientRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
