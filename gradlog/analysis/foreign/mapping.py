"""Which tags of another tool's log feed which of gradlog's fields, and its scalars as a log.

A rule is a template and a field: ``grad_norm/{task}`` = ``grad_norm``. Placeholders say what a
tag names: ``{task}`` (a task's ``grad_norm``, ``loss`` or ``weight``), ``{a}`` and ``{b}`` (the
``cosine`` of two tasks' gradients), ``{param}`` (``param_norm``: one parameter tensor's norm,
whose mean, largest and counts become the event's statistics). A template without placeholders
is one tag: ``total_norm``, ``mean_norm``, ``max_norm``. The user's rules come before the
built-in ones, and a tag is read by the first rule it matches (docs/import.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gradlog.errors import GradlogError, LogFormatError

TASK_FIELDS = ("grad_norm", "loss", "weight")
PAIR_FIELD = "cosine"
PARAM_FIELD = "param_norm"
# an event's own numbers, one tag each (the keys gradlog's callbacks log: docs/format.md)
GLOBAL_FIELDS = (
    "total_norm",
    "mean_norm",
    "max_norm",
    "n_vanishing",
    "n_exploding",
    "pre_clip_norm",
    "clip_coef",
)
# A tag a built-in template would misread (``pre_clip_grad_norm`` is no task "pre_clip"): left out.
IGNORE = "ignore"
FIELDS = (*TASK_FIELDS, PAIR_FIELD, PARAM_FIELD, *GLOBAL_FIELDS, IGNORE)
_PLACEHOLDERS = {"task": "[^/]+?", "a": "[^/]+?", "b": "[^/]+", "param": ".+"}
_NEEDS = {
    **{f: {"task"} for f in TASK_FIELDS},
    PAIR_FIELD: {"a", "b"},
    PARAM_FIELD: {"param"},
    **{f: set() for f in GLOBAL_FIELDS},
}
# Trainers that log to W&B prefix their keys (Hugging Face: ``train/grad_norm``); the built-in
# rules read a tag with that prefix as the same tag without it.
_BUILT_IN_PREFIX = "(?:train/)?"
BUILT_IN = (
    # exact global names first: ``grad_norm_{task}`` must not read ``grad_norm_total`` as a task
    ("grad_2.0_norm_total", "total_norm"),  # Lightning's grad_norm()
    ("grad_norm_total", "total_norm"),
    ("total_grad_norm", "total_norm"),
    ("grad_norm", "total_norm"),  # Hugging Face: the total norm the clipping returned
    # what gradlog's own callbacks log to the trainer's loggers (log_to_trainer=True, mirror=)
    *((f"grad_stats/{f}", f) for f in GLOBAL_FIELDS),
    ("grad_stats/spread", IGNORE),  # the report computes it from the task norms
    ("loss_weight/{task}", "weight"),
    ("grad_2.0_norm/{param}", PARAM_FIELD),  # Lightning's grad_norm(): one per parameter
    ("grad_norm/{task}", "grad_norm"),
    ("{task}_grad_norm", "grad_norm"),
    ("grad_norm_{task}", "grad_norm"),
    ("loss/{task}", "loss"),
    ("weight/{task}", "weight"),
    ("cos_grad_sim/{a}_vs_{b}", PAIR_FIELD),
)
TAGS_LISTED = 20  # a message names this many of the tags found, then counts the rest
MAP_HINT = (
    "map them with --map 'TEMPLATE=FIELD' (e.g. --map 'gnorm/{task}=grad_norm') or --map-file"
)


@dataclass(frozen=True)
class Rule:
    template: str
    field: str
    pattern: re.Pattern[str]


def rule(template: str, field: str, *, built_in: bool = False, where: str = "--map") -> Rule:
    """One rule, checked: a known field, and the placeholders that field needs."""
    what = f"{where} '{template}={field}'"
    if field not in _NEEDS and field != IGNORE:
        raise GradlogError(f"{what}: unknown field '{field}' (expected one of {', '.join(FIELDS)})")
    parts = re.split(r"(\{[^{}]*\})", template)
    names = [p[1:-1] for p in parts[1::2]]
    unknown = [n for n in names if n not in _PLACEHOLDERS]
    if unknown:
        raise GradlogError(
            f"{what}: unknown placeholder '{{{unknown[0]}}}' (expected {{task}}, {{a}} and "
            "{b}, or {param})"
        )
    if len(names) != len(set(names)):
        raise GradlogError(f"{what}: a placeholder named twice")
    if field != IGNORE and set(names) != _NEEDS[field]:
        need = " and ".join(f"{{{n}}}" for n in sorted(_NEEDS[field])) or "no placeholder"
        raise GradlogError(f"{what}: field '{field}' needs {need} in the template")
    if not template:
        raise GradlogError(f"{what}: empty template")
    regex = "".join(
        f"(?P<{p[1:-1]}>{_PLACEHOLDERS[p[1:-1]]})" if i % 2 else re.escape(p)
        for i, p in enumerate(parts)
    )
    prefix = _BUILT_IN_PREFIX if built_in else ""
    return Rule(template, field, re.compile(f"{prefix}{regex}", re.DOTALL))


@dataclass(frozen=True)
class Mapping:
    """The rules in the order they are tried: the user's, then the built-in ones."""

    rules: tuple[Rule, ...]

    def with_user(self, user: Sequence[Rule]) -> Mapping:
        return Mapping((*user, *self.rules))


