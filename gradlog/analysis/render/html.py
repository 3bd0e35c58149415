"""``gradlog report --format html`` and ``gradlog batch --format html``: one self-contained page.

The verdict and the recommended weights on top; for each run its verdict, recommended action,
summary table and findings, in the Markdown report's words (:mod:`gradlog.analysis.render.markdown`,
:mod:`gradlog.analysis.render.closing`), and three charts (:mod:`gradlog.analysis.render.html_charts`)
that the page's own script draws, with exact values on hover and zoom by dragging; a batch adds
its sortable table of runs. Nothing is fetched: the stylesheet and the script are package files
placed inline, and a Content-Security-Policy allows only those two (by hash), so markup that a
log smuggled in could not run even if it escaped. The page is an :mod:`html_tree` tree:
every text in it is neutralised by :func:`gradlog.analysis.output.for_html` when it is written.

A page stays reasonable for any input: the details and charts of at most :data:`DETAILED_RUNS`
runs (the first, in the table's order), at most :data:`TABLE_ROWS` rows in a table, and at
most :data:`~gradlog.analysis.render.html_charts.MAX_POINTS` points a series (and the norms of
at most :data:`~gradlog.analysis.render.html_charts.MAX_TASKS` tasks a run); the page says
what it left out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from gradlog.analysis.model import Report, RunReport, RunSummary
from gradlog.analysis.render import parts as P
from gradlog.analysis.render.batch import counts, summary_line
from gradlog.analysis.render.batch_markdown import MARKDOWN_HEADER, row_cells, verdict
from gradlog.analysis.render.closing import advice_items
from gradlog.analysis.render.html_charts import MAX_POINTS, run_charts
from gradlog.analysis.render.html_tree import Asset, Child, Data, El, h
from gradlog.analysis.render.logscale import judged
from gradlog.analysis.render.markdown import finding_items, summary_rows, verdict_parts
from gradlog.analysis.status import Status

DETAILED_RUNS = 50
TABLE_ROWS = 5000


@cache
def _asset(name: str) -> str:
    return (files("gradlog.analysis.render") / "assets" / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(title: str, body: list[Child], runs: list[dict]) -> El:
    """The whole document: head (policy, style), ``body``, the charts' data and the script."""
    css, js = _asset("report.css"), _asset("report.js")
    policy = (
        f"default-src 'none'; style-src {_hash(css)}; script-src {_hash(js)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    return h(
        "html",
        h(
            "head",
            h("meta", charset="utf-8"),
            h("meta", http_equiv="Content-Security-Policy", content=policy),
            h("meta", name="viewport", content="width=device-width, initial-scale=1"),
            h("meta", name="generator", content="gradlog"),
            h("title", title),
            h("style", Asset(css)),
        ),
        h(
            "body",
            h("main", body),
            h("script", Data({"runs": runs}), type="application/json", id="gradlog-data"),
            h("script", Asset(js)),
        ),
        lang="en",
    )


def _parts(parts: P.Parts) -> list[Child]:
    return [h("code", p) if isinstance(p, (P.Code, P.Option)) else p for p in parts]


# the verdict box's colour: the terminal's colour of the status (red, amber, green, dim)
_TONES = {"bold red": "bad", "yellow": "warn", "green": "good"}


def _tone(status: Status) -> str:
    return _TONES.get(status.style, "")


# -- one run ---------------------------------------------------------------------------------------


def _advice(run: RunReport) -> El:
    items = []
    for item in advice_items(run):
        if item.code:
            items.append(h("li", h("code", item.text), class_="code"))
        elif item.head is None:
            items.append(h("li", item.text.strip()))
        else:
            items.append(h("li", h("b", f"{item.head}: "), item.text))
    return h("ul", items, class_="advice")


def _verdict(run: RunReport) -> El:
    status = run.summary.status
    return h(
        "div",
        h(
            "p",
            h("b", f"Verdict: {status.badge} {status.label}"),
            " · ",
            _parts(verdict_parts(run)),
            class_="verdict",
        ),
        h("b", "Recommended action"),
        _advice(run),
        class_=f"top {_tone(status)}",
    )


