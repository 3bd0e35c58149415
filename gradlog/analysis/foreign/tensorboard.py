"""TensorBoard event files: every scalar point, in both of TensorBoard's encodings.

TensorBoard's own loaders sample: ``EventAccumulator`` keeps 10,000 scalars per tag by default
(reservoir sampling), so a 20,000-step run comes back with half its points. This reader walks the
records itself, keeping every point, and decodes them with the ``tensorboard`` package's
``Event`` protobuf (or, for the commonest shape, NumPy: below). Scalars come in two encodings: ``simple_value`` (``torch.utils.tensorboard``'s
``add_scalar``, TensorFlow 1) and a rank-0 ``tensor`` whose tag's metadata names the
``scalars`` plugin (``tensorboard.summary.Writer``, TensorFlow 2), where the metadata may come
only with a tag's first point.

A record is 8 bytes of length, 4 of the length's checksum, the event, 4 of the event's checksum.
The event checksums are not verified: there is no CRC-32C in the standard library, and the
tensorboard package, without TensorFlow, computes it in Python byte by byte, which would cost
more than all the decoding here. The length checksums are, all at once with NumPy, so a damaged
length stops the read instead of misreading the rest of the file.

Decoding each record with the protobuf library costs microseconds of Python per point (building
the message's objects and reading their fields). The records of ``add_scalar`` have one fixed
shape, so NumPy decodes all of them at once (:func:`_simple_scalars`), checking every byte
against that shape; each record of any other shape goes through the protobuf library.
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
    "reading TensorBoard logs needs the tensorboard package: pip install 'gradlog-mtl[tensorboard]'"
)
SCALARS_PLUGIN = "scalars"
HEADER = 12  # the length (8 bytes) and its checksum (4)
FOOTER = 4  # the event's checksum
CHUNK_RECORDS = 1 << 17  # records decoded at once by NumPy (each of its arrays about 1 MB)
HASH = 1099511628211  # FNV's 64-bit prime, for the tags' hash
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
    notes: list[str] = []
    frames = [pl.DataFrame(schema=SCALARS_SCHEMA)]
    previous = None
    for run, file in files:
        if run != previous:
            decode.plugins = {}  # TensorBoard keeps a tag's metadata per run, across its files
            previous = run
        points = _read_file(file, decode, notes)
        frames.append(points.select(pl.lit(run).alias("run"), pl.all()).select(*SCALARS_SCHEMA))
    if decode.not_scalars:
        notes.append(_not_scalars_note(path, decode.not_scalars))
    frame = pl.concat(frames, how="vertical").cast(dict(SCALARS_SCHEMA))
    return Scalars(path=path, kind=TENSORBOARD, frame=frame, notes=notes)


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
    """The points of records decoded one by one, kept in typed arrays (a Python object per
    number would take three times the memory) and made a frame once at the end."""

    def __init__(self) -> None:
        self.tag_codes: dict[str, int] = {}
        self.records = array("q")  # the record each point came from, to merge in file order
        self.tags = array("q")
        self.steps = array("q")
        self.values = array("d")
        self.times = array("d")

    def frame(self) -> pl.DataFrame:
        import numpy as np

        names = pl.Series(list(self.tag_codes), dtype=pl.String)
        return pl.DataFrame(
            {
                "record": np.frombuffer(self.records, dtype=np.int64),
                "step": np.frombuffer(self.steps, dtype=np.int64),
                "epoch": pl.repeat(None, len(self.values), dtype=pl.Int64, eager=True),
                "tag": names.gather(pl.Series(np.frombuffer(self.tags, dtype=np.int64))),
                "value": np.frombuffer(self.values, dtype=np.float64),
                "time": np.frombuffer(self.times, dtype=np.float64),
            }
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


def _read_file(file: str, decode: _Decoder, notes: list[str]) -> pl.DataFrame:
    """The file's points (``record``, ``step``, ``epoch``, ``tag``, ``value``, ``time``)."""
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
    import numpy as np

    starts = np.frombuffer(bounds, dtype=np.int64)[:-1] + HEADER
    ends = np.frombuffer(bounds, dtype=np.int64)[1:] - FOOTER
    raw = np.frombuffer(data, dtype=np.uint8)
    simple = np.zeros(len(starts), dtype=bool)
    chunks = []
    for first in range(0, len(starts), CHUNK_RECORDS):  # bounds the temporaries' memory
        part = slice(first, first + CHUNK_RECORDS)
        simple[part], points = _simple_scalars(raw, starts[part], ends[part])
        chunks.append(points.with_columns(pl.col("record") + first))
    fast = pl.concat(chunks, how="vertical") if chunks else _simple_scalars(raw, starts, ends)[1]
    rest = np.flatnonzero(~simple).tolist()
    columns, stop = _decode(file, data, bounds, rest, decode, notes)
    if stop is not None:  # a record that is not an event ends the read there
        fast = fast.filter(pl.col("record") < stop)
    slow = columns.frame()
    if slow.height and fast.height:  # interleaved: back to the order of the records
        both = pl.concat([fast, slow], how="vertical").sort("record", maintain_order=True)
    else:
        both = slow if slow.height else fast
    return both.drop("record")


