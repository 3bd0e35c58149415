"""The ratio charts, terminal (``report --chart``) and Markdown (Mermaid), on their log scale.

Pinned byte for byte under ``tests/golden/charts/`` for every sample log and for three runs of
our own (three tasks, where the spread is charted; a long run by steps, thinned; a healthy
pair): regenerate with ``--update-golden`` and review the diff. The Markdown is also rendered
with GitHub's engine where it is installed. Beside the pins, the properties the scale exists
for: 0.04 and 25 equally far from 1, every sample drawn, the first ones included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import GOLDEN, SAMPLE_LOGS
from conftest import check_golden as check
from runlogs import ROOT, gradlog, gradlog_many, write_run

SAMPLES = sorted(p.stem for p in SAMPLE_LOGS.glob("*.jsonl"))
# one pointer/type run falling from about even to a type collapse (ratio 0.04), then back
FALL = [1.1, 0.5, 0.2, 0.12, 0.04, 0.04, 0.04, 0.3, 0.9]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("charts")
    write_run(
        root / "three.jsonl",
        [1.0, 2.0, 6.0, 30.0, 60.0, 40.0, 25.0, 30.0],
        tasks=("a", "b", "c"),
        run="three",
    )
    long = [0.96**i for i in range(90)]  # by steps, past the 60 columns: grouped and thinned
    write_run(root / "long.jsonl", long, run="long", by_steps=True, every=100)
    write_run(root / "fall.jsonl", FALL, run="fall")
    write_run(root / "mirror.jsonl", [1 / r for r in FALL], run="mirror")
    return root


OWN = ["three", "long", "fall"]


@pytest.fixture(scope="module")
def outputs(own: Path) -> dict[tuple[str, str], str]:
    calls, keys = [], []
    for name in SAMPLES:
        for fmt in ("chart", "markdown"):
            extra = ["--chart"] if fmt == "chart" else ["--format", "markdown"]
            calls.append(("report", f"sample_logs/{name}.jsonl", *extra))
            keys.append((name, fmt))
    done = gradlog_many(calls)
    own_calls = [
        ("report", f"{name}.jsonl", *(["--chart"] if fmt == "chart" else ["--format", fmt]))
        for name in [*OWN, "mirror"]
        for fmt in ("chart", "markdown")
    ]
    # run where the logs are, so the path the Markdown names is the same on every machine
    done += [gradlog(*c, cwd=own, env={"PYTHONPATH": str(ROOT)}) for c in own_calls]
    keys += [(name, fmt) for name in [*OWN, "mirror"] for fmt in ("chart", "markdown")]
    out = {}
    for key, result in zip(keys, done):
        assert result.returncode == 0, (key, result.stderr.decode())
        out[key] = result.stdout.decode("utf-8")
    return out


def _chart_part(text: str) -> str:
    """The lines from the chart's title on (the report above is pinned by test_golden)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if ", log scale, " in line)
    return "".join(lines[start:])


def _mermaid_part(text: str) -> str:
    return text[text.index("### Charts") :]


@pytest.mark.parametrize("name", SAMPLES + OWN)
def test_terminal_chart_matches_golden(outputs, name, update_golden):
    if name in SAMPLES:  # the report above the chart is the text report, unchanged
        assert outputs[name, "chart"].startswith((GOLDEN / f"{name}.txt").read_text("utf-8"))
    check(f"charts/{name}.txt", _chart_part(outputs[name, "chart"]), update_golden)


@pytest.mark.parametrize("name", SAMPLES + OWN)
def test_markdown_charts_match_golden(outputs, name, update_golden):
    check(f"charts/{name}.md", _mermaid_part(outputs[name, "markdown"]), update_golden)


