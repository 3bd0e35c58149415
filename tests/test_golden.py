"""The documented text format, pinned byte for byte on every sample log.

Regenerate after an intended change with ``pytest tests/test_golden.py --update-golden`` and
review the diff: these files are the contract with users who parse the report.
"""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLE_LOGS, run_gradlog
from conftest import check_golden as _check

SAMPLES = sorted(p.name for p in SAMPLE_LOGS.glob("*.jsonl"))


def test_samples_exist():
    expected = {
        "healthy.jsonl",
        "pointer_collapse.jsonl",
        "type_collapse.jsonl",
        "vanishing.jsonl",
        "exploding.jsonl",
        "crashed.jsonl",
    }
    assert expected <= set(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES)
def test_text_report_matches_golden(sample, update_golden):
    result = run_gradlog("report", f"sample_logs/{sample}")
    assert result.returncode == 0, result.stderr.decode()
    _check(sample.replace(".jsonl", ".txt"), result.stdout.decode("utf-8"), update_golden)


@pytest.mark.parametrize("sample", SAMPLES)
def test_json_report_matches_golden(sample, update_golden):
    result = run_gradlog("report", f"sample_logs/{sample}", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    json.loads(result.stdout)
    _check(sample.replace(".jsonl", ".json"), result.stdout.decode("utf-8"), update_golden)


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
@pytest.mark.parametrize("sample", ["pointer_collapse.jsonl", "type_collapse.jsonl"])
def test_original_report_matches_golden(sample, fmt, update_golden):
    """``--original`` over a window of 3 (the samples hold six balance samples): the original's
    raw norms, arithmetic window and gating, in every format."""
    result = run_gradlog(
        "report", f"sample_logs/{sample}", "--original", "--window", "3", "--format", fmt
    )
    assert result.returncode == 0, result.stderr.decode()
    suffix = {"text": ".txt", "json": ".json", "markdown": ".md"}[fmt]
    _check("original/" + sample.replace(".jsonl", suffix), result.stdout.decode(), update_golden)


def test_crashed_log_notes_the_cut_line():
    result = run_gradlog("report", "sample_logs/crashed.jsonl")
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Note: sample_logs/crashed.jsonl:")
    assert "skipped a partly written last line" in lines[0]


def test_documented_healthy_example_byte_for_byte(tmp_path):
    """The quick start's "Healthy Training" lines, from a log holding exactly those numbers."""
    from gradlog.recorder.writers import JsonlWriter

    path = tmp_path / "doc.jsonl"
    writer = JsonlWriter(path)
    run = {
        "v": 1,
        "run": "doc",
        "kind": "run",
        "meta": {"tasks": ["pointer", "type"], "log_every": 10},
    }
    writer.write(run)
    # Three balance samples whose mean is 1.23, then one stats event.
    for epoch, ratio in ((5, 1.20), (10, 1.25), (15, 1.24)):
        writer.write(
            {
                "v": 1,
                "run": "doc",
                "kind": "event",
                "epoch": epoch,
                "tasks": [
                    {"name": "pointer", "grad_norm": ratio, "weight": 1.0},
                    {"name": "type", "grad_norm": 1.0, "weight": 1.0},
                ],
            }
        )
    writer.write(
        {
            "v": 1,
            "run": "doc",
            "kind": "event",
            "epoch": 20,
            "mean_norm": 0.2134,
            "max_norm": 1.4567,
        }
    )
    writer.close()
    out = run_gradlog("report", str(path)).stdout.decode()
    assert ("Epoch 20 Gradient Stats:\n  Mean norm: 0.2134\n  Max norm:  1.4567\n\n") in out
    assert "[PHASE 4] Task balance: Tasks balanced (ratio=1.23)\n" in out
    assert (
        "[PHASE 4] Gradient Monitoring Summary:\n"
        "  Mean gradient norm: 0.2134 ± 0.0000\n"
        "  Max gradient norm: 1.4567 (peak: 1.4567)\n"
        "  Task balance: Tasks balanced (ratio=1.23)\n"
    ) in out


def test_documented_collapse_example_byte_for_byte(tmp_path):
    """The quick start's "Task Collapse Detected" block, in the documented order."""
    from gradlog.recorder.writers import JsonlWriter

    path = tmp_path / "doc.jsonl"
    writer = JsonlWriter(path)
    writer.write(
        {
            "v": 1,
            "run": "doc",
            "kind": "run",
            "meta": {"tasks": ["pointer", "type"], "log_every": 5},
        }
    )
    # the window's geometric mean with the third sample (5.23) is 6.34
    for epoch, ratio in ((5, 6.98), (10, 6.98)):
        writer.write(
            {
                "v": 1,
                "run": "doc",
                "kind": "event",
                "epoch": epoch,
                "tasks": [
                    {"name": "pointer", "grad_norm": ratio, "weight": 1.0},
                    {"name": "type", "grad_norm": 1.0, "weight": 1.0},
                ],
            }
        )
    writer.write(
        {
            "v": 1,
            "run": "doc",
            "kind": "event",
            "epoch": 15,
            "mean_norm": 0.4567,
            "max_norm": 2.8901,
            "tasks": [
                {"name": "pointer", "grad_norm": 5.23, "weight": 1.0},
                {"name": "type", "grad_norm": 1.0, "weight": 1.0},
            ],
        }
    )
    writer.close()
    out = run_gradlog("report", str(path)).stdout.decode()
    assert (
        "Epoch 15 Gradient Stats:\n"
        "  Mean norm: 0.4567\n"
        "  Max norm:  2.8901\n"
        "\n"
        "[PHASE 4] Task imbalance detected at epoch 15!\n"
        "Pointer/Type gradient ratio: 5.23 (healthy range: 0.5-2.0)\n"
        "\n"
        "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=6.34 > 5.0)\n"
    ) in out
    assert "  TASK COLLAPSE DETECTED: Pointer task dominating (ratio=6.34 > 5.0)\n" in out
