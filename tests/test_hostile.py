"""Hostile logs: a log is data, never code; its size is bounded; its text is never obeyed.

Logs come from forks' pull requests and shared disks. Nothing in one may run code, exhaust the
memory, drive the terminal that shows the report (escape sequences, a clipboard write, a
reversed line), become HTML, a link or a mention in a pull-request comment, or a formula in a
spreadsheet. Every renderer and every output of the command line is run here over such text in
run ids, task names, tags and file names.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_LOGS
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlog.analysis import api
from gradlog.analysis.engine import Options
from gradlog.analysis.output import Output, for_document, for_terminal
from gradlog.analysis.readers import read_log
from gradlog.analysis.render import md
from gradlog.analysis.render.batch import COLUMNS
from gradlog.analysis.render.text import format_text, text_blocks
from gradlog.analysis.report import MAX_RUNS, analyse
from gradlog.errors import GradlogError, LogFormatError
from gradlog.format import MAX_LINE_BYTES, MAX_TASKS
from gradlog.recorder.writers import JsonlWriter

PACKAGE = Path(__file__).resolve().parent.parent / "gradlog"

# -- what must never come out raw ---------------------------------------------------------------

# Bidirectional controls (the override U+202E reverses what follows; the isolates nest it) and
# the line and paragraph separators some terminals and editors break lines at.
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
SEPARATORS = {"\u2028", "\u2029"}


def raw_controls(text: str) -> list[str]:
    """Characters a terminal, an editor or a browser would obey: C0 but the newline (a tab and
    a carriage return included), DEL, C1 (U+009B is an 8-bit CSI), bidi controls."""
    return [
        c
        for c in text
        if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 or c in BIDI or c in SEPARATORS
    ]


def assert_inert(data: bytes | str, what: str = "") -> str:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    bad = raw_controls(text)
    assert not bad, (what, sorted(set(bad)), text[:300])
    return text


# -- the payloads ---------------------------------------------------------------------------------

ESC_CLEAR = "\x1b[2J"
CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"  # OSC 52: writes "pwned" to the clipboard
# BEL, an 8-bit CSI, the bidi override, line breaks, a tab, DEL, NEL (C1), a bidi isolate and
# the line separator (NUL too, where no command line has to carry it)
CONTROLS = ESC_CLEAR + CLIPBOARD + "\x07\x9b31m\u202e\n\r\t\x7f\x85\u2066\u2028"
SCRIPT = "<script>alert(1)</script>"
LINK = "[x](javascript:alert(1))"
FORMULA = '=HYPERLINK("http://evil.example","x")'

RUN_IDS = [
    FORMULA + CONTROLS + "\x00",
    "+1" + SCRIPT,
    "-1+2" + LINK + "|",
    "@SUM(A1)@mention" + CONTROLS,
    "\tlead-->" + SCRIPT,
    "\rlead" + ESC_CLEAR,
]
TASKS = [
    '=cmd|" /C calc"!A0' + CONTROLS + "\x00",
    "+t" + SCRIPT,
    "@mention\u202e" + LINK + "|",
]
TAGS = [
    {"key": "k" + CONTROLS + SCRIPT, "value": "=v" + CONTROLS},
    {"key": "@k|", "value": "-v" + LINK},
]
# File names: everything but "/" and NUL; no glob characters ([ * ?) here: those are the
# subject of their own test below
FILE_LOG = (
    '=HYPERLINK("evil")' + "\x1b]52;c;cHduZWQ=\x07\x9b31m\u202e\r\t\x7f\x85<script>@mention|.jsonl"
)
FILE_BROKEN = "@SUM(A1)\x1b]0;title\x07\nforged\u202eline.jsonl"
MISSING_RUN = "nope" + CONTROLS
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SKIPPED = "=views" + CONTROLS + "Error: forged"  # why a recorder skipped a sample


def write_log(path: Path, scale: float) -> Path:
    """Six runs of hostile ids (two or three hostile task names, hostile tags), collapsing by
    ``scale``, written by the real writer; then a broken line, whose note names the file."""
    writer = JsonlWriter(path)
    for k, rid in enumerate(RUN_IDS):
        tasks = TASKS[: 2 + k % 2]
        writer.write({"v": 1, "run": rid, "kind": "run", "meta": {"tasks": tasks, "tags": TAGS}})
        for e in range(1, 6):
            norms = [scale * (k + 1) * (e + 1), *(0.1 * (i + 1) for i in range(len(tasks) - 1))]
            writer.write(
                {
                    "v": 1,
                    "run": rid,
                    "kind": "event",
                    "epoch": e,
                    "mean_norm": 0.2,
                    "max_norm": 0.5,
                    "tasks": [
                        {"name": t, "grad_norm": n, "weight": 1.0} for t, n in zip(tasks, norms)
                    ],
                }
            )
        writer.write({"v": 1, "run": rid, "kind": "event", "epoch": 6, "skipped": SKIPPED})
    writer.close()
    with open(path, "ab") as fh:
        fh.write(b"not json \x1b[2J\n")
    return path


def gradlog(*args: str, cwd: Path | None = None, env: dict | None = None):
    full = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    full.update({"NO_COLOR": "1", "COLUMNS": "80", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        capture_output=True,
        timeout=180,
        env=full,
        cwd=cwd,
    )


COMMANDS = {
    "report": ["report", FILE_LOG],
    "report-chart": ["report", FILE_LOG, "--chart", "--no-color"],
    "report-json": ["report", FILE_LOG, "--format", "json"],
    "report-markdown": ["report", FILE_LOG, "--format", "markdown"],
    "report-html": ["report", FILE_LOG, "--format", "html"],
    "report-o": ["report", FILE_LOG, "-o", "out/report.txt"],
    "batch": ["batch", FILE_LOG, FILE_BROKEN],
    "batch-json": ["batch", FILE_LOG, FILE_BROKEN, "--format", "json"],
    "batch-csv": ["batch", FILE_LOG, FILE_BROKEN, "--format", "csv"],
    "batch-markdown": ["batch", FILE_LOG, FILE_BROKEN, "--format", "markdown"],
    "batch-html": ["batch", FILE_LOG, FILE_BROKEN, "--format", "html"],
    "batch-o": ["batch", FILE_LOG, FILE_BROKEN, "-o", "out/batch.txt"],
    "batch-json-o": ["batch", FILE_LOG, FILE_BROKEN, "--format", "json", "-o", "out/batch.json"],
    "batch-csv-o": ["batch", FILE_LOG, FILE_BROKEN, "--format", "csv", "-o", "out/batch.csv"],
    "batch-markdown-o": [
        "batch",
        FILE_LOG,
        FILE_BROKEN,
        "--format",
        "markdown",
        "-o",
        "out/batch.md",
    ],
    "compare": ["compare", FILE_LOG, "head/" + FILE_LOG],
    "compare-json": ["compare", FILE_LOG, "head/" + FILE_LOG, "--format", "json"],
    "compare-markdown": ["compare", FILE_LOG, "head/" + FILE_LOG, "--format", "markdown"],
    "plot-html": ["plot", FILE_LOG, "--run", RUN_IDS[3], "-o", "out/x.html"],
    "plot-svg": ["plot", FILE_LOG, "--run", RUN_IDS[1], "-o", "out/x.svg"],
    "missing-run": ["report", FILE_LOG, "--run", MISSING_RUN],
    "broken-file": ["report", FILE_BROKEN],
    "missing-file": ["report", "gone" + CONTROLS + ".jsonl"],
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Every command of :data:`COMMANDS`, run once, in parallel, in a folder of hostile logs."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "out").mkdir()
    (root / "head").mkdir()
    write_log(root / FILE_LOG, 1.0)
    write_log(root / "head" / FILE_LOG, 0.01)  # the head is balanced where the base collapses
    (root / FILE_BROKEN).write_bytes(b'{"v":1,"run":"a\x1b[2J","kind":"event","epoch":"x"}\n')
    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(COMMANDS, pool.map(lambda a: gradlog(*a, cwd=root), COMMANDS.values())))
    return root, done


EXPECTED_CODE = {"missing-run": 2, "broken-file": 2, "missing-file": 2}


def test_every_output_and_file_is_inert(hostile) -> None:
    root, done = hostile
    for name, result in done.items():
        batch = name.startswith("batch")  # the broken file is an error row: exit 2
        expected = 2 if batch else EXPECTED_CODE.get(name, 0)
        assert result.returncode == expected, (name, result.stderr.decode())
        assert_inert(result.stdout, name)
        assert_inert(result.stderr, name)
        assert b"Traceback" not in result.stderr and b"internal error" not in result.stderr
    written = sorted((root / "out").iterdir())
    expected = ["report.txt", "batch.txt", "batch.json", "batch.csv", "batch.md", "x.html"]
    assert [p.name for p in written] == sorted([*expected, "x.svg"])
    for path in written:
        assert_inert(path.read_bytes(), path.name)


def test_stderr_is_one_line_per_note_or_error(hostile) -> None:
    _, done = hostile
    notes = done["report"].stderr.decode().splitlines()
    # the broken line's note, then one per run for its skipped sample
    assert len(notes) == 1 + len(RUN_IDS) and all(n.startswith("Note: ") for n in notes), notes
    assert for_terminal(FILE_LOG) in notes[0]  # the file named, visibly escaped
    assert all(for_terminal(SKIPPED) in note for note in notes[1:])
    for name in ("missing-run", "broken-file", "missing-file"):
        err = done[name].stderr.decode()
        assert err.startswith("Error: ") and err.count("\n") == 1, (name, err)
        assert done[name].stdout == b""
    assert for_terminal(MISSING_RUN) in done["missing-run"].stderr.decode()
    assert "\\nforged\\u202eline" in done["broken-file"].stderr.decode()  # one line, shown


def test_text_report_shows_the_text_escaped(hostile) -> None:
    _, done = hostile
    out = done["report"].stdout.decode()
    assert f"=== Run {for_terminal(RUN_IDS[0])} (" in out
    assert "\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\x07\\x9b31m\\u202e\\n\\r\\t\\x7f\\x85" in out
    assert "\\x00" in out
    assert SCRIPT in out  # text stays text: nothing to escape for a terminal
    chart = done["report-chart"].stdout.decode()
    assert chart.startswith(out.rstrip("\n"))
    assert (Path(hostile[0]) / "out" / "report.txt").read_text() == out


def test_json_outputs_keep_the_exact_text(hostile) -> None:
    root, done = hostile
    for name in ("report-json", "batch-json", "compare-json"):
        done[name].stdout.decode("ascii")  # every non-ASCII character escaped the JSON way
    report = json.loads(done["report-json"].stdout)
    assert report["path"] == FILE_LOG
    assert [r["run"] for r in report["runs"]] == RUN_IDS
    for k, run in enumerate(report["runs"]):
        assert run["tasks"] == TASKS[: 2 + k % 2]
        assert run["tags"] == {t["key"]: t["value"] for t in TAGS}
        assert run["dominant"] == TASKS[0]
        assert set(run["events"]["norms"]) == set(run["tasks"])
    assert any(FILE_LOG in n for n in report["notes"])
    batch = json.loads(done["batch-json"].stdout)
    assert batch == json.loads((root / "out" / "batch.json").read_text())
    rows = batch["runs"]
    assert sorted(r["run"] for r in rows if r["error"] is None) == sorted(RUN_IDS)
    assert {r["file"] for r in rows} == {FILE_LOG, FILE_BROKEN}
    error = next(r for r in rows if r["error"] is not None)
    assert error["file"] == FILE_BROKEN and error["error"].startswith(FILE_BROKEN + ":1: ")
    for row in rows:
        if row["error"] is None:
            assert row["tasks"] == TASKS[: len(row["tasks"])]
            assert row["flags"] is not None and TASKS[1] in row["flags"]
    compared = json.loads(done["compare-json"].stdout)
    runs = [(p["base"]["run"], p["head"]["run"]) for p in compared["pairs"]]
    assert sorted(runs) == sorted((r, r) for r in RUN_IDS)
    assert {p["change"] for p in compared["pairs"]} == {"better"}


def _formula_safe(value: str) -> str:
    """What a CSV cell must hold for text from a log (gradlog.analysis.output's rule, spelled out)."""
    if value.startswith(FORMULA_START):
        value = "'" + value
    return for_terminal(value)


def test_csv_cells_are_never_formulas_and_rows_never_split(hostile) -> None:
    root, done = hostile
    text = done["batch-csv"].stdout.decode()
    assert (root / "out" / "batch.csv").read_text() == text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS)
    assert len(rows) == 1 + len(RUN_IDS) + 1  # the header, each run, the unreadable file
    assert all(len(row) == len(COLUMNS) for row in rows)
    cells = [dict(zip(COLUMNS, row)) for row in rows[1:]]
    for cell in cells:
        for value in cell.values():  # only numbers may start like a formula
            if value.startswith(FORMULA_START):
                float(value)
    runs = [c for c in cells if c["status"] != "error"]
    assert sorted(c["run"] for c in runs) == sorted(_formula_safe(r) for r in RUN_IDS)
    for c in runs:
        assert c["file"] == _formula_safe(FILE_LOG)
        assert c["tasks"].startswith(_formula_safe(TASKS[0] + ";"))
        assert c["dominant"] == _formula_safe(TASKS[0])
        assert c["flags"].startswith("'" + for_terminal(TASKS[0]))
    (error,) = [c for c in cells if c["status"] == "error"]
    assert error["file"] == _formula_safe(FILE_BROKEN)
    assert error["error"].startswith(_formula_safe(FILE_BROKEN + ":1: "))


