"""RecorderConfig: every argument check of the recorder, without torch or a model.

The messages are compared whole: users read them, and tests/test_recorder.py checks the
same ones through GradientRecorder.
"""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import sys

import pytest

from gradlog.errors import RecorderConfigError
from gradlog.recorder.config import (
    DEFAULT_BUFFER_RECORDS,
    DEFAULT_FLUSH_SECONDS,
    MODES,
    PARAMETERS,
    REPRESENTATION,
    RecorderConfig,
)

TASKS = ["pointer", "type"]


def refused(message: str, **kwargs) -> None:
    args = {"tasks": TASKS, **kwargs}
    with pytest.raises(RecorderConfigError) as info:
        RecorderConfig(**args)
    assert str(info.value) == message


# -- what a valid config resolves to ----------------------------------------------------------


def test_defaults() -> None:
    config = RecorderConfig(TASKS)
    assert config.tasks == ("pointer", "type")
    assert dict(config.weights) == {"pointer": 1.0, "type": 1.0}
    assert config.mode == PARAMETERS
    assert config.shared is None
    assert (config.log_every, config.log_every_steps) == (10, None)
    assert (config.balance_every, config.balance_every_steps) == (5, None)
    assert config.layers is False and config.fsync is False and config.per_rank is False
    assert config.run_id is None and config.tags is None
    assert config.buffer == 0  # epoch cadences only: one write per record
    assert config.flush_seconds == DEFAULT_FLUSH_SECONDS
    assert (config.window, config.min_samples) == (10, 3)
    assert config.by_steps is False


def test_weights_are_floats_for_every_task_in_task_order() -> None:
    config = RecorderConfig(("a", "b", "c"), weights={"c": 2, "a": 0.5})
    assert list(config.weights.items()) == [("a", 0.5), ("b", 1.0), ("c", 2.0)]
    assert all(type(w) is float for w in config.weights.values())


def test_zero_and_negative_weights_are_weights() -> None:
    config = RecorderConfig(TASKS, weights={"pointer": 0, "type": -1.5})
    assert dict(config.weights) == {"pointer": 0.0, "type": -1.5}


def test_tasks_from_any_iterable() -> None:
    assert RecorderConfig(iter(["x"])).tasks == ("x",)
    assert RecorderConfig(("a", "b", "c")).tasks == ("a", "b", "c")


def test_a_step_cadence_buffers_by_default() -> None:
    assert RecorderConfig(TASKS, log_every_steps=1).buffer == DEFAULT_BUFFER_RECORDS
    assert RecorderConfig(TASKS, balance_every_steps=7).buffer == DEFAULT_BUFFER_RECORDS
    assert RecorderConfig(TASKS, log_every_steps=1).by_steps is True
    assert RecorderConfig(TASKS, log_every_steps=1, buffer=0).buffer == 0
    assert RecorderConfig(TASKS, buffer=25).buffer == 25


def test_per_rank_is_a_bool() -> None:
    assert RecorderConfig(TASKS, per_rank=1).per_rank is True
    assert RecorderConfig(TASKS, per_rank=None).per_rank is False


def test_shared_is_kept_as_given_in_representation_mode() -> None:
    config = RecorderConfig(TASKS, mode=REPRESENTATION, shared="encoder")
    assert config.shared == "encoder"  # resolved against the model by the recorder


def test_only_epoch_or_only_step_cadences() -> None:
    config = RecorderConfig(TASKS, log_every=None, balance_every=None, log_every_steps=3)
    assert (config.log_every, config.log_every_steps, config.balance_every) == (None, 3, None)
    assert RecorderConfig(TASKS, log_every=None).balance_every == 5


def test_flush_seconds_may_be_an_int_or_tiny() -> None:
    assert RecorderConfig(TASKS, flush_seconds=1).flush_seconds == 1
    assert RecorderConfig(TASKS, flush_seconds=1e-9).flush_seconds == 1e-9


