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


def write(path: Path) -> Path:
    writer = JsonlWriter(path)
    meta = {"tasks": ["pointer", "type"], "log_every": 1, "stats_at": "after_clipping"}
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
        "(scaled by 0.0322)",
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
    echoed = messages.stats_block(f"Epoch {epoch}", mean, top, None, None, coef, pre)
    assert "\n".join(echoed) in report


def test_json_carries_the_clipping_columns_and_the_moment(tmp_path):
    result = run_gradlog("report", str(write(tmp_path / "run.jsonl")), "--format", "json")
    run = json.loads(result.stdout)["runs"][0]
    assert run["stats_at"] == "after_clipping"
    assert run["events"]["pre_clip_norm"] == [46.58, 1.2, 2.0, 3.0]
    assert run["events"]["clip_coef"][1:] == [1.0, 0.75, 0.5]
    # the statistics, and the status judged from them, are those logged (after clipping)
    assert run["mean_norm"] == pytest.approx((0.2318 + 0.2 + 0.1) / 3)
