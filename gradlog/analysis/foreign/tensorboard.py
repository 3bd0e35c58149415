"""TensorBoard event files: every scalar point, in both of TensorBoard's encodings.

TensorBoard's own loaders sample: ``EventAccumulator`` keeps 10,000 scalars per tag by default
(reservoir sampling), so a 20,000-step run comes back with half its points. This reader walks the
records itself and decodes each with the ``tensorboard`` package's ``Event`` protobuf, keeping
every point. Scalars come in two encodings: ``simple_value`` (``torch.utils.tensorboard``'s
``add_scalar``, TensorFlow 1) and a rank-0 ``tensor`` whose tag's metadata names the
``scalars`` plugin (``tensorboard.summary.Writer``, TensorFlow 2), where the metadata may come
only with a tag's first point.

A record is 8 bytes of length, 4 of the length's checksum, the event, 4 of the event's checksum.
The event checksums are not verified: CRC-32C in pure Python (there is none in the standard
library) is what makes the pure-Python readers slow, five times the cost of decoding. The length
checksums are, all at once with NumPy, so a damaged length stops the read instead of misreading
the rest of the file.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from gradlog.analysis.foreign.scalars import SCALARS_SCHEMA, TENSORBOARD, Scalars
from gradlog.errors import LogFormatError

INSTALL_HINT = (
    "reading TensorBoard logs needs the tensorboard package: pip install 'tensorboard>=2.14'"
)
SCALARS_PLUGIN = "scalars"
HEADER = 12  # the length (8 bytes) and its checksum (4)
FOOTER = 4  # the event's checksum
MAX_NAMED_TAGS = 5  # tags that are not scalars, named in the note; the rest counted

_LENGTH = struct.Struct("<Q")


def is_event_file(name: str) -> bool:
    """TensorBoard's own test (``io_wrapper.IsTensorFlowEventsFile``)."""
    return "tfevents" in name


def read_tensorboard(path: str) -> Scalars:
    """Every scalar of an event file, or of every event file below a directory.

    A directory's runs are the directories that hold event files, each named by its path
    relative to ``path`` (``version_0``, ``version_1/val``); event files directly in ``path``
    (and a single file given) belong to the run named after their directory. A run's files are
    read in name order, which for TensorBoard's names is the order they were started in.
    """
    files = list(_event_files(path))
    decode = _Decoder(path)
    columns = _Columns()
    notes: list[str] = []
    previous = None
    for run, file in files:
        if run != previous:
            decode.new_run()  # TensorBoard keeps a tag's metadata per run, across its files
            previous = run
        start = columns.height
        _read_file(file, decode, columns, notes)
        columns.runs.extend([len(columns.run_names)] * (columns.height - start))
        columns.run_names.append(run)
    if decode.not_scalars:
        notes.append(_not_scalars_note(path, decode.not_scalars))
    return Scalars(path=path, kind=TENSORBOARD, frame=columns.frame(), notes=notes)


def _event_files(path: str) -> Iterator[tuple[str, str]]:
    if os.path.isfile(path):
        yield Path(os.path.abspath(path)).parent.name, path
        return
    if not os.path.isdir(path):
        raise LogFormatError("no such file or directory", path)
    top = Path(os.path.abspath(path)).name
    found = False
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        events = sorted(n for n in names if is_event_file(n))
        if not events:
            continue
        found = True
        relative = os.path.relpath(folder, path)
        run = top if relative == "." else Path(relative).as_posix()
        for name in events:
            yield run, os.path.join(folder, name)
    if not found:
        raise LogFormatError("no TensorBoard event files (events.out.tfevents.*) below it", path)


class _Columns:
    """The frame's columns, filled point by point and made a DataFrame once at the end.

    Numbers go to typed arrays and tags to small codes, so a million points hold 30 MB rather
    than a Python object each (a list of floats, ints and tag strings took three times that).
    """

    def __init__(self) -> None:
        self.run_names: list[str] = []
        self.runs = array("q")
        self.tag_codes: dict[str, int] = {}
        self.tags = array("q")
        self.steps = array("q")
        self.values = array("d")
        self.times = array("d")

    @property
    def height(self) -> int:
        return len(self.values)

    def frame(self) -> pl.DataFrame:
        import numpy as np

        def column(numbers: array, dtype: type[np.generic]) -> pl.Series:
            return pl.Series(np.frombuffer(numbers, dtype=dtype))

        names = pl.Series(list(self.tag_codes), dtype=pl.String)
        runs = pl.Series(self.run_names, dtype=pl.String)
        return pl.DataFrame(
            {
                "run": runs.gather(column(self.runs, np.int64)),
                "step": column(self.steps, np.int64),
                "epoch": pl.repeat(None, self.height, dtype=pl.Int64, eager=True),
                "tag": names.gather(column(self.tags, np.int64)),
                "value": column(self.values, np.float64),
                "time": column(self.times, np.float64),
            },
            schema=SCALARS_SCHEMA,
        )