def _markdown_html(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def check_markdown(text: str, what: str) -> None:
    """Nothing from the log becomes HTML, a link, a mention or a table cell of its own."""
    assert_inert(text, what)
    # text from the log is made inert by Markdown's own means, never shown as escape codes
    # (the word joiner that breaks a mention, U+2060, is one character, never "\\u2060")
    assert not re.findall(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4})", text), what
    # rendered as GitHub would (raw HTML passed through): what was raw shows as a tag
    html = _markdown_html(text)
    assert "<script" not in html.lower() and "<a " not in html and "<img" not in html, what
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    assert "@mention" not in outside_code, what  # GitHub links mentions outside code only
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        header = len(re.findall(r"<th[ >]", table))
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]:
            assert len(re.findall(r"<td[ >]", row)) == header, (what, row)


def test_markdown_is_escaped(hostile) -> None:
    root, done = hostile
    for name in ("report-markdown", "batch-markdown", "compare-markdown"):
        check_markdown(done[name].stdout.decode(), name)
    assert (root / "out" / "batch.md").read_text() == done["batch-markdown"].stdout.decode()


def test_tables_keep_one_line_per_row(hostile) -> None:
    root, done = hostile
    for name in ("batch", "compare"):
        out = done[name].stdout.decode()
        assert "\\x1b]52;c;cHduZWQ=\\x07" in out or "\\x1b" in out, (name, out[:400])
    # a pipe or a file gets every column, however wide (as --wide does)
    for table in (done["batch"].stdout.decode(), (root / "out" / "batch.txt").read_text()):
        lines = table.splitlines()
        # the header, its rule, each run and the unreadable file on one line, the summary
        assert [line.split(" ")[0] for line in lines[2:9]] == ["error"] + ["collapse"] * 6
        assert len(lines) == 11 and lines[9] == "", table


