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


# Options that several commands take, declared once.
Window = Annotated[int, typer.Option(min=1, help="Balance samples in the collapse window.")]
MinSamples = Annotated[
    int, typer.Option(min=1, help="Samples needed before a shorter window is judged.")
]
Pair = Annotated[
    str | None,
    typer.Option(
        metavar="NUM/DEN",
        help="Tasks of the ratio (default: pointer/type, else each run's first two tasks).",
    ),
]
RunId = Annotated[
    str | None, typer.Option("--run", help="Only this run id (a log may hold several).")
]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the result to this file, not to stdout."),
]
Github = Annotated[
    bool, typer.Option("--github", help="Also append the Markdown to $GITHUB_STEP_SUMMARY.")
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Plain output even on a terminal.")]
Strict = Annotated[
    bool,
    typer.Option("--strict", help="Refuse (exit 2) what would be skipped with a note."),
]


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


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
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    run_id: RunId = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", help="text (documented format), json, or markdown (for a pull request)."
        ),
    ] = OutputFormat.text,
    fail_on: Annotated[
        list[FailOnLevel] | None,
        typer.Option(help="Exit 1 when a finding reaches this level (repeatable)."),
    ] = None,
    no_color: NoColor = False,
    output: Output = None,
    github: Github = False,
    chart: Annotated[
        bool, typer.Option("--chart", help="Add a small text chart of the ratio (text format).")
    ] = False,
    strict: Strict = False,
) -> None:
    """Print the collapse report and summary of a gradient log."""
    from gradlog.analysis import Options, analyse
    from gradlog.classify import FailOn, reaches
    from gradlog.readers import read_log

    log = read_log(run, strict=strict)
    result = analyse(
        log,
        Options(
            window=window,
            min_samples=min_samples,
            pair=_parse_pair(pair),
            run=run_id,
            strict=strict,
        ),
    )
    for note in result.notes:
        _note(note)
    if output_format is OutputFormat.json:
        from gradlog.render.json import format_json
        from gradlog.sanitize import json_safe

        _deliver(json_safe(format_json(result)), output)
    elif output_format is OutputFormat.markdown:
        from gradlog.render.markdown import format_markdown

        _deliver(format_markdown(result), output)
    elif output is not None:
        from gradlog.render.text import format_text

        _deliver(format_text(result) + (_chart_text(result) if chart else ""), output)
    else:
        _print_text(result, _use_color(no_color))
        if chart:
            _print_chart(result, _use_color(no_color))
    if github:
        from gradlog.render.markdown import format_markdown

        _to_github(format_markdown(result))
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
    from gradlog.render.text import line_style, report_lines, text_chunks

    if not color:
        for chunk in text_chunks(result):  # a million-event report is streamed, not held
            sys.stdout.write(chunk)
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
    strict: Strict = False,
) -> None:
    """Convert a log between JSON Lines (optionally gzipped) and Parquet."""
    from gradlog.convert import convert_log
    from gradlog.readers import read_log

    log = read_log(source, strict=strict)
    for note in log.notes:
        _note(note)
    n = convert_log(log, output, overwrite=force)
    typer.echo(f"Wrote {n} records to {output}", err=True)


def _deliver(text: str, output: Path | None) -> None:
    """Standard output, or --output FILE (with a note on stderr)."""
    if output is None:
        sys.stdout.write(text)
        return
    from gradlog.publish import write_output

    write_output(text, output)
    typer.echo(f"Wrote {output}", err=True)


def _to_github(markdown: str) -> None:
    from gradlog.publish import STEP_SUMMARY, append_step_summary

    if append_step_summary(markdown) is None:
        typer.echo(f"Note: --github: {STEP_SUMMARY} is not set; nothing appended", err=True)


def _chart_text(result) -> str:
    from gradlog.render.chart import ratio_chart

    lines = [line for run in result.runs for line in ["", *ratio_chart(run)]]
    return "\n".join(lines) + "\n" if any(lines) else ""


def _print_chart(result, color: bool) -> None:
    text = _chart_text(result)
    if not color:
        sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.text import Text

    from gradlog.render.chart import row_style

    console = Console(highlight=False, soft_wrap=True)
    for line in text.rstrip("\n").split("\n"):
        console.print(Text(line, style=row_style(line)))


class BatchFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    csv = "csv"


class SortKey(str, enum.Enum):
    status = "status"
    file = "file"
    run = "run"
    ratio = "ratio"
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


class CompareFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


def _batch_options(window: int, min_samples: int, pair: str | None):
    from gradlog.batch import BatchOptions

    return BatchOptions(window=window, min_samples=min_samples, pair=_parse_pair(pair))


