"""Reading the logs other tools write (TensorBoard, Lightning, Hugging Face, W&B): see docs/import.md.

:func:`sniff` tells by a file's first bytes (a folder: by the files in it) which tool wrote it,
or None for anything else, gradlog's own logs included; it reads at most :data:`HEAD_BYTES`.
:func:`read_foreign` reads one into gradlog's records through the key mapping
(:mod:`.mapping`). Standard library only until a foreign log is read: gradlog's own logs must
not pay for this module.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from gradlog.analysis.foreign.scalars import (
    HUGGINGFACE,
    LIGHTNING_CSV,
    READ_TAG,
    SOURCE_TAG,
    TENSORBOARD,
    WANDB,
)

HEAD_BYTES = 64 * 1024
TFEVENTS = "events.out.tfevents."
_BLANK = b"\xef\xbb\xbf \t\r\n"  # a byte-order mark and JSON's whitespace
_NAMES = {
    TENSORBOARD: "TensorBoard event file",
    LIGHTNING_CSV: "Lightning CSV log",
    HUGGINGFACE: "Hugging Face trainer_state.json",
    WANDB: "W&B history export",
}
# Hugging Face writes what the mapping cannot know: its epoch is a fraction.
_EPOCH_READ = {
    HUGGINGFACE: "log_history's epoch, its integer part (Hugging Face counts part-epochs)"
}


def describe(kind: str) -> str:
    return _NAMES.get(kind, kind)


def read_from(tags: dict[str, str]) -> str | None:
    """What a report says of a run read from another tool's log: the tool, and each field's
    template (from the run record's tags); None for gradlog's own logs."""
    source = tags.get(SOURCE_TAG)
    if source is None:
        return None
    by_template: dict[str, list[str]] = {}
    for key, value in tags.items():
        if key.startswith(READ_TAG):
            by_template.setdefault(value, []).append(key.removeprefix(READ_TAG))
    fields = "; ".join(f"{', '.join(f)} from {v}" for v, f in by_template.items())
    return f"Read from a {describe(source)}: {fields}"


def is_gradlog_head(head: bytes) -> bool:
    """A gradlog JSON Lines log starts with its first record's version: nothing to sniff."""
    return head.startswith(b'{"v":')


def has_event_files(folder: str | os.PathLike[str]) -> bool:
    """A TensorBoard run directory: event files directly inside it."""
    try:
        with os.scandir(folder) as entries:
            return any(e.name.startswith(TFEVENTS) and e.is_file() for e in entries)
    except OSError:
        return False


def sniff(path: str | os.PathLike[str]) -> str | None:
    """Which tool wrote ``path`` (one of the kinds of :mod:`.scalars`), or None."""
    p = Path(path)
    if p.is_dir():
        return TENSORBOARD if has_event_files(p) else None
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return None  # the reader names the problem
    return sniff_head(head, p)


def sniff_head(head: bytes, p: Path) -> str | None:
    if _is_tfrecord(head):
        return TENSORBOARD
    if head.startswith(b"PAR1"):
        return WANDB if _parquet_has_step(p) else None
    text = head.lstrip(_BLANK)
    if text.startswith(b"{"):
        if is_gradlog_head(text):
            return None
        line = text.split(b"\n", 1)[0]
        try:
            first = json.loads(line)
        except ValueError:  # pretty-printed: Hugging Face's trainer_state.json sorts its keys
            return HUGGINGFACE if b'"log_history"' in head else None
        if isinstance(first, dict) and "_step" in first and "kind" not in first:
            return WANDB
        if isinstance(first, dict) and isinstance(first.get("log_history"), list):
            return HUGGINGFACE
        return None
    header = _csv_header(text)
    if "_step" in header:
        return WANDB
    if "step" in header:
        return LIGHTNING_CSV
    return None


def _is_tfrecord(head: bytes) -> bool:
    """A TFRecord whose first record is an Event (its first field, the wall time, is a double):
    TensorBoard's event files, whatever their name."""
    if len(head) < 13:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < (1 << 24) and head[12] == 0x09


def _csv_header(text: bytes) -> list[str]:
    if b"\n" not in text and len(text) >= HEAD_BYTES - 8:
        return []  # no line in the first bytes: not a table's header
    line = text.split(b"\n", 1)[0].rstrip(b"\r")
    if b"," not in line or b"\x00" in line:
        return []
    try:
        cells = line.decode("utf-8").split(",")
    except UnicodeDecodeError:
        return []
    return [c.strip().strip('"') for c in cells]


def _parquet_has_step(p: Path) -> bool:
    import polars as pl

    try:
        names = pl.read_parquet_schema(p).keys()
    except Exception:  # noqa: BLE001 - unreadable: gradlog's own reader says why
        return False
    return "_step" in names and "kind" not in names


def read_scalars(path: str, kind: str):
    """The tool's reader for ``kind``, each imported only when its kind is read."""
    from gradlog.errors import LogFormatError

    try:
        if kind == TENSORBOARD:
            from gradlog.analysis.foreign.tensorboard import read_tensorboard as read
        elif kind == LIGHTNING_CSV:
            from gradlog.analysis.foreign.lightning_csv import read_lightning_csv as read
        elif kind == HUGGINGFACE:
            from gradlog.analysis.foreign.tables import read_trainer_state as read
        else:
            from gradlog.analysis.foreign.tables import read_wandb as read
    except ImportError as exc:
        raise LogFormatError(
            f"looks like a {describe(kind)}, which this gradlog cannot read yet ({exc})", path
        ) from None
    return read(path)


def read_foreign(path: str | os.PathLike[str], kind: str | None = None, mapping=None):
    """``path`` (a file, or a TensorBoard run directory) read as gradlog's records.

    ``kind`` defaults to what :func:`sniff` finds; ``mapping`` to the current one
    (:func:`gradlog.analysis.foreign.mapping.current_mapping`: the built-in templates unless
    ``--map`` or ``--map-file`` added some). Raises LogFormatError naming the file.
    """
    from gradlog.analysis.foreign.mapping import current_mapping
    from gradlog.analysis.foreign.records import to_log
    from gradlog.errors import LogFormatError

    name = os.fspath(path)
    kind = kind or sniff(name)
    if kind is None:
        raise LogFormatError("not a log gradlog knows how to read", name)
    scalars = read_scalars(name, kind)
    extra = {"epoch": _EPOCH_READ[kind]} if kind in _EPOCH_READ else {}
    return to_log(scalars, mapping or current_mapping(), extra)
