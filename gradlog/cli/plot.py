"""``gradlog plot``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import (
    Force,
    MapFile,
    MapRules,
    MinSamples,
    Original,
    Pair,
    RunId,
    StorageOptions,
    Strict,
    Unweighted,
    Window,
    parse_pair,
    storage_options,
)


@app.command()
def plot(
    runs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Logs to draw (runs are overlaid).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Picture to write: .png, .svg or .html.")
    ],
    force: Force = False,
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
    storage_option: StorageOptions = None,
) -> None:
    """Draw task norms, the ratio with its bands, and mean/max norm (needs matplotlib)."""
    from gradlog.analysis import api
    from gradlog.analysis import output as out
    from gradlog.analysis.plot import output_format, plot_runs
    from gradlog.files import check_output

    output_format(output)
    check_output(output, force=force, inputs=runs)
    reach = storage_options(storage_option)
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
            storage_options=reach,
        )
        for note in result.notes:
            out.note(note)
        drawn += [(path, r) for r in result.runs]
    plot_runs(drawn, output, title)
    out.say(f"Wrote {output} ({len(drawn)} run{'s' * (len(drawn) != 1)})")