def test_frozen() -> None:
    config = RecorderConfig(TASKS, weights={"pointer": 2.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mode = REPRESENTATION  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.weights["pointer"] = 3.0  # type: ignore[index]


def test_the_callers_weights_are_copied() -> None:
    weights = {"pointer": 2.0}
    config = RecorderConfig(TASKS, weights=weights)
    weights["pointer"] = 9.0
    assert config.weights["pointer"] == 2.0


def test_echo_stream() -> None:
    stream = io.StringIO()
    assert RecorderConfig(TASKS).echo_stream() is None
    assert RecorderConfig(TASKS, echo=None).echo_stream() is None
    assert RecorderConfig(TASKS, echo=stream).echo_stream() is stream


def test_echo_true_is_stdout_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    config = RecorderConfig(TASKS, echo=True)
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", swapped)
    assert config.echo_stream() is swapped


# -- every check's message --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "shown"),
    [([], "[]"), (["pointer", ""], "['pointer', '']"), (["pointer", 3], "['pointer', 3]")],
)
def test_tasks_must_be_names(tasks, shown: str) -> None:
    refused(f"tasks must be a non-empty list of names, got {shown}", tasks=tasks)


def test_tasks_shown_as_a_list_whatever_was_passed() -> None:
    refused("tasks must be a non-empty list of names, got []", tasks=())


def test_task_names_must_be_unique() -> None:
    refused("task names must be unique, got ['a', 'b', 'a']", tasks=["a", "b", "a"])


def test_weights_of_unknown_tasks() -> None:
    refused(
        "weights name unknown tasks ['nope', 'zzz']; tasks are ['pointer', 'type']",
        weights={"zzz": 1.0, "pointer": 1.0, "nope": 2.0},
    )


@pytest.mark.parametrize(
    ("weight", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), ("1", "'1'"), (True, "True")],
)
def test_weights_must_be_finite_numbers(weight, shown: str) -> None:
    refused(
        f"weight of task 'type' must be a finite number, got {shown}",
        weights={"type": weight},
    )


@pytest.mark.parametrize(
    "name", ["log_every", "log_every_steps", "balance_every", "balance_every_steps"]
)
@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-5, "-5"), (2.5, "2.5"), (True, "True")])
def test_cadences_must_be_positive_integers(name: str, value, shown: str) -> None:
    refused(f"{name} must be a positive integer or None, got {shown}", **{name: value})


def test_a_cadence_given_as_text() -> None:
    refused("log_every must be a positive integer or None, got '10'", log_every="10")


def test_some_cadence_must_be_set() -> None:
    refused(
        "every cadence is None: nothing would ever be logged", log_every=None, balance_every=None
    )


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"min_samples": 0}, {"window": -1}])
def test_window_and_min_samples(kwargs: dict) -> None:
    refused("window and min_samples must be at least 1", **kwargs)


def test_mode_must_be_known() -> None:
    assert MODES == ("parameters", "representation")
    refused("mode must be one of ('parameters', 'representation'), got 'fast'", mode="fast")


def test_shared_belongs_to_representation_mode() -> None:
    refused("shared= names the representation of mode='representation'", shared="encoder")


@pytest.mark.parametrize(("buffer", "shown"), [(-1, "-1"), (1.5, "1.5"), (True, "True")])
def test_buffer_must_be_a_record_count(buffer, shown: str) -> None:
    refused(
        f"buffer must be a non-negative number of records (0: unbuffered), got {shown}",
        buffer=buffer,
    )


@pytest.mark.parametrize(("value", "shown"), [("10", "'10'"), (True, "True"), (None, "None")])
def test_flush_seconds_must_be_a_number(value, shown: str) -> None:
    refused(f"flush_seconds must be a number, got {shown}", flush_seconds=value)


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-1.0, "-1.0"), (math.nan, "nan")])
def test_flush_seconds_must_be_positive(value, shown: str) -> None:
    refused(f"flush_seconds must be positive, got {shown}", flush_seconds=value)


def test_the_first_mistake_is_reported_in_the_recorders_order() -> None:
    bad = {
        "tasks": [],
        "weights": {"x": 1.0},
        "log_every": 0,
        "window": 0,
        "mode": "fast",
        "buffer": -1,
        "flush_seconds": 0,
    }
    expected = [
        "tasks must be a non-empty list of names, got []",
        "weights name unknown tasks ['x']; tasks are ['pointer', 'type']",
        "log_every must be a positive integer or None, got 0",
        "window and min_samples must be at least 1",
        "mode must be one of ('parameters', 'representation'), got 'fast'",
        "buffer must be a non-negative number of records (0: unbuffered), got -1",
        "flush_seconds must be positive, got 0",
    ]
    for i, message in enumerate(expected):
        remaining = dict(list(bad.items())[i:])
        remaining.setdefault("tasks", TASKS)
        with pytest.raises(RecorderConfigError) as info:
            RecorderConfig(**remaining)
        assert str(info.value) == message


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        RecorderConfig([])


def test_config_does_not_import_torch() -> None:
    code = "import sys, gradlog.recorder.config; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_recorder_keeps_its_config(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from gradlog import GradientRecorder

    model = torch.nn.Linear(2, 2)
    with GradientRecorder(
        model, TASKS, tmp_path / "run.jsonl", weights={"type": 3}, log_every_steps=2
    ) as rec:
        assert rec.config.tasks == tuple(TASKS) and rec.tasks == TASKS
        assert rec.weights == {"pointer": 1.0, "type": 3.0}
        assert rec.config.buffer == DEFAULT_BUFFER_RECORDS
        assert (rec.log_every, rec.log_every_steps) == (10, 2)
