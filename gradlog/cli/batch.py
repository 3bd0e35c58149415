"""``gradlog batch``."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog.cli.app import app
from gradlog.options import (
    BatchFormat,
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
    SortKey,
    StatusChoice,
    StorageOptions,
    Unweighted,
    Wide,
    Window,
    exit_for,
    markdown_only,
    parse_pair,
    storage_options,
)


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
        typer.Option(
            "--format",
            help="table (terminal), markdown (pull request), json, csv, or html (one page with "
            "a sortable table and charts).",
        ),
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
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Analyse on the Dask cluster of this scheduler (tcp://host:8786), whose "
            "workers read the logs; needs gradlog's dask extra (docs/scale.md).",
        ),
    ] = None,
    summary: Annotated[
        str | None,
        typer.Option(
            "--summary",
            metavar="FILE",
            help="Keep every row in this Parquet table, and read only the logs new or "
            "changed since it was written (docs/batch.md).",
        ),
    ] = None,
) -> None:
    """Summarise many logs: one row per run, worst first; exit 2 if a file was unreadable."""
    from gradlog.analysis import api, output
    from gradlog.analysis.batch import select_rows
    from gradlog.analysis.progress import Progress
    from gradlog.analysis.render import batch as render
    from gradlog.analysis.render.batch_markdown import (
        MARKDOWN_ROWS,
        format_markdown,
        markdown_runs,
    )
    from gradlog.analysis.status import Status
    from gradlog.files import check_output

    check_output(out_path, force=force, inputs=paths)

    markdown_only(max_chars, output_format is BatchFormat.markdown)
    with Progress() as progress:
        result = api.batch_result(
            paths,
            window=window,
            min_samples=min_samples,
            pair=parse_pair(pair),
            unweighted=unweighted,
            original=original,
            progress=progress,
            storage_options=storage_options(storage_option),
            scheduler=scheduler,
            summary=summary,
        )
    for note in (*result.notes, *dict.fromkeys(n for row in result.rows for n in row.notes)):
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
        if max_chars is None:  # at most 100 rows; cut to --max-chars, as many as fit
            out.document(format_markdown(result.rows, rows, result.n_sources))
        else:
            doc = markdown_runs(result.rows, rows, result.n_sources)
            out.document(output.fitted(doc, max_chars, full_report, github))
    elif output_format is BatchFormat.html:
        from gradlog.analysis.render.html import DETAILED_RUNS, batch_page

        reports = api.run_reports(
            rows[:DETAILED_RUNS],
            window=window,
            min_samples=min_samples,
            pair=parse_pair(pair),
            unweighted=unweighted,
            original=original,
            storage_options=storage_options(storage_option),
        )
        out.html(batch_page(result.rows, rows, result.n_sources, reports))
    else:
        out.table(render.batch_table(rows, footer=("", line)))
    out.close()
    if output_format is not BatchFormat.table or out_path is not None:
        output.say(line)
    if summary is not None:
        from gradlog.analysis.summary_table import wrote_line

        output.say(wrote_line(summary, result.n_sources, result.n_read or 0))
    if github:
        # --output holds every row as JSON or CSV, and as Markdown up to its 100 rows
        every_row = output_format in (BatchFormat.json, BatchFormat.csv) or (
            output_format is BatchFormat.markdown
            and max_chars is None
            and len(rows) <= MARKDOWN_ROWS
        )
        doc = markdown_runs(result.rows, rows, result.n_sources)
        output.to_github(doc, full_report, out_path if every_row else None)
    exit_for(len(result.errors), result.rows, fail_on)
