"""``gradlog convert``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import Force, MapFile, MapRules, StorageOptions, Strict, storage_options


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="Log to read (.jsonl, .parquet, docs/import.md, -)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Log to write; its suffix picks the format.")
    ],
    force: Force = False,
    strict: Strict = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
    storage_option: StorageOptions = None,
) -> None:
    """Convert a log between JSON Lines (optionally gzipped) and Parquet, or from another tool's."""
    from gradlog.analysis import output as out
    from gradlog.analysis.convert import convert_log
    from gradlog.analysis.readers import read_log
    from gradlog.files import check_output

    check_output(output, force=force, inputs=[source])

    log = read_log(source, strict=strict, storage_options=storage_options(storage_option))
    for note in log.notes:
        out.note(note)
    n = convert_log(log, output, overwrite=force)
    out.say(f"Wrote {n} records to {output}")