def _chart_title(run: RunReport, chart: dict) -> list[Child]:
    if chart["id"] == "tasks":
        of = "loss divided by its weight (raw)" if run.unweighted else "weighted loss"
        return [f"Task gradient norms (of each task's {of}), log scale"]
    if chart["id"] == "ratio":
        what: list[Child] = ["Spread (largest task norm over the smallest)"]
        if judged(run).signed:
            what = [h("code", run.pair[0]), " / ", h("code", run.pair[1]), " gradient ratio"]
        return what + [", log scale; bands: healthy, minor, significant, collapse"]
    return ["Mean and max gradient norm, log scale; bands: vanishing, healthy, large, exploding"]


def _charts(run: RunReport, i: int, data: dict) -> list[Child]:
    if not data["charts"]:
        return [h("p", "No charts: the run has no balance samples and no statistics.")]
    out: list[Child] = [
        h(
            "p",
            f"Hover for exact values; drag across a chart to zoom every chart of the run to "
            f"that range ({data['axis']}); double-click or ",
            h("button", "reset zoom", class_="reset", data_run=str(i), type="button"),
            ".",
            class_="hint",
        )
    ]
    if run.summary.first_collapse:
        out.append(
            h(
                "p",
                f"Dashed red line: the first collapse ({run.summary.first_collapse}).",
                class_="hint",
            )
        )
    for k, chart in enumerate(data["charts"]):
        legend = [h("span", s["name"], class_=f"s{n % 8}") for n, s in enumerate(chart["series"])]
        if chart.get("of", 0) > len(chart["series"]):
            legend.append(
                f"({len(chart['series'])} of the run's {chart['of']:,} tasks: the dominant, the "
                "starved and the first others) "
            )
        thinned = [s for s in chart["series"] if s["n"] > len(s["x"])]
        if thinned:
            legend.append(f"(every series thinned evenly to at most {MAX_POINTS:,} points)")
        out += [
            h("h4", _chart_title(run, chart)),
            h("p", legend, class_="legend"),
            h("div", class_="plot", id=f"plot-{i}-{k}", data_run=str(i), data_chart=str(k)),
        ]
    return out


def _run_section(run: RunReport, i: int, data: dict) -> El:
    s = run.summary
    rows = [h("tr", h("th", label), h("td", _parts(value))) for label, value in summary_rows(run)]
    return h(
        "section",
        h("h2", "Run ", h("code", s.name), f" · {s.status.badge} {s.status.label}", id=f"run-{i}"),
        _verdict(run),
        h("h3", "Summary"),
        h("table", h("tbody", rows), class_="summary"),
        h("h3", "Findings"),
        h("ul", [h("li", f"{st.badge} ", _parts(text)) for st, text in finding_items(run)]),
        h("h3", "Charts"),
        _charts(run, i, data),
    )


# -- the table of runs -----------------------------------------------------------------------------


def _sort_number(value: float | int | None) -> str:
    if value is None or value != value:
        return ""
    return str(value).replace("inf", "Infinity")


def _sort_label(label: str | None) -> str:
    return label.rsplit(" ", 1)[-1] if label else ""


def _sort_keys(i: int, row: RunSummary) -> list[str]:
    return [
        str(i),
        str(row.status.rank),
        row.name if row.error is None else "",
        row.source,
        ", ".join(row.tasks),
        str(row.n_events),
        _sort_number(row.last_epoch),
        _sort_number(row.window_ratio),
        _sort_number(row.spread),
        _sort_number(row.worst_spread),
        _sort_label(row.first_imbalance),
        _sort_label(row.first_collapse),
        _sort_number(row.mean_norm),
        _sort_number(row.max_norm_peak),
        row.advice.flags or "",
    ]


_NUMERIC = {0, 5, 6, 7, 8, 9, 12, 13}


