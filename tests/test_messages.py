"""The documented report lines of ``gradlog.messages``, word for word.

Every expected string below is copied from ``shared/spec/report-semantics.md`` or the quick
start's example output.
"""

from __future__ import annotations

import math

import pytest

from gradlog import messages
from gradlog.classify import Collapse


def test_enabled_line() -> None:
    assert (
        messages.enabled_line(10, None)
        == "[PHASE 4] Gradient monitoring enabled (log frequency: 10 epochs)"
    )
    assert (
        messages.enabled_line(None, 200)
        == "[PHASE 4] Gradient monitoring enabled (log frequency: 200 steps)"
    )
    assert (
        messages.enabled_line(5, 100)
        == "[PHASE 4] Gradient monitoring enabled (log frequency: 5 epochs, 100 steps)"
    )
    assert (
        messages.enabled_line(None, None)
        == "[PHASE 4] Gradient monitoring enabled (log frequency: unknown)"
    )


def test_stats_block_quick_start_example() -> None:
    assert messages.stats_block("Epoch 10", 0.2134, 1.4567, 0, 0) == [
        "Epoch 10 Gradient Stats:",
        "  Mean norm: 0.2134",
        "  Max norm:  1.4567",
    ]


def test_stats_block_two_spaces_after_max_norm() -> None:
    block = messages.stats_block("Epoch 15", 0.4567, 2.8901, None, None)
    assert block[2] == "  Max norm:  2.8901"
    assert block[1] == "  Mean norm: 0.4567"
    # the two values line up
    assert block[1].index("0.4567") == block[2].index("2.8901")


def test_stats_block_four_decimals() -> None:
    block = messages.stats_block("Step 200", 0.123456, 12.0, 0, 0)
    assert block == ["Step 200 Gradient Stats:", "  Mean norm: 0.1235", "  Max norm:  12.0000"]


def test_stats_block_layer_warnings() -> None:
    assert messages.stats_block("Epoch 3", 0.2, 11.0, 2, 1) == [
        "Epoch 3 Gradient Stats:",
        "  Mean norm: 0.2000",
        "  Max norm:  11.0000",
        "  WARNING: Vanishing gradients in 2 layers",
        "  WARNING: Exploding gradients in 1 layers",
    ]


@pytest.mark.parametrize(("mean", "peak"), [(math.nan, math.nan), (0.2, math.inf)])
def test_stats_block_nonfinite(mean: float, peak: float) -> None:
    block = messages.stats_block("Epoch 1", mean, peak, 0, 0)
    assert block[-1] == "  WARNING: Non-finite gradient norms"
    assert len(block) == 4


def test_imbalance_lines() -> None:
    assert messages.imbalance_lines("epoch 15", "pointer", "type", 5.23) == [
        "[PHASE 4] Task imbalance detected at epoch 15!",
        "Pointer/Type gradient ratio: 5.23 (healthy range: 0.5-2.0)",
    ]


def test_imbalance_lines_other_tasks() -> None:
    assert messages.imbalance_lines("step 40", "depth", "segmentation", 0.3) == [
        "[PHASE 4] Task imbalance detected at step 40!",
        "Depth/Segmentation gradient ratio: 0.30 (healthy range: 0.5-2.0)",
    ]


def test_collapse_line_pointer_dominating() -> None:
    assert (
        messages.collapse_line(Collapse.NUMERATOR_DOMINATES, "pointer", "type", 6.34)
        == "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=6.34 > 5.0)"
    )


def test_collapse_line_type_dominating() -> None:
    assert (
        messages.collapse_line(Collapse.DENOMINATOR_DOMINATES, "pointer", "type", 0.12)
        == "[PHASE 4] TASK COLLAPSE: Type task dominating (ratio=0.12 < 0.20)"
    )


def test_collapse_line_balanced() -> None:
    assert (
        messages.collapse_line(Collapse.BALANCED, "pointer", "type", 1.23)
        == "[PHASE 4] Task balance: Tasks balanced (ratio=1.23)"
    )


def test_collapse_line_not_enough_data() -> None:
    assert (
        messages.collapse_line(Collapse.NOT_ENOUGH_DATA, "pointer", "type", None)
        == "[PHASE 4] Task balance: Not enough data"
    )


