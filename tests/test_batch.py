"""``gradlog batch``: the real command over a directory of real logs of every format.

The archive holds JSON Lines, gzipped JSON Lines, Parquet files in nested folders, a
hive-partitioned Parquet dataset, a file with two runs, a run logged by steps, a run without
its task list, a crashed file, a corrupt one and a file that is no log. Every field of every
row is checked against ``gradlog report --format json`` for the same run (one engine: they are
identical). The sample logs' batch is pinned byte for byte under ``tests/golden/batch/``
(regenerate with ``--update-golden`` and review the diff), and the terminal table is checked to
fit a terminal without splitting a number or a word.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import pty
import re
import statistics
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import GOLDEN, ROOT, run_gradlog
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from runlogs import gradlog, gradlog_many, to_parquet, write_run

from gradlog import classify
from gradlog.analysis import api, engine, exprs
from gradlog.analysis.batch import BatchOptions, run_batch, select_rows
from gradlog.analysis.model import RunSummary
from gradlog.analysis.render.batch import COLUMNS, batch_table, summary_line
from gradlog.analysis.render.table import render
from gradlog.analysis.status import Status

# run id -> (path relative to the archive, expected status)
EXPECTED = {
    "healthy": ("healthy.jsonl", Status.HEALTHY),
    "collapse": ("collapse.jsonl", Status.COLLAPSE),
    "minor": ("minor.jsonl.gz", Status.MINOR),
    "significant": ("sub/significant.parquet", Status.SIGNIFICANT),
    "vanishing": ("sub/deeper/vanishing.jsonl", Status.VANISHING),
    "nonfinite": ("nonfinite.jsonl", Status.NONFINITE),
    "two-a": ("two.jsonl", Status.HEALTHY),
    "two-b": ("two.jsonl", Status.COLLAPSE),
    "abc": ("abc.jsonl", Status.SIGNIFICANT),
    "steps": ("steps.jsonl", Status.HEALTHY),
    "crashed": ("crashed.jsonl", Status.HEALTHY),
    "h1": ("hive", Status.COLLAPSE),
    "h2": ("hive", Status.HEALTHY),
}
# The window's geometric mean is 5.60 (a collapse from the 7th sample on); its arithmetic mean,
# the first edition's statistic, would be 7.36 (a collapse from the 5th).
COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0]


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sources of the archive's gzip, Parquet and hive files (h1.jsonl among them)."""
    return tmp_path_factory.mktemp("side")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, side: Path) -> Path:
    root = tmp_path_factory.mktemp("archive")
    write_run(root / "healthy.jsonl", [1.0, 1.2, 0.9, 1.1, 1.0, 1.3], run="healthy")
    write_run(
        root / "collapse.jsonl",
        COLLAPSE,
        run="collapse",
        weights={"pointer": 1.0, "type": 0.5},
    )
    minor = write_run(side / "minor.jsonl", [2.5] * 5, run="minor")
    (root / "minor.jsonl.gz").write_bytes(gzip.compress(minor.read_bytes()))
    to_parquet(
        write_run(side / "sig.jsonl", [4.0] * 5, run="significant"),
        root / "sub" / "significant.parquet",
    )
    (root / "sub" / "deeper").mkdir(parents=True)
    write_run(root / "sub" / "deeper" / "vanishing.jsonl", [1.0] * 5, [0.001] * 5, run="vanishing")
    write_run(root / "nonfinite.jsonl", [1.0] * 4, [0.9, math.nan, math.inf, 0.3], run="nonfinite")
    write_run(root / "two.jsonl", [1.0, 1.1, 0.9], run="two-a")
    write_run(root / "two.jsonl", [0.05] * 4, run="two-b")
    write_run(root / "abc.jsonl", [3.5] * 5, tasks=("a", "b", "c"), run="abc", meta_tasks=False)
    write_run(root / "steps.jsonl", [1.0, 2.5, 1.0], run="steps", by_steps=True, every=100)
    crashed = write_run(root / "crashed.jsonl", [1.0, 1.1, 1.2], run="crashed")
    with open(crashed, "ab") as fh:
        fh.write(b'{"v":1,"run":"crashed","kind":"event","epo')  # killed mid-write
    corrupt = write_run(root / "corrupt.jsonl", [1.0], run="corrupt")
    with open(corrupt, "ab") as fh:
        fh.write(b'{"v":1,"run":"corrupt","kind":"event","epoch":"zz"}\n')
    (root / "README.txt").write_text("not a log\n")
    hive = [
        pl.read_parquet(
            to_parquet(write_run(side / f"{r}.jsonl", ratios, run=r), side / f"{r}.parquet")
        )
        for r, ratios in (("h1", COLLAPSE), ("h2", [1.0] * 5))
    ]
    pl.concat(hive).write_parquet(root / "hive", partition_by=["run"])
    return root


