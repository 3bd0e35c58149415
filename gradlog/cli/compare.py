"""``gradlog compare``."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import (
    CompareFormat,
    FailOnOption,
    Force,
    FullReport,
    Github,
    MapFile,
    MapRules,
    MaxChars,
    MinSamples,
    NoColor,
    Original,
    Output,
    Pair,
    StorageOptions,
    Unweighted,
    Wide,
    Window,
    fail_on_levels,
    fail_with,
    markdown_only,
    parse_pair,
    storage_options,
)


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
    force: Force = False,
    github: Github = False,
    max_chars: MaxChars = None,
    full_report: FullReport = None,
    no_color: NoColor = False,
    wide: Wide = False,
    unweighted: Unweighted = False,
    original: Original = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
    storage_option: StorageOptions = None,
) -> None:
    """Compare two runs (or two sets of runs): did HEAD make training worse than BASE?"""
    from gradlog.analysis import engine, output
    from gradlog.analysis.batch import BatchOptions
    from gradlog.analysis.compare import compare as compare_runs
    from gradlog.analysis.render import compare as render
    from gradlog.files import check_output

    check_output(out_path, force=force, inputs=[base, head])

    markdown_only(max_chars, output_format is CompareFormat.markdown)
    levels = fail_on_levels(fail_on)
    judging = engine.Options(
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
    )
    reach = BatchOptions(storage_options=storage_options(storage_option))
    comparison = compare_runs([base], [head], judging, reach)
    out = output.Output(out_path, color=output.use_color(no_color), width=output.table_width(wide))
    if output_format is CompareFormat.json:
        out.json(render.json_data(comparison, levels))
    elif output_format is CompareFormat.markdown:
        doc = render.markdown_runs(comparison, levels)
        out.document(output.fitted(doc, max_chars, full_report, github))
    else:
        headline = render.headline(comparison, levels)[1]
        out.table(render.compare_table(comparison, footer=("", headline)))
    out.close()
    if github:
        output.to_github(
            render.markdown_runs(comparison, levels),
            full_report,
            out_path if max_chars is None and output_format is CompareFormat.markdown else None,
        )
    failing = list(dict.fromkeys(lvl for lvl, _ in comparison.regressions(levels)))
    fail_with(len(comparison.errors), failing)
