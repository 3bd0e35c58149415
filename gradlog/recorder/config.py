"""The recorder's arguments, checked and resolved before anything touches the model or a file.

No torch here: every check that does not need the model lives in this module, so it can be
tested (and a bad argument refused) without building one. What needs the model (its
trainable parameters, resolving ``shared`` to one of its modules, the process group) stays in
:mod:`gradlog.recorder.core`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any

from gradlog import classify
from gradlog.errors import RecorderConfigError
from gradlog.recorder.mirror import check_mirror

__all__ = [
    "CLIP_EXTERNAL",
    "DEFAULT_BUFFER_RECORDS",
    "DEFAULT_FLUSH_SECONDS",
    "MODES",
    "PARAMETERS",
    "REPRESENTATION",
    "RecorderConfig",
]

PARAMETERS = "parameters"
REPRESENTATION = "representation"
MODES = (PARAMETERS, REPRESENTATION)
# clip="external": something else clips before record() (a framework, the user's own code).
CLIP_EXTERNAL = "external"

# With a step cadence the log is buffered by default: at most this many records, or this many
# seconds (checked when a record is written), stay in memory before one write.
DEFAULT_BUFFER_RECORDS = 1000
DEFAULT_FLUSH_SECONDS = 10.0


@dataclass(frozen=True)
class RecorderConfig:
    """The validated arguments of :class:`~gradlog.GradientRecorder` (see its docstring).

    Construction checks every argument, in the order the recorder always has (so a call with
    several mistakes reports the same one), and resolves the defaults that depend on others:
    ``tasks`` becomes a tuple, ``weights`` holds a float for every task (1.0 where none was
    given), ``buffer`` a record count and ``per_rank`` a bool. ``shared`` is kept as given: only
    the recorder, which has the model, can resolve it.
    """

    tasks: Sequence[str]
    weights: Mapping[str, float] | None = None
    mode: str = PARAMETERS
    shared: Any = None
    log_every: int | None = 10
    log_every_steps: int | None = None
    balance_every: int | None = 5
    balance_every_steps: int | None = None
    stats_every_batch: bool = False
    layers: bool = False
    echo: bool | IO[str] = False
    run_id: str | None = None
    tags: Mapping[str, Any] | None = None
    fsync: bool = False
    buffer: int | None = None
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    per_rank: bool = False
    window: int = classify.DEFAULT_WINDOW
    min_samples: int = classify.DEFAULT_MIN_SAMPLES
    original: bool = False  # the live echo's rules
    clip: float | str | None = None
    mirror: Any = None  # a SummaryWriter or a callable: gradlog.recorder.mirror

    def __post_init__(self) -> None:
        tasks = _check_tasks(self.tasks)
        weights = _check_weights(self.weights, tasks)
        for name in ("log_every", "log_every_steps", "balance_every", "balance_every_steps"):
            _positive_or_none(name, getattr(self, name))
        _check_cadences(self)
        _check_every_batch(self.stats_every_batch, self.log_every)
        _check_window(self.window, self.min_samples)
        _check_mode(self.mode, self.shared)
        buffer = _check_buffer(self.buffer, self.by_steps)
        _check_flush_seconds(self.flush_seconds)
        clip = _check_clip(self.clip)
        check_mirror(self.mirror)
        # Frozen, so the resolved values go in the way dataclasses document for __post_init__.
        object.__setattr__(self, "tasks", tuple(tasks))
        object.__setattr__(self, "weights", MappingProxyType(weights))
        object.__setattr__(self, "buffer", buffer)
        object.__setattr__(self, "per_rank", bool(self.per_rank))
        object.__setattr__(self, "clip", clip)

    @property
    def by_steps(self) -> bool:
        """Whether a step cadence is set (the echo then labels lines by step)."""
        return bool(self.log_every_steps or self.balance_every_steps)

    def echo_stream(self) -> IO[str] | None:
        """Where the live echo prints, or None for no echo.

        ``sys.stdout`` is looked up when asked, not when the config is made, so that a stream
        swapped in between (pytest's capture, a notebook) is the one used.
        """
        return sys.stdout if self.echo is True else (self.echo or None)


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise RecorderConfigError(f"tasks must be a non-empty list of names, got {tasks!r}")
    if len(set(tasks)) != len(tasks):
        raise RecorderConfigError(f"task names must be unique, got {tasks!r}")
    return tasks


def _check_weights(weights: Mapping[str, float] | None, tasks: list[str]) -> dict[str, float]:
    """One float per task, in task order; a task without a weight trains at 1.0."""
    weights = dict(weights or {})
    unknown = set(weights) - set(tasks)
    if unknown:
        raise RecorderConfigError(
            f"weights name unknown tasks {sorted(unknown)}; tasks are {tasks}"
        )
    for name, w in weights.items():
        # bool is an int to Python, but weights=True is a slip, not a weight of 1
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise RecorderConfigError(f"weight of task {name!r} must be a finite number, got {w!r}")
    return {name: float(weights.get(name, 1.0)) for name in tasks}


def _positive_or_none(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecorderConfigError(f"{name} must be a positive integer or None, got {value!r}")


def _check_cadences(config: RecorderConfig) -> None:
    cadences = (
        config.log_every,
        config.log_every_steps,
        config.balance_every,
        config.balance_every_steps,
    )
    if not any(cadences):
        raise RecorderConfigError("every cadence is None: nothing would ever be logged")


def _check_every_batch(every_batch: bool, log_every: int | None) -> None:
    if not isinstance(every_batch, bool):
        raise RecorderConfigError(f"stats_every_batch must be True or False, got {every_batch!r}")
    if every_batch and log_every is None:
        raise RecorderConfigError(
            "stats_every_batch=True logs every batch of the epochs log_every names: set log_every"
        )


def _check_window(window: int, min_samples: int) -> None:
    if window < 1 or min_samples < 1:
        raise RecorderConfigError("window and min_samples must be at least 1")


def _check_mode(mode: str, shared: Any) -> None:
    if mode not in MODES:
        raise RecorderConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if shared is not None and mode != REPRESENTATION:
        raise RecorderConfigError("shared= names the representation of mode='representation'")


def _check_buffer(buffer: int | None, by_steps: bool) -> int:
    """The buffer's size in records; None picks the default of the cadence."""
    if buffer is None:
        # Step cadences write often enough for one write per record to cost; epoch ones don't.
        return DEFAULT_BUFFER_RECORDS if by_steps else 0
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
        raise RecorderConfigError(
            f"buffer must be a non-negative number of records (0: unbuffered), got {buffer!r}"
        )
    return buffer


def _check_flush_seconds(flush_seconds: float) -> None:
    if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)):
        raise RecorderConfigError(f"flush_seconds must be a number, got {flush_seconds!r}")
    if not flush_seconds > 0:  # also refuses NaN
        raise RecorderConfigError(f"flush_seconds must be positive, got {flush_seconds!r}")


def _check_clip(clip: float | str | None) -> float | str | None:
    """None, :data:`CLIP_EXTERNAL`, or the max norm as a float (infinity: measure, never clip)."""
    if clip is None or clip == CLIP_EXTERNAL:
        return clip
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
        raise RecorderConfigError(
            f"clip must be a positive max norm, {CLIP_EXTERNAL!r} (something else clips "
            f"before record()) or None, got {clip!r}"
        )
    return float(clip)