@pytest.fixture(scope="module")
def outputs(archive: Path) -> dict:
    """The batch in every format, run once, side by side."""
    a = str(archive)
    formats = ("json", "csv", "markdown", "table")
    results = gradlog_many([("batch", a, "--format", f) for f in formats])
    return dict(zip(formats, results))


@pytest.fixture(scope="module")
def rows(outputs: dict) -> list[dict]:
    data = json.loads(outputs["json"].stdout)
    return data["runs"]


def by_run(rows: list[dict]) -> dict[str, dict]:
    return {r["run"]: r for r in rows if r["error"] is None}


# -- what is found, and what becomes of it ------------------------------------------------------


def test_every_run_of_every_format_is_one_row(archive: Path, rows: list[dict]) -> None:
    found = by_run(rows)
    assert set(found) == set(EXPECTED)
    for run, (path, status) in EXPECTED.items():
        assert found[run]["file"] == str(archive / path), run
        assert found[run]["status"] == status.value, run
    assert len(rows) == len(EXPECTED) + 1  # and one row for the corrupt file


def test_a_broken_file_is_one_row_with_its_error(archive: Path, rows: list[dict]) -> None:
    errors = [r for r in rows if r["error"] is not None]
    assert len(errors) == 1
    (error,) = errors
    assert error["status"] == "error"
    assert error["file"] == str(archive / "corrupt.jsonl")
    assert error["run"] is None
    assert "corrupt.jsonl:3" in error["error"] and "epoch" in error["error"]


def test_a_crashed_file_is_read_up_to_its_last_whole_record(rows: list[dict]) -> None:
    crashed = by_run(rows)["crashed"]
    assert crashed["events"] == 3
    assert any("partly written last line" in n for n in crashed["notes"])


def test_exit_codes(archive: Path, outputs: dict) -> None:
    assert all(r.returncode == 2 for r in outputs.values())  # the corrupt file
    a = str(archive)
    healthy, collapse = str(archive / "healthy.jsonl"), str(archive / "collapse.jsonl")
    vanishing = str(archive / "sub" / "deeper" / "vanishing.jsonl")
    results = gradlog_many(
        [
            ("batch", healthy, vanishing, "--fail-on", "collapse"),
            ("batch", healthy, vanishing, "--fail-on", "vanishing"),
            ("batch", collapse, "--fail-on", "minor", "--fail-on", "exploding"),
            ("batch", healthy, "--fail-on", "minor"),
            ("batch", healthy, str(archive / "nope.jsonl")),
            ("batch", f"{a}/*.txt"),
        ]
    )
    assert [r.returncode for r in results] == [0, 1, 1, 0, 2, 2]
    assert b"findings reach --fail-on vanishing" in results[1].stderr
    assert b"findings reach --fail-on minor" in results[2].stderr
    assert b"no such file" in results[4].stdout
    assert b"Error: no logs found" in results[5].stderr


def test_summary_line(outputs: dict) -> None:
    line = "13 runs in 12 files: 1 non-finite, 3 collapse, 2 significant, 1 vanishing, 1 minor, 5 healthy; 1 unreadable"
    stderr = outputs["json"].stderr.decode().splitlines()
    assert stderr[1:] == [line, "gradlog: 1 file(s) could not be read"]
    assert stderr[0].startswith("Note: ") and "crashed.jsonl" in stderr[0]  # the crash's note
    table = outputs["table"].stdout.decode()
    assert table.rstrip("\n").splitlines()[-1] == line


