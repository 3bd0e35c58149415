"""The log's records, assembled from what the recorder measured.

Plain values in, :data:`~gradlog.format.Record` out: the recorder measures (with torch) and
decides when; this module only knows the record layout of docs/format.md, so the order of the
keys here is the order a JSON Lines log shows them in.
"""

from __future__ import annotations

import datetime as _dt
import math
import socket
import time
from collections.abc import Sequence
from typing import Any

from gradlog import __version__, classify
from gradlog.format import KIND_EVENT, KIND_RUN, SCHEMA_VERSION, STATS_BEFORE_CLIPPING, Record
from gradlog.recorder.config import RecorderConfig


def run_record(
    config: RecorderConfig,
    *,
    run_id: str,
    rank: int | None,
    shared: str | None,
    world_size: int | None,
    model: str,
    n_params: int,
    torch_version: str,
    stats_at: str = STATS_BEFORE_CLIPPING,
) -> Record:
    """The record that opens a run. ``rank``: set only when every rank writes its own file;
    ``stats_at``: whether the statistics are read before or after clipping."""
    tasks = list(config.tasks)
    meta = {
        "tasks": tasks,
        "log_every": config.log_every,
        "log_every_steps": config.log_every_steps,
        "balance_every": config.balance_every,
        "balance_every_steps": config.balance_every_steps,
        "weights": [{"name": t, "weight": config.weights[t]} for t in tasks],
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": config.mode,
        "shared": shared,
        "world_size": world_size,
        "model": model,
        "n_params": n_params,
        "host": socket.gethostname(),
        "gradlog_version": __version__,
        "torch_version": torch_version,
        "stats_at": stats_at,
        "tags": [{"key": str(k), "value": str(v)} for k, v in (config.tags or {}).items()],
    }
    record: Record = {
        "v": SCHEMA_VERSION,
        "run": run_id,
        "kind": KIND_RUN,
        "time": time.time(),
        "meta": meta,
    }
    if rank is not None:
        record["rank"] = rank
    return record


def event_record(run_id: str, epoch: int | None, step: int, rank: int | None) -> Record:
    """An event's header, before its statistics and task fields are added."""
    record: Record = {
        "v": SCHEMA_VERSION,
        "run": run_id,
        "kind": KIND_EVENT,
        "time": time.time(),
        "epoch": epoch,
        "step": step,
    }
    if rank is not None:
        record["rank"] = rank
    return record


def stats_fields(
    index: Sequence[int],
    norms: Sequence[float],
    names: Sequence[str] | None,
    clip: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The global statistics of the parameters' gradient norms.

    ``index`` and ``norms``: as :func:`~gradlog.recorder.norms.parameter_grad_norms` returns
    them; ``names``: every measured parameter's name, to list each norm, or None for counts only;
    ``clip``: the step's ``(pre_clip_norm, clip_coef)``, or None.
    """
    clipping = {} if clip is None else {"pre_clip_norm": clip[0], "clip_coef": clip[1]}
    if not norms:
        return {"n_grads": 0, **clipping}
    # A NaN gradient is the maximum (the first NaN), not silently skipped
    nan = next((n for n in norms if n != n), None)
    stats: dict[str, Any] = {
        "mean_norm": math.fsum(norms) / len(norms),
        "max_norm": max(norms) if nan is None else nan,
        "total_norm": math.sqrt(math.fsum([n * n for n in norms])),
        "n_grads": len(norms),
        "n_vanishing": sum(map(classify.layer_is_vanishing, norms)),
        "n_exploding": sum(map(classify.layer_is_exploding, norms)),
        **clipping,
    }
    if names is not None:
        stats["layers"] = [{"name": names[i], "norm": n} for i, n in zip(index, norms)]
    return stats


def balance_fields(
    tasks: Sequence[str],
    weights: dict[str, float],
    losses: Sequence[float],
    norms: Sequence[float],
    cosines: dict[tuple[int, int], float | None],
) -> dict[str, Any]:
    """Each task's gradient norm and loss, and the cosine of every pair of tasks (if any).

    ``losses`` and ``norms`` in task order; ``cosines`` keyed by task index pairs ``i < j``.
    """
    fields: dict[str, Any] = {
        "tasks": [
            {"name": t, "grad_norm": n, "loss": loss, "weight": weights[t]}
            for t, n, loss in zip(tasks, norms, losses)
        ]
    }
    if len(tasks) > 1:
        fields["conflicts"] = [
            {"a": tasks[i], "b": tasks[j], "cosine": c} for (i, j), c in cosines.items()
        ]
    return fields
