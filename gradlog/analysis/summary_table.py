"""``gradlog batch --summary FILE``: the batch's rows as one Parquet table, kept up to date.

The table holds the rows of ``gradlog batch --format csv`` (:data:`~gradlog.analysis.render.batch.COLUMNS`,
typed by :func:`~gradlog.analysis.render.batch.rows_frame`), then two columns that say which
source each row came from and in what state: ``source`` (the path or URL as found) and ``stamp``
(:attr:`gradlog.analysis.sources.Source.stamp`). Its file metadata, under :data:`META_KEY`, records
how the rows were judged (:func:`judging_record`).

The next batch with the same table reads only the sources whose stamp is new or different, and
keeps the rows of the others as the table holds them: the rows, and so every output and exit
code, are those a full batch would give. Everything is read again when the judging differs (a
note says what changed), and so are sources without a stamp (a stream, a URL only Polars reads)
and sources that could not be read (a permission or a network failure leaves the stamp as it
was). The table
then holds this batch's sources only, in the order found: it mirrors the archive (a table that
already does, with nothing read, is left as it is). A file at the path that is not a summary
table is never overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from gradlog.analysis.model import Advice, RunSummary
from gradlog.analysis.remote import URL_PATTERN
from gradlog.analysis.render.batch import rows_frame
from gradlog.analysis.sources import Source
from gradlog.analysis.status import Status
from gradlog.classify import NormBand, RatioBand
from gradlog.errors import GradlogError
from gradlog.format import SCHEMA_VERSION
from gradlog.frames import READ_ERRORS

if TYPE_CHECKING:
    from gradlog.analysis import engine

FORMAT = 1  # the table's own version: its columns and what its metadata records
META_KEY = "gradlog_summary"  # the file metadata's key; its value is judging_record() as JSON
IDENTITY = {"source": pl.String, "stamp": pl.String}

Analyse = Callable[[Sequence[Source]], dict[str, list[RunSummary]]]


@dataclass(frozen=True)
class Incremental:
    """What an incremental batch gives back (batch.run_batch makes it its result)."""

    rows: tuple[RunSummary, ...]
    n_sources: int
    n_read: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Previous:
    """A summary table as read back: how it was judged, and each source's stamp and rows."""

    judged: dict
    sources: dict[str, tuple[str | None, list[RunSummary]]]


def incremental(
    path: str | os.PathLike[str],
    sources: Sequence[Source],
    judging: engine.Options,
    analyse: Analyse,
) -> Incremental:
    """The batch of ``sources``, reading only those that changed since the table at ``path``
    was written (all when there is none), then the table replaced by the batch's rows."""
    table = _local(path)
    previous = read_summary(table)
    judged = judging_record(judging)
    # the table may lie inside the archive it summarises: it is no log of it
    sources = [s for s in sources if not _same_file(s.path, table)]
    if not sources:
        raise GradlogError(f"no logs found besides the summary table {table}")
    notes: tuple[str, ...] = ()
    reuse: dict[str, list[RunSummary]] = {}
    if previous is not None and previous.judged != judged:
        notes = (f"{table}: {_changed(previous.judged, judged)}; every log is read again",)
    elif previous is not None:
        for source in sources:
            stamp, rows = previous.sources.get(source.path, (None, []))
            if source.stamp is not None and stamp == source.stamp and _was_read(rows):
                reuse[source.path] = rows
    todo = [s for s in sources if s.path not in reuse]
    fresh = analyse(todo) if todo else {}
    groups = [(s, reuse[s.path] if s.path in reuse else fresh[s.path]) for s in sources]
    if todo or previous is None or list(previous.sources) != [s.path for s in sources]:
        write_summary(table, groups, judged)  # else the table holds these very rows already
    rows = tuple(row for _, found in groups for row in found)
    return Incremental(rows, len(sources), len(todo), notes)


def wrote_line(path: str | os.PathLike[str], n: int, read: int) -> str:
    """``summary.parquet: 3 of 1,000 files read, 997 unchanged``."""
    return f"{os.fspath(path)}: {read:,} of {n:,} file{'s' * (n != 1)} read, {n - read:,} unchanged"


def judging_record(judging: engine.Options) -> dict:
    """Everything a row depends on besides its source: gradlog's version, the judging options,
    the reading limits and the rules that map other tools' logs (as JSON reads them back)."""
    from gradlog import __version__
    from gradlog.analysis.foreign.mapping import current_mapping
    from gradlog.analysis.limits import event_limit, stream_limit

    record = {
        "format": FORMAT,
        "gradlog": __version__,
        "log_schema": SCHEMA_VERSION,
        "options": asdict(judging),
        "max_events": event_limit(),
        "max_stream_bytes": stream_limit(),
        "mapping": [[r.template, r.field] for r in current_mapping().rules],
    }
    return json.loads(json.dumps(record))


def table_frame(groups: Sequence[tuple[Source, Sequence[RunSummary]]]) -> pl.DataFrame:
    """The table: each source's rows (the batch's columns), then its ``source`` and ``stamp``."""
    rows = [row for _, found in groups for row in found]
    identity = pl.DataFrame(
        {
            "source": [s.path for s, found in groups for _ in found],
            "stamp": [s.stamp for s, found in groups for _ in found],
        },
        schema=IDENTITY,
    )
    return pl.concat([rows_frame(rows), identity], how="horizontal")


