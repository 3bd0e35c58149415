"""The ``gradlog`` command line: parses options, calls the library, prints, sets exit codes.

Exit codes: 0 report made; 1 a finding reached ``--fail-on``; 2 bad input or usage.
The analysis modules (and Polars) are imported inside the commands, so ``gradlog --help``
stays fast; torch is never imported here.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from gradlog import __version__
from gradlog.errors import GradlogError

app = typer.Typer(
    name="gradlog",
    help="Analyse gradient logs of multi-task training: task collapse, vanishing and exploding gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


class FailOnLevel(str, enum.Enum):
    minor = "minor"
    significant = "significant"
    collapse = "collapse"
    vanishing = "vanishing"
    exploding = "exploding"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradlog {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Analyse gradient logs of multi-task training."""


def _parse_pair(pair: str | None) -> tuple[str, str] | None:
    if pair is None:
        return None
    parts = pair.split("/")
    if len(parts) != 2 or not all(parts):
        raise typer.BadParameter(
            "expected NUMERATOR/DENOMINATOR task names, e.g. pointer/type", param_hint="--pair"
        )
    return parts[0], parts[1]


def _use_color(no_color: bool) -> bool:
    return not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


@app.command()
def report(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="Log file (.jsonl, .jsonl.gz, .parquet), or - for standard input."
        ),
    ],
    window: Annotated[
        int, typer.Option(min=1, help="Balance samples in the collapse window.")
    ] = 10,
    min_samples: Annotated[
        int, typer.Option(min=1, help="Samples needed before a shorter window is judged.")
    ] = 3,
    pair: Annotated[
        str | None,
        typer.Option(
            metavar="NUM/DEN",
            help="Tasks of the ratio (default: pointer/type, else the first two).",
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run id (a log may hold several).")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text (documented format) or json.")
    ] = OutputFormat.text,
    fail_on: Annotated[
        list[FailOnLevel] | None,
        typer.Option(help="Exit 1 when a finding reaches this level (repeatable)."),
    ] = None,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="Plain output even on a terminal.")
    ] = False,
) -> None:
    """Print the collapse report and summary of a gradient log."""
    from gradlog.analysis import Options, analyse
    from gradlog.classify import FailOn, reaches
    from gradlog.readers import read_log

    log = read_log(run)
    result = analyse(
        log, Options(window=window, min_samples=min_samples, pair=_parse_pair(pair), run=run_id)
    )
    for note in result.notes:
        typer.echo(f"Note: {note}", err=True)
    if output_format is OutputFormat.json:
        from gradlog.render.json import format_json

        sys.stdout.write(format_json(result))
    else:
        _print_text(result, _use_color(no_color))
    levels = [FailOn(level.value) for level in fail_on or []]
    failed = [
        level.value
        for level in levels
        for r in result.runs
        if reaches(level, r.summary.worst_band, r.summary.worst_norm_band)
    ]
    if failed:
        typer.echo(
            f"gradlog: findings reach --fail-on {', '.join(dict.fromkeys(failed))}", err=True
        )
        raise typer.Exit(1)


def _print_text(result, color: bool) -> None:
    from gradlog.render.text import format_text, line_style, report_lines

    if not color:
        sys.stdout.write(format_text(result))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for line in report_lines(result):
        console.print(Text(line, style=line_style(line)))


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="Log to read (.jsonl, .jsonl.gz, .parquet, or -)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Log to write; its suffix picks the format.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
) -> None:
    """Convert a log between JSON Lines (optionally gzipped) and Parquet."""
    from gradlog.convert import convert_log
    from gradlog.readers import read_log

    log = read_log(source)
    for note in log.notes:
        typer.echo(f"Note: {note}", err=True)
    n = convert_log(log, output, overwrite=force)
    typer.echo(f"Wrote {n} records to {output}", err=True)


def _click_exception() -> type[Exception]:
    # Typer vendors Click; its exception base is reachable through Typer's public BadParameter.
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point: every error becomes one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except GradlogError as exc:
        _fail(str(exc))
    except _click_exception() as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(2)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}")
    except typer.Abort:
        _fail("aborted", code=130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # the reader of a pipe (head, less) went away: not an error of ours
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - promise: one line, never a traceback
        if os.environ.get("GRADLOG_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set GRADLOG_DEBUG=1 for details)")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"Error: {message}", err=True)
    sys.exit(code)
