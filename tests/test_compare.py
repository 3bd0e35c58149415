"""``gradlog compare BASE HEAD``: did this change make training worse?"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runlogs import gradlog_many, write_run

from gradlog.batch import RunRow
from gradlog.compare import Pair, pair_runs
from gradlog.status import Status

COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0]


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    base, head = root / "base", root / "head"
    for d in (base, head):
        (d / "nested").mkdir(parents=True)
    write_run(base / "a.jsonl", [1.0, 1.1, 0.9, 1.0], run="base-a")
    write_run(head / "a.jsonl", COLLAPSE, run="head-a")  # got worse
    write_run(base / "nested" / "b.jsonl", [1.0] * 4, [0.001] * 4, run="b")
    write_run(head / "nested" / "b.jsonl", [1.0] * 4, run="b")  # got better
    write_run(base / "gone.jsonl", [1.0] * 4, run="gone")
    write_run(head / "new.jsonl", [2.5] * 4, run="new")
    return {"base": base, "head": head}


@pytest.fixture(scope="module")
def results(sides: dict[str, Path]) -> dict:
    b, h = str(sides["base"]), str(sides["head"])
    calls = {
        "sets": ("compare", b, h, "--format", "json", "--fail-on", "collapse"),
        "table": ("compare", b, h),
        "markdown": ("compare", b, h, "--format", "markdown", "--fail-on", "collapse"),
        "one": ("compare", f"{b}/a.jsonl", f"{h}/a.jsonl", "--fail-on", "significant"),
        "reverse": ("compare", f"{h}/a.jsonl", f"{b}/a.jsonl", "--fail-on", "collapse"),
        "minor": ("compare", f"{b}/a.jsonl", f"{h}/new.jsonl", "--fail-on", "collapse"),
        "broken": ("compare", f"{b}/a.jsonl", f"{h}/missing.jsonl"),
    }
    return dict(zip(calls, gradlog_many(list(calls.values()))))


def test_sets_are_paired_by_file(results: dict) -> None:
    result = results["sets"]
    assert result.returncode == 1, result.stderr  # a.jsonl collapsed in the head
    data = json.loads(result.stdout)
    changes = {p["run"]: p["change"] for p in data["pairs"]}
    assert changes == {"base-a → head-a": "worse", "b": "better", "new": "new", "gone": "gone"}
    assert data["regressions"] == [{"level": "collapse", "run": "base-a → head-a"}]
    worse = next(p for p in data["pairs"] if p["change"] == "worse")
    assert worse["base"]["status"] == "healthy" and worse["head"]["status"] == "collapse"
    assert worse["delta_window_mean"] == pytest.approx(
        worse["head"]["window_mean"] - worse["base"]["window_mean"]
    )
    assert b"findings reach --fail-on collapse" in result.stderr


def test_table_and_exit_code_without_fail_on(results: dict) -> None:
    result = results["table"]
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "base-a → head-a" in text and "worse" in text and "better" in text
    assert text.rstrip().splitlines()[-1] == "training got worse in 1 of 4 runs"


def test_markdown(results: dict) -> None:
    text = results["markdown"].stdout.decode()
    assert text.startswith(
        "## \N{CROSS MARK} gradlog compare: regression past --fail-on collapse in 1 of 4 runs"
    )
    assert "| Run | Base | Head | Change |" in text
    assert "\N{CROSS MARK} worse" in text and "1.00 →" in text
    assert "### Details" in text and "collapse from Epoch 25" in text


def test_two_single_runs(results: dict) -> None:
    assert results["one"].returncode == 1
    assert results["reverse"].returncode == 0  # collapse -> healthy is no regression
    assert "better" in results["reverse"].stdout.decode()
    assert results["minor"].returncode == 0  # minor imbalance does not reach collapse
    assert results["broken"].returncode == 2


def _row(file: str, run: str, status: Status = Status.HEALTHY) -> RunRow:
    return RunRow(file=file, run=run, status=status)


def test_pairing_rules() -> None:
    base = [_row("/b/x.jsonl", "r1"), _row("/b/x.jsonl", "r2"), _row("/b/y.jsonl", "same")]
    head = [_row("/h/x.jsonl", "q1"), _row("/h/x.jsonl", "r2"), _row("/h/z.jsonl", "same")]
    pairs = pair_runs(base, head, "/b", "/h")
    names = {(p.base.run if p.base else None, p.head.run if p.head else None) for p in pairs}
    # x.jsonl r2 by file and id; x.jsonl r1 and q1 by position; "same" by a unique id
    assert names == {("r2", "r2"), ("r1", "q1"), ("same", "same")}


def test_pair_change() -> None:
    healthy, collapse = _row("a", "a"), _row("a", "a", Status.COLLAPSE)
    assert Pair(healthy, collapse).change == "worse"
    assert Pair(collapse, healthy).change == "better"
    assert Pair(None, healthy).change == "new"
    assert Pair(healthy, None).change == "gone"
