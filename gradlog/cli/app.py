"""The Typer application and its global options; each command lives in a module of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog import __version__
from gradlog.options import MaxEvents, MaxStreamBytes, set_limits

app = typer.Typer(
    name="gradlog",
    help="Analyse gradient logs of multi-task training: task collapse, vanishing and exploding gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
