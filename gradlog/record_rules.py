"""What makes a record valid: the rules of docs/format.md, checked on a record as written.

Standard library only, like :mod:`gradlog.format`. The readers call :func:`validate_record` to
name the exact line and field of a record that a fast columnar read refused.
"""

from __future__ import annotations

from typing import Any

from gradlog.format import (
    CONFLICT_FLOAT_FIELDS,
    EVENT_STRING_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    KIND_EVENT,
    KIND_RUN,
    MAX_TASKS,
    META_INT_FIELDS,
    META_STRING_FIELDS,
    NONFINITE_TOKENS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    STRING_FIELDS,
    TASK_FLOAT_FIELDS,
    decode_float,
)

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
    for key in EVENT_STRING_FIELDS:
        if obj.get(key) is not None and not _is_text(obj[key]):
            return key, _text_problem(obj[key])
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
