"""The command line's options and choices, each declared once (Typer annotations)."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from gradlog.format import (
    MAX_EVENTS,
    MAX_EVENTS_ENV,
    MAX_EVENTS_FLAG,
    MAX_STREAM_BYTES_ENV,
    MAX_STREAM_BYTES_FLAG,
    SIZE_EXAMPLE,
    parse_size,
)

Window = Annotated[int, typer.Option(min=1, help="Balance samples in the collapse window.")]
MinSamples = Annotated[
    int, typer.Option(min=1, help="Samples needed before a shorter window is judged.")
]
Pair = Annotated[
    str | None,
    typer.Option(
        metavar="NUM/DEN",
        help="The ratio that messages print (default: pointer/type or a run's two tasks; with "
        "three or more tasks, the dominant over the starved). Never changes a verdict.",
    ),
]
RunId = Annotated[
    str | None, typer.Option("--run", help="Only this run id (a log may hold several).")
]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the result to this file, not to stdout."),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="Overwrite the --output file if it exists (never one of the inputs)."
    ),
]
Github = Annotated[
    bool, typer.Option("--github", help="Also append the Markdown to $GITHUB_STEP_SUMMARY.")
]
MaxChars = Annotated[
    int | None,
    typer.Option(
        "--max-chars",
        metavar="N",
        min=1,
        help="Markdown: at most N characters, cut between runs (the worst kept) with a note "
        "of what was left out; 65536 is one GitHub comment.",
    ),
]
FullReport = Annotated[
    str | None,
    typer.Option(
        "--full-report",
        metavar="WHERE",
        help="Where the full report is, for the note of a cut report (e.g. 'in the artifact "
        "gradlog-report'); default: the job summary with --github.",
    ),
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Plain output even on a terminal.")]
Wide = Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal.")]
Unweighted = Annotated[
    bool,
    typer.Option(
        "--unweighted",
        help="Judge each task's norm divided by its loss weight (the raw task gradient).",
    ),
]
Original = Annotated[
    bool,
    typer.Option(
        "--original",
        help="Judge by the original monitor's rules: raw norms, the mean of the pair's ratio "
        "over a full window, its gating (docs/report.md).",
    ),
]
Strict = Annotated[
    bool,
    typer.Option("--strict", help="Refuse (exit 2) what would be skipped with a note."),
]


class FailOnLevel(str, enum.Enum):
    minor = "minor"
    significant = "significant"
    collapse = "collapse"
    vanishing = "vanishing"
    exploding = "exploding"


FailOnOption = Annotated[
    list[FailOnLevel] | None,
    typer.Option(help="Exit 1 when a run's finding reaches this level (repeatable)."),
]


class ReportFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


class BatchFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    csv = "csv"
    html = "html"


class CompareFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


class SortKey(str, enum.Enum):
    status = "status"
    file = "file"
    run = "run"
    spread = "spread"
    ratio = "ratio"  # the spread, under its first-edition name
    norm = "norm"
    events = "events"


class StatusChoice(str, enum.Enum):
    error = "error"
    collapse = "collapse"
    undefined = "undefined"
    nonfinite = "non-finite"
    exploding = "exploding"
    significant = "significant"
    vanishing = "vanishing"
    large = "large"
    minor = "minor"
    healthy = "healthy"
    no_data = "no-data"


def parse_pair(pair: str | None) -> tuple[str, str] | None:
    if pair is None:
        return None
    parts = pair.split("/")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise typer.BadParameter(
            "expected two different task names, NUMERATOR/DENOMINATOR, e.g. pointer/type",
            param_hint="--pair",
        )
    return parts[0], parts[1]


def markdown_only(max_chars: int | None, markdown: bool) -> None:
    if max_chars is not None and not markdown:
        raise typer.BadParameter("applies to --format markdown only", param_hint="--max-chars")


def fail_on_levels(values) -> list:
    """The ``--fail-on`` choices as :class:`gradlog.classify.FailOn` levels."""
    from gradlog.classify import FailOn

    out = []
    for v in values or []:
        try:
            out.append(FailOn(getattr(v, "value", v)))
        except ValueError:
            choices = ", ".join(level.value for level in FailOn)
            raise typer.BadParameter(
                f"{v!r} is not one of {choices}", param_hint="--fail-on"
            ) from None
    return out


def exit_for(errors: int, rows: Sequence, fail_on) -> None:
    """Exit 2 for unreadable files, else 1 when a run's finding reaches a --fail-on level."""
    levels = fail_on_levels(fail_on)
    fail_with(errors, [lvl for lvl in levels if any(r.reaches(lvl) for r in rows)])


