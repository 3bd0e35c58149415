"""A large JSON Lines log is parsed a piece at a time (bounded memory): the pieces are invisible.

The same log read in one piece and in pieces of a few hundred bytes gives the same frame, the
same notes and the same line for every record; a record that breaks the schema in a later piece
is named by its line in the file. Files, gzip streams and standard-input-like streams alike.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradlog.analysis.readers.jsonl as jsonl
from gradlog.analysis.readers import read_log
from gradlog.errors import LogFormatError


def event(epoch: int, run: str = "r") -> dict:
    return {
        "v": 1,
        "run": run,
        "kind": "event",
        "epoch": epoch,
        "mean_norm": 0.1 * epoch,
        "max_norm": 0.2 * epoch,
        "tasks": [
            {"name": "pointer", "grad_norm": 1.0 + epoch, "weight": 1.0},
            {"name": "type", "grad_norm": 0.5, "loss": "NaN"},
        ],
    }


def damaged_log() -> bytes:
    """A byte-order mark, a run record, blank lines, broken lines, a partly written last line."""
    lines = [
        json.dumps({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["pointer", "type"]}})
    ]
    for e in range(1, 41):
        lines.append(json.dumps(event(e)))
        if e % 7 == 0:
            lines.append("")
        if e % 11 == 0:
            lines.append('{"v": 1, "run": "r", "kind": "ev')  # cut short, as by a crash
    text = "\n".join(lines) + "\n" + '{"v": 1, "run": "r", "kind": "event", "epo'
    return b"\xef\xbb\xbf" + text.encode()


def read_with(monkeypatch: pytest.MonkeyPatch, path: Path, piece: int):
    monkeypatch.setattr(jsonl, "PIECE_BYTES", piece)
    log = read_log(path)
    return log.frame, log.notes, [log.where(i) for i in range(log.frame.height)]


@pytest.mark.parametrize("piece", [64, 300, 1000, 4096])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_pieces_read_like_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, suffix: str
) -> None:
    data = damaged_log()
    path = tmp_path / f"run{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    whole = read_with(monkeypatch, path, 1 << 30)
    frame, notes, where = read_with(monkeypatch, path, piece)
    assert frame.equals(whole[0])
    assert notes == whole[1]
    assert where == whole[2]
    assert frame.height == 41
    # the lines as counted in the file: the run record on line 1, a blank line after epoch 7
    assert where[:9] == [f"line {n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 10)]
    assert any("skipped a partly written last line" in n for n in notes)
    assert any("skipped a line that is not valid JSON" in n for n in notes)


def test_a_schema_break_in_a_later_piece_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps(event(e)) for e in range(1, 200)]
    lines[150] = lines[150].replace('"epoch": 151', '"epoch": "x"')
    path = tmp_path / "run.jsonl"
    path.write_text("\n\n" + "\n".join(lines) + "\n")
    monkeypatch.setattr(jsonl, "PIECE_BYTES", 512)
    with pytest.raises(LogFormatError, match=r"run\.jsonl:153: field 'epoch': expected an integer"):
        read_log(path)


def test_a_stream_is_read_in_pieces_like_its_file(tmp_path: Path) -> None:
    """Through the real command: standard input, larger than a piece, reports like the file."""
    padding = "x" * 1000  # a field gradlog does not know: more bytes, no more work
    lines = [json.dumps(event(e, run=f"r{e % 3}") | {"note": padding}) for e in range(1, 18_001)]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > jsonl.PIECE_BYTES
    command = [sys.executable, "-m", "gradlog", "report", "--format", "json"]
    by_name = subprocess.run([*command, str(path)], capture_output=True, check=True)
    with open(path, "rb") as stdin:
        by_stream = subprocess.run([*command, "-"], stdin=stdin, capture_output=True, check=True)
    named = json.loads(by_name.stdout)
    streamed = json.loads(by_stream.stdout)
    assert streamed["path"] == "<stdin>"
    assert [r.pop("source") for r in streamed["runs"]] == ["<stdin>"] * 3
    assert [r.pop("source") for r in named["runs"]] == [str(path)] * 3
    assert streamed["runs"] == named["runs"]


def test_reading_stops_once_a_log_passes_the_event_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is met in an early piece: the broken record far beyond it is never read."""
    lines = [json.dumps(event(e)) for e in range(1, 200)] + ['{"v": 1, "run": 5, "kind": "x"}']
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(jsonl, "PIECE_BYTES", 1024)
    with pytest.raises(LogFormatError, match=r"run\.jsonl: more than 20 events, the most one log"):
        read_log(path, max_events=20)
    with pytest.raises(LogFormatError, match=r"run\.jsonl:200: field 'kind'"):
        read_log(path, max_events=1000)


def test_the_event_limit_is_one_setting_for_every_analysing_command(tmp_path: Path) -> None:
    lines = [json.dumps(event(e)) for e in range(1, 31)]
    jsonl_path = tmp_path / "run.jsonl"
    jsonl_path.write_text("\n".join(lines) + "\n")
    gradlog = [sys.executable, "-m", "gradlog"]
    limit = "more than 29 events, the most one log's analysis holds in memory (--max-events or "
    limit += "GRADLOG_MAX_EVENTS raises it; gradlog convert reads any number)"

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if k != "GRADLOG_MAX_EVENTS"}
        return subprocess.run([*gradlog, *args], capture_output=True, env=environ | (env or {}))

    parquet_path = tmp_path / "run.parquet"
    assert run("convert", str(jsonl_path), "-o", str(parquet_path), "--max-events", "1").returncode
    converted = run("--max-events", "1", "convert", str(jsonl_path), "-o", str(parquet_path))
    assert converted.returncode == 0, converted.stderr  # convert holds no analysis: any number
    for path in (jsonl_path, parquet_path):
        refused = run("--max-events", "29", "report", str(path))
        assert (refused.returncode, refused.stderr.decode()) == (2, f"Error: {path}: {limit}\n")
        by_env = run("report", str(path), env={"GRADLOG_MAX_EVENTS": "29"})
        assert by_env.stderr == refused.stderr
        assert run("--max-events", "30", "report", str(path)).returncode == 0
        batch = run("--max-events", "29", "batch", str(path), "--format", "csv")
        assert batch.returncode == 2 and limit in batch.stdout.decode()
    bad = run("report", str(jsonl_path), env={"GRADLOG_MAX_EVENTS": "many"})
    assert bad.stderr.decode() == (
        "Error: GRADLOG_MAX_EVENTS='many': expected a number of events above 0\n"
    )
