"""Markdown that fits GitHub: ``--max-chars`` for a comment, ``--github``'s 1 MiB job summary.

A 500-run log is far over both; the real command line cuts it between runs, keeps the worst,
ends with a note, and what it writes renders whole through GitHub's engine (cmarkgfm).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from runlogs import gradlog, gradlog_many, write_run

from gradlog.analysis.output import for_document
from gradlog.analysis.render.fit import Runs, comment_limit, fit, summary_limit
from gradlog.errors import GradlogError

try:
    import cmarkgfm
    from cmarkgfm.cmark import Options
except ImportError:  # pragma: no cover - the test extra installs it
    cmarkgfm = None

LIMIT = 65_536
N = 500
COLLAPSE = [1.0, 8.0, 9.0, 12.0]
NOTE = re.compile(
    r"\*\*Note:\*\* (\d+) of 500 runs left out to fit GitHub's 65,536-character limit for a "
    r"comment; the full report is in the artifact gradlog-report\.\n\Z"
)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """500 runs, every fifth a collapse; the odd ones' ids hold a no-break space, which the
    output boundary writes as a visible ``\\xa0`` (four characters for one). Beside it, the
    same runs where every seventh healthy one collapsed: a comparison with runs that got worse."""
    root = tmp_path_factory.mktemp("fit")
    for i in range(N):
        name = f"run\u00a0{i:03d}" if i % 2 else f"run-{i:03d}"
        healthy = [1.0, 1.1, 0.9, 1.0]
        write_run(root / "many.jsonl", COLLAPSE if i % 5 == 0 else healthy, run=name)
        worse = i % 5 == 0 or i % 7 == 0
        write_run(root / "head.jsonl", COLLAPSE if worse else healthy, run=name)
    return root / "many.jsonl"


@pytest.fixture(scope="module")
def fitted(many: Path) -> dict:
    where = ("--full-report", "in the artifact gradlog-report")
    calls = {
        "report": ["report", str(many), "--format", "markdown", "--max-chars", str(LIMIT), *where],
        "batch": ["batch", str(many), "--format", "markdown", "--max-chars", str(LIMIT), *where],
        "compare": [
            "compare",
            str(many),
            str(many.with_name("head.jsonl")),
            "--format",
            "markdown",
            "--max-chars",
            "20000",
        ],
    }
    return dict(zip(calls, gradlog_many(list(calls.values()))))


def _rendered(text: str) -> str:
    assert utf16(text) <= LIMIT
    if cmarkgfm is None:
        return ""
    return cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)


def test_a_500_run_report_fits_one_comment_with_the_worst_runs_and_the_note(fitted) -> None:
    proc = fitted["report"]
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    left_out = int(NOTE.search(text).group(1))
    kept = re.findall(r"^### (\S+) gradlog: ([^`]+) in run ` (.+?) `", text, re.M)
    assert len(kept) == N - left_out > 10
    assert {status for _, status, _ in kept} == {"Task collapse"}  # the worst kept first
    numbers = [int(name[-3:]) for _, _, name in kept]
    assert numbers == sorted(numbers) and all(n % 5 == 0 for n in numbers)  # in file order
    assert "run\\xa0005" in text  # measured as written: the escape's four characters
    assert text.startswith("## ❌ gradlog: 500 runs in ")
    html = _rendered(text)
    if html:
        assert html.count("<h3>") == len(kept)
        assert html.count("<table>") == len(kept)
        assert html.count("```") == 0 and html.count("<pre") >= len(kept)  # charts closed
        assert "500 runs left out to fit" in html


def test_a_500_row_batch_fits_one_comment_worst_rows_first(fitted) -> None:
    proc = fitted["batch"]
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    left_out = int(NOTE.search(text).group(1))
    rows = re.findall(r"^\| (\d+) \| (\S+) (\w[\w ]*) \|", text, re.M)
    assert [int(i) for i, _, _ in rows] == list(range(1, N - left_out + 1))
    assert N - left_out > 100  # more than the 100 rows of the uncut default
    statuses = [s for _, _, s in rows]
    assert statuses == sorted(statuses, key=lambda s: s != "collapse")  # worst first
    assert "and 0 more runs" not in text and "more runs (use" not in text
    html = _rendered(text)
    if html:
        assert html.count("<tr>") == len(rows) + 1


def test_a_500_run_comparison_keeps_the_runs_that_got_worse(fitted) -> None:
    proc = fitted["compare"]
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert utf16(text) <= 20_000
    note = re.search(r"\*\*Note:\*\* (\d+) of 500 runs left out to fit 20,000 characters", text)
    changes = re.findall(r"^\| ` run.+? \| .+? \| .+? \| \S+ (\w+) \|", text, re.M)
    assert len(changes) == N - int(note.group(1))
    worse = sum(1 for i in range(N) if i % 7 == 0 and i % 5 != 0)
    assert changes.count("worse") == worse < len(changes)  # every one kept, in file order
    _rendered(text)


def test_the_job_summary_keeps_under_1_mib_with_what_the_step_wrote_before(
    many: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * ((1 << 20) - 30_000) + "\n", encoding="utf-8")
    before = summary.stat().st_size
    proc = gradlog(
        "report",
        str(many),
        "--github",
        "--format",
        "markdown",
        "-o",
        str(tmp_path / "full.md"),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert summary.stat().st_size <= 1 << 20
    added = summary.read_bytes()[before:].decode("utf-8")
    assert (
        "runs left out to fit GitHub's 1 MiB limit for a job summary; the full report is in "
        in added
    )
    assert "full.md." in added  # the file named, as text (Markdown does not act on this dot)
    full = (tmp_path / "full.md").read_text(encoding="utf-8")
    assert "left out" not in full and full.count("\n### ") == N


def test_max_chars_is_refused_where_it_cannot_apply(many: Path) -> None:
    text_format, too_small = gradlog_many(
        [
            ["report", str(many), "--max-chars", "1000"],
            ["batch", str(many), "--format", "markdown", "--max-chars", "200"],
        ]
    )
    for proc, expected in [
        (text_format, "--max-chars: applies to --format markdown only"),
        (too_small, "does not fit 200 characters even without any run"),
    ]:
        err = proc.stderr.decode()
        assert proc.returncode == 2 and expected in err, err
        assert "Traceback" not in err


# -- the function ---------------------------------------------------------------------------


def _doc(sizes: list[int]) -> Runs:
    pieces = [f"{chr(65 + i)}" * n + "\n" for i, n in enumerate(sizes)]
    return Runs(
        len(pieces),
        lambda keep: "head\n" + "".join(pieces[i] for i in keep),
        order=sorted(range(len(sizes)), key=lambda i: -sizes[i]),  # "worst" = largest here
    )


def test_fit_keeps_whole_runs_in_priority_order_shown_in_document_order() -> None:
    doc = _doc([100, 3000, 200, 2000, 300])  # with the head, 5,610 characters
    assert fit(doc, comment_limit(10_000, "x")) == doc.whole()  # it fits: untouched
    note = (
        "\n**Note:** 2 of 5 runs left out to fit 5,500 characters (--max-chars); "
        "the full report is in the artifact.\n"
    )
    shown = "head\n" + "B" * 3000 + "\n" + "D" * 2000 + "\n" + "E" * 300 + "\n"
    assert len(shown + note) == 5415  # and with C, the next largest, 5,616
    assert fit(doc, comment_limit(5500, "in the artifact")) == shown + note


def test_fit_measures_what_leaves_and_counts_bytes_for_the_summary() -> None:
    doc = Runs(3, lambda keep: "".join("é\u00a0" * 50 + "\n" for _ in keep))
    plain = fit(doc, comment_limit(250, "y"))
    escaped = fit(doc, comment_limit(250, "y"), for_document)
    assert plain.count("é") == 50 and escaped.count("é") == 0  # 4 characters a \xa0
    assert utf16(for_document(escaped)) <= 250
    summary = fit(doc, summary_limit(300, "z"))
    assert len(summary.encode()) <= 300 and "1 MiB limit for a job summary" in summary
    with pytest.raises(GradlogError, match="even without any run"):
        fit(doc, comment_limit(50, "y"))
