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
    """Follow a log while the recorder writes it: a live view until the run ends, then the
    report (docs/watch.md). Plain lines when standard output is not a terminal."""
    import functools
    import sys
    import time

    from gradlog.analysis import api, output
    from gradlog.analysis.render import live
    from gradlog.analysis.render.text import text_blocks
    from gradlog.analysis.watch import follow

    analyse = functools.partial(
        api.analyse,
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
        run=run_id,
    )
    last: list = []

    def shown(followed: list) -> None:
        last[:] = followed

    if sys.stdout.isatty():
        with output.Live(color=output.use_color(no_color)) as screen:

            def show(followed: list) -> None:
                shown(followed)
                screen.show(live.view(run, followed, time.time()))

            ended = _follow(follow, run, analyse, show, interval, last)
    else:
        out = output.Output()
        written: dict[str, str] = {}

        def show(followed: list) -> None:
            shown(followed)
            lines = live.plain(run, followed)
            out.lines(line for key, line in lines.items() if written.get(key) != line)
            written.clear()
            written.update(lines)

        ended = _follow(follow, run, analyse, show, interval, last)
    reports = [f.report for f in last if f.report is not None]
    if not no_report:
        _final_report(reports, no_color, text_blocks)
    if not ended:
        raise typer.Exit(130)  # interrupted (Ctrl-C), as the shell counts a SIGINT
    exit_for(0, [r.summary for report in reports for r in report.runs], fail_on)


def _follow(follow, run, analyse, show, interval, last) -> bool:
    """True when the run ended, False on Ctrl-C (the report of what was read is still due)."""
    try:
        follow(run, analyse, show, interval=interval)
    except KeyboardInterrupt:
        return False
    return True


def _final_report(reports: list, no_color: bool, text_blocks) -> None:
    from gradlog.analysis import output

    for report in reports:
        for note in report.notes:
            output.note(note)
        out = output.Output(color=output.use_color(no_color))
        out.lines([("", "")])
        out.blocks(text_blocks(report))
