"""The on-disk contract of a gradlog log, version 1 (see docs/format.md).

Standard library only: the recorder writes these records without importing Polars, and the
readers derive their Polars schema from the same names.

A log is a sequence of records, one JSON object per line (JSON Lines) or one row per record
(Parquet, the same columns). Two kinds of record:

* ``kind == "run"``: once per run, first, with the run's metadata in ``meta``;
* ``kind == "event"``: one logged measurement, with global statistics, per-task balance, or both.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
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


class ConflictRecord(TypedDict, total=False):
    a: str
    b: str
    cosine: float | None  # cosine of the two tasks' gradients; None where a gradient is zero


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
    mode: str  # how task norms were measured: "parameters" or "representation"
    shared: str | None  # representation mode: what the shared representation is (a module name)
    world_size: int | None  # torch.distributed: number of ranks (None: not distributed)
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
    conflicts: list[ConflictRecord] | None  # pairwise cosines of the task gradients
    rank: int | None  # torch.distributed rank, in per-rank files only


# Field names grouped by type; readers build their Polars schema from these.
INT_FIELDS = ("v", "epoch", "step", "n_grads", "n_vanishing", "n_exploding", "rank")
FLOAT_FIELDS = ("time", "mean_norm", "max_norm", "total_norm")
STRING_FIELDS = ("run", "kind")
TASK_FLOAT_FIELDS = ("grad_norm", "loss", "weight")
CONFLICT_FLOAT_FIELDS = ("cosine",)
META_INT_FIELDS = (
    "log_every",
    "log_every_steps",
    "balance_every",
    "balance_every_steps",
    "n_params",
    "world_size",
)
META_STRING_FIELDS = (
    "started_at",
    "mode",
    "shared",
    "model",
    "host",
    "gradlog_version",
    "torch_version",
)
REQUIRED_FIELDS = ("v", "run", "kind")

# Size bounds (docs/format.md, "Reading leniently, refusing clearly"): a log is data from
# anywhere, and a reader must not run out of memory on a hostile one. A recorded line is a few
# hundred bytes (tens of kilobytes with per-layer norms of a large model), so these leave room
# for any real log while refusing a runaway line or list before it is parsed. Tasks are bounded
# more tightly than the line: the report compares every pair of tasks, work that grows with the
# square of their number (a thousand tasks: half a million pairs).
MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON Lines record
MAX_TASKS = 1_000  # tasks of one record (``tasks``, ``meta.tasks``, ``meta.weights``) or run
# What a reader holds in memory of input whose size it cannot know before reading it: standard
# input, a pipe or FIFO (``<(cmd)``), a device, a gzipped log once decompressed. The environment
# variable overrides it: a number of bytes, or with K, M, G or T (binary units: ``8G``).
MAX_STREAM_BYTES = 4 * 1024 * 1024 * 1024
MAX_STREAM_BYTES_ENV = "GRADLOG_MAX_STREAM_BYTES"
MAX_STREAM_BYTES_FLAG = "--max-stream-bytes"  # the command line's way to set the variable
# Events of one log that the analysis holds in memory (report, batch, compare, plot): each costs
# about two kilobytes while judged (benchmarks/bounds.py), so a log's size, not the machine's memory,
# must not decide whether gradlog finishes. Reading stops as soon as a log passes it.
MAX_EVENTS = 1_000_000
MAX_EVENTS_ENV = "GRADLOG_MAX_EVENTS"
MAX_EVENTS_FLAG = "--max-events"
SIZE_EXAMPLE = "expected a size in bytes above 0, such as 4294967296 or 4G"
# Such input whose first whole lines, this many bytes of them, hold no JSON object is refused as
# binary data (``/dev/urandom``) before it is read any further.
SNIFF_BYTES = 1024 * 1024


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
        try:
            return float(value)
        except OverflowError:  # an integer literal with hundreds of digits
            raise ValueError(f"number {value!s:.40} is out of range for a 64-bit float") from None
    if isinstance(value, str):
        if value in NONFINITE_TOKENS:
            return NONFINITE_TOKENS[value]
        # Numeric text is read leniently, as Polars' cast reads it: ASCII, no spaces or
        # underscores (which Python's float() would accept and Polars would not).
        if value.isascii() and not any(c.isspace() or c == "_" for c in value):
            try:
                return float(value)
            except ValueError:
                pass
    raise ValueError(f"expected a number, got {value!r:.60}")


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


def _is_text(value: Any) -> bool:
    """Text, or a scalar read as its JSON text (``5`` is ``"5"``, ``true`` is ``"true"``)."""
    return isinstance(value, (str, int, float))


def _text_problem(value: Any) -> str:
    return f"expected a string, got {_type_name(value)} {value!r:.60}"


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _check_struct_list(
    value: Any,
    floats: tuple[str, ...],
    strings: tuple[str, ...],
    required: tuple[str, ...] = (),
    max_items: int | None = None,
) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return "", f"expected a list, got {type(value).__name__}"
    if max_items is not None and len(value) > max_items:
        return "", f"{len(value):,} entries in one record (at most {max_items:,})"
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return f"[{i}]", f"expected an object, got {type(item).__name__}"
        for key in required:
            if item.get(key) is None:
                return f"[{i}].{key}", "missing (required in every entry)"
        for key in strings:
            if item.get(key) is not None and not _is_text(item[key]):
                return f"[{i}].{key}", _text_problem(item[key])
        for key in floats:
            problem = _check_float(item.get(key))
            if problem:
                return f"[{i}].{key}", problem
    return None


def _check_tasks(tasks: Any) -> tuple[str, str] | None:
    """A balance sample: named tasks, each once, at most :data:`MAX_TASKS` of them."""
    problem = _check_struct_list(
        tasks, TASK_FLOAT_FIELDS, ("name",), required=("name",), max_items=MAX_TASKS
    )
    if problem:
        return problem
    seen: set[str] = set()
    for i, item in enumerate(tasks):
        name = str(item["name"])
        if name in seen:
            return f"[{i}].name", f"task {name!r:.60} appears twice in one balance sample"
        seen.add(name)
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
        if not _is_text(obj[key]):
            return key, _text_problem(obj[key])
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
        ("layers", ("norm",), ("name",)),
        ("conflicts", CONFLICT_FLOAT_FIELDS, ("a", "b")),
    ):
        if obj.get(key) is not None:
            problem = _check_struct_list(obj[key], floats, strings)
            if problem:
                return key + problem[0], problem[1]
    if obj.get("tasks") is not None:
        problem = _check_tasks(obj["tasks"])
        if problem:
            return "tasks" + problem[0], problem[1]
    meta = obj.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return "meta", f"expected an object, got {type(meta).__name__}"
        tasks = meta.get("tasks")
        if tasks is not None and not (
            isinstance(tasks, list) and all(t is not None and _is_text(t) for t in tasks)
        ):
            return "meta.tasks", f"expected a list of task names, got {tasks!r:.60}"
        if tasks is not None and len(tasks) > MAX_TASKS:
            return "meta.tasks", f"{len(tasks):,} tasks (at most {MAX_TASKS:,})"
        for key in META_INT_FIELDS:
            problem = None if meta.get(key) is None else _int_problem(meta[key])
            if problem:
                return f"meta.{key}", problem
        for key in META_STRING_FIELDS:
            if meta.get(key) is not None and not _is_text(meta[key]):
                return f"meta.{key}", _text_problem(meta[key])
        for key, floats, strings, limit in (
            ("weights", ("weight",), ("name",), MAX_TASKS),
            ("tags", (), ("key", "value"), None),
        ):
            if meta.get(key) is not None:
                problem = _check_struct_list(meta[key], floats, strings, max_items=limit)
                if problem:
                    return f"meta.{key}{problem[0]}", problem[1]
    return None


# -- files -------------------------------------------------------------------------------------

JSONL_SUFFIXES = (".jsonl", ".ndjson")  # JSON Lines logs, each also gzipped (".gz")
PARQUET_SUFFIXES = (".parquet",)
GZIP_SUFFIX = ".gz"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
JOURNAL_SUFFIX = ".journal"  # beside a Parquet log: every record since the last snapshot
# Parquet file metadata: how many leading bytes of the journal the snapshot already holds.
JOURNAL_BYTES_KEY = "gradlog.journal_bytes"


def log_kind(path: str | os.PathLike[str]) -> str | None:
    """``"jsonl"`` or ``"parquet"`` from a log's name (gzipped JSON Lines included), else None."""
    name = Path(path).name.lower().removesuffix(GZIP_SUFFIX)
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def journal_path(path: str | os.PathLike[str]) -> Path:
    """Where the Parquet writer keeps its journal for ``path``."""
    path = Path(path)
    return path.with_name(path.name + JOURNAL_SUFFIX)


def _encode(value: Any) -> Any:
    """Replace non-finite floats (which standard JSON cannot carry) by their tokens."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def dumps(record: Record) -> bytes:
    """One record as one line of JSON, newline included."""
    try:  # the common case, every float finite: no need to walk the record
        text = json.dumps(record, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(
            _encode(record), allow_nan=False, ensure_ascii=False, separators=(",", ":")
        )
    return (text + "\n").encode("utf-8")


_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``4G``, ``512M``, ``4294967296``: a size in bytes (binary units), or None if it is none."""
    match = _SIZE.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) << (10 * "_kmgt".index(match.group(2).lower() or "_"))
