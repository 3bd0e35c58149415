"""The pair a message prints never decides a finding (second edition).

``--pair a/b`` and ``--pair b/a`` give exactly reciprocal ratios, the same bands, the same
verdict, status and exit code, on any log: the window is a geometric mean, and the verdict
judges the spread of every task.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import run_gradlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradlog.analysis import api
from gradlog.classify import Collapse
from gradlog.recorder.writers import JsonlWriter

NAMES = ["pointer", "type", "depth", "seg"]
norm = st.one_of(
    st.floats(min_value=1e-6, max_value=1e6),
    st.sampled_from([0.0, math.nan, math.inf, 1e-300, 1e300]),
)


def write(path: Path, tasks: list[str], samples: list[list[float]]) -> Path:
    writer = JsonlWriter(path)
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": tasks, "log_every": 1}})
    for epoch, norms in enumerate(samples, start=1):
        writer.write(
            {
                "v": 1,
                "run": "r",
                "kind": "event",
                "epoch": epoch,
                "mean_norm": 0.2,
                "max_norm": 0.5,
                "tasks": [{"name": t, "grad_norm": n, "weight": 1.0} for t, n in zip(tasks, norms)],
            }
        )
    writer.close()
    return path


@st.composite
def logs(draw):
    n_tasks = draw(st.integers(2, 4))
    samples = draw(
        st.lists(st.lists(norm, min_size=n_tasks, max_size=n_tasks), min_size=1, max_size=14)
    )
    a, b = draw(st.permutations(range(n_tasks)))[:2]
    window = draw(st.integers(1, 6))
    return NAMES[:n_tasks], samples, (NAMES[a], NAMES[b]), window


FINDINGS = (
    "status",
    "final_band",
    "worst_band",
    "spread",
    "worst_spread",
    "dominant",
    "starved",
    "first_imbalance",
    "first_collapse",
    "n_undefined",
)
SWAPPED = {
    Collapse.NUMERATOR_DOMINATES: Collapse.DENOMINATOR_DOMINATES,
    Collapse.DENOMINATOR_DOMINATES: Collapse.NUMERATOR_DOMINATES,
    Collapse.BALANCED: Collapse.BALANCED,
    Collapse.NOT_ENOUGH_DATA: Collapse.NOT_ENOUGH_DATA,
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(logs())
def test_swapping_the_pair_changes_no_finding(tmp_path_factory, log) -> None:
    tasks, samples, (a, b), window = log
    path = write(tmp_path_factory.mktemp("pair") / "run.jsonl", tasks, samples)
    forward = api.analyse(path, pair=(a, b), window=window).runs[0].summary
    backward = api.analyse(path, pair=(b, a), window=window).runs[0].summary
    default = api.analyse(path, window=window).runs[0].summary
    for field in FINDINGS:
        assert getattr(forward, field) == getattr(backward, field) == getattr(default, field)
    assert forward.verdict == backward.verdict == default.verdict
    assert backward.pair_verdict == SWAPPED[forward.pair_verdict]
    if forward.window_ratio is None:
        assert backward.window_ratio is None
    elif math.isfinite(forward.window_ratio) and forward.window_ratio > 0:
        assert backward.window_ratio == pytest.approx(1 / forward.window_ratio, rel=1e-12)


def test_swapping_the_pair_keeps_the_exit_code(tmp_path: Path) -> None:
    """Through the CLI: a starved third task fails --fail-on collapse whichever pair prints."""
    samples = [[1.0, 1.2, 0.001]] * 6
    path = write(tmp_path / "run.jsonl", ["pointer", "type", "depth"], samples)
    codes = {
        pair: run_gradlog("report", str(path), "--pair", pair, "--fail-on", "collapse").returncode
        for pair in ("pointer/type", "type/pointer", "depth/pointer", "pointer/depth")
    }
    assert set(codes.values()) == {1}, codes
    assert run_gradlog("report", str(path), "--fail-on", "collapse").returncode == 1


def test_the_same_task_twice_is_a_usage_error(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", ["pointer", "type"], [[1.0, 1.0]] * 3)
    for command in ("report", "batch"):
        result = run_gradlog(command, str(path), "--pair", "type/type")
        assert result.returncode == 2
        (line,) = result.stderr.decode().splitlines()
        assert line.startswith("Error: Invalid value for --pair: expected two different task")
