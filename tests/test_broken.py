"""Broken logs: every kind of damage gets its documented outcome and a precise message.

The table in docs/format.md ("Reading leniently, refusing clearly") lists each input, what
gradlog does with it and what it says; these tests hold it to that, case by case, in-process
(the reader, the analysis and the text renderer) and through the real command line.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from gradlog.analysis.batch import run_batch
from gradlog.analysis.engine import Options
from gradlog.analysis.readers import read_log
from gradlog.analysis.render.text import format_text
from gradlog.analysis.report import analyse
from gradlog.errors import GradlogError, LogFormatError

RUN = {"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["pointer", "type"], "log_every": 5}}


def event(at: int, pointer: object = 0.2, type_: object = 0.1, **fields: object) -> dict:
    """An event at epoch ``at`` (step ``10 * at``); ``fields`` override or add fields."""
    record = {
        "v": 1,
        "run": "r",
        "kind": "event",
        "epoch": at,
        "step": at * 10,
        "mean_norm": 0.2,
        "max_norm": 0.5,
        "tasks": [
            {"name": "pointer", "grad_norm": pointer, "weight": 1.0},
            {"name": "type", "grad_norm": type_, "weight": 1.0},
        ],
    }
    record.update(fields)
    return record


def line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


def write(path: Path, *lines: str | dict, end: str = "\n") -> Path:
    text = "\n".join(x if isinstance(x, str) else line(x) for x in lines)
    path.write_bytes((text + end).encode("utf-8", "surrogateescape"))
    return path


def report(path: Path, strict: bool = False) -> tuple[str, tuple[str, ...]]:
    """The text report and the notes, in-process, as ``gradlog report`` builds them."""
    result = analyse(read_log(path, strict=strict), strict=strict)
    return format_text(result), result.notes


def refused(path: Path, strict: bool = False) -> str:
    with pytest.raises(LogFormatError) as info:
        analyse(read_log(path, strict=strict), strict=strict)
    return str(info.value)


GOOD = [RUN, event(5), event(10), event(15)]


# -- skipped with a counted note (and refused with --strict) --------------------------------


def test_truncated_line_in_the_middle_is_skipped_with_a_note(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), line(event(10))[:40], event(15))
    text, notes = report(path)
    assert len(notes) == 1
    assert notes[0].startswith(f"{path}:3: skipped a line that is not valid JSON (Expecting")
    assert "Epoch 5 Gradient Stats" in text and "Epoch 15 Gradient Stats" in text
    assert "Epoch 10 Gradient Stats" not in text
    assert refused(path, strict=True) == (
        f"{path}:3: {notes[0].split(': skipped ', 1)[1]}; --strict refuses to skip it"
    )


def test_corrupt_lines_are_counted_beyond_the_first_five(tmp_path: Path) -> None:
    broken = [f"garbage {i} {{" for i in range(8)]
    path = write(tmp_path / "run.jsonl", RUN, event(5), *broken, event(15))
    _, notes = report(path)
    assert [n.split(": skipped")[0] for n in notes[:5]] == [f"{path}:{n}" for n in range(3, 8)]
    assert notes[5] == f"{path}: skipped 3 more broken lines (8 in all)"


def test_non_utf8_line_is_skipped_with_its_reason(tmp_path: Path) -> None:
    bad = line(event(10)).replace('"r"', '"caf\udce9"')  # a lone Latin-1 byte, 0xE9
    path = write(tmp_path / "run.jsonl", RUN, event(5), bad, event(15))
    _, notes = report(path)
    assert notes == (
        f"{path}:3: skipped a line that is not UTF-8 text (invalid continuation byte)",
    )
    assert "not UTF-8" in refused(path, strict=True)


def test_partly_written_last_line(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), line(event(10))[:25], end="")
    text, notes = report(path)
    assert notes == (f"{path}:3: skipped a partly written last line (25 bytes)",)
    assert "Epoch 5 Gradient Stats" in text
    assert refused(path, strict=True) == (
        f"{path}:3: a partly written last line (25 bytes); --strict refuses to skip it"
    )


def test_deeply_nested_line_is_skipped_not_a_crash(tmp_path: Path) -> None:
    deep = '{"v":1,"run":"r","kind":"event","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write(tmp_path / "run.jsonl", RUN, event(5), deep, event(15))
    _, notes = report(path)
    assert len(notes) == 1 and notes[0].startswith(f"{path}:3: skipped a line that is ")


# -- stops with exit 2: file, line and field -------------------------------------------------

REFUSED = {
    "wrong_type": (event(10, epoch="x"), "field 'epoch': expected an integer, got 'x'"),
    "float_for_int": (event(10, epoch=10.5), "field 'epoch': expected an integer, got 10.5"),
    # what decoding a line would take (gradlog.analysis.jsonl_scan): 10.0 as 10, true as 1
    "whole_float_for_int": (event(10, epoch=10.0), "field 'epoch': expected an integer, got 10.0"),
    "bool_for_int": (event(10, step=True), "field 'step': expected an integer, got True"),
    "bool_for_version": (
        {"v": True, "run": "r", "kind": "event"},
        "field 'v': expected an integer schema version, got True",
    ),
    "bool_for_mean_norm": (event(10, mean_norm=True), "field 'mean_norm': expected a number"),
    "bool_for_a_weight": (
        event(10, tasks=[{"name": "a", "grad_norm": 0.2, "weight": False}]),
        "field 'tasks[0].weight': expected a number",
    ),
    "bool_for_a_layer_norm": (
        event(10, layers=[{"name": "w", "norm": False}]),
        "field 'layers[0].norm': expected a number",
    ),
    "int_beyond_64_bits": (
        event(10, n_exploding=2**63),
        "field 'n_exploding': integer 9223372036854775808 is out of the 64-bit range",
    ),
    "bool_for_number": (
        event(10, pointer=True),
        "field 'tasks[0].grad_norm': expected a number or one of NaN, Infinity, -Infinity, got True",
    ),
    "text_for_number": (event(10, mean_norm="big"), "field 'mean_norm': expected a number"),
    # a field no batch row shows: read all the same, so batch refuses what report refuses
    "text_for_unshown_number": (
        event(10, total_norm="big"),
        "field 'total_norm': expected a number",
    ),
    # fields that the analysis never reads, checked all the same
    "text_for_time": (event(10, time="soon"), "field 'time': expected a number"),
    "float_for_n_grads": (event(10, n_grads=1.5), "field 'n_grads': expected an integer, got 1.5"),
    "text_for_rank": (event(10, rank="0"), "field 'rank': expected an integer, got '0'"),
    "list_for_text": (event(10, run=[1]), "field 'run': expected a string, got a list [1]"),
    # nested lists no batch row shows: recognised on their text (gradlog.analysis.shapes)
    "text_for_a_cosine": (
        event(10, conflicts=[{"a": "pointer", "b": "type", "cosine": "x"}]),
        "field 'conflicts[0].cosine': expected a number",
    ),
    "bool_for_a_cosine": (
        event(10, conflicts=[{"a": "pointer", "b": "type", "cosine": True}]),
        "field 'conflicts[0].cosine': expected a number",
    ),
    "conflicts_not_list": (
        event(10, conflicts={"a": "pointer"}),
        "field 'conflicts': expected a list, got dict",
    ),
    "list_for_a_pair_name": (
        event(10, conflicts=[{"a": ["pointer"], "b": "type", "cosine": 0.5}]),
        "field 'conflicts[0].a': expected a string, got a list",
    ),
    "layers_not_list": (event(10, layers="oops"), "field 'layers': expected a list, got str"),
    "layer_not_object": (event(10, layers=[1.0]), "field 'layers[0]': expected an object"),
    "text_for_a_layer_norm": (
        event(10, layers=[{"name": "w", "norm": "big"}]),
        "field 'layers[0].norm': expected a number",
    ),
    "object_for_text": (event(10, kind={"a": 1}), "field 'kind': expected a string, got an object"),
    "missing_run": ({"v": 1, "kind": "event"}, "field 'run': missing (required in every record)"),
    "missing_v": ({"run": "r", "kind": "event"}, "field 'v': missing (required in every record)"),
    "missing_kind": ({"v": 1, "run": "r"}, "field 'kind': missing (required in every record)"),
    "null_kind": ({"v": 1, "run": "r", "kind": None}, "field 'kind': missing"),
    "unknown_kind": ({"v": 1, "run": "r", "kind": "x"}, "field 'kind': expected 'run' or 'event'"),
    "version_2": (
        {"v": 2, "run": "r", "kind": "event"},
        "field 'v': unknown schema version 2 (this gradlog reads version 1)",
    ),
    "version_text": ({"v": "1", "run": "r", "kind": "event"}, "field 'v': expected an integer"),
    "task_without_name": (
        event(10, tasks=[{"grad_norm": 1.0}]),
        "field 'tasks[0].name': missing (required in every entry)",
    ),
    "task_twice": (
        event(10, tasks=[{"name": "a", "grad_norm": 1.0}, {"name": "a", "grad_norm": 2.0}]),
        "field 'tasks[1].name': task 'a' appears twice in one balance sample",
    ),
    "task_not_object": (event(10, tasks=[1]), "field 'tasks[0]': expected an object, got int"),
    "tasks_not_list": (event(10, tasks={"name": "a"}), "field 'tasks': expected a list, got dict"),
    "int_out_of_range": (
        event(10, step=2**64),
        "field 'step': integer 18446744073709551616 is out",
    ),
    "meta_wrong_type": (
        {"v": 1, "run": "r", "kind": "run", "meta": {"log_every": 1.5}},
        "field 'meta.log_every': expected an integer, got 1.5",
    ),
    "meta_tasks_text": (
        {"v": 1, "run": "r", "kind": "run", "meta": {"tasks": "ab"}},
        "field 'meta.tasks': expected a list of task names",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_schema_breaks_stop_with_file_line_and_field(tmp_path: Path, case: str) -> None:
    record, expected = REFUSED[case]
    path = write(tmp_path / "run.jsonl", RUN, event(5), record, event(15))
    message = refused(path)
    assert message.startswith(f"{path}:3: {expected}"), message


def test_valid_nested_lists_pass_the_scan_without_a_careful_read(tmp_path: Path) -> None:
    """The scan checks cosines and layer norms on their text: valid ones (nulls, exponents,
    quotes in a name, any key order, a number for a name) never send a log to the careful
    reader; the NaN/Infinity tokens do (a false alarm: rare, and that reader accepts them), and
    the batch's rows are the same either way."""
    from gradlog.analysis.jsonl_scan import read_json

    pairs = [{"a": "pointer", "b": "type", "cosine": c} for c in (0.5, -1e-05, None)]
    layers = [{"name": "enc.weight", "norm": 1.5e300}, {"name": 'a "quoted" name', "norm": 0}]
    plain = write(
        tmp_path / "plain.jsonl",
        RUN,
        event(5, conflicts=pairs, layers=layers),
        event(10, conflicts=[{"cosine": 0.25, "b": 2, "a": "pointer"}], layers=[]),
    )
    tokens = write(
        tmp_path / "tokens.jsonl",
        RUN,
        event(5, conflicts=[{"a": "pointer", "b": "type", "cosine": "NaN"}]),
        event(10, layers=[{"name": "w", "norm": "Infinity"}]),
    )
    assert not read_json([str(plain)], 0).records.get_column("bad").any()
    assert read_json([str(tokens)], 0, tokens=True).records.get_column("bad").to_list() == [
        False,
        True,
        True,
    ]
    assert [r.error for r in run_batch([str(plain), str(tokens)]).rows] == [None, None]
    for path in (plain, tokens):
        analyse(read_log(str(path)))  # the careful reader accepts them


