"""``gradlog batch --summary``: the rows as a Parquet table, and the next batch reading only
what is new or changed.

That a second batch reads nothing unchanged is shown by what it could not hide: the unchanged
logs are overwritten with bytes that are no log, their size and modification time put back (the
stamp the table holds), and the batch still reports their runs, which a read would have turned
into error rows. The printed output of such an incremental batch, in every format, and its exit
code are compared with a full batch over the original logs.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runlogs import gradlog, gradlog_many, to_parquet, write_run

from gradlog.analysis import api
from gradlog.analysis.model import Advice, RunSummary
from gradlog.analysis.render.batch import COLUMNS, batch_table, csv_rows, json_data, rows_frame
from gradlog.analysis.render.batch_markdown import format_markdown
from gradlog.analysis.sources import Source
from gradlog.analysis.status import Status
from gradlog.analysis.summary_table import META_KEY, read_summary, write_summary
from gradlog.classify import FailOn, NormBand, RatioBand
from gradlog.errors import GradlogError

ROOT = Path(__file__).resolve().parent.parent
COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0]

# The documented schema (docs/batch.md, "The summary table"): column -> Polars type.
SCHEMA = {
    "status": pl.String,
    "run": pl.String,
    "file": pl.String,
    "tasks": pl.List(pl.String),
    "events": pl.Int64,
    "epochs": pl.Int64,
    "window_ratio": pl.Float64,
    "window_num": pl.String,
    "window_den": pl.String,
    "spread": pl.Float64,
    "worst_spread": pl.Float64,
    "dominant": pl.String,
    "starved": pl.String,
    "final_band": pl.String,
    "worst_band": pl.String,
    "worst_norm_band": pl.String,
    "first_imbalance": pl.String,
    "first_collapse": pl.String,
    "mean_norm": pl.Float64,
    "mean_norm_std": pl.Float64,
    "max_norm_peak": pl.Float64,
    "weights": pl.List(pl.Struct({"task": pl.String, "weight": pl.Float64})),
    "flags": pl.String,
    "error": pl.String,
    "notes": pl.List(pl.String),
    "source": pl.String,
    "stamp": pl.String,
}


def make_archive(root: Path) -> Path:
    """Logs of every kind a batch reads: JSON Lines (one with two runs, one crashed), gzipped,
    Parquet and a hive-partitioned dataset; a collapse, a non-finite run, a healthy one."""
    side = root.parent / f"{root.name}-side"
    side.mkdir()
    write_run(root / "healthy.jsonl", [1.0, 1.2, 0.9, 1.1, 1.0, 1.3], run="healthy")
    write_run(
        root / "collapse.jsonl", COLLAPSE, run="collapse", weights={"pointer": 1.0, "type": 0.5}
    )
    write_run(root / "nonfinite.jsonl", [1.0] * 4, [0.9, float("nan"), float("inf"), 0.3], run="nf")
    write_run(root / "two.jsonl", [1.0, 1.1, 0.9], run="two-a")
    write_run(root / "two.jsonl", [0.05] * 4, run="two-b")
    crashed = write_run(root / "crashed.jsonl", [1.0, 1.1, 1.2], run="crashed")
    with open(crashed, "ab") as fh:
        fh.write(b'{"v":1,"run":"crashed","kind":"event","epo')  # killed mid-write: a note
    minor = write_run(side / "minor.jsonl", [2.5] * 5, run="minor")
    (root / "sub").mkdir()
    (root / "sub" / "minor.jsonl.gz").write_bytes(gzip.compress(minor.read_bytes()))
    to_parquet(write_run(side / "sig.jsonl", [4.0] * 5, run="sig"), root / "sub" / "sig.parquet")
    hive = [
        pl.read_parquet(to_parquet(write_run(side / f"{r}.jsonl", x, run=r), side / f"{r}.parquet"))
        for r, x in (("h1", COLLAPSE), ("h2", [1.0] * 5))
    ]
    pl.concat(hive).write_parquet(root / "hive", partition_by=["run"])
    return root


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return make_archive(root)


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def garble(path: Path) -> None:
    """Overwrite ``path`` with as many bytes that are no log, its size and modification time
    put back: only a read can tell it changed."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def table(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def judged(path: Path) -> dict:
    return json.loads(pl.read_parquet_metadata(path)[META_KEY])