def _rows(chart: str) -> dict[str, str]:
    """Row label -> the row's marks, of a terminal chart (the dotted lines left out)."""
    out = {}
    for line in chart.splitlines()[1:]:
        m = re.match(r"\s*(\S.*?) │(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_a_collapse_below_1_is_as_far_as_one_above(outputs):
    """A pair and its mirror image (every ratio inverted): the same chart upside down."""
    fall, mirror = (_rows(_chart_part(outputs[k, "chart"])) for k in ("fall", "mirror"))
    assert list(fall) == list(mirror)  # the same rows, symmetric about 1
    labels = list(fall)
    assert labels[len(labels) // 2 - 1 : len(labels) // 2 + 1] == ["1-2", "0.5-1"]
    for i, label in enumerate(labels):
        assert fall[label] == mirror[labels[len(labels) - 1 - i]], label
    # the Mermaid lines are the negatives of each other on a symmetric axis
    a = re.findall(r"line \[(.*?)\]", outputs["fall", "markdown"])
    b = re.findall(r"line \[(.*?)\]", outputs["mirror", "markdown"])
    for x, y in zip(a[:2], b[:2]):
        assert [float(v) for v in x.split(", ")] == pytest.approx(
            [-float(v) for v in y.split(", ")], abs=1e-6
        )
    axis = re.search(
        r'y-axis "ratio, log2 scale \(0 = even\)" (\S+) --> (\S+)', outputs["fall", "markdown"]
    )
    assert float(axis.group(1)) == -float(axis.group(2))
    # 0.04 sits about 4.6 doublings below 1, well inside the axis: not an invisible bar
    assert min(float(v) for v in a[0].split(", ")) == pytest.approx(-4.643856, abs=1e-6)


def test_every_sample_is_drawn_the_first_ones_included(outputs):
    text = outputs["fall", "markdown"]
    assert f'x-axis "epoch" [{", ".join(str(5 * i) for i in range(1, len(FALL) + 1))}]' in text
    chart = _chart_part(outputs["fall", "chart"])
    # the first samples (1.1, 0.5) drawn, with no window before the 3rd sample
    assert _rows(chart)["1-2"] == " ·"
    assert _rows(chart)["0.5-1"].startswith("    ·  ")
    assert chart.rstrip().endswith("\n           5                      45  epoch")


def test_three_tasks_chart_the_spread(outputs):
    chart, text = _chart_part(outputs["three", "chart"]), outputs["three", "markdown"]
    assert chart.startswith("spread (largest task norm over the smallest), log scale,")
    # a spread is never below 1: no row under 1-2
    assert list(_rows(chart)) == ["> 50", "20-50", "10-20", "5-10", "2-5", "1-2"]
    assert "    5 ┼┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈┈  collapse above 5" in chart
    assert 'y-axis "spread, log2 scale (0 = even)" 0 -->' in text


def test_markdown_charts_render_with_githubs_engine(outputs):
    cmarkgfm = pytest.importorskip("cmarkgfm")
    for name in SAMPLES + OWN:
        html = cmarkgfm.github_flavored_markdown_to_html(outputs[name, "markdown"])
        blocks = re.findall(r'<pre lang="mermaid"><code>(.*?)</code></pre>', html, re.S)
        assert blocks and all("xychart-beta" in b for b in blocks), name


def test_a_pair_among_three_tasks_still_charts_the_spread(own):
    """--pair on three tasks names a pair, but the verdict judges the spread: the terminal,
    Markdown and HTML charts (and plot's) draw the spread, from one rule (logscale.judged)."""
    from gradlog import analyse
    from gradlog.analysis.render import logscale
    from gradlog.analysis.render.html_charts import run_charts

    run = analyse(own / "three.jsonl", pair=("a", "b")).runs[0]
    what = logscale.judged(run)
    assert (what.signed, what.sample, what.window) == (False, "spread", "window_spread")
    balance = run.events.filter("has_balance")
    spread = balance.get_column("spread").to_list()
    ratio = balance.get_column("ratio").to_list()
    assert spread != ratio  # the pair's ratio differs, so the test can tell them apart
    assert logscale.series(run).samples == spread
    chart = next(c for c in run_charts(run)["charts"] if c["id"] == "ratio")
    assert chart["series"][0]["y"] == spread
    assert min(b[0] for b in chart["bands"] if b[0] is not None) >= 1.0  # no band below 1
    two = analyse(own / "fall.jsonl").runs[0]
    assert logscale.judged(two).signed and logscale.series(two).samples[0] == FALL[0]