@pytest.mark.parametrize("case", list(REFUSED))
def test_batch_refuses_the_same_records_with_the_same_message(tmp_path: Path, case: str) -> None:
    """One rule list: a record that stops ``gradlog report`` is the file's error row in a batch,
    however the batch's fast scan reads it, and the message is the careful reader's."""
    record, expected = REFUSED[case]
    good = write(tmp_path / "good.jsonl", RUN, event(5), event(10), event(15))
    path = write(tmp_path / "run.jsonl", RUN, event(5), record, event(15))
    rows = run_batch([str(good), str(path)]).rows
    assert [r.error is None for r in rows] == [True, False]
    assert rows[1].error.startswith(f"{path}:3: {expected}"), rows[1].error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"v": 1, "run": "r", "kind": "event", "epoch": 1e1}', "field 'epoch': expected an"),
        ('{"v": 1, "run": "r", "kind": "event", "step" :\t-2E0}', "field 'step': expected an"),
        ('{"v": 1, "run": "r", "kind": "event", "mean_norm": \t true}', "field 'mean_norm'"),
        ('{"v": 1, "run": "r", "kind": "event", "tasks": [ false ]}', "field 'tasks[0]'"),
    ],
)
def test_a_batch_refuses_what_decoding_a_line_would_take(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Spaces, tabs and exponents as other JSON writers put them: what the lines' decoding
    would read as a number (gradlog.analysis.jsonl_scan) is the careful reader's error row."""
    path = write(tmp_path / "run.jsonl", RUN, event(5), text, event(15))
    assert refused(path).startswith(f"{path}:3: {expected}")
    (row,) = run_batch([str(path)]).rows
    assert row.error is not None and row.error.startswith(f"{path}:3: {expected}"), row.error


def test_words_and_numbers_as_text_cost_no_careful_read(tmp_path: Path) -> None:
    """``true`` inside text (a tag, a task's name) is no boolean, and a number where text
    belongs is read as its text, as the careful reader does (docs/format.md): the lines'
    decoding marks none of them, and the rows are the careful reader's."""
    from gradlog.analysis.jsonl_scan import read_json

    meta = {"tasks": ["true", "false, really"], "tags": [{"key": "amp", "value": "true"}]}
    tasks = [{"name": "true", "grad_norm": 0.2}, {"name": "false, really", "grad_norm": 0.1}]
    path = write(
        tmp_path / "words.jsonl",
        {"v": 1, "run": 7, "kind": "run", "meta": meta},
        event(5, run=7, tasks=tasks),
        event(10, run=7, tasks=tasks, conflicts=[{"a": 1, "b": "true", "cosine": 0.5}]),
    )
    assert not read_json([str(path)], 0).records.get_column("bad").any()
    (row,) = run_batch([str(path)]).rows
    (careful,) = analyse(read_log(path)).runs
    assert row.error is None
    assert row == careful.summary and row.run == "7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"v":1,"run":"r","kind":"event","mean_norm":NaN}', "bare NaN is not JSON"),
        pytest.param(
            '{"v":1,"run":"r","kind":"event","mean_norm":-Infinity}', "bare -Infinity is not JSON"
        ),
        pytest.param(
            '{"v":1,"run":"r","kind":"event","mean_norm":1e400}',
            "number 1e400 is out of range for a 64-bit float",
        ),
        pytest.param("[1, 2]", "expected a JSON object, got list"),
        pytest.param("null", "expected a JSON object, got NoneType"),
    ],
)
def test_json_that_no_writer_produces(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), text, event(15))
    assert refused(path).startswith(f"{path}:3: {expected}")