def test_collapse_line_other_task_names_are_capitalised() -> None:
    assert (
        messages.collapse_line(Collapse.NUMERATOR_DOMINATES, "depth", "segmentation", 7.5)
        == "[PHASE 4] TASK COLLAPSE: Depth task dominating (ratio=7.50 > 5.0)"
    )
    assert (
        messages.collapse_line(Collapse.DENOMINATOR_DOMINATES, "depth", "segmentation", 0.1)
        == "[PHASE 4] TASK COLLAPSE: Segmentation task dominating (ratio=0.10 < 0.20)"
    )


def test_summary_healthy_quick_start_example() -> None:
    lines = messages.summary_lines(
        0.2034, 0.0245, 1.3156, 1.8234, Collapse.BALANCED, "pointer", "type", 1.34
    )
    assert lines == [
        "[PHASE 4] Gradient Monitoring Summary:",
        "  Mean gradient norm: 0.2034 ± 0.0245",
        "  Max gradient norm: 1.3156 (peak: 1.8234)",
        "  Task balance: Tasks balanced (ratio=1.34)",
    ]


def test_summary_collapse() -> None:
    lines = messages.summary_lines(
        0.4, 0.1, 2.0, 3.0, Collapse.NUMERATOR_DOMINATES, "pointer", "type", 6.34
    )
    assert lines[-1] == "  TASK COLLAPSE DETECTED: Pointer task dominating (ratio=6.34 > 5.0)"
    lines = messages.summary_lines(
        0.4, 0.1, 2.0, 3.0, Collapse.DENOMINATOR_DOMINATES, "pointer", "type", 0.12
    )
    assert lines[-1] == "  TASK COLLAPSE DETECTED: Type task dominating (ratio=0.12 < 0.20)"


def test_summary_not_enough_data_without_stats() -> None:
    lines = messages.summary_lines(
        None, None, None, None, Collapse.NOT_ENOUGH_DATA, "pointer", "type", None
    )
    assert lines == ["[PHASE 4] Gradient Monitoring Summary:", "  Task balance: Not enough data"]


def test_summary_other_task_names() -> None:
    lines = messages.summary_lines(
        0.2, 0.01, 1.0, 1.5, Collapse.NUMERATOR_DOMINATES, "depth", "normals", 9.0
    )
    assert lines[-1] == "  TASK COLLAPSE DETECTED: Depth task dominating (ratio=9.00 > 5.0)"


def test_undefined_line_zero_norm() -> None:
    assert (
        messages.undefined_line("epoch 5", {"pointer": 0.5, "type": 0.0})
        == "[PHASE 4] Task balance undefined at epoch 5: Type gradient norm is zero (Pointer=0.5, Type=0)"
    )
    # a zero numerator is undefined too (second edition), never a ratio of 0
    assert "Pointer gradient norm is zero" in messages.undefined_line(
        "epoch 5", {"pointer": 0.0, "type": 0.5}
    )


def test_undefined_line_missing_task_of_three() -> None:
    line = messages.undefined_line("step 9", {"price": 1.0, "volume": None, "regime": 0.5})
    assert line == (
        "[PHASE 4] Task balance undefined at step 9: no gradient norm for Volume "
        "(Price=1, Volume=missing, Regime=0.5)"
    )


def test_undefined_line_nonfinite() -> None:
    assert (
        messages.undefined_line("epoch 7", {"pointer": math.nan, "type": 1.0})
        == "[PHASE 4] Task balance undefined at epoch 7: non-finite gradient norm (Pointer=nan, Type=1)"
    )
    line = messages.undefined_line("step 3", {"pointer": 1.0, "type": math.inf})
    assert "non-finite gradient norm" in line
    # the undefined ratio is never reported as the original's silent 1e8
    assert "1e+08" not in line and "100000000" not in line


@pytest.mark.parametrize(
    ("task", "title"),
    [("pointer", "Pointer"), ("type", "Type"), ("depth_map", "Depth_map"), ("x", "X"), ("", "")],
)
def test_title(task: str, title: str) -> None:
    assert messages.title(task) == title


def test_number_formats() -> None:
    assert messages.fmt4(0.21344) == "0.2134"
    assert messages.fmt4(1.0) == "1.0000"
    assert messages.fmt2(6.3449) == "6.34"
    assert messages.fmt2(0.1) == "0.10"