# -- the table --------------------------------------------------------------------------------


def test_the_table_has_the_documented_schema_and_the_batch_rows(archive: Path, tmp_path: Path):
    summary = tmp_path / "summary.parquet"
    result = api.batch_result(archive, summary=summary)
    assert result.n_read == result.n_sources == 8
    found = table(summary)
    assert dict(found.schema) == SCHEMA
    assert list(found.columns[: len(COLUMNS)]) == list(COLUMNS)
    # the very rows of api.batch (--format csv's columns), and each row's source and stamp
    assert found.drop("source", "stamp").equals(api.batch(archive), null_equal=True)
    assert found.get_column("source").to_list() == [
        str(archive / "collapse.jsonl"),
        str(archive / "crashed.jsonl"),
        str(archive / "healthy.jsonl"),
        str(archive / "nonfinite.jsonl"),
        str(archive / "two.jsonl"),
        str(archive / "two.jsonl"),
        str(archive / "hive"),
        str(archive / "hive"),
        str(archive / "sub" / "minor.jsonl.gz"),
        str(archive / "sub" / "sig.parquet"),
    ]
    st = (archive / "healthy.jsonl").stat()
    stamps = dict(zip(found.get_column("source"), found.get_column("stamp")))
    assert stamps[str(archive / "healthy.jsonl")] == f"{st.st_size}:{st.st_mtime_ns}"
    assert stamps[str(archive / "hive")].startswith("tree:")
    # typed values: numbers are numbers, a missing value is null
    nf = found.row(by_predicate=pl.col("run") == "nf", named=True)
    assert nf["status"] == "non-finite" and nf["events"] == 4 and nf["epochs"] == 20
    assert nf["worst_norm_band"] == "non-finite" and nf["max_norm_peak"] == pytest.approx(3.6)
    healthy = found.row(by_predicate=pl.col("run") == "healthy", named=True)
    assert healthy["first_collapse"] is None and healthy["weights"] is None
    assert healthy["error"] is None and healthy["notes"] == []
    collapse = found.row(by_predicate=pl.col("run") == "collapse", named=True)
    assert [w["task"] for w in collapse["weights"]] == ["pointer", "type"]
    assert collapse["flags"].startswith("--loss-")
    crashed = found.row(by_predicate=pl.col("run") == "crashed", named=True)
    assert "partly written last line" in crashed["notes"][0]
    # how it was judged, in the file's metadata
    record = judged(summary)
    assert record["format"] == 1 and record["log_schema"] == 1
    assert record["options"] == {
        "window": 10,
        "min_samples": 3,
        "pair": None,
        "unweighted": False,
        "original": False,
    }
    if importlib.util.find_spec("pyarrow") is not None:  # what DuckDB and Spark also read
        import pyarrow.parquet as pq

        schema = pq.read_schema(summary)
        assert str(schema.field("events").type) == "int64"
        assert str(schema.field("tasks").type).startswith(("list<", "large_list<"))