def test_an_error_on_a_later_line_after_skipped_ones_names_the_right_line(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, "garbage", "", event(5), event(10, epoch="x"))
    assert refused(path).startswith(f"{path}:5: field 'epoch'")


def test_parquet_wrong_column_type_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    pl.DataFrame(
        {"v": [1, 1], "run": ["r", "r"], "kind": ["event", "event"], "epoch": ["5", "x"]}
    ).write_parquet(path)
    message = refused(path)
    assert message.startswith(f"{path}: row 2: field 'epoch': expected an integer, got 'x'"), (
        message
    )


def test_parquet_unknown_version_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    pl.DataFrame({"v": [1, 2], "run": ["r", "r"], "kind": ["event", "event"]}).write_parquet(path)
    assert refused(path).startswith(f"{path}: row 2: field 'v': unknown schema version 2")


def test_parquet_without_its_footer(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    pl.DataFrame({"v": [1], "run": ["r"], "kind": ["event"]}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-12])  # cut before the footer length and magic
    assert refused(path).startswith(f"{path}: not a readable Parquet file (")


def test_directory_and_missing_file(tmp_path: Path) -> None:
    assert refused(tmp_path) == f"{tmp_path}: is a directory, expected a log file"
    assert refused(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf\n"])
def test_empty_logs(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    assert refused(path) == f"{path}: empty log (no records)"


def test_every_line_broken(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", "garbage", "more garbage")
    assert refused(path).startswith(f"{path}:1: not valid JSON")


# -- read, with a decided outcome ------------------------------------------------------------


def test_duplicate_epochs_are_reported_in_order_with_a_counted_note(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), event(10), event(10), event(10), event(15))
    text, notes = report(path)
    assert notes == (
        f"{path}: run r: 2 events repeating an epoch and step already logged (the first: "
        "epoch 10, step 100, at line 4); all are reported in file order",
    )
    assert text.count("Epoch 10 Gradient Stats:") == 3
    assert "refused with --strict" in refused(path, strict=True)


def test_events_going_back_are_reported_in_file_order(tmp_path: Path) -> None:
    epochs = [5, 20, 10, 15, 25]
    path = write(tmp_path / "run.jsonl", RUN, *[event(e, pointer=0.1 * e) for e in epochs])
    text, notes = report(path)
    assert notes == (
        f"{path}: run r: 1 event earlier than the event before (epoch or step going back) "
        "(the first: epoch 10, step 100, at line 4); all are reported in file order",
    )
    shown = [int(x.split()[1]) for x in text.splitlines() if x.endswith("Gradient Stats:")]
    assert shown == epochs  # file order, not sorted
    # the window runs in file order too: the geometric mean of the last three ratios logged
    # (10, 15, 25), not of the three largest epochs (15, 20, 25)
    result = analyse(read_log(path), Options(window=3))
    assert result.runs[0].summary.window_ratio == pytest.approx((10 * 15 * 25) ** (1 / 3))


def test_steps_going_back_within_one_epoch(tmp_path: Path) -> None:
    records = [event(1, step=s) for s in (10, 20, 15)]
    path = write(tmp_path / "run.jsonl", RUN, *records)
    _, notes = report(path)
    assert len(notes) == 1 and "the first: epoch 1, step 15, at line 4" in notes[0]


def test_steps_restarting_each_epoch_are_in_order(tmp_path: Path) -> None:
    records = [event(e, step=s) for e in (1, 2) for s in (1, 2, 3)]
    path = write(tmp_path / "run.jsonl", RUN, *records)
    assert report(path)[1] == ()


def test_mixed_runs_are_told_apart(tmp_path: Path) -> None:
    other = {**RUN, "run": "s"}
    path = write(
        tmp_path / "run.jsonl",
        RUN,
        other,
        event(5),
        event(5, run="s"),
        event(10),
        event(10, run="s"),
    )
    text, notes = report(path)
    assert notes == ()  # one run's epochs interleaved with another's are in order
    assert f"=== Run r ({path}) ===" in text and f"=== Run s ({path}) ===" in text


def test_empty_tasks_list_is_an_event_without_a_balance_sample(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), event(10, tasks=[]), event(15))
    text, notes = report(path)
    assert notes == ()
    assert text.count("[PHASE 4] Task balance:") == 2  # epochs 5 and 15 only
    assert analyse(read_log(path)).runs[0].summary.n_balance == 2


@pytest.mark.parametrize(
    ("pointer", "type_", "reason"),
    [
        (0.2, 0.0, "Type gradient norm is zero (Pointer=0.2, Type=0)"),
        (0.2, "NaN", "non-finite gradient norm (Pointer=0.2, Type=nan)"),
        ("Infinity", 0.1, "non-finite gradient norm (Pointer=inf, Type=0.1)"),
    ],
)
def test_zero_or_nonfinite_task_norm_is_an_undefined_ratio(
    tmp_path: Path, pointer: object, type_: object, reason: str
) -> None:
    path = write(tmp_path / "run.jsonl", RUN, event(5), event(10, pointer=pointer, type_=type_))
    text, _ = report(path)
    assert f"[PHASE 4] Task balance undefined at epoch 10: {reason}" in text
    summary = analyse(read_log(path)).runs[0].summary
    assert summary.n_undefined == 1 and summary.worst_band.value == "undefined"


def test_huge_values_are_reported_not_overflowed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "run.jsonl",
        RUN,
        event(5, mean_norm=1e300, max_norm=1.5e308),
        event(10, mean_norm=1e300, max_norm=1.7e308),
        event(15),
    )
    s = analyse(read_log(path)).runs[0].summary
    means = [1e300, 1e300, 0.2]
    assert s.mean_norm == pytest.approx(sum(m / 3 for m in means), rel=1e-12)
    assert math.isfinite(s.mean_norm_std)
    assert s.mean_norm_std == pytest.approx(statistics.pstdev(means), rel=1e-9)
    assert s.max_norm_mean == pytest.approx((1.5e308 / 3 + 1.7e308 / 3 + 0.5 / 3), rel=1e-12)
    assert s.n_nonfinite == 0
    text, _ = report(path)
    assert "Gradient norms: Exploding" in text


