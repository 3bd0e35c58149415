"""Hostile logs: a log is data, never code; its size is bounded; its text is never obeyed.

Logs come from forks' pull requests and shared disks. Nothing in one may run code, exhaust the
memory, or drive the terminal that shows the report.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import subprocess
import sys
import textwrap
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlog.analysis import analyse
from gradlog.errors import GradlogError, LogFormatError
from gradlog.readers import read_log
from gradlog.render.text import format_text
from gradlog.sanitize import for_terminal, json_safe
from gradlog.schema import MAX_LINE_BYTES, MAX_TASKS

PACKAGE = Path(__file__).resolve().parent.parent / "gradlog"

# What a terminal obeys: ESC (CSI, OSC, ...), BEL, the 8-bit CSI, backspace and carriage return
# (which overwrite what was shown), the bidirectional override, and a forged line break.
CONTROL = ["\x1b[2J", "\x1b]0;pwned\x07", "\x9b31m", "\b\b\b", "\r", "\u202e", "\n", "\x00"]
RAW_BYTES = [b"\x1b", b"\x07", b"\xc2\x9b", b"\x08", b"\r", b"\xe2\x80\xae", b"\x00"]


def gradlog(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def assert_no_raw_control(data: bytes) -> None:
    for raw in RAW_BYTES:
        assert raw not in data, (raw, data[:400])


# -- sanitize: one small pure function ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pointer", "pointer"),
        ("café 任务 ±", "café 任务 ±"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("title\x1b]0;x\x07", "title\\x1b]0;x\\x07"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("lone\udce9", "lone\\udce9"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
    ],
)
def test_for_terminal(text: str, shown: str) -> None:
    assert for_terminal(text) == shown


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None)))
def test_for_terminal_output_is_printable_and_stable(text: str) -> None:
    shown = for_terminal(text)
    assert shown.isprintable()
    assert for_terminal(shown) == shown
    if text.isprintable():
        assert shown == text


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.text() | st.floats(allow_nan=False) | st.integers(), st.lists, max_leaves=8))
def test_json_safe_keeps_the_data(data: object) -> None:
    text = json.dumps({"x": data}, ensure_ascii=False, indent=2)
    safe = json_safe(text)
    assert json.loads(safe) == json.loads(text)
    assert all(c.isprintable() or c == "\n" for c in safe)


# -- a log is data, never code --------------------------------------------------------------

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}


def _analyser_modules() -> list[Path]:
    """Every module that reads or renders logs (the recorder's torch side writes only)."""
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if p.name not in {"recorder.py", "norms.py", "capture.py", "distributed.py"}
    ]


@pytest.mark.parametrize("module", _analyser_modules(), ids=lambda p: p.name)
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
    calls = [(str(log), fmt) for log in (path, parquet) for fmt in ("text", "json")]
    with ThreadPoolExecutor(4) as pool:
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
from gradlog.readers import read_log
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
    from gradlog.analysis import MAX_RUNS, Options

    path = tmp_path / "runs.jsonl"
    with open(path, "w") as fh:
        for i in range(MAX_RUNS + 1):
            fh.write(json.dumps({"v": 1, "run": f"r{i}", "kind": "event", "epoch": 1}) + "\n")
    log = read_log(path)
    with pytest.raises(GradlogError, match=r"10,001 runs in one file .* pick one with --run"):
        analyse(log)
    assert [r.run_id for r in analyse(log, Options(run="r77")).runs] == ["r77"]


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
    assert result.runs[0].summary.n_balance == 5
    assert result.runs[0].events.norms[f"t{MAX_TASKS - 1}"] == [float(MAX_TASKS)] * 5


# -- text from a log never drives the terminal ------------------------------------------------


