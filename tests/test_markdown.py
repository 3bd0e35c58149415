"""Markdown for pull requests: the escaping functions, and the real report and batch output.

Hostile names (HTML, links, mentions, table breakers) must come out inert. Where GitHub's own
Markdown engine (cmark-gfm, the ``cmarkgfm`` package of the test extra) is installed, the
output is rendered with it and the HTML checked: no tag, no link, every table row whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from runlogs import gradlog_many, write_run

from gradlog.analysis.render import md
from gradlog.analysis.render.mermaid import safe_label, thin, xychart

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "@everyone",
    "<script>alert(1)</script>",
    "[click](https://evil.example/x)",
    "![pic](https://evil.example/p.png)",
    "https://evil.example www.evil.example",
    "a | b | c",
    "line one\nline two\r\n| x | y |",
    "**bold** _it_ ~~s~~ `code` $x^2$",
    "#123 GH-45 owner/repo#6",
    "1. first",
    "2) second",
    "- item",
    "+ item",
    "---",
    "===",
    "mailto:x@evil.example xmpp:x@evil.example ftp://evil.example",
    "WWW.EVIL.EXAMPLE/x a_b_c _d_ __e__",
    "2026-11-25T16:27:54+00:00",
    "&lt;b&gt; &#64;everyone",
    "<!-- comment -->",
    "\u202etxt.exe",
    "trailing backslash \\",
    "```",
    "",
    "   ",
]

try:  # GitHub's Markdown engine, when installed (it is in the test extra)
    import cmarkgfm
    from cmarkgfm.cmark import Options

    def render(text: str) -> str:
        return cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)

except ImportError:  # pragma: no cover - the checks on the Markdown text still run
    render = None


def _inert_html(html: str) -> None:
    """No element a log could have smuggled in: only the tags gradlog itself writes."""
    tags = set(re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "h2",
        "h3",
        "h4",
        "ul",
        "li",
        "strong",
        "pre",
        "sub",
        "br",
        "em",
    }, tags
    assert "<a " not in html and "<img" not in html and "<script" not in html
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    assert "@everyone" not in outside_code  # mentions broken (inside code they are inert)


# -- the functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_is_inert_in_prose_and_in_a_table(text: str) -> None:
    escaped = md.escape(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert "<" not in escaped and ">" not in escaped
    assert re.search(r"(?<!\\)\|", escaped) is None  # every pipe escaped
    assert "@everyone" not in escaped
    if render is not None:
        html = render(f"{escaped}\n\n| h | k |\n| --- | --- |\n| {escaped} | x |\n")
        _inert_html(html)
        assert html.count("<td>") == 2  # the row kept its two cells
        if text.strip():  # at the start of a line too, one paragraph: no list, heading or rule
            prose = render(f"- {escaped}\n\n{escaped}\n")
            assert prose.count("<li>") == 1 and "<ul>\n<li><ul>" not in prose, prose
            assert prose.split("</ul>\n", 1)[1].startswith("<p>"), prose
            assert "<a " not in prose and "<h" not in prose and "<hr" not in prose, prose


@pytest.mark.parametrize("text", HOSTILE)
def test_code_is_inert_and_keeps_the_text(text: str) -> None:
    span = md.code(text)
    assert "\n" not in span
    if render is not None and text.strip():
        html = render(f"| h | k |\n| --- | --- |\n| {span} | x |\n")
        _inert_html(html)
        assert html.count("<td>") == 2
        shown = re.search(r"<td><code>(.*?)</code></td>", html, re.S).group(1)
        import html as html_lib

        expected = md._clean(text)
        assert html_lib.unescape(shown) == expected.strip() or html_lib.unescape(shown) == expected


def test_escape_examples() -> None:
    assert md.escape("<img src=x>") == "&lt;img src=x&gt;"
    assert md.escape("@everyone") == "@\u2060everyone"
    assert md.escape("a|b") == "a\\|b"
    assert md.escape("x\ny") == "x y"
    assert md.escape("GH-12") == "GH-\u206012"
    assert md.escape("#123") == "\\#\u2060123"
    # a log's own word joiner is no escape of ours: a space, like any format character
    assert md.escape("a\u2060@b\u2060") == "a @\u2060b "
    assert md.escape("plain words 123") == "plain words 123"
    # what acts only where it stands is escaped only there: a timestamp reads as it is
    assert md.escape("2026-11-25T16:27:54+00:00") == "2026-11-25T16:27:54+00:00"
    assert md.escape("ratio 0.04 (x28): urgent") == "ratio 0.04 (x28): urgent"
    assert md.escape("https://e.x www.e.x") == "https\\://e.x www\\.e.x"
    assert md.escape("- item") == "\\- item" and md.escape("12. item") == "12\\. item"
    assert md.escape("a ~~b~~ $c$") == "a \\~\\~b\\~\\~ \\$c\\$"
    assert md.escape("loss_alpha _it_") == "loss_alpha \\_it\\_"  # "_" in a word: no emphasis


def test_code_examples() -> None:
    assert md.code("pointer") == "` pointer `"
    assert md.code("a`b") == "`` a`b ``"
    assert md.code("a|b") == "` a\\|b `"
    assert md.code("a|b", in_table=False) == "` a|b `"
    assert md.code("") == "&nbsp;"


def test_mermaid_blocks_hold_only_numbers_and_safe_words() -> None:
    assert safe_label('x" ]\n%%{init}%% <b>') == "x init b"
    block = xychart(
        title='evil"]',
        x_title="epoch",
        x=[5, "10]"],
        y_title="ratio",
        y_range=(0, 2),
        lines=[[1.0, 1e-9]],
    )
    assert block[0] == "```mermaid" and block[-1] == "```"
    assert 'title "evil"' in block[3]
    assert 'x-axis "epoch" [5, 10]' in block[4]
    assert block[6] == "    line [1, 0]"
    assert thin(1000, 60)[-1] == 999 and len(thin(1000, 60)) <= 60


# -- the real command ---------------------------------------------------------------------------

EVIL_TASK = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    collapse = write_run(
        root / "evil.jsonl",
        [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0],
        tasks=(EVIL_TASK, "@everyone"),
        run="run|<b>id</b>\n[x](http://e.x)",
        tags={"commit": "<script>alert(1)</script>", "note": "@everyone #1"},
    )
    healthy = write_run(root / "ok.jsonl", [1.0, 1.1, 0.9, 1.0], run="ok")
    return {"root": root, "collapse": collapse, "healthy": healthy}


@pytest.fixture(scope="module")
def outputs(hostile: dict[str, Path]) -> dict:
    calls = {
        "report": ("report", str(hostile["collapse"]), "--format", "markdown"),
        "healthy": ("report", str(hostile["healthy"]), "--format", "markdown"),
        "batch": ("batch", str(hostile["root"]), "--format", "markdown"),
        "json": ("report", str(hostile["collapse"]), "--format", "json"),
        "compare": (
            "compare",
            str(hostile["healthy"]),
            str(hostile["collapse"]),
            "--format",
            "markdown",
            "--fail-on",
            "collapse",
        ),
    }
    return dict(zip(calls, gradlog_many(list(calls.values()))))


def _outside_code(markdown: str) -> str:
    return re.sub(r"(`+) .*? \1", "", markdown)


def test_report_markdown_has_verdict_table_findings_action_and_chart(outputs: dict) -> None:
    result = outputs["report"]
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.startswith("## \N{CROSS MARK} gradlog: Task collapse in run ")
    # the verdict is the spread of the geometric window: 5.60 (the arithmetic mean was 7.36)
    evil = md.code(EVIL_TASK, in_table=False)
    assert (
        "**Verdict: \N{CROSS MARK} Task collapse** · task balance: Task collapse, "
        f"final spread 5.60 ({evil} dominating), collapse from Epoch 35 · "
        "gradient norms: Healthy (mean 0.2500)\n"
    ) in text
    assert "| Final spread | 5.60 (\N{CROSS MARK} Task collapse) |" in text
    assert "| Worst spread | 5.60 (\N{CROSS MARK} Task collapse) |" in text
    assert "| First imbalance | Epoch 10 |" in text
    assert "| First collapse | Epoch 35 |" in text
    assert "### Findings" in text and "- \N{CROSS MARK} Task collapse from Epoch 35" in text
    assert "(largest over smallest) passed 5.0" in text
    assert "### Recommended action" in text and "Urgent: rebalance weights" in text
    assert "```mermaid" in text and "xychart-beta" in text
    # on the log scale (log2 of the ratio), every sample drawn, the first two included
    assert 'y-axis "ratio, log2 scale (0 = even)" -4 --> 4' in text  # 12 is 3.58 doublings
    assert "    line [-1, -1, -1, -1, -1, -1, -1]" in text  # the healthy band, lower edge (0.5)
    assert "    line [1, 1, 1, 1, 1, 1, 1]" in text  # and upper edge (2)
    # the window line: the geometric mean of the ratios so far, from the 3rd sample on (2.466,
    # 3.310 ... 5.600); before it, the sample's own ratio (1 and 2.5)
    assert "    line [0, 1.321928, 1.302297, 1.726723, 2.045764, 2.302297, 2.485535]" in text
    assert "green lines: the healthy band 0.5–2.0; orange: collapse below 0.2 and above 5.0" in text


def test_report_markdown_is_inert(outputs: dict) -> None:
    text = outputs["report"].stdout.decode()
    outside = _outside_code(text)
    assert "<img" not in outside and "<script" not in outside and "<b>" not in outside
    assert "@everyone" not in outside
    for block in re.findall(r"```mermaid\n(.*?)```", text, re.S):
        assert "img" not in block and "everyone" not in block and "script" not in block
    if render is not None:
        _inert_html(render(text))


def test_healthy_report_markdown(outputs: dict) -> None:
    text = outputs["healthy"].stdout.decode()
    assert text.startswith("## \N{WHITE HEAVY CHECK MARK} gradlog: Healthy in run ` ok `")
    assert "- \N{WHITE HEAVY CHECK MARK} No findings." in text


def test_batch_markdown_is_inert_and_complete(outputs: dict, hostile: dict[str, Path]) -> None:
    result = outputs["batch"]
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.startswith("## \N{CROSS MARK} gradlog batch: 1 of 2 runs need attention")
    assert "**2 runs in 2 files: 1 collapse, 1 healthy**" in text
    assert (
        "| # | Status | Run | File | Tasks | Events | Epochs | Window ratio | Spread "
        "| Worst spread | First imbalance | First collapse | Mean norm ± std | Peak max norm "
        "| Weights |"
    ) in text
    assert "### Findings" in text and "collapse from Epoch 35" in text
    assert "final spread 5.60" in text
    assert "Try ` --loss-alpha" not in text  # task names are not pointer/type
    # the spreads 5.60 and 1.0025 as log2: 2.49 and 0.0036
    assert "xychart-beta" in text and "bar [2.485535, 0.003625]" in text
    outside = _outside_code(text)
    assert "<img" not in outside and "@everyone" not in outside and "<b>" not in outside
    if render is not None:
        html = render(text)
        _inert_html(html)
        assert "<strong>2 runs in 2 files: 1 collapse, 1 healthy</strong>" in html
        rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
        assert len(rows) == 3 and all(r.count("<t") == 15 for r in rows)


def test_compare_markdown_is_inert_and_complete(outputs: dict) -> None:
    result = outputs["compare"]
    assert result.returncode == 1, result.stderr  # the head collapsed: --fail-on collapse
    text = result.stdout.decode()
    assert text.startswith(
        "## \N{CROSS MARK} gradlog compare: regression past --fail-on collapse in 1 of 1 runs"
    )
    assert "| \N{WHITE HEAVY CHECK MARK} healthy | \N{CROSS MARK} collapse |" in text
    assert "| 1.00 → 5.60 | x5.59 higher | 0.2500 → 0.2500 | unchanged |" in text
    assert "### Details" in text and "collapse from Epoch 35" in text
    outside = _outside_code(text)
    assert "<b>" not in outside and "](http" not in outside and "@everyone" not in outside
    if render is not None:
        html = render(text)
        _inert_html(html)
        rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
        assert len(rows) == 2 and all(r.count("<t") == 8 for r in rows)


def test_markdown_numbers_are_the_reports(outputs: dict) -> None:
    (run,) = json.loads(outputs["json"].stdout)["runs"]
    text = outputs["report"].stdout.decode()
    assert f"{run['mean_norm']:.4f} ± {run['mean_norm_std']:.4f}" in text
    assert f"| Final window ratio | {run['window_ratio']:.2f} " in text
    assert f"| Final spread | {run['spread']:.2f} " in text
    assert f"| Worst spread | {run['worst_spread']:.2f} " in text
    assert f"| First collapse | {run['first_collapse']} |" in text