def test_table_is_sorted_worst_first(outputs: dict) -> None:
    lines = outputs["table"].stdout.decode().splitlines()
    statuses = [line.split()[0] for line in lines[2:-2] if line.strip()]
    order = [s.value for s in Status]
    ranks = [order.index(s if s != "no" else "no data") for s in statuses]
    assert ranks == sorted(ranks)
    assert statuses[0] == "error"
    assert "\x1b[" not in outputs["table"].stdout.decode()  # plain when piped
    assert "━" not in outputs["table"].stderr.decode()  # and no progress bar


def test_piped_table_has_every_column(outputs: dict) -> None:
    header = outputs["table"].stdout.decode().splitlines()[0]
    for name in ("status", "run", "spread", "worst spread", "window ratio", "file", "peak max"):
        assert re.search(rf"(^|  ){re.escape(name)}(  |$)", header), name
    assert "not shown at this width" not in outputs["table"].stdout.decode()


def test_csv_has_every_column_and_the_json_values(outputs: dict, rows: list[dict]) -> None:
    records = list(csv.DictReader(io.StringIO(outputs["csv"].stdout.decode())))
    assert tuple(records[0].keys()) == COLUMNS
    assert [r["run"] or None for r in records] == [r["run"] for r in rows]
    for rec, row in zip(records, rows):
        assert rec["status"] == row["status"]
        assert rec["tasks"] == ";".join(row["tasks"])
        for column in ("window_ratio", "spread", "worst_spread", "mean_norm", "max_norm_peak"):
            if row[column] is None:
                assert rec[column] == ""
            else:  # full precision: the very float
                assert float(rec[column]) == float(row[column]), column
        for column in ("window_num", "window_den", "dominant", "starved", "first_collapse"):
            assert (rec[column] or None) == row[column], column
        flags = row["flags"]
        # a cell starting with "-" is guarded against spreadsheet formulas by a leading "'"
        assert (rec["flags"] or None) == (f"'{flags}" if flags and flags[0] == "-" else flags)
        weights = row["weights"]
        expected = " ".join(f"{k}={v!r}" for k, v in weights.items()) if weights else ""
        assert rec["weights"] == expected
        assert rec["notes"] == " | ".join(row["notes"])


# -- the numbers are the report's ---------------------------------------------------------------

# a batch row's column -> the field of runs[i] in ``gradlog report --format json``
REPORT_FIELDS = {
    "status": ("status",),
    "run": ("run",),
    "tasks": ("tasks",),
    "events": ("n_events",),
    "epochs": ("last_epoch",),
    "window_ratio": ("window_ratio",),
    "window_num": ("window_num",),
    "window_den": ("window_den",),
    "spread": ("spread",),
    "worst_spread": ("worst_spread",),
    "dominant": ("dominant",),
    "starved": ("starved",),
    "final_band": ("final_band",),
    "worst_band": ("worst_band",),
    "worst_norm_band": ("worst_norm_band",),
    "first_imbalance": ("first_imbalance",),
    "first_collapse": ("first_collapse",),
    "mean_norm": ("mean_norm",),
    "mean_norm_std": ("mean_norm_std",),
    "max_norm_peak": ("max_norm_peak",),
    "weights": ("advice", "weights"),
    "flags": ("advice", "flags"),
    "error": ("error",),
}
assert set(REPORT_FIELDS) | {"file", "notes"} == set(COLUMNS)


def _report_file(archive: Path, side: Path, run: str) -> Path:
    path = EXPECTED[run][0]
    return side / f"{run}.jsonl" if path == "hive" else archive / path


def _report_data(path: Path, run: str) -> dict:
    """What ``gradlog report PATH --run RUN --format json`` prints, made in this process by the
    library call the command makes (a test below checks that the command prints the same)."""
    return json.loads(json.dumps(api.analyse(path, run=run).to_dict(), allow_nan=False))


def test_the_report_json_in_process_is_the_commands(archive: Path, side: Path) -> None:
    runs = ("collapse", "abc", "nonfinite", "crashed")
    calls = [
        ("report", str(_report_file(archive, side, r)), "--run", r, "--format", "json")
        for r in runs
    ]
    for run, result in zip(runs, gradlog_many(calls)):
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == _report_data(_report_file(archive, side, run), run)