def write_summary(
    path: Path, groups: Sequence[tuple[Source, Sequence[RunSummary]]], judged: dict
) -> None:
    """Replace ``path`` with the table, atomically (a reader sees the old table or the new)."""
    from gradlog.files import write_parquet

    write_parquet(table_frame(groups), path, metadata={META_KEY: json.dumps(judged)})


def read_summary(path: Path) -> Previous | None:
    """The table at ``path``, None when there is none; anything else there is refused."""
    if not os.path.lexists(path):
        return None
    keep = "it is left as it is (name another --summary file, or delete this one)"
    if not path.is_file():
        raise GradlogError(f"{path}: not a file, so no summary table; {keep}")
    try:
        metadata = pl.read_parquet_metadata(path)
    except READ_ERRORS as exc:
        raise GradlogError(f"{path}: not a Parquet file ({_first_line(exc)}); {keep}") from None
    text = metadata.get(META_KEY)
    if text is None:
        raise GradlogError(f"{path}: a Parquet file but no gradlog summary table; {keep}")
    try:
        judged = json.loads(text)
        version = judged["format"]
    except (ValueError, TypeError, KeyError):
        raise GradlogError(
            f"{path}: a damaged gradlog summary table (its metadata); {keep}"
        ) from None
    if not isinstance(version, int) or version > FORMAT:
        raise GradlogError(
            f"{path}: a summary table of a newer gradlog (format {version}); {keep}"
        ) from None
    if version < FORMAT:  # an older table: its rows are dropped, every log read again
        return Previous(judged, {})
    try:
        frame = pl.read_parquet(path)
    except READ_ERRORS as exc:
        raise GradlogError(
            f"{path}: a damaged gradlog summary table ({_first_line(exc)}); {keep}"
        ) from None
    if frame.schema != table_frame([]).schema:
        raise GradlogError(f"{path}: a damaged gradlog summary table (its columns); {keep}")
    found: dict[str, tuple[str | None, list[RunSummary]]] = {}
    for r in frame.iter_rows(named=True):
        found.setdefault(r["source"], (r["stamp"], []))[1].append(_row_summary(r))
    return Previous(judged, found)


def _row_summary(r: dict) -> RunSummary:
    """A table row as the :class:`RunSummary` it was written from: every field the batch's
    outputs and ``--fail-on`` read (the others, such as ``conflicts``, keep their defaults)."""
    weights = r["weights"]
    final_band = _band(r["final_band"], RatioBand)
    return RunSummary(
        source=r["file"],
        run=r["run"],
        status=Status(r["status"]),
        tasks=tuple(r["tasks"] or ()),
        n_events=r["events"],
        last_epoch=r["epochs"],
        window_ratio=r["window_ratio"],
        window_num=r["window_num"],
        window_den=r["window_den"],
        spread=r["spread"],
        worst_spread=r["worst_spread"],
        dominant=r["dominant"],
        starved=r["starved"],
        final_band=final_band,
        worst_band=_band(r["worst_band"], RatioBand),
        worst_norm_band=_band(r["worst_norm_band"], NormBand),
        first_imbalance=r["first_imbalance"],
        first_collapse=r["first_collapse"],
        mean_norm=r["mean_norm"],
        mean_norm_std=r["mean_norm_std"],
        max_norm_peak=r["max_norm_peak"],
        advice=Advice(
            final_band,
            None,
            weights=None if weights is None else {w["task"]: w["weight"] for w in weights},
            flags=r["flags"],
        ),
        error=r["error"],
        notes=tuple(r["notes"] or ()),
    )


def _band(value: str | None, kind: type) -> object:
    return None if value is None else kind(value)


def _was_read(rows: list[RunSummary]) -> bool:
    """Whether the source was read: not one error row naming no run (a file that could not be
    read, perhaps for a reason its stamp does not show: a permission, the network)."""
    return bool(rows) and not any(r.error is not None and r.run is None for r in rows)


_NAMES = {
    "gradlog": "gradlog",
    "log_schema": "the log schema",
    "max_events": "--max-events",
    "max_stream_bytes": "--max-stream-bytes",
    "mapping": "other --map or --map-file rules",
}


def _changed(old: dict, new: dict) -> str:
    """``written with --window 10 (now 20)``: what differs between two judging records."""
    old_options, new_options = old.get("options") or {}, new["options"]
    parts = [
        f"--{key.replace('_', '-')} {_text(old_options.get(key))} (now {_text(value)})"
        for key, value in new_options.items()
        if old_options.get(key) != value
    ]
    for key, name in _NAMES.items():
        if old.get(key) != new[key]:
            parts.append(
                name if key == "mapping" else f"{name} {_text(old.get(key))} (now {new[key]})"
            )
    if old.get("format") != new["format"]:
        parts.append(f"table format {_text(old.get('format'))} (now {new['format']})")
    return "written with " + ", ".join(parts)


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value)


def _local(path: str | os.PathLike[str]) -> Path:
    """The table's path, refused before any log is read if it could never be written."""
    text = os.fspath(path)
    if URL_PATTERN.match(text):
        raise GradlogError(f"--summary {text}: a local file (copy the table to object storage)")
    table = Path(text)
    if not table.parent.is_dir():
        raise GradlogError(f"{table}: cannot write (no folder {table.parent})")
    return table


def _same_file(source: str, table: Path) -> bool:
    if os.path.basename(source) != table.name or URL_PATTERN.match(source):
        return False  # (a hard link to the table under another name is read as a log)
    try:
        return os.path.samefile(source, table)
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
