"""Property-based tests: invariants on generated logs, and mutated logs that must never crash.

Hypothesis generates logs and checks what must hold for all of them:

* the differential test: logs written by the real writer (any task count, norms at the ends of
  the float range, undefined samples, invalid samples, broken and cut lines, several runs, now
  and then converted to Parquet by ``gradlog convert``) are judged alike by ``gradlog report
  --format json``, ``gradlog batch --format json`` (both the real command line, in a process of
  its own) and :mod:`gradlog.analysis.api`: the same runs, the same findings to the last bit (one
  engine computes them all), and the same verdict on whether the log can be read at all;
* the summary's mean and std are those of a direct computation, the bands are monotone in the
  ratio, JSON Lines and Parquet give the same report, the reader gives what Python's json gives,
  the vectorised number format is Python's;
* damaged files (byte by byte, field by field): whatever the damage, no traceback escapes and
  the exit code is 0, 1 or 2.

A few hundred cases run in the default suite; ``pytest -m slow tests/test_fuzz.py`` runs
thousands (see the README's development section).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from conftest import run_gradlog
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from gradlog import classify
from gradlog.analysis import api, exprs
from gradlog.analysis.engine import Options
from gradlog.analysis.output import for_terminal
from gradlog.analysis.readers import read_log
from gradlog.analysis.render.columns import (
    PYTHON_FORMATS_BELOW,
    format_numbers,
    number_column,
)
from gradlog.analysis.render.json import report_data
from gradlog.analysis.render.text import format_text
from gradlog.analysis.report import analyse
from gradlog.errors import GradlogError
from gradlog.format import decode_float, encode_float
from gradlog.frames import records_to_frame
from gradlog.recorder.writers import JsonlWriter

FEW = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MANY = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextlib.contextmanager
def folder():
    with tempfile.TemporaryDirectory(prefix="gradlog-fuzz-") as tmp:
        yield Path(tmp)


def write(path: Path, records: list[dict]) -> Path:
    writer = JsonlWriter(path)
    for record in records:
        writer.write(record)
    writer.close()
    return path


# -- the differential test: report, batch and the API judge every log alike ---------------------

# Norms at the ends of the float range: overflow of a ratio (1e300 / 1e-300), subnormals (whose
# logarithm is still finite); and norms that make a sample undefined: zero, NaN, infinities (a
# negative norm is as undefined as zero).
FINITE_EXTREMES = [
    1e300,
    1.7976931348623157e308,
    1e-300,
    2.2250738585072014e-308,  # the smallest normal
    1e-310,  # subnormal
    5e-324,  # the smallest subnormal
]
UNDEFINING = [0.0, -0.0, math.nan, math.inf, -math.inf, -1.0]
EXTREME_NORMS = FINITE_EXTREMES + UNDEFINING
ORDINARY_NORMS = [0.1, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 10.0, 0.2, 1 / 3]
diff_norms = st.one_of(
    *[st.floats(min_value=1e-3, max_value=1e3)] * 3,
    *[st.sampled_from(ORDINARY_NORMS)] * 3,
    st.sampled_from(FINITE_EXTREMES),
    st.sampled_from(UNDEFINING),
)
# logged mean and max norms: mostly healthy, so that the status (which puts exploding and
# non-finite norms before any imbalance) shows the task balance
stat_norms = st.one_of(
    *[st.floats(min_value=0.1, max_value=0.5)] * 7,
    st.sampled_from([0.005, 0.05, 0.8, 2.0, 7.0, *EXTREME_NORMS]),
)
diff_weights = st.sampled_from([1.0, 1.0, 0.5, 2.0, 3.0, 1e-300, 0.0])
TASK_NAMES = ["pointer", "type", "a", "b", "volume", "task_ü", "任务"]
RUN_IDS = ["r", "run-2", "ü/3"]


@st.composite
def diff_run(draw: st.DrawFn, run_id: str) -> list[dict]:
    """One run: 1-5 tasks, a run record or not, events with and without stats and samples."""
    tasks = draw(st.lists(st.sampled_from(TASK_NAMES), min_size=1, max_size=5, unique=True))
    records: list[dict] = []
    if draw(st.integers(0, 3)):
        meta: dict = {"tasks": tasks, "log_every": draw(st.sampled_from([None, 1, 5]))}
        if draw(st.booleans()):
            meta["weights"] = [{"name": t, "weight": draw(diff_weights)} for t in tasks]
        records.append({"v": 1, "run": run_id, "kind": "run", "meta": meta})
    weighted = draw(st.booleans())
    epoch = 0
    for _ in range(draw(st.integers(0, 14))):
        epoch += draw(st.sampled_from([1, 1, 1, 2, 0]))  # now and then an epoch repeated
        record: dict = {"v": 1, "run": run_id, "kind": "event", "epoch": epoch}
        stats, balance = draw(st.sampled_from([(True, True), (False, True), (True, False)]))
        if stats:
            record.update(mean_norm=draw(stat_norms), max_norm=draw(stat_norms))
        if balance:
            present = tasks
            if len(tasks) > 1 and draw(st.integers(0, 9)) == 0:  # a task left out: undefined
                present = [t for t in tasks if t != draw(st.sampled_from(tasks))]
            entries = []
            for t in present:
                entry = {"name": t, "grad_norm": draw(diff_norms)}
                if weighted:
                    entry["weight"] = draw(diff_weights)
                entries.append(entry)
            record["tasks"] = entries
        records.append(record)
    return records


@st.composite
def diff_logs(draw: st.DrawFn) -> tuple[list[dict], int | None]:
    """1-3 runs interleaved, and now and then one invalid balance sample (a task without a
    name, or a name twice): the records, and the index of the invalid one (None: none)."""
    runs = [draw(diff_run(run_id)) for run_id in RUN_IDS[: draw(st.integers(1, 3))]]
    merged: list[dict] = []
    while any(runs):
        left = [r for r in runs if r]
        merged.append(draw(st.sampled_from(left)).pop(0))
    damage = draw(st.sampled_from([None] * 6 + ["nameless", "duplicate"]))
    samples = [i for i, r in enumerate(merged) if r.get("tasks")]
    if damage is None or not samples:
        return merged, None
    invalid = draw(st.sampled_from(samples))
    entries = merged[invalid]["tasks"]
    i = draw(st.integers(0, len(entries) - 1))
    if damage == "nameless":
        if draw(st.booleans()):
            del entries[i]["name"]
        else:
            entries[i]["name"] = None
    else:
        entries.append({**entries[i], "grad_norm": draw(diff_norms)})
    return merged, invalid


BROKEN_LINES = [b"not json {\n", b'{"v":1,"run":"r",\n', b"\xff\xfe\n", b"]]\n"]


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> tuple[bytes, bool]:
    """Broken (non-JSON) lines in the middle, and now and then the last record cut short:
    the bytes, and whether the last record was cut."""
    lines = data.splitlines(keepends=True)
    cut = bool(lines) and draw(st.integers(0, 3)) == 0
    if cut:
        last = lines[-1].rstrip(b"\n")
        lines[-1] = last[: draw(st.integers(1, max(1, len(last) - 1)))]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        where = draw(st.integers(0, len(lines) - 1 if cut else len(lines)))
        lines.insert(where, draw(st.sampled_from(BROKEN_LINES)))
    return b"".join(lines), cut


@st.composite
def judging(draw: st.DrawFn, records: list[dict]) -> dict:
    """Options for every command: window, minimum samples, --unweighted, now and then a --pair
    (of a run's first two tasks, either way round, which another run may lack: refused)."""
    named = [r["meta"]["tasks"] for r in records if r["kind"] == "run"]
    named += [[t.get("name") for t in r["tasks"]] for r in records if r.get("tasks")]
    pairs = [tuple(n[:2]) for n in named if len(n) >= 2 and None not in n[:2] and n[0] != n[1]]
    pair = None
    if pairs and draw(st.integers(0, 4)) == 0:
        pair = draw(st.sampled_from(pairs))
        pair = pair[::-1] if draw(st.booleans()) else pair
    return {
        "window": draw(st.sampled_from([1, 2, 3, 10])),
        "min_samples": draw(st.sampled_from([1, 3])),
        "unweighted": draw(st.integers(0, 3)) == 0,
        "pair": pair,
    }


def cli_options(opts: dict) -> list[str]:
    args = ["--window", str(opts["window"]), "--min-samples", str(opts["min_samples"])]
    if opts["unweighted"]:
        args.append("--unweighted")
    if opts["pair"]:
        args += ["--pair", "/".join(opts["pair"])]
    return args


FIELDS = (
    "status",
    "tasks",
    "events",
    "window_ratio",
    "window_num",
    "window_den",
    "spread",
    "worst_spread",
    "dominant",
    "starved",
    "final_band",
    "worst_band",
    "first_imbalance",
    "first_collapse",
    "weights",
    "flags",
)


def _weights(weights) -> dict | None:
    if weights is None:
        return None
    if isinstance(weights, list):  # api.batch's frame: a list of {task, weight}
        weights = {w["task"]: w["weight"] for w in weights}
    return {k: encode_float(decode_float(v)) for k, v in weights.items()}


def _canonical(row: dict) -> dict:
    """The compared fields of one run, floats bit-exact and non-finite ones as tokens."""
    out = {k: row[k] for k in FIELDS}
    for k in ("window_ratio", "spread", "worst_spread"):
        out[k] = encode_float(decode_float(out[k]))
    out["weights"] = _weights(out["weights"])
    out["tasks"] = list(out["tasks"])
    return out


def from_report_json(run: dict) -> dict:
    """A run of ``gradlog report --format json`` under batch's names."""
    return _canonical(
        {
            **run,
            "events": run["n_events"],
            "weights": run["advice"]["weights"],
            "flags": run["advice"]["flags"],
        }
    )


def from_summary(s) -> dict:
    """A :class:`gradlog.analysis.model.RunSummary` under batch's names."""
    return _canonical(
        {
            "status": s.status.value,
            "tasks": s.tasks,
            "events": s.n_events,
            "window_ratio": s.window_ratio,
            "window_num": s.window_num,
            "window_den": s.window_den,
            "spread": s.spread,
            "worst_spread": s.worst_spread,
            "dominant": s.dominant,
            "starved": s.starved,
            "final_band": s.final_band and s.final_band.value,
            "worst_band": s.worst_band and s.worst_band.value,
            "first_imbalance": s.first_imbalance,
            "first_collapse": s.first_collapse,
            "weights": s.advice.weights,
            "flags": s.advice.flags,
        }
    )


_POOL = ThreadPoolExecutor(max_workers=2)


def one_line_error(result) -> str:
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if not line.startswith("Note: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    return lines[0].removeprefix("Error: ")


def check_differential(log: tuple[list[dict], int | None], data: st.DataObject) -> None:
    records, invalid = log
    opts = data.draw(judging(records), label="options")
    with folder() as tmp:
        path = write(tmp / "run.jsonl", records)
        damaged, cut = data.draw(damaged_bytes(path.read_bytes()), label="damaged")
        path.write_bytes(damaged)
        if cut and invalid == len(records) - 1:
            invalid = None  # the invalid record was the one cut short: skipped with a note
        logs = [path]
        if data.draw(st.integers(0, 3), label="parquet") == 0:
            parquet = tmp / "run.parquet"
            converted = run_gradlog("convert", str(path), "-o", str(parquet))
            assert converted.returncode in (0, 2), converted.stderr
            if converted.returncode == 0:
                logs.append(parquet)
            else:  # what cannot be read cannot be reported either (checked below)
                one_line_error(converted)
                assert not read_ok(path)
        args = cli_options(opts)
        reports = [
            _POOL.submit(run_gradlog, "report", str(p), "--format", "json", *args) for p in logs
        ]
        batch = run_gradlog("batch", *map(str, logs), "--format", "json", *args)
        reports = [r.result() for r in reports]
        check_agreement(logs, reports, batch, invalid is not None, opts)


def read_ok(path: Path) -> bool:
    try:
        read_log(path)
    except GradlogError:
        return False
    return True


def check_agreement(logs: list[Path], reports, batch, invalid: bool, opts: dict) -> None:
    assert batch.returncode in (0, 2), batch.stderr
    assert "internal error" not in batch.stderr.decode(), batch.stderr
    batch_rows = json.loads(batch.stdout)["runs"]
    api_rows = api.batch([str(p) for p in logs], **opts).to_dicts()
    refused = []
    judged = []
    for path, report in zip(logs, reports):
        name = str(path)
        rows = [r for r in batch_rows if r["file"] == name]
        frame_rows = [r for r in api_rows if r["file"] == name]
        errors = [r["error"] for r in rows if r["error"] is not None]
        assert [r["error"] for r in frame_rows if r["error"] is not None] == errors
        assert report.returncode in (0, 2), report.stderr
        if report.returncode == 2:  # refused: an error row in batch, an exception in the API
            message = one_line_error(report)
            refused.append(path)
            assert errors, (message, rows)
            assert message in [for_terminal(e) for e in errors], (message, errors)
            with pytest.raises(GradlogError):
                api.analyse(path, **opts)
            continue
        assert report.stderr.decode().count("Error") == 0, report.stderr
        # a task without a name, or a name twice in one sample: never accepted
        assert not invalid, f"{name}: report accepted an invalid log"
        assert not errors, (errors, report.stderr)
        cli = json.loads(report.stdout)
        from_api = api.analyse(path, **opts)
        # the command line prints exactly what the API returns (Report.to_dict() is this, and
        # tested with the API's other conveniences in test_hostile.py)
        assert cli == json.loads(json.dumps(report_data(from_api))), "report JSON != api.analyse"
        expected = {r["run"]: from_report_json(r) for r in cli["runs"]}
        assert len(expected) == len(cli["runs"])
        assert {r.run_id: from_summary(r.summary) for r in from_api.runs} == expected
        assert {r["run"]: _canonical(r) for r in rows} == expected, "batch JSON != report"
        assert {r["run"]: _canonical(r) for r in frame_rows} == expected, "api.batch != report"
        judged.append(expected)
    if refused:
        assert batch.returncode == 2, batch.stderr
    else:
        assert batch.returncode == 0, batch.stderr
    if len(logs) == 2 and not refused:  # JSON Lines and its Parquet conversion: the same findings
        assert judged[0] == judged[1]
    assert {(r["file"], r["run"]) for r in batch_rows} == {(r["file"], r["run"]) for r in api_rows}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # every case runs the command line in new processes: shrinking a failure would take many
    # minutes, so the default suite reports it as found (small logs, printed in full); the
    # slow run below shrinks
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(diff_logs(), st.data())
def test_report_batch_and_api_agree(log: tuple, data: st.DataObject) -> None:
    check_differential(log, data)


@pytest.mark.slow
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(diff_logs(), st.data())
def test_many_logs_report_batch_and_api_agree(log: tuple, data: st.DataObject) -> None:
    check_differential(log, data)


def test_finite_norms_whose_sum_overflows_are_judged(tmp_path: Path) -> None:
    """Found by the long differential run: three finite norms whose sum is beyond the float
    range (task shares are a norm over the sum) are judged, by report, batch and the API."""
    path = tmp_path / "run.jsonl"
    record = {"v": 1, "run": "r", "kind": "event", "epoch": 1}
    norms = {"a": 1e300, "b": 1.7976931348623157e308, "c": 1.0}
    write(path, [{**record, "tasks": [{"name": t, "grad_norm": n} for t, n in norms.items()]}])
    for command in ("report", "batch"):
        code, _, err = run_cli(command, str(path), "--min-samples", "1", "--format", "json")
        assert code == 0 and "Error" not in err, err
    summary = api.analyse(path, min_samples=1).runs[0].summary
    assert summary.status.value == "collapse"
    assert summary.spread == pytest.approx(1.7976931348623157e308, rel=1e-12)
    assert summary.shares is not None
    assert summary.shares["b"] == pytest.approx(1 / (1 + 1e300 / 1.7976931348623157e308))


# -- generated valid logs ----------------------------------------------------------------------

finite = st.one_of(
    st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
    st.floats(min_value=1e-12, max_value=1e-3),
    st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 0.125, 0.375, 2.5, 1e-300, 1e300]),
)
norm = st.one_of(finite, finite, finite, st.sampled_from([math.nan, math.inf]))
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_éü任务", min_size=1, max_size=8)


