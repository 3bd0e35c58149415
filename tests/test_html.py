"""``gradlog report --format html`` and ``gradlog batch --format html``, opened in a real browser.

The pages are made by the real command line from real logs (the sample logs the recorder wrote,
and logs written by its writer with hostile run ids, task names, tags and a hostile file name),
then opened in a headless Chromium (the distribution's package; ``.ci/run`` installs it where
missing) driven over the DevTools protocol (``tests/browser.py``): the page must render its
charts with no console message, exception or policy violation, say its verdict and weights on
top, show exact values on hover, zoom by dragging, sort its table by a clicked header, and run
nothing a log carried. A screenshot of the report is written to the test's folder and, when
``GRADLOG_TEST_ARTIFACTS`` names a folder, copied there. Without a browser those tests skip,
saying why; the golden files and the neutralising functions are checked either way.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path

import pytest
from browser import Browser, find_browser
from conftest import GOLDEN, ROOT
from hypothesis import given
from hypothesis import strategies as st
from runlogs import gradlog_many, write_run

from gradlog.analysis import api
from gradlog.analysis.output import for_html, for_terminal, json_for_html
from gradlog.recorder.writers import JsonlWriter

BROWSER = find_browser()
needs_browser = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium to open the pages in: install the distribution's chromium package "
    "(apt-get install chromium; .ci/run does so where apt-get can), or name one in "
    "GRADLOG_TEST_BROWSER",
)

# -- hostile text: each payload would change the page if it ran --------------------------------

SCRIPT = "<script>document.title='PWNED'</script>"
IMG = '<img src=x onerror="document.body.dataset.pwned=1">'
END_SCRIPT = "</script><script>document.body.dataset.pwned=2</script><!--"
JS_URL = "javascript:document.body.dataset.pwned=3"
ATTR = '" onmouseover="document.body.dataset.pwned=4" x="'
SVG = "<svg onload=document.body.dataset.pwned=5>"
CONTROLS = "\x1b[2J\u202eevil"
RUN_IDS = [SCRIPT, END_SCRIPT, JS_URL + CONTROLS]
TASKS = [IMG, SVG + ATTR]
FILE = "<img src=x onerror=document.body.dataset.pwned=6>.jsonl"


def write_hostile(path: Path) -> Path:
    """Three collapsing runs with hostile ids, task names and tags, by the real writer."""
    writer = JsonlWriter(path)
    for rid in RUN_IDS:
        meta = {"tasks": TASKS, "tags": [{"key": ATTR, "value": JS_URL}], "log_every": 1}
        writer.write({"v": 1, "run": rid, "kind": "run", "meta": meta})
        for e in range(1, 7):
            tasks = [
                {"name": TASKS[0], "grad_norm": 0.5 * e, "weight": 1.0},
                {"name": TASKS[1], "grad_norm": 0.05, "weight": 1.0},
            ]
            event = {"v": 1, "run": rid, "kind": "event", "epoch": e, "tasks": tasks}
            writer.write({**event, "mean_norm": 0.2, "max_norm": 0.5})
    writer.close()
    return path


def write_many(path: Path) -> Path:
    """Four runs of one log: healthy, collapsing, three tasks logged by steps (with a NaN
    mean norm), and one with statistics only (no balance samples: one chart)."""
    write_run(path, [1.0, 1.1, 0.9, 1.0], run="healthy")
    write_run(path, [1.0, 3.0, 8.0, 9.0, 9.5], run="collapse")
    write_run(
        path,
        [1.0, 2.0, 0.5, 4.0],
        [0.2, float("nan"), 0.3, 0.4],
        tasks=("a", "b", "c"),
        run="steps",
        by_steps=True,
    )
    writer = JsonlWriter(path)
    writer.write({"v": 1, "run": "stats", "kind": "run", "meta": {"log_every": 1}})
    for e in range(1, 4):
        event = {"v": 1, "run": "stats", "kind": "event", "epoch": e}
        writer.write({**event, "mean_norm": 0.1 * e, "max_norm": 0.5})
    writer.close()
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every page, made once by the real command line (side by side)."""
    root = tmp_path_factory.mktemp("html")
    hostile = write_hostile(root / FILE)
    many = write_many(root / "many.jsonl")
    out = {
        "report": root / "report.html",
        "batch": root / "batch.html",
        "hostile-report": root / "hostile-report.html",
        "hostile-batch": root / "hostile-batch.html",
        "many": root / "many.html",
    }
    calls = [
        ("report", "sample_logs/type_collapse.jsonl", "--format", "html", "-o", str(out["report"])),
        ("batch", "sample_logs/", "--format", "html", "-o", str(out["batch"])),
        ("report", str(hostile), "--format", "html", "-o", str(out["hostile-report"])),
        ("batch", str(hostile), "--format", "html", "-o", str(out["hostile-batch"])),
        ("report", str(many), "--format", "html", "-o", str(out["many"])),
    ]
    for result in gradlog_many(calls):
        assert result.returncode == 0, result.stderr.decode()
    return out


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None:
        pytest.skip(needs_browser.kwargs["reason"])
    with Browser(BROWSER) as b:
        yield b


