"""The Typer application and its global options; each command lives in a module of its own."""

from __future__ import annotations

import os
import sys
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


# Polars' allocator (jemalloc) reads its settings here when Polars is imported, after its own
# (polars/__init__.py: freed pages kept half a second for reuse), so that one set here wins.
ALLOCATOR_SETTINGS = "_RJEM_MALLOC_CONF"


def return_freed_memory() -> None:
    """Have Polars' allocator give freed memory back at once, unless the user's environment
    says otherwise. A report makes its frames one after another within a second, so pages kept
    for reuse pile up (a thread rarely reuses another's): a 100,000-event report peaks at a
    third less memory (benchmarks/README.md, "Report memory after the mem work"). Only before
    Polars is first imported: the allocator reads its settings once."""
    if "polars" not in sys.modules:
        os.environ.setdefault(ALLOCATOR_SETTINGS, "dirty_decay_ms:0")