def test_pictures_hold_no_raw_text(hostile) -> None:
    root, _ = hostile
    page = (root / "out" / "x.html").read_text(encoding="utf-8")
    (title,) = re.findall(r"<title>(.*?)</title>", page, flags=re.S)
    assert not raw_controls(title) and "<" not in title
    assert title.startswith("gradlog: run @SUM(A1)@mention\\x1b[2J\\x1b]52;c;"), title
    for picture in ("x.html", "x.svg"):
        text = assert_inert((root / "out" / picture).read_bytes(), picture)
        assert "<script" not in text.lower(), picture


def test_a_file_name_with_glob_characters_is_read_as_named(tmp_path: Path) -> None:
    """``[``, ``*`` and ``?`` in a file name (an escape sequence holds ``[``) are the name,
    never a pattern: report and batch read the file given, or found in a folder."""
    name = "log" + ESC_CLEAR + LINK + "*?.jsonl"
    write_log(tmp_path / name, 1.0)
    report = gradlog("report", name, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["path"] == name
    for named in (name, str(tmp_path)):
        batch = gradlog("batch", named, "--format", "json", cwd=tmp_path)
        assert batch.returncode == 0, batch.stderr
        rows = json.loads(batch.stdout)["runs"]
        assert sorted(r["run"] for r in rows) == sorted(RUN_IDS)
        assert {Path(r["file"]).name for r in rows} == {name}
        assert_inert(batch.stdout + batch.stderr)
    assert_inert(report.stderr)


# -- output encodings and closed pipes -------------------------------------------------------


def test_an_ascii_terminal_gets_a_replacement_not_a_crash() -> None:
    result = gradlog(
        "report", str(SAMPLE_LOGS / "healthy.jsonl"), env={"PYTHONIOENCODING": "ascii"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    out = result.stdout.decode("ascii")
    assert re.search(r"  Mean gradient norm: \d\.\d{4} \? \d\.\d{4}\n", out), out


def _first_line_then_close(log: Path) -> tuple[bytes, int, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlog", "report", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    line = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head -1` does
    err = proc.stderr.read()
    proc.stderr.close()
    return line, proc.wait(timeout=120), err


def test_a_closed_pipe_ends_quietly_with_141(tmp_path: Path) -> None:
    # healthy.jsonl's whole report (under 1 kB) fits in the pipe: it may be written before the
    # reader goes away (exit 0), else the next write finds the pipe closed (exit 141)
    line, code, err = _first_line_then_close(SAMPLE_LOGS / "healthy.jsonl")
    assert line.startswith(b"[PHASE 4] Gradient monitoring enabled")
    assert code in (0, 141) and err == b"", (code, err)
    # a report far larger than a pipe holds is still being written when the reader leaves
    big = tmp_path / "big.jsonl"
    writer = JsonlWriter(big)
    for e in range(1, 3001):
        writer.write({"v": 1, "run": "r", "kind": "event", "epoch": e, "mean_norm": 0.2,
                      "max_norm": 0.5})  # fmt: skip
    writer.close()
    line, code, err = _first_line_then_close(big)
    assert line.startswith(b"[PHASE 4] Gradient monitoring enabled")
    assert (code, err) == (141, b"")


# -- the output boundary: small pure functions ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pointer", "pointer"),
        ("café 任务 ±", "café 任务 ±"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("title\x1b]0;x\x07", "title\\x1b]0;x\\x07"),
        ("clip\x1b]52;c;cHduZWQ=\x07", "clip\\x1b]52;c;cHduZWQ=\\x07"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("tab\tdel\x7f", "tab\\tdel\\x7f"),
        ("lone\udce9", "lone\\udce9"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("sep\u2028x", "sep\\u2028x"),
    ],
)
def test_for_terminal(text: str, shown: str) -> None:
    assert for_terminal(text) == shown


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None)))
def test_for_terminal_output_is_printable_and_stable(text: str) -> None:
    shown = for_terminal(text)
    assert shown.isprintable()
    assert for_terminal(shown) == shown
    if text.isprintable():
        assert shown == text
    document = for_document(text)
    # the word joiner is Markdown escaping's own (md.escape, after "@" and "#"), kept; md
    # turns a log's into a space before escaping (test_markdown)
    assert all(c.isprintable() or c in "\n\u2060" for c in document)
    assert document.count("\n") == text.count("\n")


hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("=+-@\t\r\n,\"'|<>[]()`*_#\\\x1b\x07\x9b\x00\u202e\u2028")),
        st.characters(codec="utf-8"),
    ),
    max_size=30,
)


