"""Parquet logs, and a Parquet snapshot's journal (docs/format.md, "Crash safety").

The snapshot is read and checked as a whole; the journal's records past the point the snapshot
records (``gradlog.journal_bytes``) are added, and nothing else: never a record twice, never a
partial journal over the snapshot.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from gradlog.analysis.readers.checks import ParquetPlace, check
from gradlog.analysis.readers.jsonl import read_json_data, read_json_file
from gradlog.analysis.readers.loaded import JSON_BLANK, LoadedLog, Notes, first_line
from gradlog.analysis.readers.streams import count_lines, is_regular
from gradlog.errors import LogFormatError
from gradlog.files import has_whole_line
from gradlog.format import JOURNAL_BYTES_KEY, REQUIRED_FIELDS, journal_path
from gradlog.frames import COLUMNS, READ_ERRORS, storage_schema


def read_parquet(p: Path, name: str, notes: Notes) -> LoadedLog:
    journal = journal_path(p)
    has_journal = is_regular(journal)  # a FIFO of that name is no journal: never wait on it
    try:
        stored = pl.read_parquet(p, glob=False)  # run[1].parquet is itself, no pattern
    except READ_ERRORS as exc:
        if has_journal and has_whole_line(journal):
            notes.note(name, f"unreadable Parquet file; read the recorder's journal {journal}")
            return read_json_file(journal, str(journal), notes)
        raise LogFormatError(f"not a readable Parquet file ({first_line(exc)})", name) from None
    if stored.height == 0 and has_journal and has_whole_line(journal):
        # a snapshot of nothing, and a journal
        notes.note(name, f"the recorder did not close; read its journal {journal}")
        return read_json_file(journal, str(journal), notes)
    log = _snapshot(stored, name, notes)
    if has_journal:
        extra = _journal_records(p, log.frame, journal, name, notes)
        if extra is not None:
            log = LoadedLog(name, extra, notes.items)  # rows now span two files: no places
    return log


def read_parquet_data(data: bytes, name: str, notes: Notes) -> LoadedLog:
    """A Parquet log read from a stream (standard input, a pipe): no journal beside it."""
    try:
        stored = pl.read_parquet(io.BytesIO(data))
    except READ_ERRORS as exc:
        raise LogFormatError(f"not a readable Parquet file ({first_line(exc)})", name) from None
    return _snapshot(stored, name, notes)


def _snapshot(stored: pl.DataFrame, name: str, notes: Notes) -> LoadedLog:
    log = LoadedLog(name, _conform_parquet(stored, name), notes.items)
    log._where = lambda row: f"row {row + 1}"
    return log


def _journal_records(
    p: Path, frame: pl.DataFrame, journal: Path, name: str, notes: Notes
) -> pl.DataFrame | None:
    """The snapshot ``frame`` with the journal's records that it does not hold, or None when
    the journal adds nothing. Never a record twice, never a partial journal over the snapshot."""
    covered = _journal_bytes_covered(p)
    if covered is None:
        return _merge_by_run(frame, journal, name, notes)
    try:
        with open(journal, "rb") as fh:
            prefix = count_lines(fh, covered) if covered else 0
            fh.seek(covered)
            tail = fh.read()
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", str(journal)) from exc
    whole = tail[: tail.rfind(b"\n") + 1]
    if not whole.strip(JSON_BLANK):
        cut = tail[len(whole) :]
        if cut.strip(JSON_BLANK):  # a power loss cut the only record past the snapshot
            line = prefix + whole.count(b"\n") + 1
            notes.skip(str(journal), line, f"a partly written last line ({len(cut)} bytes)")
        notes.note(
            name,
            f"the recorder did not close; its journal {journal} holds nothing newer than the file",
        )
        return None
    # Blank lines in place of the records the snapshot holds: the reader skips them, and the
    # line numbers of its notes stay those of the journal.
    extra = read_json_data(b"\n" * prefix + tail, str(journal), notes).frame
    notes.note(
        name,
        f"the recorder did not close; read the newest {extra.height} "
        f"record{'s' * (extra.height != 1)} from {journal}",
    )
    return pl.concat([frame, extra], how="vertical")


def _journal_bytes_covered(p: Path) -> int | None:
    """How many leading bytes of its journal the snapshot ``p`` holds; None if it does not say
    (written by gradlog before snapshots said so)."""
    try:
        value = pl.read_parquet_metadata(p).get(JOURNAL_BYTES_KEY)
        return int(value) if value is not None and int(value) >= 0 else None
    except Exception:  # noqa: BLE001 - an unreadable or foreign value: read as an old snapshot
        return None


def _merge_by_run(
    frame: pl.DataFrame, journal: Path, name: str, notes: Notes
) -> pl.DataFrame | None:
    """An old snapshot, which does not say how much of the journal it holds: each run is taken
    from whichever of the two holds more of its records."""
    if not has_whole_line(journal):
        notes.note(name, f"the recorder did not close; its journal {journal} holds no record")
        return None
    extra = read_json_file(journal, str(journal), notes).frame
    in_file = frame.group_by("run").len()
    in_journal = extra.group_by("run").len()
    fuller = (
        in_journal.join(in_file, on="run", how="left", suffix="_file")
        .filter(pl.col("len") >= pl.col("len_file").fill_null(0))
        .get_column("run")
        .implode()
    )
    notes.note(name, f"the recorder did not close; read the newest records from {journal}")
    return pl.concat(
        [frame.filter(~pl.col("run").is_in(fuller)), extra.filter(pl.col("run").is_in(fuller))]
    )


def _conform_parquet(stored: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = [c for c in REQUIRED_FIELDS if c not in stored.columns]
    if missing:
        raise LogFormatError(f"not a gradlog log: no column '{missing[0]}'", name)
    schema = storage_schema()
    text = stored.select(
        pl.col(c) if c in stored.columns else pl.lit(None, dtype=schema[c]).alias(c)
        for c in COLUMNS
    )
    try:
        frame = text.cast(schema, strict=False)
    except READ_ERRORS as exc:
        raise LogFormatError(
            f"columns do not match the gradlog schema ({first_line(exc)})", name
        ) from None
    for c in COLUMNS:
        if isinstance(schema[c], (pl.List, pl.Struct)) and text.schema[c] != schema[c]:
            if not isinstance(text.schema[c], (pl.List, pl.Struct, pl.Null)):
                raise LogFormatError(
                    f"column '{c}' is {text.schema[c]}, expected {schema[c]}", name
                )
    if frame.height == 0:
        raise LogFormatError("empty log (no records)", name)
    check(text, frame, ParquetPlace(name, text))
    return frame
