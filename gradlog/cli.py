"""The ``gradlog`` command line: options, one library call, one output, one error handler.

Exit codes: 0 done; 1 a finding reached ``--fail-on``; 2 bad input or usage; 130 interrupted;
141 standard output closed early (``gradlog report log | head``). The analysis modules (and
Polars) are imported inside the commands, so ``gradlog --help`` stays fast; torch never is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from gradlog import __version__
from gradlog.errors import ClosedOutput, GradlogError
from gradlog.options import (
    BatchFormat,
    CompareFormat,
    FailOnOption,
    Github,
    MapFile,
    MapRules,
    MaxEvents,
    MaxStreamBytes,
    MinSamples,
    NoColor,
    Original,
    Output,
    Pair,
    ReportFormat,
    RunId,
    SortKey,
    StatusChoice,
    Strict,
    Unweighted,
    Wide,
    Window,
    exit_for,
    fail_on_levels,
    fail_with,
    parse_pair,
    set_limits,
)

app = typer.Typer(
    name="gradlog",
    help="Analyse gradient logs of multi-task training: task collapse, vanishing and exploding gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


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
    max_stream_bytes: MaxStreamBytes = None,
    max_events: MaxEvents = None,
) -> None:
    """Analyse gradient logs of multi-task training."""
    set_limits(max_stream_bytes, max_events)


@app.command()
def report(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="A log (.jsonl, .jsonl.gz, .parquet, docs/import.md), or - (stdin)."
        ),
    ],
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    run_id: RunId = None,
    output_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format", help="text (documented format), json, or markdown (for a pull request)."
        ),
    ] = ReportFormat.text,
    fail_on: FailOnOption = None,
    no_color: NoColor = False,
    out_path: Output = None,
    github: Github = False,
    chart: Annotated[
        bool, typer.Option("--chart", help="Add a small text chart of the ratio (text format).")
    ] = False,
    unweighted: Unweighted = False,
    original: Original = False,
    strict: Strict = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
) -> None:
    """Print the collapse report and summary of a gradient log."""
    from gradlog.analysis import api, output
    from gradlog.analysis.render import json as render_json
    from gradlog.analysis.render.markdown import format_markdown
    from gradlog.analysis.render.text import text_blocks

    result = api.analyse(
        run,
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
        run=run_id,
        strict=strict,
    )
    for note in result.notes:
        output.note(note)
    out = output.Output(out_path, color=output.use_color(no_color))
    if output_format is ReportFormat.json:
        out.json(render_json.report_data(result, encoded=True))
    elif output_format is ReportFormat.markdown:
        out.document(format_markdown(result))
    else:
        out.blocks(text_blocks(result))
        if chart:
            from gradlog.analysis.render.chart import ratio_chart

            for r in result.runs:
                lines = ratio_chart(r)
                if lines:
                    out.lines([("", ""), *lines])
    out.close()
    if github:
        output.to_github(format_markdown(result))
    exit_for(0, [r.summary for r in result.runs], fail_on)


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="Log to read (.jsonl, .parquet, docs/import.md, -)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Log to write; its suffix picks the format.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
    strict: Strict = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
) -> None:
    """Convert a log between JSON Lines (optionally gzipped) and Parquet, or from another tool's."""
    from gradlog.analysis import output as out
    from gradlog.analysis.convert import convert_log
    from gradlog.analysis.readers import read_log

    log = read_log(source, strict=strict)
    for note in log.notes:
        out.note(note)
    n = convert_log(log, output, overwrite=force)
    out.say(f"Wrote {n} records to {output}")


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
    fail_on: FailOnOption = None,
    out_path: Output = None,
    github: Github = False,
    no_color: NoColor = False,
    wide: Wide = False,
    unweighted: Unweighted = False,
    original: Original = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
) -> None:
    """Summarise many logs: one row per run, worst first; exit 2 if a file was unreadable."""
    from gradlog.analysis import api, output
    from gradlog.analysis.batch import select_rows
    from gradlog.analysis.progress import Progress
    from gradlog.analysis.render import batch as render
    from gradlog.analysis.render.batch_markdown import format_markdown
    from gradlog.analysis.status import Status

    with Progress() as progress:
        result = api.batch_result(
            paths,
            window=window,
            min_samples=min_samples,
            pair=parse_pair(pair),
            unweighted=unweighted,
            original=original,
            progress=progress,
        )
    for note in dict.fromkeys(note for row in result.rows for note in row.notes):
        output.note(note)
    wanted = [Status(s.value.replace("no-data", "no data")) for s in status or []]
    rows = select_rows(result.rows, sort.value, wanted, limit)
    line = render.summary_line(result.rows, result.n_sources)
    out = output.Output(out_path, color=output.use_color(no_color), width=output.table_width(wide))
    if output_format is BatchFormat.json:
        out.json(render.json_data(result.rows, rows, result.n_sources))
    elif output_format is BatchFormat.csv:
        out.csv(render.COLUMNS, render.csv_rows(rows))
    elif output_format is BatchFormat.markdown:
        out.document(format_markdown(result.rows, rows, result.n_sources))
    else:
        out.table(render.batch_table(rows, footer=("", line)))
    out.close()
    if output_format is not BatchFormat.table or out_path is not None:
        output.say(line)
    if github:
        output.to_github(format_markdown(result.rows, rows, result.n_sources))
    exit_for(len(result.errors), result.rows, fail_on)


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
    fail_on: FailOnOption = None,
    out_path: Output = None,
    github: Github = False,
    no_color: NoColor = False,
    wide: Wide = False,
    unweighted: Unweighted = False,
    original: Original = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
) -> None:
    """Compare two runs (or two sets of runs): did HEAD make training worse than BASE?"""
    from gradlog.analysis import engine, output
    from gradlog.analysis.compare import compare as compare_runs
    from gradlog.analysis.render import compare as render

    levels = fail_on_levels(fail_on)
    judging = engine.Options(
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
    )
    comparison = compare_runs([base], [head], judging)
    out = output.Output(out_path, color=output.use_color(no_color), width=output.table_width(wide))
    if output_format is CompareFormat.json:
        out.json(render.json_data(comparison, levels))
    elif output_format is CompareFormat.markdown:
        out.document(render.format_markdown(comparison, levels))
    else:
        headline = render.headline(comparison, levels)[1]
        out.table(render.compare_table(comparison, footer=("", headline)))
    out.close()
    if github:
        output.to_github(render.format_markdown(comparison, levels))
    failing = list(dict.fromkeys(lvl for lvl, _ in comparison.regressions(levels)))
    fail_with(len(comparison.errors), failing)


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
    unweighted: Unweighted = False,
    original: Original = False,
    strict: Strict = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
) -> None:
    """Draw task norms, the ratio with its bands, and mean/max norm (needs matplotlib)."""
    from gradlog.analysis import api
    from gradlog.analysis import output as out
    from gradlog.analysis.plot import output_format, plot_runs

    output_format(output)
    drawn = []
    for path in runs:
        result = api.analyse(
            path,
            window=window,
            min_samples=min_samples,
            pair=parse_pair(pair),
            unweighted=unweighted,
            original=original,
            run=run_id,
            strict=strict,
        )
        for note in result.notes:
            out.note(note)
        drawn += [(path, r) for r in result.runs]
    plot_runs(drawn, output, title)
    out.say(f"Wrote {output} ({len(drawn)} run{'s' * (len(drawn) != 1)})")


# -- shared by the commands ---------------------------------------------------------------------


def _click_exception() -> type[Exception]:
    # Typer vendors Click; its exception base is reachable through Typer's public BadParameter.
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point: every error becomes one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
        sys.stdout.flush()
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
    except (ClosedOutput, BrokenPipeError):
        _closed_pipe()
    except BaseException as exc:  # noqa: BLE001 - promise: one line, never a traceback
        # (a Polars panic is a BaseException; importing Polars to name it would slow --help)
        if isinstance(exc, SystemExit) or os.environ.get("GRADLOG_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set GRADLOG_DEBUG=1 for details)")
    sys.exit(code if isinstance(code, int) else 0)


def _closed_pipe() -> None:
    """The reader of a pipe (head, less) went away: stop quietly, with a code that cannot be
    mistaken for a finding (1) or bad input (2)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
    sys.exit(CLOSED_PIPE)


def _fail(message: str, code: int = 2) -> None:
    from gradlog.analysis import output

    output.fail(message)
    sys.exit(code)