def _progress():
    """A Rich progress bar on stderr for a terminal; None (silent) when stderr is piped."""
    if not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "reading logs",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("logs", total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def batch(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATHS...",
            help="Logs, directories (searched recursively), globs, hive-partitioned Parquet "
            "datasets or object-store URLs.",
        ),
    ],
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    output_format: Annotated[
        BatchFormat,
        typer.Option("--format", help="table (terminal), markdown (pull request), json or csv."),
    ] = BatchFormat.table,
    sort: Annotated[SortKey, typer.Option(help="Order of the rows (worst or largest first).")] = (
        SortKey.status
    ),
    status: Annotated[
        list[StatusChoice] | None,
        typer.Option(help="Only runs with this status (repeatable)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows.")] = None,
    fail_on: Annotated[
        list[FailOnLevel] | None,
        typer.Option(help="Exit 1 when a run's finding reaches this level (repeatable)."),
    ] = None,
    output: Output = None,
    github: Github = False,
    no_color: NoColor = False,
) -> None:
    """Summarise many logs: one row per run, worst first; exit 2 if a file was unreadable."""
    from gradlog.batch import run_batch, select_rows
    from gradlog.classify import FailOn
    from gradlog.render import batch as render
    from gradlog.status import Status

    bar, progress = _progress()
    if bar is not None:
        with bar:
            result = run_batch(paths, _batch_options(window, min_samples, pair), progress)
    else:
        result = run_batch(paths, _batch_options(window, min_samples, pair))
    for note in dict.fromkeys(note for row in result.rows for note in row.notes):
        typer.echo(f"Note: {note}", err=True)
    wanted = [Status(s.value.replace("no-data", "no data")) for s in status or []]
    rows = select_rows(result.rows, sort.value, wanted, limit)
    if output_format is BatchFormat.json:
        _deliver(render.format_json(result, rows), output)
    elif output_format is BatchFormat.csv:
        _deliver(render.format_csv(rows), output)
    elif output_format is BatchFormat.markdown:
        _deliver(render.format_markdown(result, rows), output)
    else:
        from gradlog.render.table import batch_table

        color = _use_color(no_color) and output is None
        _deliver(batch_table(rows, color=color) + "\n" + render.summary_line(result) + "\n", output)
    if output_format is not BatchFormat.table or output is not None:
        typer.echo(render.summary_line(result), err=True)
    if github:
        _to_github(render.format_markdown(result, rows))
    _batch_exit(len(result.errors), result.failing([FailOn(x.value) for x in fail_on or []]))


def _batch_exit(errors: int, failing: list) -> None:
    if errors:
        typer.echo(f"gradlog: {errors} file(s) could not be read", err=True)
        raise typer.Exit(2)
    if failing:
        levels = ", ".join(level.value for level in failing)
        typer.echo(f"gradlog: findings reach --fail-on {levels}", err=True)
        raise typer.Exit(1)


@app.command()
def compare(
    base: Annotated[
        str, typer.Argument(metavar="BASE", help="The reference: a log, a directory or a glob.")
    ],
    head: Annotated[
        str, typer.Argument(metavar="HEAD", help="The change to judge: a log, directory or glob.")
    ],
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    output_format: Annotated[
        CompareFormat,
        typer.Option("--format", help="table (terminal), markdown (pull request) or json."),
    ] = CompareFormat.table,
    fail_on: Annotated[
        list[FailOnLevel] | None,
        typer.Option(help="Exit 1 when a head run reaches this level and its base did not."),
    ] = None,
    output: Output = None,
    github: Github = False,
    no_color: NoColor = False,
) -> None:
    """Compare two runs (or two sets of runs): did HEAD make training worse than BASE?"""
    from gradlog.classify import FailOn
    from gradlog.compare import compare as compare_runs
    from gradlog.render import compare as render

    levels = [FailOn(x.value) for x in fail_on or []]
    comparison = compare_runs([base], [head], _batch_options(window, min_samples, pair))
    if output_format is CompareFormat.json:
        _deliver(render.format_json(comparison, levels), output)
    elif output_format is CompareFormat.markdown:
        _deliver(render.format_markdown(comparison, levels), output)
    else:
        color = _use_color(no_color) and output is None
        table = render.compare_table(comparison, color=color)
        _deliver(table + "\n" + render.headline(comparison, levels)[1] + "\n", output)
    if github:
        _to_github(render.format_markdown(comparison, levels))
    regressions = comparison.regressions(levels)
    _batch_exit(len(comparison.errors), list(dict.fromkeys(lvl for lvl, _ in regressions)))


@app.command()
def plot(
    runs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Logs to draw (runs are overlaid).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Picture to write: .png, .svg or .html.")
    ],
    run_id: RunId = None,
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    title: Annotated[str | None, typer.Option(help="Title of the picture.")] = None,
    strict: Strict = False,
) -> None:
    """Draw task norms, the ratio with its bands, and mean/max norm (needs matplotlib)."""
    from gradlog.analysis import Options, analyse
    from gradlog.plot import output_format, plot_runs
    from gradlog.readers import read_log

    output_format(output)
    options = Options(
        window=window, min_samples=min_samples, pair=_parse_pair(pair), run=run_id, strict=strict
    )
    drawn = []
    for path in runs:
        log = read_log(path, strict=strict)
        for note in log.notes:
            _note(note)
        drawn += [(path, r) for r in analyse(log, options).runs]
    plot_runs(drawn, output, title)
    typer.echo(f"Wrote {output} ({len(drawn)} run{'s' * (len(drawn) != 1)})", err=True)


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
    from gradlog.sanitize import for_terminal

    # one line, and text from a log (run ids, file names) shown, never obeyed by the terminal
    typer.echo(f"Error: {for_terminal(message)}", err=True)
    sys.exit(code)


def _note(note: str) -> None:
    """A note of the reader (a skipped line, a recovered journal) on stderr, neutralised."""
    from gradlog.sanitize import for_terminal

    typer.echo(f"Note: {for_terminal(note)}", err=True)
