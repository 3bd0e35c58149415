"""A log whose statistics were taken after clipping: the report shows the norms the backward
made, and an explosion clipping hid (docs/report.md, docs/format.md "Clipping")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_gradlog

from gradlog import messages
from gradlog.recorder.writers import JsonlWriter

# (mean, max, pre-clip total norm, clip coefficient) of four events
EVENTS = [
    (0.2318, 1.0265, 46.58, 1.5 / 46.58),  # clipped hard: an explosion hidden
    (0.2, 0.9, 1.2, 1.0),  # under the threshold: nothing clipped
    (0.1, 0.5, 2.0, 0.75),  # clipped a little
    (math.nan, math.inf, 3.0, 0.5),  # non-finite statistics
]


def write(path: Path, stats_at: str = "after_clipping") -> Path:
    writer = JsonlWriter(path)
    meta = {"tasks": ["pointer", "type"], "log_every": 1, "stats_at": stats_at}
    writer.write({"v": 1, "run": "c", "kind": "run", "meta": meta})
    for epoch, (mean, top, pre, coef) in enumerate(EVENTS, start=1):
        stats = {"mean_norm": mean, "max_norm": top, "pre_clip_norm": pre, "clip_coef": coef}
        writer.write({"v": 1, "run": "c", "kind": "event", "epoch": epoch, "step": epoch, **stats})
    writer.close()
    return path


def test_the_report_shows_the_norms_before_clipping(tmp_path):
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl")))
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    first = lines.index("Epoch 1 Gradient Stats:")
    assert lines[first + 3 : first + 5] == [
        "  Before clipping: mean norm 7.1982, max norm 31.8762, total norm 46.5800 "
        "(clipped to 1.5000)",
        "  WARNING: Exploding gradients before clipping (mean norm 7.1982 > 5.0)",
    ]
    second = lines.index("Epoch 2 Gradient Stats:")
    assert lines[second + 3] == ""  # coefficient 1: nothing was clipped, nothing to say
    third = lines.index("Epoch 3 Gradient Stats:")
    assert lines[third + 3].startswith("  Before clipping: mean norm 0.1333,")
    assert lines[third + 4] == ""


@pytest.mark.parametrize("epoch", [1, 2, 3, 4])
def test_the_live_echo_words_a_clipped_event_as_the_report(tmp_path, epoch):
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl")))
    report = result.stdout.decode().split("\n\n")
    mean, top, pre, coef = EVENTS[epoch - 1]
    echoed = messages.stats_block(f"Epoch {epoch}", mean, top, None, None, coef, pre, True)
    assert "\n".join(echoed) in report


def test_json_carries_the_clipping_columns_and_the_moment(tmp_path):
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl")), "--format", "json")
    run = json.loads(result.stdout)["runs"][0]
    assert run["stats_at"] == "after_clipping"
    assert run["events"]["pre_clip_norm"] == [46.58, 1.2, 2.0, 3.0]
    assert run["events"]["clip_coef"][1:] == [1.0, 0.75, 0.5]
    # the statistics, and the status judged from them, are those logged (after clipping)
    assert run["mean_norm"] == pytest.approx((0.2318 + 0.2 + 0.1) / 3)


def test_statistics_read_before_clipping_say_only_that_clipping_followed(tmp_path):
    """Lightning's moment: the statistics are the backward's, then the trainer clipped."""
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl", "before_clipping")))
    lines = result.stdout.decode().splitlines()
    first = lines.index("Epoch 1 Gradient Stats:")
    assert lines[first + 3 : first + 5] == ["  Then clipped: total norm 46.5800 to 1.5000", ""]
    assert not any("before clipping" in line for line in lines)


def test_a_non_finite_norm_before_clipping_is_a_warning(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path)
    meta = {"tasks": ["a", "b"], "log_every": 1, "stats_at": "after_clipping"}
    writer.write({"v": 1, "run": "c", "kind": "run", "meta": meta})
    stats = {"mean_norm": 0.0, "max_norm": 0.0, "pre_clip_norm": math.inf, "clip_coef": 0.0}
    writer.write({"v": 1, "run": "c", "kind": "event", "epoch": 1, "step": 1, **stats})
    writer.close()
    lines = run_gradlog("report", str(path)).stdout.decode().splitlines()
    assert "  WARNING: Non-finite gradient norm before clipping" in lines
    assert messages.stats_block("Epoch 1", 0.0, 0.0, None, None, 0.0, math.inf, True)[3] == (
        "  WARNING: Non-finite gradient norm before clipping"
    )


def test_the_recorders_echo_of_a_clipped_run_is_its_report(tmp_path):
    """A real model clipped hard by the recorder: the echo and the report agree line for line,
    the clipping lines included."""
    import io

    torch = pytest.importorskip("torch")
    from gradlog import GradientRecorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    path, echo = tmp_path / "run.jsonl", io.StringIO()
    with GradientRecorder(
        model, ["a", "b"], path, clip=0.05, log_every=1, balance_every=2, echo=echo
    ) as rec:
        for epoch in range(1, 6):
            x = torch.randn(32, 4) * 30
            out = model(x)
            losses = {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - 1).pow(2).mean()}
            optimizer.zero_grad()
            rec.backward(losses, epoch=epoch)
            optimizer.step()
    report = run_gradlog("report", str(path)).stdout.decode()
    assert "  Before clipping: mean norm" in report
    assert echo.getvalue() == report[: report.index("\n" + "-" * 60)]


def test_original_prints_no_clipping_lines(tmp_path):
    """The original printed none: ``--original`` stays word for word."""
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl")), "--original")
    assert "clipping" not in result.stdout.decode().lower()
    assert "WARNING: Exploding" not in result.stdout.decode()