@st.composite
def task_lists(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        return ["pointer", "type"]
    return draw(st.lists(names, min_size=2, max_size=4, unique=True))


@st.composite
def runs(draw: st.DrawFn, run_id: str = "r") -> list[dict]:
    tasks = draw(task_lists())
    by_steps = draw(st.booleans())
    records: list[dict] = [
        {
            "v": 1,
            "run": run_id,
            "kind": "run",
            "meta": {
                "tasks": tasks,
                "log_every": None if by_steps else 5,
                "log_every_steps": 50 if by_steps else None,
                "weights": [
                    {"name": t, "weight": draw(st.sampled_from([1.0, 0.5, 2.0]))} for t in tasks
                ],
            },
        }
    ]
    for i in range(draw(st.integers(min_value=0, max_value=30))):
        record: dict = {
            "v": 1,
            "run": run_id,
            "kind": "event",
            "epoch": 5 * (i + 1),
            "step": 50 * (i + 1),
        }
        stats, balance = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
        if stats:
            mean = draw(norm)
            record.update(
                mean_norm=mean,
                max_norm=draw(norm),
                total_norm=draw(norm),
                n_grads=6,
                n_vanishing=draw(st.integers(0, 3)),
                n_exploding=draw(st.integers(0, 3)),
            )
        if balance:
            record["tasks"] = [
                {"name": t, "grad_norm": draw(norm), "loss": draw(finite), "weight": 1.0}
                for t in tasks
            ]
        records.append(record)
    return records


@st.composite
def logs(draw: st.DrawFn) -> list[dict]:
    first = draw(runs("r"))
    if draw(st.integers(0, 4)) == 0:  # now and then a second run, interleaved
        second = draw(runs("s"))
        merged, rest = [], second[:]
        for record in first:
            merged.append(record)
            if rest and draw(st.booleans()):
                merged.append(rest.pop(0))
        return merged + rest
    return first


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    # abs_tol: squares of norms below ~1e-154 underflow to zero in any float64 arithmetic,
    # so Polars' and statistics' std legitimately differ there by up to the values themselves.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-150)


# -- invariants on valid logs ----------------------------------------------------------------


def check_summary_is_direct(records: list[dict]) -> None:
    with folder() as tmp:
        result = analyse(read_log(write(tmp / "run.jsonl", records)))
    for run in result.runs:
        mine = [r for r in records if r["run"] == run.run_id and r["kind"] == "event"]
        stats = [r for r in mine if "mean_norm" in r]
        ok = [r for r in stats if math.isfinite(r["mean_norm"]) and math.isfinite(r["max_norm"])]
        s = run.summary
        assert s.n_stats == len(stats) and s.n_nonfinite == len(stats) - len(ok)
        if ok:
            means = [r["mean_norm"] for r in ok]
            maxes = [r["max_norm"] for r in ok]
            assert _close(s.mean_norm, statistics.fmean(means))
            assert _close(s.mean_norm_std, statistics.pstdev(means)), (s.mean_norm_std, means)
            assert _close(s.max_norm_mean, statistics.fmean(maxes))
            assert s.max_norm_peak == max(maxes)
        else:
            assert s.mean_norm is None
        assert s.n_events == len(mine)
        assert s.n_balance == sum(1 for r in mine if r.get("tasks"))


def check_json_and_parquet_agree(records: list[dict]) -> None:
    with folder() as tmp:
        jsonl = write(tmp / "run.jsonl", records)
        parquet = tmp / "run.parquet"
        read_log(jsonl).frame.write_parquet(parquet)
        a, b = analyse(read_log(jsonl)), analyse(read_log(parquet))
        text_a, text_b = format_text(a), format_text(b)
        assert text_a.replace(str(jsonl), "LOG") == text_b.replace(str(parquet), "LOG")
        json_a = json.loads(json.dumps(report_data(a)).replace(json.dumps(str(jsonl))[1:-1], "LOG"))
        json_b = json.loads(
            json.dumps(report_data(b)).replace(json.dumps(str(parquet))[1:-1], "LOG")
        )
        assert json_a == json_b


def check_reader_is_pythons_json(records: list[dict]) -> None:
    with folder() as tmp:
        path = write(tmp / "run.jsonl", records)
        frame = read_log(path).frame
        parsed = [json.loads(line) for line in path.read_text().splitlines()]
        expected = records_to_frame([_decoded(r) for r in parsed])
        assert_frame_equal(frame, expected)


def _decoded(value):
    """A parsed record with the NaN/Infinity tokens of float fields turned back into floats."""
    if isinstance(value, dict):
        return {
            k: decode_float(v)
            if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity")
            else _decoded(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


@FEW
@given(logs())
def test_summary_equals_a_direct_computation(records: list[dict]) -> None:
    check_summary_is_direct(records)


@FEW
@given(logs())
def test_json_lines_and_parquet_give_the_same_report(records: list[dict]) -> None:
    check_json_and_parquet_agree(records)


@FEW
@given(logs())
def test_the_reader_gives_what_pythons_json_gives(records: list[dict]) -> None:
    check_reader_is_pythons_json(records)


ratios = st.floats(min_value=1e-6, max_value=1e6)


@settings(max_examples=300, deadline=None)
@given(ratios, ratios)
def test_bands_are_monotone_in_the_ratio(a: float, b: float) -> None:
    low, high = sorted((a, b))
    severity = classify.RATIO_SEVERITY
    band = classify.ratio_band
    if low >= 1:
        assert severity[band(low)] <= severity[band(high)]
    if high <= 1:
        assert severity[band(low)] >= severity[band(high)]
    # the expressions the analysis uses give the same band as the rule
    frame = pl.DataFrame({"r": [low, high]})
    bands = frame.select(exprs.ratio_band(pl.col("r"))).to_series().to_list()
    assert bands == [band(low).value, band(high).value]


@settings(max_examples=10, deadline=None)
@given(st.lists(ratios, min_size=3, max_size=3))
def test_the_reported_band_is_monotone_in_a_constant_ratio(values: list[float]) -> None:
    found = []
    with folder() as tmp:
        for k, r in enumerate(sorted(values)):
            records = [{"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["pointer", "type"]}}]
            records += [
                {
                    "v": 1,
                    "run": "r",
                    "kind": "event",
                    "epoch": e,
                    "tasks": [
                        {"name": "pointer", "grad_norm": r},
                        {"name": "type", "grad_norm": 1.0},
                    ],
                }
                for e in (1, 2, 3)
            ]
            summary = analyse(read_log(write(tmp / f"{k}.jsonl", records))).runs[0].summary
            # the bands are symmetric: r and 1/r are judged alike, by the spread max(r, 1/r)
            assert summary.spread == pytest.approx(max(r, 1 / r), rel=1e-12)
            found.append((max(r, 1 / r), classify.RATIO_SEVERITY[summary.final_band]))
    found.sort()
    assert [s for _, s in found] == sorted(s for _, s in found)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**6), 10**6).map(lambda k: k / 8),  # exact ties: 0.125, 2.375...
        st.integers(-(10**9), 10**9).map(lambda k: k / 10_000 + 0.00005),  # near-ties
    ),
    st.sampled_from([".1f", ".2f", ".4f"]),
)
def test_vectorised_number_format_is_pythons(x: float, spec: str) -> None:
    # a long frame takes the vectorised formatting, a short one Python's own: both must agree
    for rows in (1, PYTHON_FORMATS_BELOW):
        frame = pl.DataFrame({"x": pl.Series([x] * rows, dtype=pl.Float64)})
        done = format_numbers(frame, {"x": pl.col("x")}, {("x", spec)})
        assert done.get_column(number_column("x", spec)).to_list() == [format(x, spec)] * rows


# -- damaged logs never crash ----------------------------------------------------------------

NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1.5", "", "\x1b[2J", "event", "run"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    # built afresh for each use: a shared object would carry one example's damage to the next
    st.builds(lambda: [{"name": None}]),
    st.builds(lambda: [[[[[[[]]]]]]]),
)


def run_cli(*args: str) -> tuple[int, str, str]:
    """``gradlog ARGS`` in this process (much faster than a new one): exit code, out, err."""
    from gradlog.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["gradlog", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def survives(path: Path) -> None:
    """Read, analyse and render in-process; then the real entry point on the same file."""
    try:
        result = analyse(read_log(path), Options())
        format_text(result)
        json.dumps(report_data(result), allow_nan=False)
    except GradlogError:
        pass
    err = cli_never_crashes("report", str(path), "--fail-on", "collapse")
    if "Note: " in err:  # whatever was read with a note, --strict refuses, in one line
        cli_never_crashes("report", str(path), "--strict", expect=2)


def cli_never_crashes(*args: str, expect: int | None = None) -> str:
    code, _, err = run_cli(*args)
    assert code in (0, 1, 2) if expect is None else code == expect, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert all(line.isprintable() for line in err.splitlines()), err
    return err


@st.composite
def byte_damage(draw: st.DrawFn, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        kind = draw(
            st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "swap", "junk"])
        )
        if kind == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[where : where + draw(st.integers(1, 40))]
        elif kind == "truncate":
            del data[where:]
        elif kind == "junk":
            data[where:where] = draw(
                st.sampled_from(
                    [b"\x00", b"\x1b[2J", b"\xff\xfe", b"\xc3", b"NaN", b"\n", b"\r\n", b"}"]
                )
            )
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "dup":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@st.composite
def field_damage(draw: st.DrawFn, records: list[dict]) -> str:
    """Records as written (NaN as tokens), with 1-3 fields deleted or given a nasty value."""
    records = json.loads(json.dumps(records))
    for _ in range(draw(st.integers(1, 3))):
        record = records[draw(st.integers(0, len(records) - 1))]
        if not isinstance(record, dict):
            continue
        target = record
        listed = record.get("tasks") if isinstance(record.get("tasks"), list) else []
        tasks = [t for t in listed if isinstance(t, dict)]
        if tasks and draw(st.booleans()):
            target = tasks[draw(st.integers(0, len(tasks) - 1))]
        elif isinstance(record.get("meta"), dict) and draw(st.booleans()):
            target = record["meta"]
        keys = [*target, "extra", "v", "run", "kind", "epoch", "tasks", "meta", "layers", "name"]
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(NASTY)
    return "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)


def _encoded(records: list[dict]) -> list[dict]:
    with folder() as tmp:
        path = write(tmp / "x.jsonl", records)
        return [json.loads(line) for line in path.read_text().splitlines()]


def check_byte_damage(records: list[dict], data: st.DataObject) -> None:
    with folder() as tmp:
        path = write(tmp / "run.jsonl", records)
        damaged = data.draw(byte_damage(path.read_bytes()))
        path.write_bytes(damaged)
        survives(path)
        gz = tmp / "run.jsonl.gz"
        import gzip

        packed = gzip.compress(damaged)
        gz.write_bytes(packed[: data.draw(st.integers(10, len(packed)))])
        survives(gz)


def check_field_damage(records: list[dict], data: st.DataObject) -> None:
    with folder() as tmp:
        path = tmp / "run.jsonl"
        path.write_text(data.draw(field_damage(_encoded(records))))
        survives(path)


def check_parquet_damage(records: list[dict], data: st.DataObject) -> None:
    with folder() as tmp:
        parquet = tmp / "run.parquet"
        read_log(write(tmp / "run.jsonl", records)).frame.write_parquet(parquet)
        damaged = data.draw(byte_damage(parquet.read_bytes()))
        parquet.write_bytes(damaged)
        survives(parquet)


@FEW
@given(logs(), st.data())
def test_byte_damage_never_crashes(records: list[dict], data: st.DataObject) -> None:
    check_byte_damage(records, data)


@FEW
@given(logs(), st.data())
def test_field_damage_never_crashes(records: list[dict], data: st.DataObject) -> None:
    check_field_damage(records, data)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.data())
def test_parquet_damage_never_crashes(records: list[dict], data: st.DataObject) -> None:
    check_parquet_damage(records, data)


# -- the long run: thousands of cases, with -m slow ------------------------------------------


@pytest.mark.slow
@MANY
@given(logs())
def test_many_summaries(records: list[dict]) -> None:
    check_summary_is_direct(records)
    check_json_and_parquet_agree(records)
    check_reader_is_pythons_json(records)


@pytest.mark.slow
@MANY
@given(logs(), st.data())
def test_many_damaged_logs(records: list[dict], data: st.DataObject) -> None:
    check_byte_damage(records, data)
    check_field_damage(records, data)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.data())
def test_many_damaged_parquet_files(records: list[dict], data: st.DataObject) -> None:
    check_parquet_damage(records, data)