def _simple_scalars(raw, starts, ends):  # noqa: ANN001, ANN202 (NumPy arrays)
    """Which records are exactly one ``simple_value`` scalar, and their points as a frame.

    Such an event is ``09`` + wall time (8 bytes), then ``10`` + step (a varint; absent when
    0), then the summary: ``2a`` L+9, ``0a`` L+7 (its one value), ``0a`` L + the tag (L bytes),
    ``15`` + the float32 value, where L + 9 < 128 (each length one byte). A record matches only if every byte is where
    this says and the value ends where the record does, so it decodes as the protobuf would.
    """
    import numpy as np

    last = len(raw) - 1

    def at(positions):  # noqa: ANN001, ANN202 - bytes past the file read as 0, never matched
        return raw[np.minimum(positions, last)]

    # Byte by byte (one column of all records at a time), not a records x bytes matrix: the
    # matrix's index arrays took 250 MB for a million records.
    has_step = at(starts + 9) == 0x10
    step = np.zeros(len(starts), dtype=np.uint64)
    width = np.zeros(len(starts), dtype=np.int64)
    going = np.ones(len(starts), dtype=bool)
    for k in range(10):  # the step's varint: 7 bits a byte, the high bit says another follows
        byte = at(starts + 10 + k)
        step |= np.where(going, (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k), 0)
        width += going
        going &= byte >= 0x80
    width[going] = 11  # no last byte within 10: never a match
    step = np.where(has_step, step.view(np.int64), 0)
    summary = starts + np.where(has_step, 10 + width, 9)
    length = at(summary + 5).astype(np.int64)
    ok = (length < 0x80 - 9) & (summary + 11 + length == ends) & (at(starts) == 0x09)
    for offset, expected in ((0, 0x2A), (1, length + 9), (2, 0x0A), (3, length + 7), (4, 0x0A)):
        ok &= at(summary + offset) == expected
    ok &= at(summary + 6 + length) == 0x15
    records = np.flatnonzero(ok)
    begin, length = starts[records], length[records]
    tags = summary[records] + 6

    def gather(offset, count, dtype):  # noqa: ANN001, ANN202
        out = np.empty((len(offset), count), dtype=np.uint8)
        for k in range(count):
            out[:, k] = raw[offset + k]
        return out.view(dtype).reshape(-1)

    frame = pl.DataFrame(
        {
            "record": records.astype(np.int64),
            "step": step[records],
            "epoch": pl.repeat(None, len(records), dtype=pl.Int64, eager=True),
            "tag": _tag_strings(raw, tags, length),
            "value": gather(tags + length + 1, 4, "<f4").astype(np.float64),
            "time": gather(begin + 1, 8, "<f8"),
        }
    )
    return ok, frame