def open_clean(browser: Browser, path: Path):
    """The page, checked to have drawn its charts with nothing said on the console."""
    page = browser.open(path)
    state = page.eval(
        "({rendered: document.documentElement.dataset.rendered || null,"
        " errors: document.documentElement.dataset.errors || null,"
        " plots: document.querySelectorAll('.plot').length})"
    )
    assert state["errors"] is None
    assert state["rendered"] is not None, "the page's script did not finish"
    assert int(state["rendered"]) == state["plots"] > 0
    assert page.messages() == []
    return page


def _artifact(path: Path) -> None:
    folder = os.environ.get("GRADLOG_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


# -- the report ------------------------------------------------------------------------------------


@needs_browser
def test_report_renders_with_the_verdict_and_weights_on_top(browser, pages, tmp_path) -> None:
    page = open_clean(browser, pages["report"])
    assert page.eval("document.querySelectorAll('svg.chart').length") == 3
    top = page.eval("document.querySelector('main .top').innerText")
    assert "Verdict: \u274c Task collapse" in top
    assert "--loss-alpha 1 --loss-beta 0.5369" in top  # the text report's flags
    # the verdict box comes before the summary table
    assert page.eval(
        "document.querySelector('main .top').compareDocumentPosition("
        "document.querySelector('table.summary')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    shot = page.screenshot(tmp_path / "report-html.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    _artifact(shot)


@needs_browser
def test_hover_shows_the_exact_value(browser, pages) -> None:
    run = api.analyse(ROOT / "sample_logs/type_collapse.jsonl").runs[0]
    first = run.norms("type").drop_nulls()[0]
    page = open_clean(browser, pages["report"])
    x, y = page.centre("#plot-0-0 circle.dot.s1")
    page.mouse("mouseMoved", x, y)
    tip = page.eval("document.querySelector('#plot-0-0 .tip').innerText")
    assert f"type: {first!r}" in tip.splitlines()
    assert tip.splitlines()[0] == "epoch 5"


@needs_browser
def test_dragging_zooms_every_chart_of_the_run(browser, pages) -> None:
    page = open_clean(browser, pages["report"])
    zooms = "[...document.querySelectorAll('.plot[data-run=\"0\"]')].map(p => p.dataset.zoom)"
    full = page.eval(zooms)
    assert len(set(full)) == 1 and full[0] == "5:30"
    box = page.eval(
        "(() => { const s = document.querySelector('#plot-0-1 svg');"
        " s.scrollIntoView({block: 'center'}); const r = s.getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )
    left, top, width, height = box
    y = top + height / 2
    page.mouse("mousePressed", left + width * 0.3, y, 1)
    page.mouse("mouseMoved", left + width * 0.6, y)
    page.mouse("mouseReleased", left + width * 0.6, y, 1)
    zoomed = page.eval(zooms)
    assert len(set(zoomed)) == 1  # every chart of the run shows the same range
    low, high = map(float, zoomed[0].split(":"))
    assert 5 < low < high < 30
    page.click(left + width / 2, y, clicks=2)
    assert page.eval(zooms) == full


# -- the batch -------------------------------------------------------------------------------------


@needs_browser
def test_batch_renders_and_sorts_by_a_clicked_header(browser, pages) -> None:
    page = open_clean(browser, pages["batch"])
    assert "Verdict: \u274c 4 of 6 runs need attention" in page.eval(
        "document.querySelector('main .top').innerText"
    )
    column = (
        "[...document.querySelectorAll('table.runs tbody tr')].map(r => r.cells[8].dataset.sort)"
    )
    keys = page.eval(column)
    spreads = [float(k) for k in keys]
    page.click(*page.centre("table.runs th:nth-child(9)"))
    assert [float(k) for k in page.eval(column)] == sorted(spreads)
    page.click(*page.centre("table.runs th:nth-child(9)"))
    assert [float(k) for k in page.eval(column)] == sorted(spreads, reverse=True)
    # each run's name links to its section, which has its charts
    links = page.eval(
        "[...document.querySelectorAll('table.runs a')].map(a => a.getAttribute('href'))"
    )
    assert len(links) == 6
    for href in links:
        assert page.eval(f"document.querySelectorAll('{href} ~ .plot').length") >= 1


@needs_browser
def test_a_report_of_many_runs_has_a_table_and_every_runs_charts(browser, pages) -> None:
    page = open_clean(browser, pages["many"])
    assert page.eval("document.querySelectorAll('table.runs tbody tr').length") == 4
    per_run = page.eval(
        "[...document.querySelectorAll('section')].map(s => s.querySelectorAll('svg.chart').length)"
    )
    assert per_run == [3, 3, 3, 1]
    ticks = page.eval(
        "[...document.querySelectorAll('#plot-2-0 text.tick')].map(t => t.textContent)"
    )
    assert "step" in ticks and "epoch" not in ticks  # the x axis as the run was logged


# -- nothing from a log runs -------------------------------------------------------------------------


@needs_browser
@pytest.mark.parametrize("which", ["hostile-report", "hostile-batch"])
def test_no_payload_from_a_log_executes(browser, pages, which) -> None:
    page = open_clean(browser, pages[which])
    found = page.eval(
        "({title: document.title, pwned: document.body.dataset.pwned || null,"
        " scripts: document.scripts.length,"
        " foreign: document.querySelectorAll('img, iframe, object, embed, svg:not(.chart)').length,"
        " handlers: [...document.querySelectorAll('*')].filter(e =>"
        "   [...e.attributes].some(a => a.name.startsWith('on'))).length,"
        " hrefs: [...document.querySelectorAll('[href]')].map(e => e.getAttribute('href')),"
        " text: document.body.innerText})"
    )
    assert found["pwned"] is None
    assert found["title"].startswith("gradlog") and found["title"] != "PWNED"
    assert found["scripts"] == 2  # the data and gradlog's script, nothing more
    assert found["foreign"] == 0 and found["handlers"] == 0
    assert all(href.startswith("#run-") for href in found["hrefs"])
    # the text is shown, inert; control characters as visible escapes
    text = found["text"]
    for payload in (SCRIPT, END_SCRIPT, IMG, SVG + ATTR, FILE):
        assert payload in text
    assert for_terminal(JS_URL + CONTROLS) in text and "\x1b" not in text and "\u202e" not in text
    # hovering shows the task names as text too
    x, y = page.centre(".plot circle.dot.s0")
    page.mouse("mouseMoved", x, y)
    assert IMG in page.eval("document.querySelector('.plot .tip').innerText")
    assert page.eval("document.body.dataset.pwned || null") is None
    assert page.messages() == []


# -- the neutralising functions (no browser) ---------------------------------------------------


@given(st.text())
def test_for_html_leaves_no_markup_and_keeps_the_text(text: str) -> None:
    out = for_html(text)
    assert not set(out) & set("<>\"'") and out.isprintable()
    assert html.unescape(out) == for_terminal(text)


@given(
    st.recursive(st.text() | st.floats(allow_nan=False, allow_infinity=False) | st.none(), st.lists)
)
def test_json_for_html_cannot_end_its_script(value) -> None:
    out = json_for_html({"runs": value, "end": "</script><!--<script>"})
    assert not set(out) & set("<>&") and out.isascii()
    decoded = json.loads(out)
    assert decoded["end"] == "</script><!--<script>"


# -- bounds and golden files ----------------------------------------------------------------------


def test_a_long_run_is_thinned_and_many_tasks_bounded(tmp_path: Path) -> None:
    from gradlog.analysis.render.html_charts import MAX_POINTS, MAX_TASKS, run_charts

    n = MAX_POINTS * 2 + 7
    tasks = tuple(f"t{k}" for k in range(MAX_TASKS + 3))
    ratios = [1.0 + (i % 7) / 10 for i in range(n)]
    path = write_run(tmp_path / "long.jsonl", ratios, tasks=tasks, by_steps=True)
    run = api.analyse(path).runs[0]
    charts = run_charts(run)
    assert charts["axis"] == "step"
    for chart in charts["charts"]:
        for series in chart["series"]:
            assert series["n"] == n and len(series["x"]) <= MAX_POINTS
            assert series["x"][-1] == 50 * n  # the last point kept
    drawn = [s["name"] for s in charts["charts"][0]["series"]]
    assert len(drawn) == MAX_TASKS and charts["charts"][0]["of"] == len(tasks)
    assert {run.summary.dominant, run.summary.starved} <= set(drawn)


def test_a_page_details_a_bounded_number_of_runs(tmp_path: Path, monkeypatch) -> None:
    from gradlog.analysis.render import html as page
    from gradlog.analysis.render.html_tree import serialise

    path = tmp_path / "runs.jsonl"
    for k in range(4):
        write_run(path, [1.0, 2.0, 3.0], run=f"r{k}")
    monkeypatch.setattr(page, "DETAILED_RUNS", 3)
    text = "".join(serialise(page.report_page(api.analyse(path)), for_html, json_for_html))
    assert text.count("<section>") == 3 and text.count('href="#run-') == 3
    assert "Details and charts of the first 3 runs in the table&#x27;s order" in text


def _check_golden(name: str, text: str, update: bool) -> None:
    golden = GOLDEN / "html" / name
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden}")
    assert golden.exists(), f"no golden file {golden}; run pytest --update-golden"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("page", "golden"), [("report", "type_collapse.html"), ("batch", "batch.html")]
)
def test_pages_match_golden(pages, page: str, golden: str, update_golden) -> None:
    """The report and the batch of the sample logs, byte for byte (the same runs as the other
    formats' golden files; regenerate with --update-golden and review the diff)."""
    _check_golden(golden, pages[page].read_text(encoding="utf-8"), update_golden)