def test_the_documented_schema_lists_every_column():
    text = (ROOT / "docs" / "batch.md").read_text()
    section = text.split("### The summary table", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \| ", section, flags=re.MULTILINE)
    assert documented == list(SCHEMA)


# -- incremental ------------------------------------------------------------------------------


def test_an_incremental_batch_reads_nothing_unchanged_and_prints_what_a_full_one_does(
    archive: Path, tmp_path: Path
):
    summary = str(tmp_path / "summary.parquet")
    a = str(archive)
    formats = [("--format", f) for f in ("json", "csv", "markdown", "table")]
    calls = [("batch", a, *f, "--fail-on", "collapse") for f in formats]
    assert api.batch_result(archive, summary=summary).n_read == 8
    full = gradlog_many(calls)
    for path in files_of(archive):
        garble(path)
    incremental = gradlog_many([(*call, "--summary", summary) for call in calls])
    for f, i in zip(full, incremental):
        assert i.returncode == f.returncode == 1
        assert i.stdout == f.stdout
        wrote = f"{summary}: 0 of 8 files read, 8 unchanged"
        lines = i.stderr.decode().splitlines()
        assert wrote in lines
        assert [line for line in lines if line != wrote] == f.stderr.decode().splitlines()
    assert json.loads(incremental[0].stdout)["summary"]["errors"] == 0
    # and once a garbled log's time moves on, it is read: now an error row
    os.utime(archive / "healthy.jsonl")
    again = api.batch_result(archive, summary=summary)
    assert again.n_read == 1
    assert [r.source for r in again.errors] == [str(archive / "healthy.jsonl")]


def _rows(result) -> tuple:
    return json_data(result.rows, result.rows, result.n_sources), csv_rows(result.rows)


def test_changed_new_and_removed_logs(archive: Path, tmp_path: Path):
    summary = tmp_path / "summary.parquet"
    api.batch_result(archive, summary=summary)
    write_run(archive / "two.jsonl", [12.0] * 5, run="two-c")  # changed: a third run appended
    write_run(archive / "sub" / "new.jsonl", COLLAPSE, run="new")  # new
    (archive / "nonfinite.jsonl").unlink()  # removed
    shutil.rmtree(archive / "hive" / "run=h2")  # a dataset changed: a file of it removed
    unchanged = [archive / n for n in ("healthy.jsonl", "collapse.jsonl", "crashed.jsonl")]
    unchanged += [archive / "sub" / "minor.jsonl.gz", archive / "sub" / "sig.parquet"]
    full = api.batch_result(archive)
    for path in unchanged:
        garble(path)
    result = api.batch_result(archive, summary=summary)
    assert result.n_read == 3 and result.n_sources == 8
    assert _rows(result) == _rows(full)
    runs = table(summary).get_column("run").to_list()
    assert "two-c" in runs and "new" in runs and "nf" not in runs and "h2" not in runs
    assert table(summary).drop("source", "stamp").equals(rows_frame(full.rows))


def test_a_log_that_could_not_be_read_is_read_again(tmp_path: Path):
    """A file's stamp does not show a permission or a network failure fixed."""
    root = tmp_path / "runs"
    good = write_run(tmp_path / "good.jsonl", [1.0] * 5, run="late")
    size, when = good.stat().st_size, good.stat().st_mtime_ns
    root.mkdir()
    late = root / "late.jsonl"
    late.write_bytes(b"x" * (size - 1) + b"\n")
    os.utime(late, ns=(when, when))
    summary = tmp_path / "summary.parquet"
    assert api.batch_result(root, summary=summary).rows[0].error is not None
    shutil.copyfile(good, late)
    os.utime(late, ns=(when, when))  # the same stamp
    result = api.batch_result(root, summary=summary)
    assert result.n_read == 1 and result.rows[0].run == "late" and result.rows[0].error is None


def test_other_options_read_everything_again(archive: Path, tmp_path: Path):
    summary = str(tmp_path / "summary.parquet")
    a = str(archive)
    api.batch_result(archive, summary=summary)
    garble(archive / "healthy.jsonl")  # read again, it shows
    out = gradlog("batch", a, "--summary", summary, "--window", "5", "--format", "csv")
    lines = out.stderr.decode().splitlines()
    assert lines[0] == f"Note: {summary}: written with --window 10 (now 5); every log is read again"
    assert f"{summary}: 8 of 8 files read, 0 unchanged" in lines
    assert str(archive / "healthy.jsonl") in [
        r.split(",")[2] for r in out.stdout.decode().splitlines() if r.startswith("error,")
    ]
    assert judged(Path(summary))["options"]["window"] == 5
    # the rules that read other tools' logs are part of the judging too
    mapped = api.batch_result(archive, window=5, summary=summary, mapping=["gn/{task}=grad_norm"])
    assert mapped.n_read == 8
    assert mapped.notes == (
        f"{summary}: written with other --map or --map-file rules; every log is read again",
    )
    assert judged(Path(summary))["mapping"][0] == ["gn/{task}", "grad_norm"]


def test_the_table_inside_the_archive_is_no_log_of_it(archive: Path):
    summary = archive / "summary.parquet"
    api.batch_result(archive, summary=summary)
    written = summary.stat().st_ino
    result = api.batch_result(archive, summary=summary)
    assert result.n_sources == 8 and result.n_read == 0 and not result.errors
    assert summary.stat().st_ino == written  # nothing changed: the table is not even rewritten


def test_a_file_that_is_no_summary_table_is_never_overwritten(archive: Path, tmp_path: Path):
    made = tmp_path / "made.parquet"
    api.batch_result(archive / "healthy.jsonl", summary=made)
    cases = {
        "text.parquet": b"not parquet at all\n",
        "log.parquet": (archive / "sub" / "sig.parquet").read_bytes(),  # Parquet, but a log
        "cut.parquet": made.read_bytes()[:-100],  # a table cut short
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.parquet").mkdir()
    expected = {
        "text.parquet": "not a Parquet file",
        "log.parquet": "a Parquet file but no gradlog summary table",
        "cut.parquet": "not a Parquet file",
        "folder.parquet": "not a file",
        "none/summary.parquet": f"cannot write (no folder {tmp_path / 'none'})",
    }
    keep = "it is left as it is (name another --summary file, or delete this one)"
    for name, what in expected.items():
        with pytest.raises(GradlogError) as refused:
            api.batch_result(archive, summary=tmp_path / name)
        assert str(refused.value).startswith(f"{tmp_path / name}: {what}")
        assert str(refused.value).endswith(keep) or name.startswith("none/")
    # the command: that one line, exit 2, before any log is read
    out = gradlog("batch", str(archive), "--summary", str(tmp_path / "log.parquet"))
    assert out.returncode == 2 and out.stdout == b""
    assert out.stderr.decode().splitlines() == [
        f"Error: {tmp_path / 'log.parquet'}: {expected['log.parquet']}; {keep}"
    ]
    for name, content in cases.items():
        assert (tmp_path / name).read_bytes() == content


# -- any row survives the table ---------------------------------------------------------------

_FLOATS = st.none() | st.floats(allow_nan=True, allow_infinity=True)
_TEXT = st.none() | st.text(max_size=12)
_NAMES = st.lists(st.text(min_size=1, max_size=8), max_size=4, unique=True)


@st.composite
def summaries(draw) -> RunSummary:
    if draw(st.booleans()):
        return RunSummary(
            source=draw(st.text(max_size=20)),
            run=draw(_TEXT),
            status=Status.ERROR,
            error=draw(st.text(max_size=30)),
        )
    tasks = draw(_NAMES)
    weights = draw(
        st.none() | st.dictionaries(st.sampled_from(tasks), _FLOATS.filter(lambda v: v is not None))
        if tasks
        else st.none()
    )
    worst = draw(st.none() | st.sampled_from(list(RatioBand)))
    worst_norm = draw(st.none() | st.sampled_from(list(NormBand)))
    return RunSummary(
        source=draw(st.text(max_size=20)),
        run=draw(_TEXT),
        status=draw(st.sampled_from([s for s in Status if s is not Status.ERROR])),
        tasks=tuple(tasks),
        n_events=draw(st.integers(0, 2**40)),
        last_epoch=draw(st.none() | st.integers(-(2**40), 2**40)),
        window_ratio=draw(_FLOATS),
        window_num=draw(_TEXT),
        window_den=draw(_TEXT),
        spread=draw(_FLOATS),
        worst_spread=draw(_FLOATS),
        dominant=draw(_TEXT),
        starved=draw(_TEXT),
        final_band=draw(st.none() | st.sampled_from(list(RatioBand))),
        worst_band=worst,
        worst_norm_band=worst_norm,
        first_imbalance=draw(_TEXT),
        first_collapse=draw(_TEXT),
        mean_norm=draw(_FLOATS),
        mean_norm_std=draw(_FLOATS),
        max_norm_peak=draw(_FLOATS),
        advice=Advice(None, None, weights=weights, flags=draw(_TEXT)),
        notes=tuple(draw(st.lists(st.text(max_size=10), max_size=3))),
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(summaries(), min_size=1, max_size=6))
def test_any_row_read_back_renders_as_it_was_written(rows: list[RunSummary]):
    """Every output a batch prints, and --fail-on, from rows read back from the table."""
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "t.parquet"
        source = Source("log.jsonl", "json", stamp="1:2")
        write_summary(table, [(source, rows)], {"format": 1})
        back = read_summary(table).sources["log.jsonl"][1]
    levels = list(FailOn)
    for render in (
        lambda r: json_data(r, r, 1),
        lambda r: repr(csv_rows(r)),
        lambda r: batch_table(r, footer=("x",)),
        lambda r: format_markdown(r, r, 1),
        lambda r: [(x.status, x.name, x.source, [x.reaches(level) for level in levels]) for x in r],
    ):
        assert render(back) == render(rows)