def _hostile_log(path: Path) -> Path:
    evil = "".join(CONTROL)
    tasks = [f"pointer{evil}", f"type{evil}"]
    records = [
        {
            "v": 1,
            "run": f"run{evil}",
            "kind": "run",
            "meta": {"tasks": tasks, "tags": [{"key": f"k{evil}", "value": f"v{evil}"}]},
        }
    ] + [
        {
            "v": 1,
            "run": f"run{evil}",
            "kind": "event",
            "epoch": e,
            "mean_norm": 0.2,
            "max_norm": 0.5,
            "tasks": [
                {"name": tasks[0], "grad_norm": r, "weight": 1.0},
                {"name": tasks[1], "grad_norm": 0.1, "weight": 1.0},
            ],
        }
        for e, r in ((5, 0.8), (10, 0.9), (15, 0.0))
    ]
    second = {**records[0], "run": "second"}
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in [*records, second])  # json escapes the controls
        + "not json {\x1b[2J}\n"  # a broken line: its note must not carry the escape either
    )
    return path


def test_hostile_text_is_neutralised_in_text_json_notes_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "logs\x1b[31m"
    folder.mkdir()
    path = _hostile_log(folder / "run\x1b]0;title\x07.jsonl")
    text = gradlog("report", str(path))
    assert text.returncode == 0, text.stderr
    assert_no_raw_control(text.stdout + text.stderr)
    out = text.stdout.decode()
    assert "=== Run run\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x08\\x08\\x08\\r\\u202e\\n\\x00 (" in out
    assert "Pointer\\x1b[2J" in out  # task names in the per-event and summary lines
    assert text.stderr.decode().startswith("Note: ")
    as_json = gradlog("report", str(path), "--format", "json")
    assert as_json.returncode == 0
    assert_no_raw_control(as_json.stdout + as_json.stderr)
    data = json.loads(as_json.stdout)
    evil = "".join(CONTROL)
    assert data["runs"][0]["run_id"] == f"run{evil}"  # the data itself is unchanged
    assert data["runs"][0]["tags"] == {f"k{evil}": f"v{evil}"}
    missing = gradlog("report", str(path), "--run", "nope")
    assert missing.returncode == 2
    assert_no_raw_control(missing.stdout + missing.stderr)
    assert missing.stderr.decode().count("\n") == 1
    broken = folder / "broken\x1b[2J.jsonl"
    broken.write_bytes(b'{"v":1,"run":"a\x1b[2J","kind":"event","epoch":"x"}\n')
    error = gradlog("report", str(broken))
    assert error.returncode == 2
    assert_no_raw_control(error.stdout + error.stderr)
    assert error.stderr.decode().count("\n") == 1


def test_rich_output_is_neutralised_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gradlog.cli import _print_text

    result = analyse(read_log(_hostile_log(tmp_path / "run.jsonl")))
    _print_text(result, color=True)
    captured = capsys.readouterr().out
    visible = captured.replace("\x1b[", "")  # Rich's own colour codes are ours, and allowed
    for raw in ("\x07", "\x9b", "\x08", "\u202e", "\x00"):
        assert raw not in visible
    assert "\x1b[2J" not in captured and "\x1b]0;" not in captured


def test_in_process_text_report_is_printable(tmp_path: Path) -> None:
    text = format_text(analyse(read_log(_hostile_log(tmp_path / "run.jsonl"))))
    assert all(line.isprintable() for line in text.split("\n"))


def test_hostile_parquet_text_is_neutralised(tmp_path: Path) -> None:
    jsonl = _hostile_log(tmp_path / "run.jsonl")
    parquet = tmp_path / "run.parquet"
    read_log(jsonl).frame.write_parquet(parquet)
    result = gradlog("report", str(parquet))
    assert result.returncode == 0
    assert_no_raw_control(result.stdout + result.stderr)


def test_gzip_member_with_hostile_name_field(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(gzip.compress(_hostile_log(tmp_path / "plain.jsonl").read_bytes()))
    frame = read_log(path).frame
    assert isinstance(frame, pl.DataFrame) and frame.height == 5