def test_every_field_equals_the_report_json(archive: Path, side: Path, rows: list[dict]) -> None:
    """One engine: a batch row is the report's summary of the same run, to the last bit."""
    found = by_run(rows)
    for run in EXPECTED:
        path = _report_file(archive, side, run)
        report = _report_data(path, run)
        (summary,) = report["runs"]
        row = found[run]
        for column, keys in REPORT_FIELDS.items():
            value = summary
            for key in keys:
                value = value[key]
            assert row[column] == value, (run, column)
        if EXPECTED[run][0] != "hive":  # the dataset's runs were reported from their sources
            assert row["file"] == summary["source"] == str(path)
        assert row["notes"] == report["notes"] + [
            n for n in summary["notes"] if n not in report["notes"]
        ]


def test_the_sample_logs_batch_equals_their_reports() -> None:
    result = run_gradlog("batch", "sample_logs/*.jsonl", "--format", "json")
    assert result.returncode == 0, result.stderr
    batch_rows = json.loads(result.stdout)["runs"]
    assert len(batch_rows) == 6
    for row in batch_rows:
        report = _report_data(ROOT / row["file"], row["run"])
        (summary,) = report["runs"]
        for column, keys in REPORT_FIELDS.items():
            value = summary
            for key in keys:
                value = value[key]
            assert row[column] == value, (row["run"], column)
        assert ROOT / row["file"] == Path(summary["source"])


def test_the_findings_that_matter(rows: list[dict]) -> None:
    found = by_run(rows)
    collapse = found["collapse"]
    # the window is geometric: exp(mean log ratio), not the arithmetic mean (7.36)
    assert collapse["spread"] == pytest.approx(statistics.geometric_mean(COLLAPSE), rel=1e-12)
    assert collapse["window_ratio"] == collapse["spread"]
    assert (collapse["window_num"], collapse["window_den"]) == ("pointer", "type")
    assert (collapse["dominant"], collapse["starved"]) == ("pointer", "type")
    assert collapse["first_imbalance"] == "Epoch 10"  # 2.5 > 2
    assert collapse["first_collapse"] == "Epoch 35"  # the 7th window is the first past 5
    # the starved type's weight raised so that both window norms match: 0.5 x 5.60
    assert collapse["weights"]["type"] == pytest.approx(0.5 * collapse["spread"], rel=1e-12)
    assert collapse["flags"] == "--loss-alpha 2.8 --loss-beta 1"
    two_b = found["two-b"]  # pointer starved: the spread is the inverse ratio
    assert two_b["window_ratio"] == pytest.approx(0.05)
    assert two_b["spread"] == pytest.approx(20.0)
    assert (two_b["dominant"], two_b["starved"]) == ("type", "pointer")
    assert found["steps"]["first_imbalance"] == "Step 100"
    abc = found["abc"]
    assert abc["tasks"] == ["a", "b", "c"]  # seen in the events, in order
    # three tasks: a is 0.35, b 0.1, c 0.2; the window's extremes are printed
    assert (abc["window_num"], abc["window_den"]) == ("a", "b")
    assert abc["spread"] == pytest.approx(3.5) and abc["window_ratio"] == abc["spread"]
    assert abc["flags"] == "a=1 b=3.5 c=1.75"
    assert found["nonfinite"]["worst_norm_band"] == "non-finite"
    assert found["healthy"]["flags"] is None
    assert found["healthy"]["spread"] >= 1.0


# -- options ------------------------------------------------------------------------------------


def test_sort_status_filter_and_limit(archive: Path) -> None:
    a = str(archive)
    results = gradlog_many(
        [
            ("batch", a, "--format", "json", "--status", "collapse", "--status", "healthy"),
            ("batch", a, "--format", "json", "--sort", "ratio", "--limit", "3"),
            ("batch", a, "--format", "json", "--sort", "spread", "--limit", "3"),
            ("batch", a, "--format", "json", "--sort", "run", "--status", "healthy"),
            ("batch", a, "--format", "json", "--sort", "norm", "--limit", "1"),
        ]
    )
    picked = [json.loads(r.stdout)["runs"] for r in results]
    assert {r["status"] for r in picked[0]} == {"collapse", "healthy"}
    assert [r["status"] for r in picked[0]][:3] == ["collapse"] * 3
    # --sort ratio is the spread under its first-edition name: two-b's 0.05 is a spread of 20
    assert [r["run"] for r in picked[1]] == ["two-b", "collapse", "h1"]
    assert picked[2] == picked[1]
    assert [r["run"] for r in picked[3]] == ["crashed", "h2", "healthy", "steps", "two-a"]
    assert [r["run"] for r in picked[4]] == ["nonfinite"]
    assert all(json.loads(r.stdout)["summary"]["runs"] == 13 for r in results)