@pytest.mark.parametrize("name", ["meta", "tasks", "layers", "conflicts"])
def test_a_task_named_like_a_nested_field_with_huge_values(tmp_path: Path, name: str) -> None:
    """Found by the long fuzz run: a task named "meta" and a loss of 1e300 made the log
    unreadable (the name sent the read the general way, where Polars writes 1e300 out as 301
    digits that its own JSON decoding then refuses)."""
    tasks = [
        {"name": "pointer", "grad_norm": 0.2, "loss": 0.0, "weight": 1.0},
        {"name": name, "grad_norm": 0.1, "loss": 1e300, "weight": 1.0},
    ]
    path = write(
        tmp_path / "run.jsonl",
        {**RUN, "meta": {"tasks": ["pointer", name], "log_every": 5}},
        *[event(e, tasks=tasks) for e in (5, 10, 15)],
    )
    log = read_log(path)
    assert log.notes == []
    losses = [t[1]["loss"] for t in log.frame["tasks"].drop_nulls().to_list()]
    assert losses == [1e300] * 3
    report = analyse(log, Options(pair=("pointer", name))).runs[0]
    assert report.summary.window_ratio == pytest.approx(2.0)


def test_a_nested_key_inside_a_task_with_a_huge_value(tmp_path: Path) -> None:
    """A field gradlog does not know, named like a nested one, inside a task: the fast cut is
    not possible, Polars' general read cannot decode its own text of 1e300, Python's can."""
    tasks = [
        {"name": "pointer", "grad_norm": 1e300, "weight": 1.0, "layers": 1},
        {"name": "type", "grad_norm": 1e299, "weight": 1.0},
    ]
    path = write(tmp_path / "run.jsonl", RUN, *[event(e, tasks=tasks) for e in (5, 10, 15)])
    log = read_log(path)
    assert log.notes == []
    assert analyse(log).runs[0].summary.window_ratio == pytest.approx(10.0)
    bad = [{**tasks[0], "grad_norm": True}, tasks[1]]
    path = write(tmp_path / "bad.jsonl", RUN, event(5, tasks=bad))
    with pytest.raises(LogFormatError, match=r"bad.jsonl:2: field 'tasks\[0\].grad_norm'"):
        read_log(path)


