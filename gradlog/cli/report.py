"""``gradlog report``."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import (
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
    ReportFormat,
    RunId,
    StorageOptions,
    Strict,
    Unweighted,
    Window,
    exit_for,
    markdown_only,
    parse_pair,
    storage_options,
)


@app.command()
def report(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="A log (.jsonl, .jsonl.gz, .parquet, docs/import.md), an object-store URL "
            "(s3://bucket/run.jsonl), or - (stdin).",
        ),
    ],
    window: Window = 10,
    min_samples: MinSamples = 3,
    pair: Pair = None,
    run_id: RunId = None,
    output_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="text (documented format), json, markdown (for a pull request), or html "
            "(one self-contained page with charts).",
        ),
    ] = ReportFormat.text,
    fail_on: FailOnOption = None,
    no_color: NoColor = False,
    out_path: Output = None,
    force: Force = False,
    github: Github = False,
    max_chars: MaxChars = None,
    full_report: FullReport = None,
    chart: Annotated[
        bool, typer.Option("--chart", help="Add a small text chart of the ratio (text format).")
    ] = False,
    unweighted: Unweighted = False,
    original: Original = False,
    strict: Strict = False,
    map_rules: MapRules = None,
    map_file: MapFile = None,
    storage_option: StorageOptions = None,
) -> None:
    """Print the collapse report and summary of a gradient log."""
    # each format's renderer is imported where it is used: the text report starts without the rest
    from gradlog.analysis import api, output
    from gradlog.files import check_output

    check_output(out_path, force=force, inputs=[run])

    markdown_only(max_chars, output_format is ReportFormat.markdown)
    result = api.analyse(
        run,
        window=window,
        min_samples=min_samples,
        pair=parse_pair(pair),
        unweighted=unweighted,
        original=original,
        run=run_id,
        strict=strict,
        storage_options=storage_options(storage_option),
    )
    markdown = output_format is ReportFormat.markdown
    document = None
    if markdown or github:
        from gradlog.analysis.render.markdown import markdown_runs

        document = markdown_runs(result)
    for note in result.notes:
        output.note(note)
    out = output.Output(out_path, color=output.use_color(no_color))
    if output_format is ReportFormat.json:
        from gradlog.analysis.render import json as render_json

        out.json(render_json.report_data(result, encoded=True))
    elif markdown:
        out.document(output.fitted(document, max_chars, full_report, github))
    elif output_format is ReportFormat.html:
        from gradlog.analysis.render.html import report_page

        out.html(report_page(result))
    else:
        from gradlog.analysis.render.text import text_blocks

        out.blocks(text_blocks(result))
        if chart:
            from gradlog.analysis.render.chart import ratio_chart

            for r in result.runs:
                lines = ratio_chart(r)
                if lines:
                    out.lines([("", ""), *lines])
    out.close()
    if github:
        whole_in = out_path if markdown and max_chars is None else None
        output.to_github(document, full_report, whole_in)
    exit_for(0, [r.summary for r in result.runs], fail_on)
