"""A short JSON Lines log is read by Polars' own reader, a long one by the slicing read: the two
give the same frame, notes and lines, and refuse the same records with the same message.

Most logs the other tests read are short, so this is where the slicing read meets every kind
of log a short one does (``SLICED_FROM`` set to 0 sends them all its way).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLE_LOGS
from polars.testing import assert_frame_equal
from test_broken import GOOD, REFUSED, RUN, event, line, write
from test_pieces import damaged_log

from gradlog.analysis.readers import fast, read_log
from gradlog.errors import LogFormatError
from gradlog.frames import COLUMNS

ODD = {
    "good": GOOD,
    # a key spelt with escapes, a key spaced from its colon, a task named like a nested field
    "escaped_key": [RUN, line(event(5)).replace('"tasks":', '"\\u0074asks":'), event(10)],
    "spaced_key": [RUN, line(event(5)).replace('"tasks":', '"tasks" :'), event(10)],
    "task_named_meta": [RUN, event(5, tasks=[{"name": "meta", "grad_norm": 0.5}])],
    "tokens": [RUN, event(5, pointer="NaN"), event(10, type_="Infinity", mean_norm="NaN")],
    "huge_nested": [RUN, event(5, layers=[{"name": "w", "norm": 1.5e300}])],
    "conflicts": [
        RUN,
        event(5, conflicts=[{"a": "pointer", "b": "type", "cosine": -0.25}]),
        event(10, conflicts=[]),
    ],
    "no_run_record": [event(5), event(10)],
}
ODD.update(
    {f"refused_{k}": [RUN, event(5), record, event(15)] for k, (record, _) in REFUSED.items()}
)


def outcome(path: Path) -> tuple:
    try:
        log = read_log(path)
    except LogFormatError as exc:
        return None, str(exc)
    return log.frame, (log.notes, [log.where(i) for i in range(log.frame.height)])


def assert_reads_agree(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert path.stat().st_size < fast.SLICED_FROM  # read by Polars' own reader
    short_frame, short = outcome(path)
    monkeypatch.setattr(fast, "SLICED_FROM", 0)
    sliced_frame, sliced = outcome(path)
    assert sliced == short
    if short_frame is None:
        assert sliced_frame is None
    else:
        assert_frame_equal(sliced_frame, short_frame)


@pytest.mark.parametrize("case", list(ODD))
def test_short_and_sliced_reads_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    assert_reads_agree(write(tmp_path / "run.jsonl", *ODD[case]), monkeypatch)


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_LOGS.glob("*.jsonl")))
def test_the_sample_logs_read_alike(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = SAMPLE_LOGS / name
    assert_reads_agree(path, monkeypatch)
    # and each read on its own, not one falling back on the other (the sliced read types the
    # flat floats at once, the general one as text: the same once cast); whole lines only, as
    # the reader gives them (crashed.jsonl's last is cut short)
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    sliced, general = (
        fast.cast_storage(fast._decode_nested(read(whole))).select(COLUMNS)
        for read in (fast._sliced_read, fast._nested_as_text_read)
    )
    assert_frame_equal(sliced, general)


def test_a_damaged_log_reads_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte-order mark, blank and broken lines, a partly written last line: the same notes."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(damaged_log())
    assert_reads_agree(path, monkeypatch)