def _stdout_of(write) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        write(Output())
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(hostile_text, min_size=3, max_size=3), max_size=4))
def test_output_csv_and_json_keep_rows_and_data(rows: list[list[str]]) -> None:
    text = _stdout_of(lambda out: out.csv(["a", "b", "c"], rows))
    assert_inert(text)
    read = list(csv.reader(io.StringIO(text)))
    assert read == [["a", "b", "c"], *([_formula_safe(v) for v in row] for row in rows)]
    text = _stdout_of(lambda out: out.json({"rows": rows}))
    text.encode("ascii")
    assert json.loads(text) == {"rows": rows}


@settings(max_examples=150, deadline=None)
@given(hostile_text)
def test_markdown_escapes_keep_one_cell(text: str) -> None:
    table = md.table(["a", "b", "c"], [[md.escape(text), md.code(text), "x"]])
    prose = f"- {md.escape(text)} and {md.code(text, in_table=False)}"
    document = "\n".join(["", *table, "", prose, ""])
    assert not raw_controls(document)
    html = _markdown_html(document)
    assert "<script" not in html.lower() and "<a " not in html and "<img" not in html
    (row,) = re.findall(r"<tbody>\s*<tr>(.*?)</tr>", html, flags=re.S)
    assert len(re.findall(r"<td[ >]", row)) == 3, (text, table)


