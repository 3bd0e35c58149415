"""The log's events as a handful of named scalars, for the loggers people already look at.

TensorBoard, W&B and Lightning's loggers plot named scalars at steps. :func:`scalars` turns
one event record into the keys of docs/format.md ("Keys written to other tools' loggers"):
few, stable, and named so that no task name can collide with another key. :class:`Mirror`
hands them to what the user passed as ``GradientRecorder(..., mirror=...)``: a TensorBoard
``SummaryWriter`` (anything with ``add_scalar(tag, value, global_step)``) or a callable
``(scalars, step)``.

A mirror is a listener of the recorder's pending records (:mod:`gradlog.recorder.pending`): it
gets each event when its values are fetched, at the writer's flush, never at the step, so it
adds no transfer to a training step; a flush that writes a buffer of events hands them over
one by one, each with its own step. A mirror that fails is reported once and dropped: the log
comes first, and a logger that breaks must not lose its records. No torch here.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from gradlog.errors import RecorderConfigError
from gradlog.format import Record

__all__ = ["Mirror", "check_mirror", "scalars", "STATS_PREFIX"]

# Keys that name a task start with one of these; the run-wide statistics have a prefix of their
# own, so that a task called "mean" or "spread" cannot collide with them.
NORM_PREFIX = "grad_norm/"
LOSS_PREFIX = "loss/"
WEIGHT_PREFIX = "loss_weight/"
COSINE_PREFIX = "cos_grad_sim/"
STATS_PREFIX = "grad_stats/"
STATS = ("mean_norm", "max_norm", "total_norm", "n_vanishing", "n_exploding")
CLIPPING = ("pre_clip_norm", "clip_coef")


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The keys of one event record, as floats (NaN and infinities as they are).

    A key is left out when the event has no value for it: statistics on a balance-only event,
    task keys on a stats-only or skipped one, a cosine the log has as null (a zero gradient),
    the spread of a sample that has a zero or non-finite norm (the report calls such a
    sample undefined).
    """
    out: dict[str, float] = {}
    tasks = record.get("tasks") or []
    for task in tasks:
        name = task["name"]
        out[NORM_PREFIX + name] = float(task["grad_norm"])
        out[LOSS_PREFIX + name] = float(task["loss"])
        out[WEIGHT_PREFIX + name] = float(task["weight"])
    for pair in record.get("conflicts") or []:
        if pair["cosine"] is not None:
            out[f"{COSINE_PREFIX}{pair['a']}_vs_{pair['b']}"] = float(pair["cosine"])
    norms = [float(t["grad_norm"]) for t in tasks]
    if len(norms) > 1 and all(math.isfinite(n) and n > 0 for n in norms):
        out[STATS_PREFIX + "spread"] = max(norms) / min(norms)
    for field in STATS + CLIPPING:
        if record.get(field) is not None:
            out[STATS_PREFIX + field] = float(record[field])
    return out


def check_mirror(mirror: Any) -> None:
    """Refuse, at construction, what cannot receive scalars."""
    if mirror is None or callable(getattr(mirror, "add_scalar", None)) or callable(mirror):
        return
    raise RecorderConfigError(
        "mirror must be a TensorBoard SummaryWriter (anything with add_scalar(tag, value, "
        f"global_step)) or a callable (scalars, step), got {type(mirror).__name__}"
    )


class Mirror:
    """Hands each event's :func:`scalars` to ``target``, at the event's own step."""

    def __init__(self, target: Any) -> None:
        self.target = target
        add_scalar = getattr(target, "add_scalar", None)
        self._add_scalar: Callable[..., Any] | None = add_scalar if callable(add_scalar) else None
        # The event's wall time, where the writer takes one (SummaryWriter does): a flush hands
        # over events made up to flush_seconds earlier.
        self._walltime = self._add_scalar is not None and _takes(self._add_scalar, "walltime")
        self._failed = False

    def __call__(self, record: Record, step: int | None) -> None:
        """One event, and the step it belongs at: its own, or for a sample taken apart from a
        step (``sample_balance`` with epoch cadences), the step of the last call before it."""
        if self._failed or record.get("kind") != "event":
            return
        values = scalars(record)
        if not values:
            return
        try:
            self.send(values, record, step)
        except Exception as exc:  # never lose the log's records to a logger's failure
            self._failed = True
            warnings.warn(
                f"gradlog: the mirror {type(self.target).__name__} failed at step {step} "
                f"({type(exc).__name__}: {exc}); nothing more is sent to it (the log is "
                "unaffected)",
                RuntimeWarning,
                stacklevel=2,
            )

    def send(self, values: dict[str, float], record: Record, step: int | None) -> None:
        """Give one event's scalars to the target."""
        if self._add_scalar is None:
            self.target(values, step)
            return
        extra = {"walltime": record["time"]} if self._walltime and "time" in record else {}
        for tag, value in values.items():
            self._add_scalar(tag, value, step, **extra)


def _takes(function: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass the three arguments
        return False


class MirrorMethods:
    """The recorder's side of its listeners (mixed into :class:`~gradlog.GradientRecorder`,
    which keeps its pending records' :class:`~gradlog.recorder.pending.DeviceValues` as
    ``_values``)."""

    _values: Any

    def fetch(self) -> None:
        """Fetch the values of every event logged so far and not yet written (one transfer per
        device, the one the next flush would make) and hand them to the mirror now, each with
        its step; the writer still writes them at its flush. For a logger that must have them
        at a moment of its own: the Hugging Face callback calls it at the Trainer's logging
        steps, where the Trainer itself reads its loss from the device."""
        self._values.resolve_all()

    def _listen(self, listener: Callable[[Record, int | None], None]) -> None:
        """Also give every event record to ``listener`` when it is built (the callbacks'
        trainer loggers, beside the user's ``mirror=``)."""
        self._values.listeners.append(listener)
