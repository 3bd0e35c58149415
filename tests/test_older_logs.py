"""Logs written before fields were added within version 1 (``pre_clip_norm``, ``clip_coef``,
``skipped``, ``meta.stats_at``) read as they always did, on every reader's fast path."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from conftest import SAMPLE_LOGS, run_gradlog

from gradlog.analysis.readers import read_log
from gradlog.analysis.scan import read_parquet

NEW_COLUMNS = ("pre_clip_norm", "clip_coef", "skipped")


def older_parquet(path: Path) -> Path:
    """``pointer_collapse.jsonl`` as Parquet in the layout of a log written before the fields."""
    frame = read_log(SAMPLE_LOGS / "pointer_collapse.jsonl").frame.drop(NEW_COLUMNS)
    meta = frame.get_column("meta").struct.unnest().drop("stats_at")
    frame.with_columns(meta=pl.struct(meta)).write_parquet(path)
    return path


def test_the_batch_scan_reads_an_older_parquet_log_itself(tmp_path):
    """Not by falling back to the careful reader file by file (correct, and 17x slower)."""
    path = older_parquet(tmp_path / "old.parquet")
    assert "stats_at" not in str(pl.read_parquet_schema(path)["meta"])
    chunk = read_parquet([str(path)], 0)
    assert chunk.records.height == 7 and not chunk.records.get_column("bad").any()
    assert chunk.records.get_column("clip_coef").null_count() == 7


def test_an_older_parquet_log_is_judged_as_its_json_lines_original(tmp_path):
    path = older_parquet(tmp_path / "old.parquet")
    old = json.loads(run_gradlog("report", str(path), "--format", "json").stdout)["runs"][0]
    new = run_gradlog("report", "sample_logs/pointer_collapse.jsonl", "--format", "json")
    new = json.loads(new.stdout)["runs"][0]
    for key in ("status", "window_ratio", "first_collapse", "mean_norm", "stats_at"):
        assert old[key] == new[key], key
    batch = run_gradlog("batch", str(path), "--format", "json")
    assert batch.returncode == 0, batch.stderr.decode()
    assert json.loads(batch.stdout)["runs"][0]["window_ratio"] == new["window_ratio"]
