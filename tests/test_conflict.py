"""Gradient conflict and three-or-more-task balance: the rules, the analysis, the report.

The two-task pointer/type report must not change when cosine data is present but no pair is in
sustained conflict (compared byte for byte with the same log without cosines).
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import polars as pl
import pytest

from gradlog import conflict
from gradlog.analysis.engine import Options
from gradlog.analysis.readers import read_log
from gradlog.analysis.render.text import format_text, text_blocks
from gradlog.analysis.report import analyse
from gradlog.recorder.writers import JsonlWriter

ROOT = Path(__file__).resolve().parent.parent


# -- the rule --------------------------------------------------------------------------------


def test_conflict_window_uses_the_last_finite_samples() -> None:
    cosines = [0.9, 0.9, math.nan, -0.5, -0.3, math.inf, -0.4]
    mean, negative, n = conflict.conflict_window(cosines, window=3, min_samples=3)
    assert n == 3 and mean == pytest.approx(-0.4) and negative == 1.0
    assert conflict.conflict_window([-0.5, -0.5], window=10, min_samples=3) == (None, None, 2)
    assert conflict.conflict_window([-0.5, -0.5], window=2, min_samples=3)[0] == -0.5


@pytest.mark.parametrize(
    ("mean", "negative", "sustained"),
    [
        (-0.42, 1.0, True),
        (-0.1, 1.0, False),  # the boundary is not a conflict: strictly below -0.1
        (-0.1000001, 0.8, True),  # 80% negative is enough
        (-0.5, 0.7, False),  # one strongly negative sample does not make it sustained
        (0.3, 0.0, False),
        (None, None, False),
    ],
)
def test_sustained_conflict_thresholds(mean, negative, sustained) -> None:
    assert conflict.sustained_conflict(mean, negative) is sustained


# -- analysis and report ----------------------------------------------------------------------


def write_log(
    path: Path,
    tasks: list[str],
    norms: list[list[float]],
    cosines: list[dict[tuple[str, str], float | None]] | None,
) -> Path:
    writer = JsonlWriter(path)
    writer.write(
        {
            "v": 1,
            "run": "r1",
            "kind": "run",
            "time": 1.0,
            "meta": {
                "tasks": tasks,
                "log_every": 5,
                "balance_every": 5,
                "weights": [{"name": t, "weight": 1.0} for t in tasks],
                "mode": "representation",
            },
        }
    )
    for i, row in enumerate(norms, start=1):
        event = {
            "v": 1,
            "run": "r1",
            "kind": "event",
            "time": 1.0 + i,
            "epoch": 5 * i,
            "step": 50 * i,
            "mean_norm": 0.2,
            "max_norm": 0.8,
            "total_norm": 1.6,
            "n_grads": 6,
            "n_vanishing": 0,
            "n_exploding": 0,
            "tasks": [
                {"name": t, "grad_norm": n, "loss": 1.0, "weight": 1.0} for t, n in zip(tasks, row)
            ],
        }
        if cosines is not None:
            event["conflicts"] = [
                {"a": a, "b": b, "cosine": c} for (a, b), c in cosines[i - 1].items()
            ]
        writer.write(event)
    writer.close()
    return path


def report(path: Path, **options) -> tuple[str, dict]:
    analysed = analyse(read_log(path), Options(**options))
    return format_text(analysed), analysed.to_dict()


def style_of(path: Path, line: str) -> str:
    """The style the text report gives ``line`` on a terminal."""
    blocks = pl.concat(text_blocks(analyse(read_log(path))))
    return blocks.filter(pl.col("line") == line).get_column("style").item(0)


TWO = ["pointer", "type"]


def test_sustained_conflict_is_flagged_in_recommended_action(tmp_path: Path) -> None:
    cosines = [{("pointer", "type"): c} for c in (0.2, -0.3, -0.5, -0.4, -0.45, -0.6)]
    path = write_log(tmp_path / "run.jsonl", TWO, [[0.3, 0.25]] * 6, cosines)
    text, data = report(path)
    expected = (
        "  Gradient conflict: Pointer/Type cosine -0.34 over the last 6 samples: "
        + conflict.CONFLICT_ACTION
    )
    assert expected in text.splitlines()
    section = text[text.index("Recommended action:") :].splitlines()
    assert section[-1] == expected  # after the norm lines
    assert style_of(path, expected) == "yellow"
    (pair,) = data["runs"][0]["conflicts"]
    assert pair == {
        "a": "pointer",
        "b": "type",
        "mean_cosine": pytest.approx(-2.05 / 6),
        "negative_fraction": pytest.approx(5 / 6),
        "n_samples": 6,
        "last_cosine": -0.6,
        "sustained": True,
    }
    # a shorter window looks at the last samples only
    text, data = report(path, window=3)
    assert "cosine -0.48 over the last 3 samples" in text


def test_two_task_report_unchanged_without_sustained_conflict(tmp_path: Path) -> None:
    norms = [[0.3, 0.25], [0.9, 0.1], [0.3, 0.2], [0.35, 0.2]]
    cosines = [{("pointer", "type"): c} for c in (-0.9, 0.1, -0.2, 0.05)]
    with_cos = write_log(tmp_path / "with.jsonl", TWO, norms, cosines)
    without = write_log(tmp_path / "without.jsonl", TWO, norms, None)
    text_with, data_with = report(with_cos)
    text_without, data_without = report(without)
    assert text_with == text_without  # byte for byte
    assert "Gradient conflict" not in text_with
    assert data_with["runs"][0]["conflicts"][0]["sustained"] is False
    assert data_without["runs"][0]["conflicts"] == []
    assert data_without["runs"][0]["shares"] is None  # two tasks


def test_undefined_cosines_are_left_out(tmp_path: Path) -> None:
    cosines = [{("pointer", "type"): c} for c in (None, math.nan, -0.5, -0.5, -0.5)]
    path = write_log(tmp_path / "run.jsonl", TWO, [[0.3, 0.25]] * 5, cosines)
    text, data = report(path)
    (pair,) = data["runs"][0]["conflicts"]
    assert pair["n_samples"] == 3 and pair["sustained"] is True
    assert "cosine -0.50 over the last 3 samples" in text


THREE = ["depth", "seg", "normals"]


def test_three_tasks_pairs_dominant_and_starved(tmp_path: Path) -> None:
    cosines = [{("depth", "seg"): 0.1, ("depth", "normals"): -0.5, ("seg", "normals"): 0.2}] * 4
    path = write_log(tmp_path / "run.jsonl", THREE, [[0.1, 0.2, 0.3]] * 4, cosines)
    text, data = report(path)
    lines = text.splitlines()
    assert (
        "  Tasks:          Normals dominant (50.0%), Depth starved (16.7%); Normals/Depth ratio 3.00"
        in lines
    )
    assert (
        lines.index(
            "  Tasks:          Normals dominant (50.0%), Depth starved (16.7%); "
            "Normals/Depth ratio 3.00"
        )
        == lines.index("Recommended action:") + 2
    )
    conflict_lines = [line for line in lines if line.startswith("  Gradient conflict")]
    assert conflict_lines == [
        "  Gradient conflict: Depth/Normals cosine -0.50 over the last 4 samples: "
        + conflict.CONFLICT_ACTION
    ]
    summary = data["runs"][0]
    assert [(p["a"], p["b"]) for p in summary["conflicts"]] == [
        ("depth", "seg"),
        ("depth", "normals"),
        ("seg", "normals"),
    ]
    assert summary["dominant"] == "normals" and summary["starved"] == "depth"
    assert summary["window_norms"] == {
        "depth": pytest.approx(0.1),
        "seg": pytest.approx(0.2),
        "normals": pytest.approx(0.3),
    }
    assert summary["shares"] == {
        "depth": pytest.approx(1 / 6),
        "seg": pytest.approx(1 / 3),
        "normals": pytest.approx(0.5),
    }
    assert summary["spread"] == pytest.approx(3.0)


def test_recorded_conflicts_reach_the_report(tmp_path: Path) -> None:
    """End to end: the recorder's cosines through the real CLI, JSON Lines and Parquet."""
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    torch = pytest.importorskip("torch")
    from gradlog import GradientRecorder

    class Opposed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))

    for suffix in ("jsonl", "parquet"):
        model = Opposed()
        path = tmp_path / f"run.{suffix}"
        with GradientRecorder(model, TWO, path, log_every=1, balance_every=1) as rec:
            for epoch in range(1, 5):
                model.zero_grad()
                h = model.w * 1.0
                rec.backward(
                    {"pointer": (h * torch.tensor([1.0, 0.2])).sum(), "type": -h[0]},
                    epoch=epoch,
                )
        result = subprocess.run(
            [sys.executable, "-m", "gradlog", "report", str(path)],
            capture_output=True,
            timeout=120,
            env={"NO_COLOR": "1", "PATH": ""},
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr.decode()
        cosine = -1 / math.sqrt(1.04)
        assert (
            f"  Gradient conflict: Pointer/Type cosine {cosine:.2f} over the last 4 samples"
            in result.stdout.decode()
        )
        frame = read_log(path).frame
        cosines = [c[0]["cosine"] for c in frame["conflicts"].drop_nulls()]
        assert cosines == pytest.approx([cosine] * 4)