DEFAULT = Mapping(tuple(rule(t, f, built_in=True) for t, f in BUILT_IN))


def parse_map(items: Sequence[str]) -> list[Rule]:
    """``--map`` values, ``TEMPLATE=FIELD`` each (a field never holds ``=``; a template may)."""
    rules = []
    for item in items:
        template, sep, field = item.rpartition("=")
        if not sep:
            raise GradlogError(
                f"--map '{item}': expected TEMPLATE=FIELD, e.g. 'gnorm/{{task}}=grad_norm'"
            )
        rules.append(rule(template.strip(), field.strip()))
    return rules


def load_map_file(path: str | Path) -> list[Rule]:
    """A TOML file whose ``[map]`` table maps templates to fields (docs/import.md)."""
    name = str(path)
    toml = _toml(name)
    try:
        with open(path, "rb") as fh:
            data = toml.load(fh)
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", name) from None
    except toml.TOMLDecodeError as exc:
        raise LogFormatError(f"not valid TOML ({exc})", name) from None
    table = data.get("map")
    if not isinstance(table, dict):
        raise LogFormatError(
            'no [map] table (expected e.g. [map] "gnorm/{task}" = "grad_norm")', name
        )
    rules = []
    for template, field in table.items():
        if not isinstance(field, str):
            raise LogFormatError(
                f"[map] '{template}': expected a field name, got {field!r:.40}", name
            )
        rules.append(rule(template, field, where=f"{name}: [map]"))
    return rules


def _toml(name: str):
    try:
        import tomllib  # Python 3.11 and later
    except ImportError:  # Python 3.10: the same parser, as a package
        try:
            import tomli as tomllib
        except ImportError:
            raise LogFormatError(
                "reading a map file needs Python 3.11 or later, or the tomli package", name
            ) from None
    return tomllib


def make_mapping(items: Sequence[str] = (), file: str | Path | None = None) -> Mapping:
    """The built-in rules after the file's, after the ``--map`` ones (most specific first)."""
    user = parse_map(items)
    if file is not None:
        user += load_map_file(file)
    return DEFAULT.with_user(user)


# What read_log uses when it is given none: set once by the command line's options, or for a
# while by the API, so that every reader below (batch and compare included) sees the same one.
_current: Mapping = DEFAULT


def current_mapping() -> Mapping:
    return _current


def set_mapping(mapping: Mapping) -> None:
    global _current
    _current = mapping


@contextmanager
def using_mapping(mapping: Mapping | None) -> Iterator[None]:
    global _current
    previous = _current
    if mapping is not None:
        _current = mapping
    try:
        yield
    finally:
        _current = previous