class _Decoder:
    """The tensorboard package's pieces, imported once, and what each run's tags turned out to
    be (a tensor tag is a scalar only if its first metadata said so)."""

    def __init__(self, path: str) -> None:
        try:
            from tensorboard.compat.proto import event_pb2
        except ImportError:
            raise LogFormatError(INSTALL_HINT, path) from None
        self.parse = event_pb2.Event.FromString
        self.not_scalars: set[str] = set()
        self.plugins: dict[str, str] = {}

    def new_run(self) -> None:
        self.plugins = {}

    def tensor_value(self, tensor) -> float | None:  # noqa: ANN001 (a TensorProto)
        # Writers put a scalar in float_val or double_val; TensorFlow's may use tensor_content.
        if len(tensor.float_val) == 1:
            return tensor.float_val[0]
        if len(tensor.double_val) == 1:
            return tensor.double_val[0]
        # Imported here: a third of a second, for an encoding the writers above do not use.
        from tensorboard.util.tensor_util import make_ndarray

        array = make_ndarray(tensor)
        return float(array.reshape(-1)[0]) if array.size == 1 else None


def _read_file(file: str, decode: _Decoder, columns: _Columns, notes: list[str]) -> None:
    try:
        with open(file, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise LogFormatError(f"cannot read it: {exc.strerror or exc}", file) from None
    bounds = _frame(data)
    whole = len(bounds) - 1
    bad = _first_bad_length(data, bounds)
    if bad == 0:
        raise LogFormatError("not a TensorBoard event file (its first record is not one)", file)
    if bad is not None:
        notes.append(
            f"{file}: record {bad + 1} has a damaged length (at byte {bounds[bad]}); "
            f"read the {bad} records before it"
        )
        del bounds[bad + 1 :]
    elif bounds[-1] < len(data):
        if whole == 0:
            raise LogFormatError("not a TensorBoard event file (no whole record in it)", file)
        notes.append(
            f"{file}: the last record is cut short ({len(data) - bounds[-1]} bytes at byte "
            f"{bounds[-1]}: a writer stopped mid-write); read the {whole} whole records before it"
        )
    _decode(file, data, bounds, decode, columns, notes)


def _frame(data: bytes) -> list[int]:
    """Where each whole record starts, and where the last whole one ends: record ``i`` is
    ``data[bounds[i]:bounds[i + 1]]``, and anything after ``bounds[-1]`` is a cut-short record."""
    unpack = _LENGTH.unpack_from
    limit = len(data) - HEADER - FOOTER
    bounds = [0]
    add = bounds.append
    at = 0
    while at <= limit:
        at += unpack(data, at)[0] + HEADER + FOOTER
        add(at)
    if at > len(data):
        bounds.pop()
    return bounds


def _first_bad_length(data: bytes, bounds: list[int]) -> int | None:
    """The first record whose length fails its checksum, or None if none does."""
    if len(bounds) < 2:
        return None
    import numpy as np

    starts = np.asarray(bounds[:-1], dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    lengths = raw[starts[:, None] + np.arange(8)]
    stored = raw[starts[:, None] + np.arange(8, 12)].copy().view("<u4").reshape(-1)
    table = _crc32c_table()
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    for column in range(8):
        crc = table[(crc ^ lengths[:, column]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)
    wrong = np.flatnonzero(masked != stored)
    return int(wrong[0]) if wrong.size else None


def _crc32c_table():  # noqa: ANN202 (a NumPy array; NumPy is imported only when reading)
    import numpy as np

    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


def _decode(
    file: str, data: bytes, bounds: list[int], decode: _Decoder, columns: _Columns, notes
) -> None:
    from google.protobuf.message import DecodeError

    parse = decode.parse
    plugins = decode.plugins
    steps, tags, values, times = columns.steps, columns.tags, columns.values, columns.times
    codes = columns.tag_codes
    view = memoryview(data)
    for index in range(len(bounds) - 1):
        try:
            event = parse(view[bounds[index] + HEADER : bounds[index + 1] - FOOTER])
        except DecodeError:
            if index == 0:
                raise LogFormatError(
                    "not a TensorBoard event file (its first record is not an event)", file
                ) from None
            notes.append(f"{file}: record {index + 1} is not an event; read the {index} before it")
            return
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor":
                tag = value.tag
                plugin = plugins.get(tag)
                if plugin is None:
                    plugin = plugins[tag] = value.metadata.plugin_data.plugin_name
                if plugin != SCALARS_PLUGIN:
                    decode.not_scalars.add(tag)
                    continue
                number = decode.tensor_value(value.tensor)
                if number is None:
                    decode.not_scalars.add(tag)
                    continue
            else:
                decode.not_scalars.add(value.tag)
                continue
            tag = value.tag
            code = codes.get(tag)
            if code is None:
                code = codes[tag] = len(codes)
            steps.append(event.step)
            tags.append(code)
            values.append(number)
            times.append(event.wall_time)


def _not_scalars_note(path: str, tags: set[str]) -> str:
    named = sorted(tags)[:MAX_NAMED_TAGS]
    more = len(tags) - len(named)
    listed = ", ".join(named) + (f" and {more} more" if more else "")
    what = (
        "a tag that is not a scalar" if len(tags) == 1 else f"{len(tags)} tags that are not scalars"
    )
    return f"{path}: left out {what} ({listed})"