def test_sort_by_file(archive: Path) -> None:
    result = gradlog("batch", str(archive), "--format", "json", "--sort", "file")
    assert result.returncode == 2, result.stderr  # the corrupt file
    files = [r["file"] for r in json.loads(result.stdout)["runs"]]
    assert files == sorted(files) and len(files) == len(EXPECTED) + 1


def test_sort_by_events(archive: Path) -> None:
    result = gradlog("batch", str(archive), "--format", "json", "--sort", "events", "--limit", "3")
    assert result.returncode == 2, result.stderr
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == ["collapse", "h1", "healthy"]


def test_globs_files_and_directories_mix(archive: Path) -> None:
    result = run_batch([str(archive / "*.jsonl"), str(archive / "sub"), str(archive / "two.jsonl")])
    files = {Path(r.source).name for r in result.rows}
    assert files == {
        "healthy.jsonl",
        "collapse.jsonl",
        "nonfinite.jsonl",
        "two.jsonl",
        "abc.jsonl",
        "steps.jsonl",
        "crashed.jsonl",
        "corrupt.jsonl",
        "significant.parquet",
        "vanishing.jsonl",
    }
    assert result.n_sources == 10  # two.jsonl named twice, read once


def test_pair_option_and_a_run_without_that_task(archive: Path) -> None:
    paths = [str(archive / "abc.jsonl"), str(archive / "healthy.jsonl")]
    abc, healthy = run_batch(paths, engine.Options(pair=("c", "a"))).rows
    assert abc.pair == ("c", "a")
    assert (abc.window_num, abc.window_den) == ("c", "a")
    assert abc.window_ratio == pytest.approx(0.2 / 0.35)
    # the verdict is the spread over every task, whatever pair is printed
    assert abc.spread == pytest.approx(3.5) and abc.status is Status.SIGNIFICANT
    assert healthy.status is Status.ERROR
    assert "--pair: no task 'c' in run healthy" in healthy.error
    # swapping the pair gives the reciprocal ratio and changes no verdict
    (swapped, _) = run_batch(paths, engine.Options(pair=("a", "c"))).rows
    assert swapped.window_ratio * abc.window_ratio == pytest.approx(1.0, rel=1e-14)
    for name in ("status", "spread", "final_band", "worst_band", "verdict", "first_collapse"):
        assert getattr(swapped, name) == getattr(abc, name), name


def test_chunks_and_the_slow_path_give_the_same_rows(archive: Path) -> None:
    """One file per chunk (and a corrupt file in a big chunk, found by halving): the same rows,
    to the last bit (one engine, whatever else shares the chunk)."""
    together = run_batch([str(archive)])
    alone = run_batch([str(archive)], options=BatchOptions(chunk_bytes=1))
    assert len(together.rows) == len(alone.rows) == len(EXPECTED) + 1
    for a, b in zip(together.rows, alone.rows):
        assert a == b, a.name


def test_select_rows_keeps_the_order_found_among_equals(archive: Path) -> None:
    result = run_batch([str(archive / "two.jsonl"), str(archive / "healthy.jsonl")])
    assert [r.run for r in select_rows(result.rows)] == ["two-b", "two-a", "healthy"]
    assert [r.run for r in select_rows(result.rows, statuses=[Status.HEALTHY])] == [
        "two-a",
        "healthy",
    ]


