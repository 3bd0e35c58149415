"""The real ``gradlog`` command line, run as a subprocess on real log files."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gradlog import __version__
from gradlog.analysis.readers import read_log
from gradlog.errors import LogFormatError
from gradlog.recorder.writers import JsonlWriter


def gradlog(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        input=input,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"},
    )


def gradlog_many(calls: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess]:
    """Independent invocations, run side by side: each is mostly interpreter start-up."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: gradlog(*args), calls))


_CACHE: dict[tuple[str, ...], subprocess.CompletedProcess] = {}


def gradlog_cached(*args: str) -> subprocess.CompletedProcess:
    """A read-only invocation on a module's fixed logs: run once, or taken from the prefetch."""
    if args not in _CACHE:
        _CACHE[args] = gradlog(*args)
    return _CACHE[args]


def prefetch(calls: list[tuple[str, ...]]) -> None:
    """Run the read-only invocations the tests below will ask for, side by side."""
    todo = [args for args in dict.fromkeys(calls) if args not in _CACHE]
    _CACHE.update(zip(todo, gradlog_many(todo)))


def out(result: subprocess.CompletedProcess) -> str:
    return result.stdout.decode()


def err(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode()


def write_log(
    path: Path,
    ratios: list[float],
    mean_norms: list[float] | None = None,
    tasks: tuple[str, str] = ("pointer", "type"),
    run: str = "run1",
) -> Path:
    """A log written with the real writer: one event per ratio, stats in every event."""
    mean_norms = mean_norms if mean_norms is not None else [0.25] * len(ratios)
    writer = JsonlWriter(path)
    writer.write(
        {
            "v": 1,
            "run": run,
            "kind": "run",
            "time": 1.0,
            "meta": {
                "tasks": list(tasks),
                "log_every": 5,
                "balance_every": 5,
                "weights": [{"name": t, "weight": 1.0} for t in tasks],
            },
        }
    )
    for i, (r, m) in enumerate(zip(ratios, mean_norms), start=1):
        writer.write(
            {
                "v": 1,
                "run": run,
                "kind": "event",
                "time": 1.0 + i,
                "epoch": 5 * i,
                "step": 50 * i,
                "mean_norm": m,
                "max_norm": 4 * m if math.isfinite(m) else m,
                "total_norm": 8 * m if math.isfinite(m) else m,
                "n_grads": 6,
                "n_vanishing": 0,
                "n_exploding": 0,
                "tasks": [
                    {"name": tasks[0], "grad_norm": 0.1 * r, "loss": 1.0, "weight": 1.0},
                    {"name": tasks[1], "grad_norm": 0.1, "loss": 1.0, "weight": 1.0},
                ],
            }
        )
    writer.close()
    return path


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("healthy") / "healthy.jsonl"
    return write_log(path, [1.0, 1.5, 1.25, 1.25], [0.2, 0.3, 0.25, 0.25])


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pointer norm 10x the type norm at every sample."""
    return write_log(tmp_path_factory.mktemp("collapsed") / "collapsed.jsonl", [10.0] * 4)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log written by the real recorder around a tiny two-head torch model."""
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch
    from torch.nn import functional as F

    from gradlog import GradientRecorder

    path = tmp_path_factory.mktemp("recorded") / "train.jsonl"
    torch.manual_seed(0)
    encoder, pointer_head, type_head = (
        torch.nn.Linear(4, 8),
        torch.nn.Linear(8, 2),
        torch.nn.Linear(8, 3),
    )
    model = torch.nn.ModuleList([encoder, pointer_head, type_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y_pointer, y_type = torch.randn(32, 4), torch.rand(32, 2), torch.randint(0, 3, (32,))
    with GradientRecorder(model, ["pointer", "type"], path, log_every=2, balance_every=1) as rec:
        for epoch in range(1, 9):
            opt.zero_grad()
            h = torch.tanh(encoder(x))
            losses = {
                "pointer": F.mse_loss(pointer_head(h), y_pointer),
                "type": F.cross_entropy(type_head(h), y_type),
            }
            rec.backward(losses, epoch=epoch)
            opt.step()
    return path


@pytest.fixture(scope="module")
def nonfinite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nonfinite") / "nan.jsonl"
    return write_log(path, [1.0, 1.0, 1.0], [0.2, math.nan, -math.inf])


@pytest.fixture(scope="module", autouse=True)
def _prefetch(healthy: Path, collapsed: Path, recorded: Path, nonfinite: Path) -> None:
    h, c, r, n = map(str, (healthy, collapsed, recorded, nonfinite))
    prefetch(
        [
            ("report", r),
            ("report", h),
            ("report", c),
            ("report", h, "--format", "json"),
            ("report", r, "--format", "json"),
            ("report", n, "--format", "json"),
            ("report", c, "--pair", "type/pointer"),
            ("report", c, "--pair", "pointer/nope"),
            ("report", c, "--pair", "pointer"),
            ("report", c, "--window", "2", "--min-samples", "5"),
            ("report", h, "--run", "nope"),
            ("--help",),
            ("report", "--help"),
            ("--version",),
            (),
        ]
    )


def numbers(data) -> list[float]:
    """Every number anywhere in parsed JSON."""
    if isinstance(data, bool):
        return []
    if isinstance(data, (int, float)):
        return [float(data)]
    if isinstance(data, dict):
        return [n for v in data.values() for n in numbers(v)]
    if isinstance(data, list):
        return [n for v in data for n in numbers(v)]
    return []


def contains(values: list[float], expected: float) -> bool:
    return any(v == pytest.approx(expected, rel=1e-9) for v in values)


def without_paths(data):
    if isinstance(data, dict):
        return {k: without_paths(v) for k, v in data.items() if k not in ("path", "source")}
    if isinstance(data, list):
        return [without_paths(v) for v in data]
    return data


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    stderr = err(result)
    assert result.returncode == 2, (result.returncode, stderr)
    assert "Traceback" not in stderr
    assert stderr.startswith("Error: ")
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert out(result) == ""
    return stderr.strip()


# -- report ---------------------------------------------------------------------------------


def test_report_on_a_recorded_log(recorded: Path) -> None:
    result = gradlog_cached("report", str(recorded))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert text.startswith("[PHASE 4] Gradient monitoring enabled (log frequency: 2 epochs)\n\n")
    for epoch in (2, 4, 6, 8):
        assert f"Epoch {epoch} Gradient Stats:\n  Mean norm: " in text
    assert "\n  Max norm:  " in text
    assert "\n[PHASE 4] Gradient Monitoring Summary:\n  Mean gradient norm: " in text
    assert " ± " in text
    assert "\n  Max gradient norm: " in text and "(peak: " in text
    assert "Recommended action:" in text
    assert "Traceback" not in err(result)
    assert err(result) == ""


def test_report_healthy_text(healthy: Path) -> None:
    result = gradlog_cached("report", str(healthy))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert "Epoch 5 Gradient Stats:\n  Mean norm: 0.2000\n  Max norm:  0.8000\n" in text
    assert "[PHASE 4] Task balance: Not enough data" in text  # epochs 5 and 10
    # the window's geometric mean: (1 * 1.5 * 1.25) ** (1/3)
    assert "[PHASE 4] Task balance: Tasks balanced (ratio=1.23)" in text
    summary = text[text.index("[PHASE 4] Gradient Monitoring Summary:") :].splitlines()
    assert summary[:4] == [
        "[PHASE 4] Gradient Monitoring Summary:",
        "  Mean gradient norm: 0.2500 ± 0.0354",
        "  Max gradient norm: 1.0000 (peak: 1.2000)",
        "  Task balance: Tasks balanced (ratio=1.24)",  # (1 * 1.5 * 1.25 * 1.25) ** (1/4)
    ]


def test_report_collapsed_text(collapsed: Path) -> None:
    result = gradlog_cached("report", str(collapsed))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert "[PHASE 4] Task imbalance detected at epoch 5!\n" in text
    assert "Pointer/Type gradient ratio: 10.00 (healthy range: 0.5-2.0)\n" in text
    assert "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=10.00 > 5.0)" in text
    assert "  TASK COLLAPSE DETECTED: Pointer task dominating (ratio=10.00 > 5.0)" in text
    assert "--loss-alpha 10 --loss-beta 1" in text  # type weight x10 balances the window


def test_report_json(healthy: Path) -> None:
    result = gradlog_cached("report", str(healthy), "--format", "json")
    assert result.returncode == 0, err(result)
    data = json.loads(out(result))
    assert data["gradlog_report"] == 2
    assert data["log_schema"] == 1
    (run,) = data["runs"]
    assert run["run"] == "run1"
    assert run["tasks"] == ["pointer", "type"]
    assert run["pair"] == ["pointer", "type"]
    values = numbers(run)
    for mean_norm in (0.2, 0.3, 0.25):
        assert contains(values, mean_norm)
    for ratio in (1.0, 1.5, 1.25):
        assert contains(values, ratio)
    summary = numbers({k: v for k, v in run.items() if k != "events"})
    assert contains(summary, 0.25)  # mean of the mean norms
    assert contains(summary, math.sqrt(0.00125))  # their population std
    assert contains(summary, 1.2)  # peak max norm
    assert contains(summary, (1.0 * 1.5 * 1.25 * 1.25) ** 0.25)  # the final window


def test_report_json_nonfinite_tokens(nonfinite: Path) -> None:
    result = gradlog_cached("report", str(nonfinite), "--format", "json")
    assert result.returncode == 0, err(result)
    text = out(result)
    assert '"NaN"' in text and '"-Infinity"' in text
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token}"))


FAIL_ON = {
    "collapse_reached": ([10.0] * 4, None, ["collapse"], 1),
    "collapse_healthy": ([1.0] * 4, None, ["collapse", "exploding", "vanishing"], 0),
    "minor_reached": ([2.5] * 4, None, ["minor"], 1),
    "significant_not_reached": ([2.5] * 4, None, ["significant"], 0),
    "exploding_nonfinite": ([1.0] * 3, [0.2, math.nan, 0.2], ["exploding"], 1),
    "vanishing_repeated": ([1.0] * 3, [0.2, 0.001, 0.2], ["exploding", "vanishing"], 1),
}


@pytest.fixture(scope="module")
def fail_on_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("fail_on")
    calls = []
    for case, (ratios, mean_norms, levels, _) in FAIL_ON.items():
        path = write_log(folder / f"{case}.jsonl", ratios, mean_norms)
        calls.append(("report", str(path), *[a for level in levels for a in ("--fail-on", level)]))
    return dict(zip(FAIL_ON, gradlog_many(calls)))


@pytest.mark.parametrize("case", list(FAIL_ON))
def test_fail_on(fail_on_results: dict, case: str) -> None:
    result, code = fail_on_results[case], FAIL_ON[case][3]
    assert result.returncode == code, err(result)
    assert "[PHASE 4] Gradient Monitoring Summary:" in out(result)  # the report is still printed
    if code == 1:
        assert err(result).startswith("gradlog: findings reach --fail-on ")
    else:
        assert err(result) == ""


def test_fail_on_undefined_ratio_counts_as_collapse(tmp_path: Path) -> None:
    path = write_log(tmp_path / "run.jsonl", [1.0, 1.0, 1.0])
    with path.open("a") as fh:  # a sample with a zero type norm: the ratio is undefined
        fh.write(
            json.dumps(
                {
                    "v": 1,
                    "run": "run1",
                    "kind": "event",
                    "epoch": 20,
                    "tasks": [
                        {"name": "pointer", "grad_norm": 0.3},
                        {"name": "type", "grad_norm": 0.0},
                    ],
                }
            )
            + "\n"
        )
    result = gradlog("report", str(path), "--fail-on", "collapse")
    assert result.returncode == 1, err(result)
    assert "[PHASE 4] Task balance undefined at epoch 20: Type gradient norm is zero" in out(result)
    assert "1e+08" not in out(result)
    # the defined samples are balanced: the exit status comes from the undefined one
    assert "  Task balance: Tasks balanced (ratio=1.00)" in out(result)


def test_pair_reverses_the_ratio(collapsed: Path) -> None:
    result = gradlog_cached("report", str(collapsed), "--pair", "type/pointer")
    assert result.returncode == 0, err(result)
    assert "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=0.10 < 0.20)" in out(result)


def test_other_task_names(tmp_path: Path) -> None:
    path = write_log(tmp_path / "run.jsonl", [0.1] * 3, tasks=("depth", "segmentation"))
    result = gradlog("report", str(path))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert "Depth/Segmentation gradient ratio: 0.10 (healthy range: 0.5-2.0)" in text
    assert "[PHASE 4] TASK COLLAPSE: Segmentation task dominating (ratio=0.10 < 0.20)" in text


def test_pair_with_an_unknown_task(collapsed: Path) -> None:
    line = assert_one_error_line(gradlog_cached("report", str(collapsed), "--pair", "pointer/nope"))
    assert "'nope'" in line and "pointer, type" in line


def test_malformed_pair_is_a_usage_error(collapsed: Path) -> None:
    result = gradlog_cached("report", str(collapsed), "--pair", "pointer")
    assert result.returncode == 2
    assert "Traceback" not in err(result)
    assert "--pair" in err(result)
    assert out(result) == ""


def test_window_and_min_samples(collapsed: Path) -> None:
    result = gradlog_cached("report", str(collapsed), "--window", "2", "--min-samples", "5")
    assert result.returncode == 0, err(result)
    # a full window of 2 is judged although --min-samples asks for 5: from the second sample on
    lines = out(result).splitlines()
    checks = [line for line in lines if line.startswith("[PHASE 4] T")]
    checks = [line for line in checks if "imbalance detected" not in line]
    assert checks == ["[PHASE 4] Task balance: Not enough data"] + 3 * [
        "[PHASE 4] TASK COLLAPSE: Pointer task dominating (ratio=10.00 > 5.0)"
    ]


def test_unknown_run_id(healthy: Path) -> None:
    line = assert_one_error_line(gradlog_cached("report", str(healthy), "--run", "nope"))
    assert "'nope'" in line and "run1" in line


# -- bad input: one line, exit 2, never a traceback -----------------------------------------

EVENT = '{"v":1,"run":"a","kind":"event","epoch":1}\n'
BAD_INPUTS = {
    "empty": ("empty.jsonl", b""),
    "not_json": ("notjson.jsonl", b"hello world\n"),
    "array": ("array.jsonl", b"[1, 2, 3]\n"),
    "wrong_type": (
        "wrongtype.jsonl",
        EVENT.encode() + b'{"v":1,"run":"a","kind":"event","epoch":"x"}\n',
    ),
    "version_2": ("v2.jsonl", b'{"v":2,"run":"a","kind":"event"}\n'),
    "bare_nan": ("nan.jsonl", b'{"v":1,"run":"a","kind":"event","mean_norm":NaN}\n'),
    "not_utf8": ("latin1.jsonl", b'{"v":1,"run":"caf\xe9","kind":"event"}\n'),
    "bad_task": (
        "task.jsonl",
        b'{"v":1,"run":"a","kind":"event","tasks":[{"name":"pointer","grad_norm":"big"}]}\n',
    ),
    "garbage_parquet": ("garbage.parquet", b"this is not a parquet file at all\n" * 20),
    "only_partial_line": ("partial.jsonl", b'{"v":1,"run":"a","ki'),
}


# what the error line says right after the path, where it names the line and field
BAD_INPUT_DETAIL = {
    "wrong_type": ":2: field 'epoch': expected an integer, got 'x'",
    "version_2": ":1: field 'v': unknown schema version 2",
    "bare_nan": ":1: bare NaN is not JSON",
    "not_utf8": ":1: not UTF-8 text",
    "array": ":1: expected a JSON object, got list",
    "empty": ": empty log",
    "bad_task": ":1: field 'tasks[0].grad_norm': expected a number",
}


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("bad")
    paths = {}
    for case, (name, data) in BAD_INPUTS.items():
        paths[case] = folder / name
        paths[case].write_bytes(data)
    results = gradlog_many([("report", str(path)) for path in paths.values()])
    return {case: (paths[case], result) for case, result in zip(paths, results)}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line(bad_input_results: dict, case: str) -> None:
    path, result = bad_input_results[case]
    line = assert_one_error_line(result)
    assert line.startswith(f"Error: {path}"), line
    if case in BAD_INPUT_DETAIL:
        assert line.startswith(f"Error: {path}{BAD_INPUT_DETAIL[case]}"), line


def test_broken_lines_amid_good_ones_are_skipped_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        EVENT.encode()
        + b'{"v":1,"run":"caf\xe9","kind":"event"}\n'
        + b'{"v":1,"run":"a","ki\n'
        + EVENT.replace('"epoch":1', '"epoch":2').encode()
    )
    result = gradlog("report", str(path))
    assert result.returncode == 0, err(result)
    notes = err(result).splitlines()
    assert len(notes) == 2
    assert (
        notes[0]
        == f"Note: {path}:2: skipped a line that is not UTF-8 text (invalid continuation byte)"
    )
    assert notes[1].startswith(f"Note: {path}:3: skipped a line that is not valid JSON (")
    assert "Epoch 2 Gradient Stats" not in out(result)  # events without stats print no block


# More bad records, read in-process: the same reader and messages, without a process each.
MORE_BAD_RECORDS = {
    "float_epoch": ('{"v":1,"run":"a","kind":"event","epoch":1.5}', "field 'epoch'"),
    "bool_epoch": ('{"v":1,"run":"a","kind":"event","epoch":true}', "field 'epoch'"),
    "bool_norm": ('{"v":1,"run":"a","kind":"event","mean_norm":true}', "field 'mean_norm'"),
    "list_norm": ('{"v":1,"run":"a","kind":"event","mean_norm":[1]}', "field 'mean_norm'"),
    "missing_run": ('{"v":1,"kind":"event"}', "field 'run': missing"),
    "missing_v": ('{"run":"a","kind":"event"}', "field 'v': missing"),
    "float_v": ('{"v":1.0,"run":"a","kind":"event"}', "field 'v'"),
    "unknown_kind": ('{"v":1,"run":"a","kind":"other"}', "field 'kind'"),
    "meta_not_object": ('{"v":1,"run":"a","kind":"run","meta":[]}', "field 'meta'"),
    "meta_tasks": (
        '{"v":1,"run":"a","kind":"run","meta":{"tasks":"ab"}}',
        "field 'meta.tasks'",
    ),
    "meta_int": (
        '{"v":1,"run":"a","kind":"run","meta":{"n_params":"7"}}',
        "field 'meta.n_params'",
    ),
    "task_not_object": ('{"v":1,"run":"a","kind":"event","tasks":[1]}', "field 'tasks[0]'"),
    "layers_not_list": ('{"v":1,"run":"a","kind":"event","layers":{}}', "field 'layers'"),
    "null_line": ("null", "expected a JSON object"),
}


@pytest.mark.parametrize("case", list(MORE_BAD_RECORDS))
def test_more_bad_records(tmp_path: Path, case: str) -> None:
    line, expected = MORE_BAD_RECORDS[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(EVENT + EVENT + line + "\n")  # the bad record is line 3
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert str(info.value).startswith(f"{path}:3: {expected}"), str(info.value)


def test_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with pytest.raises(LogFormatError, match="gzip"):
        read_log(path)


def test_gzip_cut_short(recorded: Path, tmp_path: Path) -> None:
    packed = gzip.compress(recorded.read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    log = read_log(path)
    assert 0 < log.frame.height < len(recorded.read_text().splitlines())
    assert any("compressed stream is cut short" in note for note in log.notes)


@pytest.mark.parametrize(
    ("line", "column", "expected"),
    [
        pytest.param('{"v":1,"run":5,"kind":"event"}', "run", "5", id="int_run_id"),
        pytest.param(
            '{"v":1,"run":"a","kind":"event","mean_norm":"1.5"}',
            "mean_norm",
            1.5,
            id="number_as_text",
        ),
    ],
)
def test_lossless_type_mismatches_are_read_leniently(
    tmp_path: Path, line: str, column: str, expected: object
) -> None:
    """docs/format.md: a number where text is expected (and numeric text where a number is)
    is read as the same value; every other mismatch is refused with its line and field."""
    path = tmp_path / "lenient.jsonl"
    path.write_text(line + "\n")
    assert read_log(path).frame[column].to_list() == [expected]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    assert assert_one_error_line(gradlog("report", str(path))) == f"Error: {path}: no such file"


def test_directory(tmp_path: Path) -> None:
    line = assert_one_error_line(gradlog("report", str(tmp_path)))
    assert line.startswith(f"Error: {tmp_path}: is a directory")


def test_bad_stdin() -> None:
    line = assert_one_error_line(gradlog("report", "-", input=b"[]\n"))
    assert "<stdin>" in line


# -- crash-cut, compressed and piped logs ---------------------------------------------------


def test_truncated_last_line(recorded: Path, tmp_path: Path) -> None:
    data = recorded.read_bytes()
    lines = data.count(b"\n")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:-30])  # the last record lost its end and its newline
    result = gradlog("report", str(cut))
    assert result.returncode == 0, err(result)
    assert "[PHASE 4] Gradient Monitoring Summary:" in out(result)
    assert "Epoch 6 Gradient Stats:" in out(result)
    assert "Epoch 8 Gradient Stats:" not in out(result)  # the cut record is left out
    notes = err(result).splitlines()
    assert len(notes) == 1
    assert notes[0].startswith(f"Note: {cut}:{lines}: skipped a partly written last line")


def test_last_line_without_newline_but_whole(healthy: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(healthy.read_bytes().rstrip(b"\n"))
    result = gradlog("report", str(whole))
    assert result.returncode == 0, err(result)
    assert err(result) == ""
    assert out(result) == out(gradlog_cached("report", str(healthy)))


def test_gzipped_log(recorded: Path, tmp_path: Path) -> None:
    packed = tmp_path / "train.jsonl.gz"
    packed.write_bytes(gzip.compress(recorded.read_bytes()))
    plain = gradlog_cached("report", str(recorded))
    result = gradlog("report", str(packed))
    assert result.returncode == 0, err(result)
    assert out(result) == out(plain)


def test_stdin(recorded: Path) -> None:
    result = gradlog("report", "-", input=recorded.read_bytes())
    assert result.returncode == 0, err(result)
    assert out(result) == out(gradlog_cached("report", str(recorded)))


# -- convert --------------------------------------------------------------------------------


def report_json(path: Path) -> dict:
    result = gradlog_cached("report", str(path), "--format", "json")
    assert result.returncode == 0, err(result)
    return without_paths(json.loads(out(result)))


def test_convert_round_trip(recorded: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "train.parquet"
    back = tmp_path / "back.jsonl"
    result = gradlog("convert", str(recorded), "-o", str(parquet))
    assert result.returncode == 0, err(result)
    assert parquet.read_bytes()[:4] == b"PAR1"
    result = gradlog("convert", str(parquet), "-o", str(back))
    assert result.returncode == 0, err(result)
    original = report_json(recorded)
    assert report_json(parquet) == original
    assert report_json(back) == original
    # the records themselves survive, field for field
    before = [json.loads(line) for line in recorded.read_text().splitlines()]
    after = [json.loads(line) for line in back.read_text().splitlines()]
    assert after == before


def test_convert_keeps_nonfinite_values(nonfinite: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "nan.parquet"
    packed = tmp_path / "nan.jsonl.gz"
    assert gradlog("convert", str(nonfinite), "-o", str(parquet)).returncode == 0
    assert gradlog("convert", str(parquet), "-o", str(packed)).returncode == 0
    text = gzip.decompress(packed.read_bytes()).decode()
    assert '"mean_norm":"NaN"' in text and '"mean_norm":"-Infinity"' in text
    assert report_json(packed) == report_json(nonfinite)


def test_convert_refuses_to_overwrite(healthy: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    target.write_bytes(b"precious")
    line = assert_one_error_line(gradlog("convert", str(healthy), "-o", str(target)))
    assert str(target) in line and "--force" in line
    assert target.read_bytes() == b"precious"
    result = gradlog("convert", str(healthy), "-o", str(target), "--force")
    assert result.returncode == 0, err(result)
    assert report_json(target) == report_json(healthy)


def test_convert_unknown_output_suffix(healthy: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert_one_error_line(gradlog("convert", str(healthy), "-o", str(target)))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# -- help and version -----------------------------------------------------------------------


def test_help() -> None:
    result = gradlog_cached("--help")
    assert result.returncode == 0, err(result)
    assert "report" in out(result) and "convert" in out(result)


def test_report_help() -> None:
    result = gradlog_cached("report", "--help")
    assert result.returncode == 0, err(result)
    assert "Usage:" in out(result)
    for option in ("--window", "--min-samples", "--pair", "--format", "--fail-on", "--run"):
        assert option in out(result)


def test_version() -> None:
    result = gradlog_cached("--version")
    assert result.returncode == 0, err(result)
    assert out(result) == f"gradlog {__version__}\n"


def test_console_script(healthy: Path) -> None:
    script = Path(sys.executable).with_name("gradlog")
    assert script.exists()
    result = subprocess.run([str(script), "report", str(healthy)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == gradlog_cached("report", str(healthy)).stdout


def test_no_arguments_shows_usage() -> None:
    result = gradlog_cached()
    assert result.returncode in (0, 2)
    assert "Usage:" in out(result) + err(result)
    assert "Traceback" not in err(result)
