"""The public Python API: complete, documented, and what the command line says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, SAMPLE_LOGS, run_gradlog
from runlogs import write_run

import gradlog
from gradlog.analysis import api


def test_all_is_sorted_complete_and_documented() -> None:
    assert gradlog.__all__ == sorted(gradlog.__all__)
    public = {n for n in dir(gradlog) if not n.startswith("_")} | {"__version__"}
    assert set(gradlog.__all__) == public
    docs = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in gradlog.__all__:
        if name not in ("__version__", "GradientRecorder"):
            assert re.search(rf"`gradlog\.{name}\(", docs), name


def test_read_is_one_long_frame_of_every_record() -> None:
    frame = api.read(SAMPLE_LOGS)
    assert {"source", "run", "kind", "epoch", "tasks", "meta"} <= set(frame.columns)
    assert frame.get_column("source").n_unique() == len(list(SAMPLE_LOGS.glob("*.jsonl")))
    lines = sum(
        1
        for p in SAMPLE_LOGS.glob("*.jsonl")
        for line in p.read_text().splitlines()
        if line.strip() and line.rstrip().endswith("}")
    )
    assert frame.height == lines


def test_analyse_is_the_report() -> None:
    path = SAMPLE_LOGS / "pointer_collapse.jsonl"
    report = api.analyse(path)
    cli = json.loads(run_gradlog("report", str(path), "--format", "json").stdout)
    assert json.loads(json.dumps(report.to_dict())) == cli
    frame = report.to_polars()
    assert frame.height == 1 and frame.item(0, "status") == "collapse"
    assert "gradlog: Task collapse" in report._repr_markdown_()


@pytest.mark.parametrize(
    "case", ["same tasks", "a NaN norm", "other tasks", "non-ASCII names", "no events"]
)
def test_report_json_is_to_dict_whichever_way_it_is_written(tmp_path: Path, case: str) -> None:
    """The CLI writes event columns natively where Polars can (same tasks in every run, finite
    numbers, ASCII) and value by value otherwise; both must give exactly the API's data."""
    path = tmp_path / "runs.jsonl"
    ratios = [1.0, 3.0, 30.0, 2e-9, 1.5]
    names = ("pointer\u202e", "типы") if case == "non-ASCII names" else ("pointer", "type")
    write_run(path, ratios, run="a", tasks=names)
    if case == "a NaN norm":
        write_run(path, ratios, [0.25, float("nan"), 0.3, 0.2, 0.25], run="b")
    elif case == "other tasks":
        write_run(path, ratios, run="b", tasks=("price", "volume", "regime"))
    elif case == "no events":
        write_run(path, [], run="b")
    else:
        write_run(path, [r * 2 for r in ratios], run="b", tasks=names)
    cli = run_gradlog("report", str(path), "--format", "json").stdout
    assert cli.isascii()
    assert json.loads(cli) == json.loads(json.dumps(api.analyse(path).to_dict()))


def test_batch_is_the_batch(tmp_path: Path) -> None:
    frame = api.batch(SAMPLE_LOGS)
    cli = json.loads(run_gradlog("batch", str(SAMPLE_LOGS), "--format", "json").stdout)
    by_run = {r["run"]: r for r in cli["runs"]}
    assert set(frame.get_column("run")) == set(by_run)
    for row in frame.iter_rows(named=True):
        expected = by_run[row["run"]]
        assert row["status"] == expected["status"]
        assert row["spread"] == expected["spread"] or row["spread"] is None
        assert row["flags"] == expected["flags"]
    assert frame.schema["weights"] == pl.List(pl.Struct({"task": pl.String, "weight": pl.Float64}))


def test_a_missing_file_raises_one_clear_error(tmp_path: Path) -> None:
    try:
        api.read(tmp_path / "nothing.jsonl")
    except gradlog.errors.GradlogError as exc:
        assert "no such file" in str(exc)
    else:
        raise AssertionError("no error")
