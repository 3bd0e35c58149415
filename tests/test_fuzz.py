"""Property-based tests: invariants on generated logs, and mutated logs that must never crash.

Hypothesis generates valid logs (runs, tasks, events with and without statistics or a balance
sample, NaN and infinities, huge and tiny numbers) and checks what must hold for all of them:
the summary's mean and std are those of a direct computation, the bands are monotone in the
ratio, JSON Lines and Parquet give the same report, the fast columnar paths (reading, per-event
text) give what the careful Python paths give. It then damages valid files byte by byte and
field by field: whatever the damage, no traceback escapes and the exit code is 0, 1 or 2.

A few hundred cases run in the default suite; ``pytest -m slow tests/test_fuzz.py`` runs
thousands (see the README's development section).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import statistics
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from gradlog import classify, exprs
from gradlog.analysis import Options, analyse
from gradlog.errors import GradlogError
from gradlog.frames import records_to_frame
from gradlog.readers import read_log
from gradlog.render.json import format_json
from gradlog.render.text import _fixed, _patch, format_text
from gradlog.schema import decode_float
from gradlog.summary import Events
from gradlog.writers import JsonlWriter

FEW = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MANY = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- generated logs --------------------------------------------------------------------------

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


def write(path: Path, records: list[dict]) -> Path:
    writer = JsonlWriter(path)
    for record in records:
        writer.write(record)
    writer.close()
    return path


@contextlib.contextmanager
def folder():
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gradlog-fuzz-") as tmp:
        yield Path(tmp)


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
            assert _close(s.mean_norm_mean, statistics.fmean(means))
            assert _close(s.mean_norm_std, statistics.pstdev(means)), (s.mean_norm_std, means)
            assert _close(s.max_norm_mean, statistics.fmean(maxes))
            assert s.max_norm_peak == max(maxes)
        else:
            assert s.mean_norm_mean is None
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
        json_a = json.loads(format_json(a).replace(json.dumps(str(jsonl))[1:-1], "LOG"))
        json_b = json.loads(format_json(b).replace(json.dumps(str(parquet))[1:-1], "LOG"))
        assert json_a == json_b


def check_fast_paths_match_the_careful_ones(records: list[dict]) -> None:
    with folder() as tmp:
        path = write(tmp / "run.jsonl", records)
        frame = read_log(path).frame
        # the reader against Python's json, record by record
        parsed = [json.loads(line) for line in path.read_text().splitlines()]
        expected = records_to_frame([_decoded(r) for r in parsed])
        assert_frame_equal(frame, expected)
        # the columnar text against the Python loop over plain Events
        result = analyse(read_log(path))
        plain = dataclasses.replace(
            result,
            runs=tuple(
                dataclasses.replace(
                    run,
                    events=Events(
                        **{f.name: getattr(run.events, f.name) for f in dataclasses.fields(Events)}
                    ),
                )
                for run in result.runs
            ),
        )
        assert format_text(result) == format_text(plain)


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
def test_fast_paths_match_the_careful_ones(records: list[dict]) -> None:
    check_fast_paths_match_the_careful_ones(records)


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


@settings(max_examples=15, deadline=None)
@given(st.lists(ratios, min_size=3, max_size=3))
def test_the_reported_band_is_monotone_in_a_constant_ratio(values: list[float]) -> None:
    order = {b: i for i, b in enumerate(classify.RatioBand)}
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
            band = analyse(read_log(write(tmp / f"{k}.jsonl", records))).runs[0].summary.final_band
            found.append(classify.RATIO_SEVERITY[band] if sorted(values)[0] >= 1 else order[band])
    if sorted(values)[0] >= 1:
        assert found == sorted(found)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**6), 10**6).map(lambda k: k / 8),  # exact ties: 0.125, 2.375...
        st.integers(-(10**9), 10**9).map(lambda k: k / 10_000 + 0.00005),  # near-ties
    ),
    st.sampled_from([1, 2, 4]),
)
def test_vectorised_number_format_is_pythons(x: float, decimals: int) -> None:
    values = pl.Series([x], dtype=pl.Float64)
    frame = pl.DataFrame({"x": values})
    text, needs_python = _fixed(pl.col("x"), decimals)
    done = frame.select(text.alias("t"), needs_python.alias("p"))
    out = _patch(done["t"], done["p"], values, decimals)
    assert out.to_list() == [f"{x:.{decimals}f}"]


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
        format_json(result)
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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    check_fast_paths_match_the_careful_ones(records)


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
