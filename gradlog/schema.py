"""The on-disk contract of a gradlog log, version 1 (see docs/format.md).

Standard library only: the recorder writes these records without importing Polars, and the
readers derive their Polars schema from the same names.

A log is a sequence of records, one JSON object per line (JSON Lines) or one row per record
(Parquet, the same columns). Two kinds of record:

* ``kind == "run"``: once per run, first, with the run's metadata in ``meta``;
* ``kind == "event"``: one logged measurement, with global statistics, per-task balance, or both.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

SCHEMA_VERSION = 1

KIND_RUN = "run"
KIND_EVENT = "event"

# Standard JSON has no NaN or infinity. Non-finite floats are written as these strings (the
# spellings of JavaScript and of Python's json module) and every float field is read back
# through a string column, which Polars casts to Float64 exactly.
NONFINITE_TOKENS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class TaskRecord(TypedDict, total=False):
    name: str
    grad_norm: float | None  # L2 norm of the gradient of this task's weighted loss alone
    loss: float | None  # the unweighted task loss
    weight: float | None  # the loss weight the task was trained with


class LayerRecord(TypedDict):
    name: str
    norm: float


class WeightRecord(TypedDict):
    name: str
    weight: float


class TagRecord(TypedDict):
    key: str
    value: str


class RunMeta(TypedDict, total=False):
    tasks: list[str]
    log_every: int | None  # global stats every N epochs
    log_every_steps: int | None  # global stats every N steps
    balance_every: int | None  # task balance every N epochs
    balance_every_steps: int | None  # task balance every N steps
    weights: list[WeightRecord]
    started_at: str  # ISO 8601, UTC
    mode: str  # how task norms were measured: "parameters"
    model: str
    n_params: int
    host: str
    gradlog_version: str
    torch_version: str
    tags: list[TagRecord]


class Record(TypedDict, total=False):
    v: int
    run: str
    kind: str
    time: float
    epoch: int | None
    step: int | None
    mean_norm: float | None
    max_norm: float | None
    total_norm: float | None
    n_grads: int | None
    n_vanishing: int | None
    n_exploding: int | None
    layers: list[LayerRecord] | None
    tasks: list[TaskRecord] | None
    meta: RunMeta | None


# Field names grouped by type; readers build their Polars schema from these.
INT_FIELDS = ("v", "epoch", "step", "n_grads", "n_vanishing", "n_exploding")
FLOAT_FIELDS = ("time", "mean_norm", "max_norm", "total_norm")
STRING_FIELDS = ("run", "kind")
TASK_FLOAT_FIELDS = ("grad_norm", "loss", "weight")
META_INT_FIELDS = (
    "log_every",
    "log_every_steps",
    "balance_every",
    "balance_every_steps",
    "n_params",
)
META_STRING_FIELDS = (
    "started_at",
    "mode",
    "model",
    "host",
    "gradlog_version",
    "torch_version",
)
REQUIRED_FIELDS = ("v", "run", "kind")


def encode_float(value: float | None) -> float | str | None:
    """A float as JSON can carry it: finite numbers as they are, NaN and infinities as tokens."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: Any) -> float | None:
    """The inverse of :func:`encode_float`; raises ValueError on anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value in NONFINITE_TOKENS:
            return NONFINITE_TOKENS[value]
        try:
            return float(value)  # numeric text: read leniently, as Polars' cast does
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


INT64_RANGE = (-(2**63), 2**63 - 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_problem(value: Any) -> str | None:
    if not _is_int(value):
        return f"expected an integer, got {value!r:.60}"
    if not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        return f"integer {value!s:.40} is out of the 64-bit range"
    return None


def _check_float(value: Any) -> str | None:
    try:
        decode_float(value)
    except ValueError:
        return f"expected a number or one of {', '.join(NONFINITE_TOKENS)}, got {value!r:.60}"
    return None


def _check_struct_list(
    value: Any, floats: tuple[str, ...], strings: tuple[str, ...]
) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return "", f"expected a list, got {type(value).__name__}"
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return f"[{i}]", f"expected an object, got {type(item).__name__}"
        for key in strings:
            if item.get(key) is not None and not isinstance(item[key], str):
                return f"[{i}].{key}", f"expected a string, got {item[key]!r:.60}"
        for key in floats:
            problem = _check_float(item.get(key))
            if problem:
                return f"[{i}].{key}", problem
    return None


def validate_record(obj: Any) -> tuple[str | None, str] | None:
    """Why ``obj`` (a parsed JSON line) is not a valid version-1 record: (field, message).

    None when it is valid. Used to name the exact line and field when a fast columnar read
    fails, so it checks what that read needs: types, required fields, the version.
    """
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    for key in REQUIRED_FIELDS:
        if obj.get(key) is None:
            return key, "missing (required in every record)"
    if not _is_int(obj["v"]):
        return "v", f"expected an integer schema version, got {obj['v']!r:.60}"
    if obj["v"] != SCHEMA_VERSION:
        return (
            "v",
            f"unknown schema version {obj['v']} (this gradlog reads version {SCHEMA_VERSION})",
        )
    for key in STRING_FIELDS:
        if not isinstance(obj[key], str):
            return key, f"expected a string, got {obj[key]!r:.60}"
    if obj["kind"] not in (KIND_RUN, KIND_EVENT):
        return "kind", f"expected 'run' or 'event', got {obj['kind']!r:.60}"
    for key in INT_FIELDS:
        problem = None if obj.get(key) is None else _int_problem(obj[key])
        if problem:
            return key, problem
    for key in FLOAT_FIELDS:
        problem = _check_float(obj.get(key))
        if problem:
            return key, problem
    for key, floats, strings in (
        ("tasks", TASK_FLOAT_FIELDS, ("name",)),
        ("layers", ("norm",), ("name",)),
    ):
        if obj.get(key) is not None:
            problem = _check_struct_list(obj[key], floats, strings)
            if problem:
                return key + problem[0], problem[1]
    meta = obj.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return "meta", f"expected an object, got {type(meta).__name__}"
        tasks = meta.get("tasks")
        if tasks is not None and not (
            isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)
        ):
            return "meta.tasks", f"expected a list of task names, got {tasks!r:.60}"
        for key in META_INT_FIELDS:
            problem = None if meta.get(key) is None else _int_problem(meta[key])
            if problem:
                return f"meta.{key}", problem
        for key in META_STRING_FIELDS:
            if meta.get(key) is not None and not isinstance(meta[key], str):
                return f"meta.{key}", f"expected a string, got {meta[key]!r:.60}"
        for key, floats, strings in (
            ("weights", ("weight",), ("name",)),
            ("tags", (), ("key", "value")),
        ):
            if meta.get(key) is not None:
                problem = _check_struct_list(meta[key], floats, strings)
                if problem:
                    return f"meta.{key}{problem[0]}", problem[1]
    return None
