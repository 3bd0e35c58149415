"""The documented bands and thresholds of ``gradlog.classify``, every boundary pinned.

A boundary value belongs to the milder band; the next float beyond it (``math.nextafter``)
belongs to the next band (``shared/spec/report-semantics.md``).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gradlog import classify
from gradlog.classify import Collapse, FailOn, NormBand, RatioBand

INF = math.inf
NAN = math.nan


def above(x: float) -> float:
    return math.nextafter(x, INF)


def below(x: float) -> float:
    return math.nextafter(x, -INF)


# -- ratio bands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "band"),
    [
        (1.0, RatioBand.HEALTHY),
        # r >= 1: 2.0 / 3.0 / 5.0, each boundary in the milder band
        (2.0, RatioBand.HEALTHY),
        (above(2.0), RatioBand.MINOR),
        (3.0, RatioBand.MINOR),
        (above(3.0), RatioBand.SIGNIFICANT),
        (5.0, RatioBand.SIGNIFICANT),
        (above(5.0), RatioBand.COLLAPSE),
        (1e300, RatioBand.COLLAPSE),
        # r < 1: judged by 1/r; 0.5 / 1/3 / 0.2, each boundary in the milder band
        (0.5, RatioBand.HEALTHY),
        (below(0.5), RatioBand.MINOR),
        (1 / 3, RatioBand.MINOR),
        (below(1 / 3), RatioBand.SIGNIFICANT),
        (0.2, RatioBand.SIGNIFICANT),
        (below(0.2), RatioBand.COLLAPSE),
        (1e-300, RatioBand.COLLAPSE),
        (0.0, RatioBand.COLLAPSE),
    ],
)
def test_ratio_band_boundaries(r: float, band: RatioBand) -> None:
    assert classify.ratio_band(r) is band


@pytest.mark.parametrize("r", [None, NAN, INF, -INF, -1.0, -0.5])
def test_ratio_band_undefined(r: float | None) -> None:
    assert classify.ratio_band(r) is RatioBand.UNDEFINED


@pytest.mark.parametrize(
    ("r", "band"),
    [
        (2.5, RatioBand.MINOR),
        (1 / 2.5, RatioBand.MINOR),
        (4.0, RatioBand.SIGNIFICANT),
        (0.25, RatioBand.SIGNIFICANT),
        (6.0, RatioBand.COLLAPSE),
        (1 / 6, RatioBand.COLLAPSE),
    ],
)
def test_ratio_band_is_symmetric_in_the_interior(r: float, band: RatioBand) -> None:
    assert classify.ratio_band(r) is band
    assert classify.ratio_band(1 / r) is band


@given(
    st.floats(min_value=1e-12, max_value=1e12),
    st.floats(min_value=1e-12, max_value=1e12),
)
def test_ratio_band_severity_grows_away_from_one(a: float, b: float) -> None:
    """Moving a ratio further from 1 (on the same side) never makes its band milder."""
    lo, hi = sorted((a, b))
    assume(lo >= 1 or hi <= 1)
    near, far = (lo, hi) if lo >= 1 else (hi, lo)
    severity = classify.RATIO_SEVERITY
    assert severity[classify.ratio_band(far)] >= severity[classify.ratio_band(near)]


def test_ratio_band_labels_and_actions() -> None:
    assert RatioBand.HEALTHY.label == "Healthy"
    assert RatioBand.HEALTHY.action == "No change needed"
    assert RatioBand.MINOR.label == "Minor imbalance"
    assert RatioBand.MINOR.action == "Monitor closely"
    assert RatioBand.SIGNIFICANT.label == "Significant imbalance"
    assert RatioBand.SIGNIFICANT.action == "Adjust loss weights"
    assert RatioBand.COLLAPSE.label == "Task collapse"
    assert RatioBand.COLLAPSE.action == "Urgent: rebalance weights"


@pytest.mark.parametrize(
    ("r", "outside"),
    [
        (0.5, False),
        (below(0.5), True),
        (2.0, False),
        (above(2.0), True),
        (1.0, False),
        (0.0, True),
    ],
)
def test_outside_healthy_range(r: float, outside: bool) -> None:
    assert classify.outside_healthy_range(r) is outside


# -- collapse check -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "verdict"),
    [
        (1.0, Collapse.BALANCED),
        (5.0, Collapse.BALANCED),
        (above(5.0), Collapse.NUMERATOR_DOMINATES),
        (6.34, Collapse.NUMERATOR_DOMINATES),
        (INF, Collapse.NUMERATOR_DOMINATES),
        (0.2, Collapse.BALANCED),
        (below(0.2), Collapse.DENOMINATOR_DOMINATES),
        (0.12, Collapse.DENOMINATOR_DOMINATES),
        (0.0, Collapse.DENOMINATOR_DOMINATES),
        (None, Collapse.NOT_ENOUGH_DATA),
        (NAN, Collapse.NOT_ENOUGH_DATA),
    ],
)
def test_collapse_check(mean: float | None, verdict: Collapse) -> None:
    assert classify.collapse_check(mean) is verdict


# -- norm bands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "band"),
    [
        (0.0, NormBand.VANISHING),
        (below(0.01), NormBand.VANISHING),
        (0.01, NormBand.LOW),
        (0.05, NormBand.LOW),
        (below(0.1), NormBand.LOW),
        (0.1, NormBand.HEALTHY),
        (0.3, NormBand.HEALTHY),
        (0.5, NormBand.HEALTHY),
        (above(0.5), NormBand.ELEVATED),
        (1.0, NormBand.ELEVATED),
        (above(1.0), NormBand.LARGE),
        (5.0, NormBand.LARGE),
        (above(5.0), NormBand.EXPLODING),
        (1e300, NormBand.EXPLODING),
        (NAN, NormBand.NONFINITE),
        (INF, NormBand.NONFINITE),
        (-INF, NormBand.NONFINITE),
    ],
)
def test_norm_band_boundaries(norm: float, band: NormBand) -> None:
    assert classify.norm_band(norm) is band


def test_norm_band_warnings_and_severity() -> None:
    warns = {band for band in NormBand if band.warns}
    assert warns == {NormBand.VANISHING, NormBand.LARGE, NormBand.EXPLODING, NormBand.NONFINITE}
    worst = max(NormBand, key=classify.NORM_SEVERITY.__getitem__)
    assert worst is NormBand.NONFINITE
    assert NormBand.VANISHING.action == "Increase learning rate"
    assert NormBand.LARGE.action == "Check gradient clipping"
    assert NormBand.EXPLODING.action == "Reduce learning rate"
    assert NormBand.HEALTHY.action == "No change needed"


# -- layer thresholds -----------------------------------------------------------------------


def test_layer_vanishing_threshold() -> None:
    assert not classify.layer_is_vanishing(1e-7)
    assert classify.layer_is_vanishing(below(1e-7))
    assert classify.layer_is_vanishing(0.0)
    assert not classify.layer_is_vanishing(1.0)


def test_layer_exploding_threshold() -> None:
    assert not classify.layer_is_exploding(10.0)
    assert classify.layer_is_exploding(above(10.0))
    assert classify.layer_is_exploding(INF)
    assert not classify.layer_is_exploding(1.0)


# -- ratio ----------------------------------------------------------------------------------


def test_ratio_defined() -> None:
    assert classify.ratio(6.0, 3.0) == 2.0
    assert classify.ratio(0.0, 3.0) == 0.0
    assert classify.ratio(1.0, 4.0) == 0.25


@pytest.mark.parametrize(
    ("num", "den"),
    [
        (1.0, 0.0),
        (1.0, -0.0),
        (0.0, 0.0),
        (NAN, 1.0),
        (1.0, NAN),
        (INF, 1.0),
        (1.0, INF),
        (-INF, 1.0),
        (INF, INF),
    ],
)
def test_ratio_undefined(num: float, den: float) -> None:
    assert classify.ratio(num, den) is None


# -- the window: geometric means, judged by the spread -------------------------------------------


def test_window_needs_min_samples() -> None:
    assert classify.window_logs([], window=10, min_samples=3) is None
    two = [{"a": 1.0, "b": 1.0}] * 2
    assert classify.window_logs(two, window=10, min_samples=3) is None
    three = [{"a": 1.0, "b": 2.0}, {"a": 4.0, "b": 2.0}, {"a": 2.0, "b": 2.0}]
    logs = classify.window_logs(three, window=10, min_samples=3)
    assert math.exp(logs["a"]) == pytest.approx(2.0)  # (1 * 4 * 2) ** (1/3)
    assert math.exp(logs["b"]) == pytest.approx(2.0)


def test_window_uses_only_the_last_window() -> None:
    samples = [{"a": 100.0, "b": 1.0}] * 5 + [{"a": v, "b": 1.0} for v in (1.0, 2.0, 4.0)]
    assert math.exp(classify.window_logs(samples, window=3, min_samples=3)["a"]) == pytest.approx(
        2.0
    )


def test_window_min_samples_larger_than_window() -> None:
    # a full window is always enough, whatever min_samples says
    assert classify.window_logs([{"a": 2.0}, {"a": 8.0}], window=2, min_samples=5) is not None
    assert classify.window_logs([{"a": 2.0}], window=2, min_samples=5) is None


def test_geometric_window_is_symmetric() -> None:
    """Swapping the pair gives exactly the reciprocal, so the same band (an arithmetic mean of
    ratios would not: 1 and 100 average to 50.5, their reciprocals to 0.505)."""
    samples = [{"a": 1.0, "b": 1.0}, {"a": 100.0, "b": 1.0}]
    logs = classify.window_logs(samples, window=10, min_samples=1)
    forward, backward = logs["a"] - logs["b"], logs["b"] - logs["a"]
    assert forward == -backward
    assert classify.collapse_check_log(forward) is Collapse.NUMERATOR_DOMINATES
    assert classify.collapse_check_log(backward) is Collapse.DENOMINATOR_DOMINATES
    assert classify.spread_band(abs(forward)) is RatioBand.COLLAPSE


@pytest.mark.parametrize(
    ("spread", "band"),
    [
        (1.0, RatioBand.HEALTHY),
        (2.0, RatioBand.HEALTHY),
        (2.0000001, RatioBand.MINOR),
        (3.0, RatioBand.MINOR),
        (5.0, RatioBand.SIGNIFICANT),
        (5.0000001, RatioBand.COLLAPSE),
        (math.inf, RatioBand.COLLAPSE),
    ],
)
def test_spread_band_boundaries_are_milder(spread: float, band: RatioBand) -> None:
    assert classify.spread_band(math.log(spread)) is band


def test_a_window_at_a_bound_counts_as_the_bound() -> None:
    """Three samples of exactly 5.0 go through logarithms and back; they stay significant."""
    samples = [{"a": 5.0, "b": 1.0}] * 3
    logs = classify.window_logs(samples, window=10, min_samples=3)
    assert classify.spread_band(logs["a"] - logs["b"]) is RatioBand.SIGNIFICANT
    assert classify.collapse_check_log(logs["a"] - logs["b"]) is Collapse.BALANCED


@pytest.mark.parametrize(
    ("norms", "defined"),
    [
        ({"a": 1.0, "b": 2.0}, True),
        ({"a": 0.0, "b": 2.0}, False),
        ({"a": math.nan, "b": 2.0}, False),
        ({"a": math.inf, "b": 2.0}, False),
        ({"a": -1.0, "b": 2.0}, False),
        ({"a": None, "b": 2.0}, False),
        ({"a": 5e-324, "b": 1e308}, True),
    ],
)
def test_defined_sample(norms: dict, defined: bool) -> None:
    assert classify.defined_sample(norms) is defined


# -- reaches --------------------------------------------------------------------------------

BALANCE_EXPECTED = {
    FailOn.MINOR: {RatioBand.MINOR, RatioBand.SIGNIFICANT, RatioBand.COLLAPSE, RatioBand.UNDEFINED},
    FailOn.SIGNIFICANT: {RatioBand.SIGNIFICANT, RatioBand.COLLAPSE, RatioBand.UNDEFINED},
    FailOn.COLLAPSE: {RatioBand.COLLAPSE, RatioBand.UNDEFINED},
}


@pytest.mark.parametrize("level", list(BALANCE_EXPECTED))
@pytest.mark.parametrize("band", list(RatioBand))
@pytest.mark.parametrize("norm", [None, NormBand.EXPLODING, NormBand.VANISHING])
def test_reaches_balance_levels(level: FailOn, band: RatioBand, norm: NormBand | None) -> None:
    """The balance levels are "at or above", and ignore the norm findings."""
    assert classify.reaches(level, band, norm) is (band in BALANCE_EXPECTED[level])


@pytest.mark.parametrize("level", list(BALANCE_EXPECTED))
def test_reaches_balance_level_without_balance(level: FailOn) -> None:
    assert classify.reaches(level, None, NormBand.NONFINITE) is False


@pytest.mark.parametrize("norm", [*NormBand, None])
@pytest.mark.parametrize("band", [None, RatioBand.COLLAPSE])
def test_reaches_vanishing(norm: NormBand | None, band: RatioBand | None) -> None:
    assert classify.reaches(FailOn.VANISHING, band, norm) is (norm is NormBand.VANISHING)


@pytest.mark.parametrize("norm", [*NormBand, None])
@pytest.mark.parametrize("band", [None, RatioBand.COLLAPSE])
def test_reaches_exploding(norm: NormBand | None, band: RatioBand | None) -> None:
    expected = norm in (NormBand.EXPLODING, NormBand.NONFINITE)
    assert classify.reaches(FailOn.EXPLODING, band, norm) is expected


def test_every_fail_on_level_is_covered() -> None:
    assert set(FailOn) == {*BALANCE_EXPECTED, FailOn.VANISHING, FailOn.EXPLODING}


# -- balancing weights ----------------------------------------------------------------------


def test_balancing_weights_two_tasks() -> None:
    weights = classify.balancing_weights(
        {"pointer": 10.0, "type": 2.0}, {"pointer": 1.0, "type": 1.0}
    )
    assert weights == {"pointer": 1.0, "type": 5.0}


def test_balancing_weights_balance_exactly() -> None:
    norms = {"a": 6.0, "b": 1.5, "c": 3.0}
    current = {"a": 0.5, "b": 2.0, "c": 1.0}
    weights = classify.balancing_weights(norms, current)
    assert weights == {"a": 0.5, "b": 8.0, "c": 2.0}
    # a task's norm scales linearly with its weight: under the new weights all norms are equal
    balanced = {t: norms[t] * weights[t] / current[t] for t in norms}
    assert set(balanced.values()) == {6.0}
    # the dominant task keeps its weight
    assert weights["a"] == current["a"]


@pytest.mark.parametrize(
    ("norms", "weights"),
    [
        ({}, {}),
        ({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}),
        ({"a": 1.0, "b": NAN}, {"a": 1.0, "b": 1.0}),
        ({"a": 1.0, "b": INF}, {"a": 1.0, "b": 1.0}),
        ({"a": 1.0, "b": -2.0}, {"a": 1.0, "b": 1.0}),
        ({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 0.0}),
        ({"a": 1.0, "b": 2.0}, {"a": NAN, "b": 1.0}),
        ({"a": 1.0, "b": 2.0}, {"a": INF, "b": 1.0}),
        ({"a": 1.0, "b": 2.0}, {"a": 1.0}),  # a weight is missing
    ],
)
def test_balancing_weights_none(norms: dict, weights: dict) -> None:
    assert classify.balancing_weights(norms, weights) is None


# -- default pair ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "pair"),
    [
        (["pointer", "type"], ("pointer", "type")),
        (["type", "pointer"], ("pointer", "type")),
        (["depth", "pointer", "seg", "type"], None),  # 3+ tasks: messages name the extremes
        (["depth", "seg"], ("depth", "seg")),
        (["depth", "seg", "normals"], None),
        (["pointer", "seg"], ("pointer", "seg")),
        (("a", "b"), ("a", "b")),
        (["only"], None),
        ([], None),
    ],
)
def test_default_pair(tasks: list[str], pair: tuple[str, str] | None) -> None:
    assert classify.default_pair(tasks) == pair


# -- the weight advice: which weights, printed how, and when none ------------------------------


@pytest.mark.parametrize(
    ("logged", "meta", "expected", "assumed"),
    [
        ({"a": 2.0, "b": 0.5}, [{"name": "a", "weight": 9.0}], {"a": 2.0, "b": 0.5}, False),
        ({"a": None, "b": 0.5}, [{"name": "a", "weight": 9.0}], {"a": 9.0, "b": 0.5}, False),
        ({"a": None, "b": None}, None, {"a": 1.0, "b": 1.0}, True),
        ({"a": 3.0}, [None, {"name": "c", "weight": 4.0}], {"a": 3.0, "b": 1.0}, True),
    ],
)
def test_current_weights(logged: dict, meta, expected: dict, assumed: bool) -> None:
    assert classify.current_weights(logged, meta, ["a", "b"]) == (expected, assumed)


def test_weight_flags() -> None:
    # the original's flags: alpha weighs the type task, beta the pointer task
    flags = classify.weight_flags({"pointer": 1.0, "type": 0.69621}, ["pointer", "type"])
    assert flags == "--loss-alpha 0.6962 --loss-beta 1"
    assert classify.weight_flags({"depth": 1.0, "seg": 12.5}, ["depth", "seg"]) == (
        "depth=1 seg=12.5"
    )
    assert classify.weight_flags(None, ["a", "b"]) is None


def test_weights_are_withheld_for_a_diverged_run() -> None:
    assert classify.weights_withheld(False, False) is None
    assert classify.weights_withheld(True, False) == classify.DIVERGED_NO_WEIGHTS
    assert classify.weights_withheld(False, True) == classify.DIVERGED_NO_WEIGHTS