def _tag_strings(raw, starts, lengths) -> pl.Series:  # noqa: ANN001
    """The tags at ``starts``, decoded once per distinct tag (a run has a few, repeated)."""
    import numpy as np

    codes = np.zeros(len(starts), dtype=np.int64)
    names: list[str] = []
    for size in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == size)
        if size == 0:
            names.append("")
            codes[rows] = len(names) - 1
            continue
        block = np.empty((len(rows), size), dtype=np.uint8)
        for column in range(size):
            block[:, column] = raw[starts[rows] + column]
        # Sorting integers is ten times faster than sorting byte strings: a hash of each tag,
        # and the byte strings only if two different tags share a hash.
        keys = np.zeros(len(rows), dtype=np.uint64)
        for column in range(size):
            keys += block[:, column].astype(np.uint64) * np.uint64(pow(HASH, column + 1, 1 << 64))
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        if not (block == block[first[inverse]]).all():
            keys = block.view(np.dtype((np.void, size))).reshape(-1)
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        codes[rows] = inverse.reshape(-1) + len(names)
        names.extend(bytes(block[row]).decode("utf-8", "replace") for row in first.tolist())
    return pl.Series(names, dtype=pl.String).gather(pl.Series(codes))


def _frame(data: bytes) -> array:
    """Where each whole record starts, and where the last whole one ends: record ``i`` is
    ``data[bounds[i]:bounds[i + 1]]``, and anything after ``bounds[-1]`` is a cut-short record."""
    unpack = _LENGTH.unpack_from
    limit = len(data) - HEADER - FOOTER
    bounds = array("q", [0])  # a million offsets: 8 MB, where a list of ints took 36 MB
    add = bounds.append
    at = 0
    while at <= limit:
        at += unpack(data, at)[0] + HEADER + FOOTER
        add(at)
    if at > len(data):
        bounds.pop()
    return bounds


def _first_bad_length(data: bytes, bounds: array) -> int | None:
    """The first record whose length fails its checksum, or None if none does."""
    if len(bounds) < 2:
        return None
    import numpy as np

    starts = np.frombuffer(bounds, dtype=np.int64)[:-1]
    raw = np.frombuffer(data, dtype=np.uint8)
    stored = np.empty((len(starts), 4), dtype=np.uint8)
    for column in range(4):
        stored[:, column] = raw[starts + 8 + column]
    stored = stored.view("<u4").reshape(-1)
    table = _crc32c_table()
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    for column in range(8):
        crc = table[(crc ^ raw[starts + column]) & 0xFF] ^ (crc >> np.uint32(8))
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
    file: str, data: bytes, bounds: array, records: list[int], decode: _Decoder, notes
) -> tuple[_Columns, int | None]:
    """Decode ``records`` with the protobuf library: their scalar points, and the record that
    is not an event, if one ends the read."""
    from google.protobuf.message import DecodeError

    columns = _Columns()
    parse = decode.parse
    plugins = decode.plugins
    codes = columns.tag_codes
    add_record, add_tag, add_step = (
        columns.records.append,
        columns.tags.append,
        columns.steps.append,
    )
    add_value, add_time = columns.values.append, columns.times.append
    view = memoryview(data)
    for index in records:
        try:
            event = parse(view[bounds[index] + HEADER : bounds[index + 1] - FOOTER])
        except DecodeError:
            if index == 0:
                raise LogFormatError(
                    "not a TensorBoard event file (its first record is not an event)", file
                ) from None
            notes.append(f"{file}: record {index + 1} is not an event; read the {index} before it")
            return columns, index
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            tag = value.tag
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor":
                plugin = plugins.get(tag)
                if plugin is None:
                    plugin = plugins[tag] = value.metadata.plugin_data.plugin_name
                number = decode.tensor_value(value.tensor) if plugin == SCALARS_PLUGIN else None
                if number is None:
                    decode.not_scalars.add(tag)
                    continue
            else:
                decode.not_scalars.add(tag)
                continue
            code = codes.get(tag)
            if code is None:
                code = codes[tag] = len(codes)
            add_record(index)
            add_tag(code)
            add_step(event.step)
            add_value(number)
            add_time(event.wall_time)
    return columns, None


def _not_scalars_note(path: str, tags: set[str]) -> str:
    named = sorted(tags)[:MAX_NAMED_TAGS]
    more = len(tags) - len(named)
    listed = ", ".join(named) + (f" and {more} more" if more else "")
    what = (
        "a tag that is not a scalar" if len(tags) == 1 else f"{len(tags)} tags that are not scalars"
    )
    return f"{path}: left out {what} ({listed})"