def runs_table(rows: Sequence[RunSummary], linked: Sequence[bool]) -> list[Child]:
    """The sortable table of runs (the Markdown batch's columns); a row whose ``linked`` is
    true links to its run's section."""
    shown = list(rows)[:TABLE_ROWS]
    body = []
    for i, row in enumerate(shown, start=1):
        cells = []
        for col, (cell, key) in enumerate(zip(row_cells(i, row), _sort_keys(i, row))):
            content = _parts(cell)
            if col == 2 and i <= len(linked) and linked[i - 1]:
                content = [h("a", content, href=f"#run-{i - 1}")]
            cells.append(h("td", content, data_sort=key, class_="num" if col in _NUMERIC else None))
        body.append(h("tr", cells))
    out: list[Child] = [
        h("p", "Click a column's header to sort by it.", class_="hint"),
        h(
            "div",
            h(
                "table",
                h("thead", h("tr", [h("th", name, scope="col") for name in MARKDOWN_HEADER])),
                h("tbody", body),
                class_="runs",
            ),
            class_="scroll",
        ),
    ]
    if len(rows) > len(shown):
        out.append(
            h(
                "p",
                f"… and {len(rows) - len(shown):,} more runs (use --limit or --status).",
                class_="notes",
            )
        )
    errors = [row for row in shown if row.error is not None]
    if errors:
        out += [
            h("h3", "Unreadable files"),
            h("ul", [h("li", h("code", row.source), ": ", row.error) for row in errors]),
        ]
    return out


def _weights(rows: Sequence[RunSummary]) -> list[Child]:
    found = [r for r in rows if r.advice.flags][:DETAILED_RUNS]
    if not found:
        return [
            h("p", "Recommended weights: none (no run needs rebalancing, or none can be advised).")
        ]
    return [
        h("b", "Recommended weights"),
        h(
            "ul",
            [h("li", h("code", r.name), ": ", h("code", r.advice.flags)) for r in found],
            class_="advice",
        ),
    ]


def _left_out(n_detailed: int, n_runs: int) -> list[Child]:
    if n_runs <= n_detailed:
        return []
    return [
        h(
            "p",
            f"Details and charts of the first {n_detailed} runs in the table's order; the other {n_runs - n_detailed:,} have their row in the table.",
            class_="notes",
        )
    ]


def _notes(notes: Sequence[str]) -> list[Child]:
    if not notes:
        return []
    return [h("h3", "Notes"), h("ul", [h("li", n) for n in notes], class_="notes")]


# -- the two pages ---------------------------------------------------------------------------------


def report_page(report: Report) -> El:
    """``gradlog report --format html``: every run of one log."""
    runs = report.runs
    detailed = runs[:DETAILED_RUNS]
    data = [run_charts(r) for r in detailed]
    body: list[Child] = [h("h1", "gradlog report: ", h("code", report.path))]
    if len(runs) == 1:
        title = f"gradlog: {runs[0].summary.status.label} in run {runs[0].summary.name}"
    else:
        summaries = [r.summary for r in runs]
        worst, headline = verdict(summaries)
        title = f"gradlog: {headline}"
        body += [
            h(
                "div",
                h(
                    "p",
                    h("b", f"Verdict: {worst.badge} {headline}"),
                    f" · {summary_line(summaries, 1)}",
                    class_="verdict",
                ),
                _weights(summaries),
                class_=f"top {_tone(worst)}",
            ),
            *runs_table(summaries, [True] * len(detailed)),
            *_left_out(len(detailed), len(runs)),
        ]
    body += [_run_section(r, i, d) for i, (r, d) in enumerate(zip(detailed, data))]
    body += _notes(report.notes)
    return page(title, body, data)


def batch_page(
    all_rows: Sequence[RunSummary],
    rows: Sequence[RunSummary],
    n_sources: int,
    reports: Sequence[RunReport | None],
) -> El:
    """``gradlog batch --format html``: the verdict, the sortable table, then the runs' details
    (``reports``: the first rows' analyses, None where a row has none)."""
    worst, headline = verdict(all_rows)
    badges = " · ".join(f"{s.badge} {n} {s.value}" for s, n in counts(all_rows).items())
    body: list[Child] = [
        h("h1", "gradlog batch"),
        h(
            "div",
            h("p", h("b", f"Verdict: {worst.badge} {headline}"), class_="verdict"),
            h("p", summary_line(all_rows, n_sources), h("br"), badges),
            _weights(rows),
            class_=f"top {_tone(worst)}",
        ),
        *runs_table(rows, [r is not None for r in reports]),
        *_left_out(len(reports), len(rows)),
    ]
    data = [run_charts(r) if r is not None else None for r in reports]
    body += [_run_section(r, i, d) for i, (r, d) in enumerate(zip(reports, data)) if r is not None]
    notes = dict.fromkeys(n for row in all_rows for n in row.notes)
    body += _notes(list(notes))
    return page(f"gradlog batch: {headline}", body, data)