# -- a log is data, never code --------------------------------------------------------------

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}


def _modules() -> list[Path]:
    """Every module of the package, readers and renderers and the recorder alike."""
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_can_run_code_from_a_log(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{module.name}: {node.func.id}()"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{module.name}: {name}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in {"read_pickle", "loads_pickle", "unsafe_load"}, module.name


def test_code_in_a_log_stays_text(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = f"__import__('os').system('touch {marker}')"
    records = [
        {
            "v": 1,
            "run": payload,
            "kind": "run",
            "meta": {
                "tasks": [payload, "type"],
                "model": f"{{{{ {payload} }}}}",
                "tags": [{"key": "!!python/object/apply:os.system", "value": payload}],
            },
        },
        *[
            {
                "v": 1,
                "run": payload,
                "kind": "event",
                "epoch": e,
                "__class__": payload,
                "tasks": [
                    {"name": payload, "grad_norm": 1.0},
                    {"name": "type", "grad_norm": 0.1},
                ],
            }
            for e in (5, 10, 15)
        ],
    ]
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "run.parquet"
    # Parquet key-value metadata is where pandas keeps pickles: gradlog never reads it
    read_log(path).frame.write_parquet(parquet, metadata={"pandas": payload, "pickle": payload})
    calls = [(str(path), "json"), (str(parquet), "text")]
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda c: gradlog("report", c[0], "--format", c[1], cwd=tmp_path), calls)
        )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert payload.split("(")[0] in result.stdout.decode()
    assert not marker.exists()


