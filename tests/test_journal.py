"""A Parquet log and its journal: the readers take the most complete consistent view.

Each snapshot records how many bytes of the journal it holds (``gradlog.journal_bytes`` in its
file metadata); the readers add the journal's records past that point and nothing else. So an
empty journal beside a snapshot is no error, a journal never replaces a fuller snapshot, no record
is read twice, even when the process dies between two steps of recovering a crashed log, and a
run resumed under the same id keeps its earlier records. Snapshots written before they recorded
this are read by run, each run from whichever file holds more of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from gradlog.analysis.readers import read_log
from gradlog.frames import records_to_frame
from gradlog.recorder.writers import JOURNAL_BYTES_KEY, ParquetWriter, dumps, journal_path

RUN = {"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["a", "b"]}}


def event(step: int, run: str = "r") -> dict:
    return {"v": 1, "run": run, "kind": "event", "step": step, "mean_norm": 0.5}


def run_python(code: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args], capture_output=True, timeout=120, env=env
    )


def test_an_empty_journal_beside_a_snapshot_is_not_an_error(tmp_path: Path) -> None:
    """A writer reopened the log (its journal starts empty) and was killed before it flushed."""
    path = tmp_path / "run.parquet"
    writer = ParquetWriter(path)
    for record in (RUN, event(1), event(2)):
        writer.write(record)
    writer.close()
    run_python(
        """
        import os, sys
        from gradlog.recorder.writers import ParquetWriter
        writer = ParquetWriter(sys.argv[1], buffer_records=50, flush_seconds=3600)
        writer.write({"v": 1, "run": "s", "kind": "run", "meta": {"tasks": ["a", "b"]}})
        os._exit(0)  # as SIGKILL: the buffered record is lost, the journal is empty
        """,
        str(path),
    )
    assert journal_path(path).read_bytes() == b""
    log = read_log(path)
    assert log.frame["step"].to_list() == [None, 1, 2]
    assert log.notes == [
        f"{path}: the recorder did not close; its journal {journal_path(path)} holds nothing "
        "newer than the file"
    ]
    result = cli("report", str(path))
    assert result.returncode == 0, result.stderr
    assert b"Note: " in result.stderr and b"Traceback" not in result.stderr


def test_records_past_the_snapshot_come_from_the_journal_once(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    writer = ParquetWriter(path, buffer_records=4, flush_seconds=3600)
    for record in (RUN, event(1), event(2)):
        writer.write(record)
    writer.flush()  # the journal first, then a snapshot of the three records
    for step in range(3, 8):  # a full buffer of four goes to the journal; one stays in memory
        writer.write(event(step))
    log = read_log(path)
    assert log.frame["step"].to_list() == [None, 1, 2, 3, 4, 5, 6]
    assert log.notes[-1].endswith(f"read the newest 4 records from {journal_path(path)}")
    # a power loss cut the next line: it is noted at its line number in the journal
    with open(journal_path(path), "ab") as fh:
        fh.write(dumps(event(8))[:12])
    log = read_log(path)
    assert log.frame.height == 7
    assert log.notes[0] == f"{journal_path(path)}:8: skipped a partly written last line (12 bytes)"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_death_during_a_recovery_loses_nothing_and_reads_nothing_twice(
    tmp_path: Path, when: str
) -> None:
    """Reopening a crashed log writes a snapshot of everything, removes the old journal, then
    writes a snapshot that covers none of the new one; a process killed just before or just
    after the removal leaves files that read as every record, once."""
    path = tmp_path / "run.parquet"
    crashed = ParquetWriter(path)
    for record in (RUN, event(1)):
        crashed.write(record)
    crashed.flush()
    crashed.write(event(2))
    del crashed  # never closed: its journal holds three records, its snapshot two
    run_python(
        """
        import os, sys, pathlib
        from gradlog.recorder.writers import ParquetWriter, journal_path
        journal, when = journal_path(sys.argv[1]), sys.argv[2]
        real_unlink = pathlib.Path.unlink

        def unlink(self, missing_ok=False):
            if self == journal and when == "before":
                os._exit(0)
            real_unlink(self, missing_ok=missing_ok)
            if self == journal:
                os._exit(0)

        pathlib.Path.unlink = unlink
        ParquetWriter(sys.argv[1])
        """,
        str(path),
        when,
    )
    assert journal_path(path).exists() == (when == "before")
    assert read_log(path).frame["step"].to_list() == [None, 1, 2]
    writer = ParquetWriter(path)  # the next writer finishes the recovery
    writer.close()
    assert read_log(path).frame["step"].to_list() == [None, 1, 2]
    assert not journal_path(path).exists()


def test_a_run_resumed_under_the_same_id_keeps_its_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    first = ParquetWriter(path)
    for record in (RUN, event(1), event(2)):
        first.write(record)
    first.close()
    resumed = ParquetWriter(path)  # the same run id, as a resumed training would log
    resumed.write(event(3))
    del resumed  # crashed: the file holds the first session, the journal this one
    log = read_log(path)
    assert log.frame["step"].to_list() == [None, 1, 2, 3]
    assert log.frame["run"].unique().to_list() == ["r"]


def test_an_old_snapshot_is_never_replaced_by_a_shorter_journal(tmp_path: Path) -> None:
    """Written by a gradlog whose snapshots did not say what of the journal they hold, and
    whose buffered journal lagged behind them: each run from the file that holds more of it."""
    path = tmp_path / "run.parquet"
    snapshot = [RUN, *(event(i) for i in range(1, 70)), {**RUN, "run": "s"}, event(1, "s")]
    records_to_frame(snapshot).write_parquet(path)
    assert JOURNAL_BYTES_KEY not in pl.read_parquet_metadata(path)
    journal = [RUN, *(event(i) for i in range(1, 49))]  # run r: 49 of its 70 records
    journal += [{**RUN, "run": "s"}, event(1, "s"), event(2, "s")]  # run s: more than the file
    journal_path(path).write_bytes(b"".join(dumps(r) for r in journal))
    frame = read_log(path).frame
    assert frame.filter(pl.col("run") == "r").height == 70
    assert frame.filter(pl.col("run") == "s")["step"].to_list() == [None, 1, 2]
    journal_path(path).write_bytes(b"")
    assert read_log(path).frame.height == 72  # and an empty journal is no error


def test_a_journal_alone_with_no_record_says_so(tmp_path: Path) -> None:
    path = tmp_path / "run.parquet"
    journal_path(path).write_bytes(b"")
    result = cli("report", str(path))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"Error: {path}: no records yet: the recorder has written none to its journal "
        f"{journal_path(path)}\n"
    )
    writer = ParquetWriter(path)  # and the next writer starts afresh
    writer.write(RUN)
    writer.close()
    assert read_log(path).frame.height == 1
