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
    # When the statistics (mean/max/total norms, layers) were read: "before_clipping" (after the
    # backward, the default) or "after_clipping" (the recorder clipped, or wrapped the clipping).
    stats_at: str | None
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
    # Clipping (docs/format.md, "Clipping"): the total norm before clipping, after unscaling
    # and accumulation, and the factor the gradients were then multiplied by (1.0: unclipped).
    pre_clip_norm: float | None
    clip_coef: float | None
    skipped: str | None  # a balance sample that was due and not taken, and why
    layers: list[LayerRecord] | None
    tasks: list[TaskRecord] | None
    meta: RunMeta | None
    conflicts: list[ConflictRecord] | None  # pairwise cosines of the task gradients
    rank: int | None  # torch.distributed rank, in per-rank files only


# Field names grouped by type; readers build their Polars schema from these.
INT_FIELDS = ("v", "epoch", "step", "n_grads", "n_vanishing", "n_exploding", "rank")
FLOAT_FIELDS = ("time", "mean_norm", "max_norm", "total_norm", "pre_clip_norm", "clip_coef")
STRING_FIELDS = ("run", "kind")  # required in every record
EVENT_STRING_FIELDS = ("skipped",)  # optional
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
    "stats_at",
)
STATS_BEFORE_CLIPPING = "before_clipping"
STATS_AFTER_CLIPPING = "after_clipping"
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


# -- files -------------------------------------------------------------------------------------

JSONL_SUFFIXES = (".jsonl", ".ndjson")  # JSON Lines logs, each also gzipped (".gz")
PARQUET_SUFFIXES = (".parquet",)
GZIP_SUFFIX = ".gz"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
JOURNAL_SUFFIX = ".journal"  # beside a Parquet log: every record since the last snapshot
LOCK_SUFFIX = ".lock"  # beside a Parquet log while its one writer has it open
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


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file a Parquet writer holds while it writes ``path``."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


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