@pytest.mark.parametrize(
    "means",
    [
        [2.3471664643534065e-200, 0.0, 1e-310],
        [2.225073858507203e-309, 0.0],  # subnormal: a scale of 2**-1026 has no finite inverse
        [5e-324, 5e-324, 0.0],
        [1e308, 1e307, 0.0],
    ],
)
def test_tiny_values_do_not_underflow(tmp_path: Path, means: list[float]) -> None:
    """Found by the long fuzz run: the squares of 1e-200 underflow to 0 unless scaled, and a
    subnormal largest value once made the scale's inverse infinite (the mean NaN)."""
    path = write(
        tmp_path / "run.jsonl",
        RUN,
        *[event(5 * (i + 1), mean_norm=m, max_norm=m) for i, m in enumerate(means)],
    )
    s = analyse(read_log(path)).runs[0].summary
    assert s.mean_norm_std == pytest.approx(statistics.pstdev(means), rel=1e-12)
    assert s.mean_norm == pytest.approx(statistics.fmean(means), rel=1e-12)


def test_a_ratio_beyond_the_float_range_is_a_collapse_as_the_echo_says(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jsonl", RUN, *[event(e, 1e300, 1e-300) for e in (5, 10, 15)])
    text, _ = report(path)
    assert "TASK COLLAPSE DETECTED: Pointer task dominating (ratio=inf > 5.0)" in text


def test_lenient_reading_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + line(RUN).encode()
        + b"\r\n\r\n   \n"
        + line(event(5, run=5, extra={"unknown": [1, 2]}, mean_norm="0.25")).encode()
        + b"\r\n"
    )
    frame = read_log(path).frame
    assert frame["run"].to_list() == ["r", "5"]
    assert frame["mean_norm"].to_list()[1] == 0.25


