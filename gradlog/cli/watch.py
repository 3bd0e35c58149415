"""``gradlog watch``."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import (
    FailOnOption,
    MinSamples,
    NoColor,
    Original,
    Pair,
    RunId,
    Unweighted,
    Window,
    exit_for,
    parse_pair,
)

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


@app.command()
def watch(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="A log being written (.jsonl, .parquet with its journal), or a folder of logs.",
        ),
    ],
    interval: Annotated[
        float,
        typer.Option(min=0.01, metavar="SECONDS", help="Seconds between refreshes."),
    ] = 1.0,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not print the final report on exit.")
    ] = False,
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    run_id: RunId = None,
    unweighted: Unweighted = False,
    original: Original = False,
    fail_on: FailOnOption = None,
    no_color: NoColor = False,
) -> None:
    """Follow a log while the recorder writes it: a live view until the run ends (or Ctrl-C,
    exit 130), then the report (docs/watch.md). Plain lines when not on a terminal."""
    import functools
    import sys
    import time
    from contextlib import nullcontext

    from gradlog.analysis import api, output
    from gradlog.analysis.render import live
    from gradlog.analysis.render.text import text_blocks
    from gradlog.analysis.sources import URL_PATTERN
    from gradlog.analysis.watch import follow

    if run == "-" or URL_PATTERN.match(run):
        raise typer.BadParameter(
            "expected a local log or folder: standard input and object stores cannot be "
            "followed (gradlog report reads them)",
            param_hint="RUN",
        )
    analyse = functools.partial(
        api.analyse,
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
        run=run_id,
    )
    color = output.use_color(no_color)
    screen = output.Live(color=color) if sys.stdout.isatty() else None
    out = output.Output()
    written: dict[str, str] = {}  # the plain lines last written, by run

    def show(followed: list) -> None:
        if screen is not None:
            screen.show(live.view(run, followed, time.time()))
            return
        lines = live.plain(run, followed)
        out.lines(line for key, line in lines.items() if written.get(key) != line)
        written.clear()
        written.update(lines)

    last: list = []
    ended = False
    try:
        with screen if screen is not None else nullcontext():
            for last in follow(run, analyse, interval=interval):
                show(last)
        ended = True
    except KeyboardInterrupt:
        pass  # the report of what was read is still due
    reports = [f.report for f in last if f.report is not None]
    if not no_report:
        for report in reports:
            for note in report.notes:
                output.note(note)
            final = output.Output(color=color)
            final.lines([("", "")])
            final.blocks(text_blocks(report))
    if not ended:
        raise typer.Exit(INTERRUPTED)
    exit_for(0, [r.summary for report in reports for r in report.runs], fail_on)