# -- sizes are bounded ------------------------------------------------------------------------


def _peak_rss_mb(code: str) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter; its peak memory (MiB) and what it printed."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import sys
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so it would
        # report the (large) pytest process that forked this one.
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        print(int(hwm.split()[1]) // 1024, file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, text=True
    )
    assert result.returncode == 0, result.stderr
    return int(result.stderr.strip().splitlines()[-1]), result.stdout


READ_AND_PRINT = """
from gradlog.errors import GradlogError
from gradlog.analysis.readers import read_log
try:
    read_log({path!r})
    print("read")
except GradlogError as exc:
    print(exc)
"""


def test_a_10_gb_single_line_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:  # sparse: 10 GB on paper, nothing on disk
        fh.write(b'{"v":1,"run":"r","kind":"event","x":"')
        fh.truncate(10 * 2**30)
    peak, out = _peak_rss_mb(READ_AND_PRINT.format(path=str(path)))
    assert out.strip() == (
        f"{path}:1: line is longer than 16 MiB, the limit for one record; refusing to read it"
    )
    assert peak < 400, f"peak memory {peak} MiB"


def test_a_runaway_line_amid_good_ones_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    good = b'{"v":1,"run":"r","kind":"event","epoch":1}\n'
    with open(path, "wb") as fh:
        fh.write(good * 1000)
        fh.write(b'{"v":1,"run":"r","kind":"event","x":"' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n')
        fh.write(good)
    with pytest.raises(LogFormatError, match=r":1001: line is longer than 16 MiB"):
        read_log(path)


def test_a_line_just_under_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    pad = MAX_LINE_BYTES - 100
    path.write_bytes(
        b'{"v":1,"run":"r","kind":"event","pad":"' + b"a" * pad + b'"}\n'
        b'{"v":1,"run":"r","kind":"event","epoch":2}\n'
    )
    assert read_log(path).frame.height == 2


def test_a_gzip_bomb_is_refused_while_decompressing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    with open(path, "wb") as fh:
        for _ in range(256):  # 256 MiB of zeros without a newline, 250 kB on disk
            fh.write(packer.compress(zeros))
        fh.write(packer.flush())
    peak, out = _peak_rss_mb(READ_AND_PRINT.format(path=str(path)))
    assert "line is longer than 16 MiB" in out
    assert peak < 400, f"peak memory {peak} MiB"


def test_a_runaway_line_on_stdin_is_refused() -> None:
    data = b'{"v":1,"run":"r","kind":"event","x":"' + b"a" * (MAX_LINE_BYTES + 1)
    result = subprocess.run(
        [sys.executable, "-m", "gradlog", "report", "-"],
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "Error: <stdin>:1: line is longer than 16 MiB, the limit for one record; refusing to read it\n"
    )


def test_a_million_tasks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    tasks = ",".join(f'{{"name":"t{i}","grad_norm":1}}' for i in range(1_000_000))
    path.write_text('{"v":1,"run":"r","kind":"event","tasks":[' + tasks + "]}\n")
    with pytest.raises(LogFormatError, match="line is longer than 16 MiB"):
        read_log(path)
    small = tmp_path / "small.jsonl"
    tasks = ",".join(f'{{"name":"{i}","grad_norm":1}}' for i in range(MAX_TASKS + 1))
    small.write_text('{"v":1,"run":"r","kind":"event","tasks":[' + tasks + "]}\n")
    with pytest.raises(LogFormatError, match=r":1: field 'tasks': 1,001 entries in one record"):
        read_log(small)


def test_too_many_distinct_tasks_in_one_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    with open(path, "w") as fh:
        for part in range(3):  # 3 x 400 names, each record within its own limit
            tasks = [{"name": f"t{part}-{i}", "grad_norm": 1.0} for i in range(400)]
            fh.write(json.dumps({"v": 1, "run": "r", "kind": "event", "tasks": tasks}) + "\n")
    with pytest.raises(GradlogError, match="more than 1,000 distinct task names"):
        analyse(read_log(path))


def test_too_many_runs_in_one_report_is_refused_but_one_can_be_picked(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    with open(path, "w") as fh:
        for i in range(MAX_RUNS + 1):
            fh.write(json.dumps({"v": 1, "run": f"r{i}", "kind": "event", "epoch": 1}) + "\n")
    log = read_log(path)
    with pytest.raises(GradlogError, match=r"10,001 runs in one file .* pick one with --run"):
        analyse(log)
    assert [r.run_id for r in analyse(log, Options(), run="r77").runs] == ["r77"]


def test_many_tasks_within_the_limits_are_analysed_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    names = [f"t{i}" for i in range(MAX_TASKS)]
    with open(path, "w") as fh:
        for epoch in range(1, 6):
            tasks = [{"name": n, "grad_norm": 1.0 + i} for i, n in enumerate(names)]
            fh.write(
                json.dumps({"v": 1, "run": "r", "kind": "event", "epoch": epoch, "tasks": tasks})
                + "\n"
            )
    result = analyse(read_log(path))
    run = result.runs[0]
    assert run.summary.n_balance == 5
    assert run.norms(f"t{MAX_TASKS - 1}").to_list() == [float(MAX_TASKS)] * 5
    assert run.summary.spread == pytest.approx(float(MAX_TASKS))


# -- in-process renderers over hostile text ---------------------------------------------------


@pytest.fixture
def hostile_log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "run.jsonl", 1.0)


def test_coloured_output_is_neutralised_too(
    hostile_log: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    report = api.analyse(hostile_log)
    out = Output(color=True)
    out.blocks(text_blocks(report))
    from gradlog.analysis.render.batch import batch_table

    out.table(batch_table([r.summary for r in report.runs]))
    captured = capsys.readouterr().out
    assert "\x1b[" in captured  # coloured, by Rich
    ours = re.sub(r"\x1b\[[0-9;]*m", "", captured)  # Rich's own colour codes are allowed
    assert_inert(ours)
    assert ESC_CLEAR not in captured and "\x1b]" not in captured


def test_in_process_renderers_return_escapable_text(hostile_log: Path) -> None:
    from gradlog.analysis.render.chart import ratio_chart
    from gradlog.analysis.render.markdown import format_markdown

    report = api.analyse(hostile_log)
    assert_inert(for_document(format_text(report)))
    for run in report.runs:
        for line, _ in ratio_chart(run):
            assert_inert(for_terminal(line))
    check_markdown(format_markdown(report), "format_markdown")
    check_markdown(report._repr_markdown_(), "_repr_markdown_")
    # the data keeps the text exactly
    assert [r.run_id for r in report.runs] == RUN_IDS
    frame = report.to_polars()
    assert frame.get_column("run").to_list() == RUN_IDS


def test_hostile_parquet_text_is_neutralised(hostile_log: Path) -> None:
    parquet = hostile_log.with_suffix(".parquet")
    read_log(hostile_log).frame.write_parquet(parquet)
    result = gradlog("report", str(parquet))
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout + result.stderr)
    assert f"=== Run {for_terminal(RUN_IDS[3])} (" in result.stdout.decode()


def test_gzip_member_with_hostile_name_field(hostile_log: Path) -> None:
    path = hostile_log.with_name("run.jsonl.gz")
    path.write_bytes(gzip.compress(hostile_log.read_bytes()))
    frame = read_log(path).frame
    assert isinstance(frame, pl.DataFrame) and frame.height == 6 * 7  # a run, six events