def test_output_file_and_github_step_summary(archive: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = tmp_path / "batch.csv"
    healthy = str(archive / "healthy.jsonl")
    first, second = gradlog_many(
        [("batch", healthy, "--format", "csv", "-o", str(out)), ("batch", healthy, "--github")]
    )
    assert first.returncode == 0 and first.stdout == b""
    assert out.read_text().startswith("status,run,file")
    assert b"GITHUB_STEP_SUMMARY is not set" in second.stderr
    third = gradlog("batch", healthy, "--github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert third.returncode == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n## ")
    assert "gradlog batch: no findings in 1 run" in text


# -- a run's name -------------------------------------------------------------------------------


def test_a_run_without_an_id_is_named_after_its_file(tmp_path: Path) -> None:
    write_run(tmp_path / "nameless.jsonl", [1.0, 1.1, 0.9, 1.0], run="")
    calls = [("batch", str(tmp_path), "--format", f) for f in ("json", "table")]
    as_json, as_table = gradlog_many(calls)
    assert as_json.returncode == 0, as_json.stderr
    (row,) = json.loads(as_json.stdout)["runs"]
    assert row["run"] == "nameless"
    assert as_table.stdout.decode().splitlines()[2].split()[:2] == ["healthy", "nameless"]


@pytest.mark.parametrize(
    ("source", "run", "name"),
    [
        ("runs/a.b/nameless.jsonl.gz", "", "nameless"),
        ("runs/x.parquet", None, "x"),
        ("s3://bucket/dir/y.ndjson", "", "y"),
        ("runs/x.parquet", "r-7", "r-7"),
    ],
)
def test_run_summary_name_falls_back_to_the_file_stem(source: str, run: str, name: str) -> None:
    assert RunSummary(source=source, run=run, status=Status.HEALTHY).name == name


# -- golden output over the sample logs ---------------------------------------------------------

GOLDEN_BATCH = GOLDEN / "batch"


def _check(name: str, text: str, update: bool) -> None:
    golden = GOLDEN_BATCH / name
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden}")
    assert golden.exists(), f"no golden file {golden}; run pytest --update-golden"
    assert text == golden.read_text(encoding="utf-8")