def test_gzip_cut_short_and_concatenated_members(tmp_path: Path) -> None:
    text = "\n".join(line(r) for r in GOOD) + "\n"
    two = tmp_path / "two.jsonl.gz"
    two.write_bytes(gzip.compress(text[:200].encode()) + gzip.compress(text[200:].encode()))
    assert read_log(two).frame.height == 4
    cut = tmp_path / "cut.jsonl.gz"
    packed = gzip.compress(text.encode() * 50)
    cut.write_bytes(packed[: len(packed) // 2])
    log = read_log(cut)
    assert log.notes[0] == f"{cut}: compressed stream is cut short; read what could be decompressed"
    assert "refused with --strict" in refused(cut, strict=True)


def test_journal_of_a_crashed_parquet_recorder_is_a_note_and_strict_refuses(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    write(tmp_path / "run.parquet.journal", *GOOD)
    log = read_log(path)
    assert log.frame.height == 4 and "did not close" in log.notes[0]
    with pytest.raises(GradlogError, match="refused with --strict"):
        read_log(path, strict=True)


# -- through the command line: exit codes and one line per problem ---------------------------


def gradlog(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args], capture_output=True, timeout=120, env=env
    )


def test_cli_outcomes_and_strict(tmp_path: Path) -> None:
    skipped = write(tmp_path / "skipped.jsonl", RUN, event(5), "garbage", event(15))
    wrong = write(tmp_path / "wrong.jsonl", RUN, event(5, epoch="x"))
    repeated = write(tmp_path / "repeated.jsonl", RUN, event(5), event(5))
    calls = [
        ("report", str(skipped)),
        ("report", str(skipped), "--strict"),
        ("report", str(wrong)),
        ("report", str(repeated), "--strict"),
        ("convert", str(skipped), "-o", str(tmp_path / "out.parquet"), "--strict"),
    ]
    with ThreadPoolExecutor(4) as pool:
        ok, strict, bad, strict_order, convert = pool.map(lambda a: gradlog(*a), calls)
    assert ok.returncode == 0
    assert ok.stderr.decode().startswith(
        f"Note: {skipped}:3: skipped a line that is not valid JSON"
    )
    for result in (strict, bad, strict_order, convert):
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert result.stdout == b""
    assert strict.stderr.decode().startswith(f"Error: {skipped}:3: a line that is not valid JSON")
    assert bad.stderr.decode().startswith(f"Error: {wrong}:2: field 'epoch': expected an integer")
    assert "refused with --strict" in strict_order.stderr.decode()
    assert not (tmp_path / "out.parquet").exists()


def test_parquet_objects_missing_a_number_field_read_as_json_lines_without_it(
    tmp_path: Path,
) -> None:
    # Hypothesis found a damaged Parquet footer that renamed the tasks' "grad_norm": the check
    # for numbers lost in the cast asked the file's objects for a field they did not have
    bare = [{k: v for k, v in t.items() if k != "grad_norm"} for t in event(5)["tasks"]]
    jsonl = write(tmp_path / "run.jsonl", RUN, *(event(at, tasks=bare) for at in (5, 10, 15)))
    parquet = tmp_path / "run.parquet"
    read_log(write(tmp_path / "full.jsonl", *GOOD)).frame.with_columns(
        pl.col("tasks").list.eval(
            pl.element().struct.rename_fields(["name", "grad_nrom", "loss", "weight"])
        )
    ).write_parquet(parquet)
    text, notes = report(parquet)
    assert (text, notes) == report(jsonl)
    assert "Task balance: Not enough data" in text
