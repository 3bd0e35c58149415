"""``gradlog batch``: the real command over a directory of real logs of every format.

The archive holds JSON Lines, gzipped JSON Lines, Parquet files in nested folders, a
hive-partitioned Parquet dataset, a file with two runs, a run logged by steps, a run without
its task list, a crashed file, a corrupt one and a file that is no log. Every number of every
run is checked against ``gradlog report --format json`` for the same run.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import statistics
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from runlogs import gradlog, gradlog_many, to_parquet, write_run

from gradlog import classify, exprs
from gradlog.analysis import Options, analyse
from gradlog.batch import BatchOptions, run_batch, select_rows
from gradlog.readers import read_log
from gradlog.render.batch import COLUMNS
from gradlog.render.json import format_json
from gradlog.status import Status, run_status

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
COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    side = tmp_path_factory.mktemp("side")  # sources of the gzip, Parquet and hive files
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
def side(archive: Path) -> Path:
    return next(p for p in archive.parent.parent.rglob("h1.jsonl"))


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


def test_csv_has_every_column_and_the_json_values(outputs: dict, rows: list[dict]) -> None:
    records = list(csv.DictReader(io.StringIO(outputs["csv"].stdout.decode())))
    assert tuple(records[0].keys()) == COLUMNS
    assert [r["run"] or None for r in records] == [r["run"] for r in rows]
    for rec, row in zip(records, rows):
        assert rec["status"] == row["status"]
        assert rec["tasks"] == ";".join(row["tasks"])
        for column in ("final_ratio", "window_mean", "worst_ratio", "mean_norm", "max_norm_peak"):
            if row[column] is None:
                assert rec[column] == ""
            else:
                assert float(rec[column]) == pytest.approx(float(row[column]), nan_ok=True)
        assert (rec["flags"] or None) == row["flags"]


# -- the numbers are the report's ---------------------------------------------------------------


def _report_calls(archive: Path, side: Path) -> dict[str, tuple[str, ...]]:
    calls = {}
    for run, (path, _) in EXPECTED.items():
        file = side.parent / f"{run}.jsonl" if path == "hive" else archive / path
        calls[run] = ("report", str(file), "--run", run, "--format", "json")
    return calls


def _report_json(args: tuple[str, ...]) -> str:
    """What ``gradlog report FILE --run ID --format json`` prints, made in this process by the
    functions the command calls (a test below checks that the command prints the same)."""
    _, path, _, run, _, _ = args
    return format_json(analyse(read_log(path), Options(run=run)))


def test_the_report_json_in_process_is_the_commands(archive: Path, side: Path) -> None:
    calls = _report_calls(archive, side)
    for run in ("collapse", "abc", "nonfinite"):
        result = gradlog(*calls[run])
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == _report_json(calls[run])


def test_every_number_equals_the_report_json(archive: Path, side: Path, rows: list[dict]) -> None:
    calls = _report_calls(archive, side)
    found = by_run(rows)
    for run, args in calls.items():
        (report,) = json.loads(_report_json(args))["runs"]
        s, rec, ev = report["summary"], report["recommendation"], report["events"]
        row = found[run]
        ratios = [r for r in ev["ratio"] if r is not None]
        expected = {
            "tasks": report["tasks"],
            "events": s["n_events"],
            "epochs": max((e for e in ev["epoch"] if e is not None), default=None),
            "final_ratio": ratios[-1] if ratios else None,
            "window_mean": s["final_ratio"],
            "worst_ratio": s["worst_ratio"],
            "final_band": s["final_band"],
            "worst_band": s["worst_band"],
            "worst_norm_band": s["worst_norm_band"],
            "first_imbalance": s["first_imbalance"],
            "first_collapse": s["first_collapse"],
            "mean_norm": s["mean_norm_mean"],
            "mean_norm_std": s["mean_norm_std"],
            "max_norm_peak": s["max_norm_peak"],
            "weights": rec["weights"],
            "flags": rec["flags"],
        }
        for key, value in expected.items():
            got = row[key]
            if isinstance(value, float):
                # equal to the last bit or two: Polars sums a group and a column in its own order
                assert got == pytest.approx(value, rel=1e-12), (run, key)
            elif isinstance(value, dict):
                assert got == pytest.approx(value, rel=1e-12), (run, key)
            else:
                assert got == value, (run, key)
        assert (
            row["status"]
            == run_status(
                classify.RatioBand(s["worst_band"]) if s["worst_band"] else None,
                classify.NormBand(s["worst_norm_band"]) if s["worst_norm_band"] else None,
            ).value
        )


def test_the_findings_that_matter(rows: list[dict]) -> None:
    found = by_run(rows)
    collapse = found["collapse"]
    assert collapse["first_imbalance"] == "Epoch 10"
    assert collapse["first_collapse"] == "Epoch 25"
    assert collapse["flags"].startswith("--loss-alpha ")
    assert found["steps"]["first_imbalance"] == "Step 100"
    assert found["abc"]["tasks"] == ["a", "b", "c"]  # seen in the events, in order
    assert found["abc"]["flags"].startswith("a=1 b=")
    assert found["nonfinite"]["worst_norm_band"] == "non-finite"
    assert found["healthy"]["flags"] is None


# -- options ------------------------------------------------------------------------------------


def test_sort_status_filter_and_limit(archive: Path) -> None:
    a = str(archive)
    results = gradlog_many(
        [
            ("batch", a, "--format", "json", "--status", "collapse", "--status", "healthy"),
            ("batch", a, "--format", "json", "--sort", "ratio", "--limit", "3"),
            ("batch", a, "--format", "json", "--sort", "run", "--status", "healthy"),
            ("batch", a, "--format", "json", "--sort", "norm", "--limit", "1"),
        ]
    )
    picked = [json.loads(r.stdout)["runs"] for r in results]
    assert {r["status"] for r in picked[0]} == {"collapse", "healthy"}
    assert [r["status"] for r in picked[0]][:3] == ["collapse"] * 3
    assert [r["run"] for r in picked[1]] == ["two-b", "collapse", "h1"]
    assert [r["run"] for r in picked[2]] == ["crashed", "h2", "healthy", "steps", "two-a"]
    assert [r["run"] for r in picked[3]] == ["nonfinite"]
    assert all(json.loads(r.stdout)["summary"]["runs"] == 13 for r in results)


def test_globs_files_and_directories_mix(archive: Path) -> None:
    result = run_batch([str(archive / "*.jsonl"), str(archive / "sub"), str(archive / "two.jsonl")])
    files = {Path(r.file).name for r in result.rows}
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
    result = run_batch(
        [str(archive / "abc.jsonl"), str(archive / "healthy.jsonl")],
        BatchOptions(pair=("c", "a")),
    )
    abc, healthy = result.rows
    assert abc.pair == ("c", "a") and abc.status is Status.HEALTHY  # c/a = 0.3 / 0.35
    assert healthy.status is Status.ERROR
    assert "--pair: no task 'c' in run healthy" in healthy.error


def test_chunks_and_the_slow_path_give_the_same_rows(archive: Path) -> None:
    """One file per chunk (and a corrupt file in a big chunk, found by halving): same rows."""
    together = run_batch([str(archive)])
    alone = run_batch([str(archive)], BatchOptions(chunk_bytes=1))
    assert len(together.rows) == len(alone.rows) == len(EXPECTED) + 1
    for a, b in zip(together.rows, alone.rows):
        for name, value in vars(a).items():
            other = getattr(b, name)
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(other), name
            else:
                assert (
                    other == pytest.approx(value, rel=1e-12)
                    if isinstance(value, float)
                    else other == value
                ), name


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
        summary = analyse(read_log(tmp_path / f"{run}.jsonl")).runs[0].summary
        assert summary.mean_norm_std == pytest.approx(statistics.pstdev(means), rel=1e-12)
        assert found[run]["mean_norm"] == pytest.approx(summary.mean_norm_mean, rel=1e-12)
        assert found[run]["mean_norm_std"] == pytest.approx(summary.mean_norm_std, rel=1e-12)
        assert found[run]["mean_norm_std"] > 0
