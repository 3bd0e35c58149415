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


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_runs_interleaved_in_the_file_report_each_run_as_alone(tmp_path: Path) -> None:
    """The renderers take each run's events in file order whether or not the runs interleave
    (sorted only when they do), natively written JSON or not."""
    a, b = write_run(tmp_path / "a.jsonl", [1.0, 3.0, 30.0, 2.5], run="a"), tmp_path / "b.jsonl"
    write_run(b, [2.0, 1.1, 40.0], [0.25, float("nan"), 0.3], run="b")
    (first_a, *events_a), (first_b, *events_b) = _lines(a), _lines(b)
    mixed = [first_a, first_b] + [x for pair in zip(events_a, events_b) for x in pair]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(mixed + events_a[len(events_b) :]))
    report = api.analyse(path)
    cli = run_gradlog("report", str(path), "--format", "json").stdout
    assert json.loads(cli) == json.loads(json.dumps(report.to_dict()))
    for run, data in zip(("a", "b"), json.loads(cli)["runs"]):
        alone = json.loads(
            run_gradlog("report", str(path), "--run", run, "--format", "json").stdout
        )
        assert data["events"] == alone["runs"][0]["events"]
    text = run_gradlog("report", str(path)).stdout.decode()
    for run in ("a", "b"):
        alone = run_gradlog("report", str(path), "--run", run).stdout.decode().strip()
        assert alone.split("\n", 2)[2] in text  # its events and closing, in its own order


def test_events_without_samples_are_reported_alike(tmp_path: Path) -> None:
    """Events without a balance sample (the engine joins the samples onto the events, where
    it otherwise takes their columns as they are)."""
    full = write_run(tmp_path / "full.jsonl", [1.0, 3.0, 30.0, 2.5, 1.2, 50.0])
    lines = _lines(full)
    sparse = [json.loads(line) for line in lines]
    for record in sparse[2::2]:
        record.pop("tasks")
    path = tmp_path / "sparse.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sparse))
    report = api.analyse(path)
    events = report.runs[0].events
    assert events.get_column("has_balance").to_list() == [True, False, True, False, True, False]
    cli = json.loads(run_gradlog("report", str(path), "--format", "json").stdout)
    assert cli == json.loads(json.dumps(report.to_dict()))
    assert cli["runs"][0]["events"]["has_balance"] == [True, False] * 3


def test_json_written_in_blocks_of_runs_is_to_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events' JSON is written a column of a block of runs at a time, as it is reached:
    blocks of one run and of several give the same document."""
    from gradlog.analysis.output import json_pieces
    from gradlog.analysis.render import json as render_json

    path = tmp_path / "runs.jsonl"
    for k, run in enumerate("abcd"):
        write_run(path, [1.0 + k, 3.0, 30.0 / (k + 1), 2.5][: 2 + k], run=run)
    report = api.analyse(path)
    assert len(report.runs) == 4
    expected = json.loads(json.dumps(report.to_dict()))
    for size in (1, 3, 10_000):
        monkeypatch.setattr(render_json, "EVENTS_PER_BLOCK", size)
        written = "".join(json_pieces(render_json.report_data(report, encoded=True)))
        assert json.loads(written) == expected