def _sample_table(width: int | None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The terminal table of ``gradlog batch sample_logs/*.jsonl`` at ``width``, made by the
    calls the command makes (the pseudo-terminal test checks the command prints it)."""
    monkeypatch.chdir(ROOT)
    result = api.batch_result("sample_logs/*.jsonl")
    spec = batch_table(
        select_rows(result.rows), footer=("", summary_line(result.rows, result.n_sources))
    )
    return render(spec, color=False, width=width)


@pytest.mark.parametrize("width", [80, 120])
def test_sample_batch_table_matches_golden(width, update_golden, monkeypatch) -> None:
    _check(f"table-{width}.txt", _sample_table(width, monkeypatch), update_golden)


def test_piped_sample_batch_table_matches_golden(update_golden, monkeypatch) -> None:
    result = run_gradlog("batch", "sample_logs/*.jsonl")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("utf-8")
    assert text == _sample_table(None, monkeypatch)  # every column when piped
    _check("table.txt", text, update_golden)


@pytest.mark.parametrize(("fmt", "suffix"), [("json", "json"), ("csv", "csv"), ("markdown", "md")])
def test_sample_batch_formats_match_golden(fmt: str, suffix: str, update_golden) -> None:
    result = run_gradlog("batch", "sample_logs/*.jsonl", "--format", fmt)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().splitlines() == [
        "Note: sample_logs/crashed.jsonl:5: skipped a partly written last line (354 bytes)",
        "6 runs in 6 files: 1 non-finite, 2 collapse, 1 vanishing, 2 healthy",
    ]
    text = result.stdout.decode("utf-8")
    if fmt == "json":
        assert json.loads(text)["gradlog_batch"] == 2
    _check(f"batch.{suffix}", text, update_golden)


def _on_a_terminal(args: list[str], columns: int) -> tuple[int, str]:
    """The real command with standard output on a pseudo-terminal ``columns`` wide."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADLOG_DEBUG", "GITHUB_STEP_SUMMARY")}
    env.update(NO_COLOR="1", COLUMNS=str(columns), LINES="50", TERM="xterm")
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlog", *args],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the command closed the terminal's other end
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(timeout=120)
    return code, b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


@pytest.mark.parametrize("width", [80, 120])
def test_the_command_on_a_terminal_prints_the_golden_table(width: int) -> None:
    code, text = _on_a_terminal(["batch", "sample_logs/*.jsonl"], width)
    assert code == 0
    assert text == (GOLDEN_BATCH / f"table-{width}.txt").read_text(encoding="utf-8")


# -- the table fits a terminal and splits no number or word -------------------------------------


@pytest.fixture(scope="module")
def extremes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample logs and two runs whose numbers need scientific notation."""
    root = tmp_path_factory.mktemp("extremes")
    for sample in sorted((ROOT / "sample_logs").glob("*.jsonl")):
        (root / sample.name).write_bytes(sample.read_bytes())
    # pointer's norm 1e11 times type's; mean norms near 2e11 (exploding)
    write_run(root / "huge.jsonl", [1e11] * 5, [1e11, 2e11, 3e11, 2e11, 1e11], run="huge")
    # pointer's norm 1e-9 of type's; mean norms near 3e-9 (vanishing)
    write_run(root / "tiny.jsonl", [1e-9] * 5, [3e-9, 2e-9, 4e-9, 3e-9, 3e-9], run="tiny")
    return root


def _cells_are_whole(spec, text: str, width: int) -> None:
    """Every line fits ``width``; every shown cell is on its row's line whole, or (text that
    may be shortened) cut to a prefix and an ellipsis; columns left out are counted."""
    lines = text.splitlines()
    assert all(cell_len(line) <= width for line in lines), [
        line for line in lines if cell_len(line) > width
    ]
    header, rows = lines[0], lines[2 : 2 + len(spec.rows)]
    names = [c.name for c in spec.columns]
    shown_names = re.split(r" {2,}", header.strip())
    shown = [names.index(n) for n in shown_names]  # every heading whole, in the spec's order
    assert shown == sorted(shown)
    left_out = len(names) - len(shown)
    note = (
        [f"({left_out} more column{'s' * (left_out != 1)}: --wide shows all)"] if left_out else []
    )
    # one line per row: nothing wrapped onto a second line
    assert lines[2 + len(spec.rows) :] == note + list(spec.footer)
    for row, line in zip(spec.rows, rows):
        padded = f" {line} "
        for i in shown:
            cell, column = row[i][0], spec.columns[i]
            if not cell or f" {cell} " in padded:
                continue
            assert column.shrink, (column.name, cell, line)  # only text may be shortened
            assert any(f" {cell[:k]}…" in padded for k in range(1, len(cell))), (cell, line)


@pytest.mark.parametrize("width", [80, 120])
def test_no_number_or_word_is_split_at_a_terminal_width(extremes: Path, width: int) -> None:
    result = api.batch_result(str(extremes))
    spec = batch_table(
        select_rows(result.rows), footer=("", summary_line(result.rows, result.n_sources))
    )
    text = render(spec, color=False, width=width)
    assert "1.00e+11" in text  # the huge run's spread, in scientific notation, whole
    _cells_are_whole(spec, text, width)


def test_huge_and_tiny_numbers_are_scientific(extremes: Path) -> None:
    result = api.batch_result(str(extremes))
    rows = {r.name: r for r in result.rows}
    spec = batch_table([rows["huge"], rows["tiny"]])
    names = [c.name for c in spec.columns]
    huge, tiny = ({n: cell[0] for n, cell in zip(names, row)} for row in spec.rows)
    assert huge["spread"] == "1.00e+11" and tiny["spread"] == "1.00e+09"
    assert huge["window ratio"] == "1.00e+11 (pointer/type)"
    assert tiny["window ratio"] == "1.00e-09 (pointer/type)"
    assert huge["mean norm ± std"].startswith("1.800e+11 ± ")
    assert tiny["mean norm ± std"].startswith("3.000e-09 ± ")
    assert rows["huge"].status is Status.EXPLODING and rows["tiny"].status is Status.COLLAPSE
    assert rows["tiny"].worst_norm_band.value == "vanishing"
    for cells in (huge, tiny):  # nothing written out in full digits
        for name in ("spread", "worst spread", "window ratio", "mean norm ± std", "peak max"):
            assert re.search(r"\d{5}", cells[name]) is None, (name, cells[name])
    wide = render(spec, color=False, width=None)
    assert "e+11" in wide and "e-09" in wide


# -- the bands as Polars expressions are classify's ----------------------------------------------

RATIO_EDGES = [
    0.0,
    0.2,
    1 / 3,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    -1.0,
    math.nan,
    math.inf,
    -math.inf,
    1e-300,
    1e300,
]
NORM_EDGES = [0.0, 0.01, 0.1, 0.5, 1.0, 5.0, -1.0, math.nan, math.inf, -math.inf, 1e-12]


def _around(values: list[float]) -> list[float]:
    return [
        v for x in values for v in (x, math.nextafter(x, -math.inf), math.nextafter(x, math.inf))
    ]


def _polars_bands(ratios: list[float], norms: list[float]) -> tuple[list, list, list, list]:
    r, m = pl.col("r"), pl.col("m")
    frame = pl.DataFrame({"r": ratios}, schema={"r": pl.Float64}).select(
        band=exprs.ratio_band(r),
        outside=exprs.outside_healthy_range(r),
        verdict=exprs.collapse_check(r),
    )
    norm = pl.DataFrame({"m": norms}, schema={"m": pl.Float64}).select(band=exprs.norm_band(m))
    return (
        frame["band"].to_list(),
        frame["outside"].to_list(),
        frame["verdict"].to_list(),
        norm["band"].to_list(),
    )


def _check_bands(ratios: list[float], norms: list[float]) -> None:
    bands, outside, verdicts, norm_bands = _polars_bands(ratios, norms)
    for r, band, out, verdict in zip(ratios, bands, outside, verdicts):
        assert band == classify.ratio_band(r).value, r
        assert verdict == classify.collapse_check(r).value, r
        if math.isfinite(r):
            assert out == classify.outside_healthy_range(r), r
    for m, band in zip(norms, norm_bands):
        assert band == classify.norm_band(m).value, m


def test_polars_bands_equal_classify_on_every_boundary() -> None:
    _check_bands(_around(RATIO_EDGES), _around(NORM_EDGES))
    severities = pl.DataFrame({"b": [b.value for b in classify.RatioBand]}).select(
        exprs.ratio_severity(pl.col("b"))
    )
    assert severities.to_series().to_list() == [
        classify.RATIO_SEVERITY[b] for b in classify.RatioBand
    ]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_polars_bands_equal_classify_anywhere(values: list[float]) -> None:
    _check_bands(values, values)


def test_polars_ratio_is_undefined_where_the_analysis_says() -> None:
    pairs = [
        (1.0, 0.0),
        (math.nan, 1.0),
        (1.0, math.inf),
        (-1.0, 1.0),
        (1.0, -2.0),
        (3.0, 2.0),
        (None, 1.0),
    ]
    frame = pl.DataFrame(
        {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]},
        schema={"a": pl.Float64, "b": pl.Float64},
    )
    got = frame.select(exprs.ratio(pl.col("a"), pl.col("b"))).to_series().to_list()
    assert got == [None, None, None, None, None, 1.5, None]


def test_norms_at_the_ends_of_the_float_range_agree_with_the_report(tmp_path: Path) -> None:
    """Means and deviations of norms near 1e308 or below 1e-300 neither overflow nor underflow,
    in batch as in the report (both scale by a power of two with a normal inverse)."""
    extremes = {
        "huge": [4e307, 4e306, 0.0],  # max_norm is 4x: still finite
        "tiny": [2.3471664643534065e-200, 0.0, 1e-310],
        "subnormal": [2.225073858507203e-309, 0.0],
    }
    for run, means in extremes.items():
        write_run(tmp_path / f"{run}.jsonl", [1.0] * len(means), means, run=run)
    result = gradlog("batch", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    found = by_run(json.loads(result.stdout)["runs"])
    for run, means in extremes.items():
        summary = api.analyse(tmp_path / f"{run}.jsonl").runs[0].summary
        assert summary.mean_norm_std == pytest.approx(statistics.pstdev(means), rel=1e-12)
        assert found[run]["mean_norm"] == summary.mean_norm
        assert found[run]["mean_norm_std"] == summary.mean_norm_std
        assert found[run]["mean_norm_std"] > 0
