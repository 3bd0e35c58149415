"""The report as JSON, for machines: every number, non-finite floats as "NaN"/"Infinity".

Each run's ``events`` is an object of parallel arrays (one entry per logged event), as the
analysis holds them: ``events.ratio[i]`` belongs to ``events.label[i]``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from gradlog.schema import SCHEMA_VERSION, encode_float
from gradlog.summary import Report


def to_data(value: Any) -> Any:
    """Plain JSON-ready data from the report objects (enums by value, floats encoded)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


def format_json(report: Report) -> str:
    data = {"gradlog_report": 1, "log_schema": SCHEMA_VERSION, **to_data(report)}
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
