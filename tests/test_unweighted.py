"""``--unweighted``: each task's norm divided by its loss weight, the raw task gradient."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_gradlog

from gradlog.recorder.writers import JsonlWriter


def write(path: Path, type_weight: float, *, logged: bool = True) -> Path:
    """The type task trained with a small weight: its weighted norm is small, its raw norm
    (the weighted one over the weight) as large as the pointer task's."""
    writer = JsonlWriter(path)
    meta = {"tasks": ["pointer", "type"], "log_every": 1}
    meta["weights"] = [{"name": "pointer", "weight": 1.0}, {"name": "type", "weight": type_weight}]
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": meta})
    for epoch in range(1, 6):
        tasks = [
            {"name": "pointer", "grad_norm": 1.0},
            {"name": "type", "grad_norm": 1.0 * type_weight},
        ]
        if logged:
            tasks[0]["weight"], tasks[1]["weight"] = 1.0, type_weight
        writer.write({"v": 1, "run": "r", "kind": "event", "epoch": epoch, "tasks": tasks})
    writer.close()
    return path


def summary(*args: str) -> dict:
    result = run_gradlog("report", *args, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)["runs"][0]


def test_weighted_norms_drive_the_verdict_by_default(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", 0.02)
    run = summary(str(path))
    assert run["status"] == "collapse" and run["starved"] == "type"
    assert abs(run["window_ratio"] - 50.0) < 1e-9
    assert run_gradlog("report", str(path), "--fail-on", "collapse").returncode == 1


def test_unweighted_divides_by_the_logged_weight(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", 0.02)
    run = summary(str(path), "--unweighted")
    assert run["status"] == "healthy"
    assert abs(run["spread"] - 1.0) < 1e-9
    assert run_gradlog("report", str(path), "--unweighted", "--fail-on", "collapse").returncode == 0
    # batch and compare take the flag too, with the same numbers
    rows = json.loads(run_gradlog("batch", str(path), "--unweighted", "--format", "json").stdout)[
        "runs"
    ]
    assert rows[0]["status"] == "healthy" and rows[0]["spread"] == run["spread"]


def test_unweighted_falls_back_to_the_run_records_weights(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", 0.02, logged=False)
    assert summary(str(path), "--unweighted")["status"] == "healthy"


def test_a_zero_weight_has_no_unweighted_norm(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", 0.0)
    run = summary(str(path), "--unweighted")
    assert run["status"] == "undefined"
    assert run["n_undefined"] == 5