def fail_with(errors: int, failing: list) -> None:
    from gradlog.analysis import output

    if errors:
        output.say(f"gradlog: {errors} file(s) could not be read")
        raise typer.Exit(2)
    if failing:
        output.say(f"gradlog: findings reach --fail-on {', '.join(lvl.value for lvl in failing)}")
        raise typer.Exit(1)


# -- the reading limits: options of the program, before any command -------------------------------

MaxStreamBytes = Annotated[
    str | None,
    typer.Option(
        MAX_STREAM_BYTES_FLAG,
        metavar="SIZE",
        help="Read at most SIZE (4G, 512M, or bytes) from standard input, a pipe or a "
        f"decompressed log; default 4G, or {MAX_STREAM_BYTES_ENV}.",
    ),
]
MaxEvents = Annotated[
    int | None,
    typer.Option(
        MAX_EVENTS_FLAG,
        metavar="N",
        min=1,
        help=f"Analyse logs of at most N events each (default {MAX_EVENTS:,}, or "
        f"{MAX_EVENTS_ENV}): about 2 KiB of memory per event.",
    ),
]


def set_limits(max_stream_bytes: str | None, max_events: int | None) -> None:
    """The options set the environment's variables: every reader's one place to look."""
    if max_events is not None:
        os.environ[MAX_EVENTS_ENV] = str(max_events)
    if max_stream_bytes is not None:
        if parse_size(max_stream_bytes) is None:
            raise typer.BadParameter(SIZE_EXAMPLE, param_hint=f"'{MAX_STREAM_BYTES_FLAG}'")
        os.environ[MAX_STREAM_BYTES_ENV] = max_stream_bytes


# -- reading other tools' logs: which of their keys are which of gradlog's fields ------------------

_map_rules: dict[str, list] = {"--map": [], "--map-file": []}


def _set_mapping(option: str, rules: list) -> None:
    """Each option's rules, as Click reads it, make the mapping every reader of this command
    uses (as set_limits sets the bounds): batch and compare read through layers that need not
    carry it. ``--map`` rules are tried before the file's, and both before the built-in ones."""
    from gradlog.analysis.foreign import mapping

    _map_rules[option] = rules
    mapping.set_mapping(mapping.DEFAULT.with_user(_map_rules["--map"] + _map_rules["--map-file"]))


def _map_option(values: list[str] | None) -> list[str] | None:
    if values:
        from gradlog.analysis.foreign.mapping import parse_map

        _set_mapping("--map", parse_map(values))
    return values


def _map_file_option(path: Path | None) -> Path | None:
    if path is not None:
        from gradlog.analysis.foreign.mapping import load_map_file

        _set_mapping("--map-file", load_map_file(path))
    return path


MapRules = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="TEMPLATE=FIELD",
        callback=_map_option,
        help="Read another tool's keys matching TEMPLATE as FIELD (repeatable): e.g. "
        "'gnorm/{task}=grad_norm', 'cos/{a}-{b}=cosine', 'gn/{param}=param_norm', "
        "'gn_total=total_norm' (docs/import.md).",
    ),
]
MapFile = Annotated[
    Path | None,
    typer.Option(
        "--map-file",
        metavar="PATH",
        callback=_map_file_option,
        help='A TOML file of such rules, in its map table: "gnorm/{task}" = "grad_norm".',
    ),
]


# -- object storage ---------------------------------------------------------------------------------

StorageOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="For object-store URLs (repeatable): a key of Polars' storage_options, e.g. "
        "aws_region=eu-west-1; AWS_* variables are read too (docs/batch.md).",
    ),
]


def storage_options(values: list[str] | None) -> dict[str, str] | None:
    """``--storage-option`` as the API's ``storage_options`` (bad syntax: one line, exit 2)."""
    from gradlog.analysis.remote import parse_storage_options

    return parse_storage_options(values)
