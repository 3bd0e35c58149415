"""read_tensorboard on event files written by the real writers: torch's SummaryWriter (both of
its encodings) and the tensorboard package's own Writer, with more points per tag than
TensorBoard's EventAccumulator keeps, so a reader that samples would fail here."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("tensorboard")

from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from torch.utils.tensorboard.summary import scalar  # noqa: E402

from gradlog.analysis.foreign.scalars import SCALARS_SCHEMA, TENSORBOARD  # noqa: E402
from gradlog.analysis.foreign.tensorboard import INSTALL_HINT, read_tensorboard  # noqa: E402
from gradlog.errors import LogFormatError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POINTS = 12_000  # EventAccumulator keeps 10,000 scalars per tag unless told otherwise
START = 1_700_000_000.0


def value(i: int) -> float:
    return math.sin(i) * 3.7 + i / 1000


def f32(x: float) -> float:
    return float(np.float32(x))


def points(scalars, tag: str) -> list[tuple]:
    frame = scalars.frame.filter(tag=tag)
    return list(zip(frame["step"], frame["value"], frame["time"]))


def event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if "tfevents" in p.name)


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory) -> Path:
    """torch's add_scalar (simple_value), one tag past EventAccumulator's 10,000, and a
    histogram that is not a scalar."""
    folder = tmp_path_factory.mktemp("tb") / "legacy"
    writer = SummaryWriter(str(folder), max_queue=10_000, flush_secs=3600)
    for i in range(POINTS):
        writer.add_scalar("grad_norm/pointer", value(i), i, walltime=START + i / 4)
        if i % 240 == 0:
            writer.add_scalar("loss/type", -value(i), i, walltime=START + i / 4)
    writer.add_histogram("weights", np.arange(10.0), 0)
    writer.close()
    return folder


def test_every_point_of_torch_summary_writer(legacy_run: Path) -> None:
    scalars = read_tensorboard(str(legacy_run))
    assert scalars.kind == TENSORBOARD and scalars.path == str(legacy_run)
    assert scalars.frame.schema == SCALARS_SCHEMA
    assert scalars.frame["run"].unique().to_list() == ["legacy"]
    assert scalars.frame["epoch"].null_count() == scalars.frame.height
    expected = [(i, f32(value(i)), START + i / 4) for i in range(POINTS)]
    assert points(scalars, "grad_norm/pointer") == expected  # every point, float32 exact
    assert points(scalars, "loss/type") == [
        (i, f32(-value(i)), START + i / 4) for i in range(0, POINTS, 240)
    ]
    assert scalars.frame.height == POINTS + POINTS // 240
    assert scalars.frame["step"].head(3).to_list() == [0, 0, 1]  # in the order written
    assert scalars.notes == [f"{legacy_run}: left out a tag that is not a scalar (weights)"]


def test_event_accumulator_would_have_sampled(legacy_run: Path) -> None:
    """The trap this reader avoids, on the same file: TensorBoard's default loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(legacy_run)).Reload()
    assert len(accumulator.Scalars("grad_norm/pointer")) == 10_000 < POINTS


def test_a_single_file_is_read_as_its_directory(legacy_run: Path) -> None:
    (file,) = event_files(legacy_run)
    scalars = read_tensorboard(str(file))
    assert scalars.frame.height == POINTS + POINTS // 240
    assert scalars.frame["run"].unique().to_list() == ["legacy"]


def test_tensor_encoded_scalars(tmp_path: Path) -> None:
    """tensorboard's own Writer (a float32 tensor), torch's new_style (float_val) and
    double_precision (double_val): three event files of one run."""
    from tensorboard.summary import Writer

    folder = tmp_path / "tensors"
    writer = Writer(str(folder))
    for i in range(POINTS):
        writer.add_scalar("grad_norm/pointer", value(i), step=i, wall_time=START + i)
    writer.close()
    torch_writer = SummaryWriter(str(folder))
    for i in range(100):
        torch_writer.add_scalar("loss/type", value(i), i, walltime=START, new_style=True)
        torch_writer.add_scalar(
            "lr", 1 / (i + 3), i, walltime=START, new_style=True, double_precision=True
        )
    torch_writer.close()
    assert len(event_files(folder)) == 2

    scalars = read_tensorboard(str(folder))
    assert points(scalars, "grad_norm/pointer") == [
        (i, f32(value(i)), START + i) for i in range(POINTS)
    ]
    assert points(scalars, "loss/type") == [(i, f32(value(i)), START) for i in range(100)]
    assert points(scalars, "lr") == [(i, 1 / (i + 3), START) for i in range(100)]  # a double
    assert scalars.notes == []


def write_run(folder: Path, tag: str, n: int) -> None:
    writer = SummaryWriter(str(folder))
    for i in range(n):
        writer.add_scalar(tag, i * 0.5, i, walltime=START)
    writer.close()


def test_a_directory_of_runs(tmp_path: Path) -> None:
    root = tmp_path / "lightning_logs"
    write_run(root / "version_0", "loss", 3)
    write_run(root / "version_1", "loss", 4)
    write_run(root / "sweep" / "a", "loss", 2)
    scalars = read_tensorboard(str(root))
    runs = scalars.frame.group_by("run", maintain_order=True).len()
    assert runs.rows() == [("sweep/a", 2), ("version_0", 3), ("version_1", 4)]
    alone = read_tensorboard(str(root / "version_1")).frame
    assert alone["run"].unique().to_list() == ["version_1"] and alone.height == 4


def record_starts(file: Path) -> list[int]:
    data = file.read_bytes()
    starts, at = [], 0
    while at < len(data):
        starts.append(at)
        at += struct.unpack_from("<Q", data, at)[0] + 16
    return starts


def test_a_cut_short_last_record(tmp_path: Path) -> None:
    """A writer killed mid-write: everything up to the last whole record, and a note."""
    write_run(tmp_path / "crashed", "loss", 100)
    (file,) = event_files(tmp_path / "crashed")
    last = record_starts(file)[-1]
    os.truncate(file, file.stat().st_size - 5)
    scalars = read_tensorboard(str(file))
    assert scalars.frame["value"].to_list() == [i * 0.5 for i in range(99)]
    assert scalars.notes == [
        f"{file}: the last record is cut short ({file.stat().st_size - last} bytes at byte "
        f"{last}: a writer stopped mid-write); read the 100 whole records before it"
    ]


def test_a_damaged_length_stops_the_read_there(tmp_path: Path) -> None:
    write_run(tmp_path / "damaged", "loss", 100)
    (file,) = event_files(tmp_path / "damaged")
    data = bytearray(file.read_bytes())
    start = record_starts(file)[51]  # the first record is the file's version: 50 points before
    data[start] ^= 0x01
    file.write_bytes(bytes(data))
    scalars = read_tensorboard(str(file))
    assert scalars.frame["value"].to_list() == [i * 0.5 for i in range(50)]
    assert scalars.notes == [
        f"{file}: record 52 has a damaged length (at byte {start}); read the 51 records before it"
    ]


def test_what_is_not_a_tensorboard_log(tmp_path: Path) -> None:
    other = tmp_path / "events.out.tfevents.notes"
    other.write_text("epoch,step,loss\n0,1,0.5\n")
    with pytest.raises(LogFormatError, match="not a TensorBoard event file"):
        read_tensorboard(str(other))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LogFormatError, match=r"no TensorBoard event files \(events"):
        read_tensorboard(str(empty))
    with pytest.raises(LogFormatError, match="no such file or directory"):
        read_tensorboard(str(tmp_path / "missing"))


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_without_the_tensorboard_package(legacy_run: Path) -> None:
    """The real reader in an interpreter where ``import tensorboard`` fails: one line, with
    the install hint."""
    result = run_python(
        f"""
        import sys

        class NoTensorBoard:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorboard" or name.startswith("tensorboard."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, NoTensorBoard())
        from gradlog.analysis.foreign.tensorboard import read_tensorboard
        from gradlog.errors import LogFormatError
        try:
            read_tensorboard({str(legacy_run)!r})
        except LogFormatError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{legacy_run}: {INSTALL_HINT}\n"


def test_reading_does_not_import_torch(legacy_run: Path) -> None:
    result = run_python(
        f"""
        import json, sys
        from gradlog.analysis.foreign.tensorboard import read_tensorboard
        height = read_tensorboard({str(legacy_run)!r}).frame.height
        print(json.dumps([height, "torch" in sys.modules, "tensorflow" in sys.modules]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [POINTS + POINTS // 240, False, False]


def test_the_vectorised_decoding_agrees_with_protobuf(tmp_path: Path) -> None:
    """Records of add_scalar's one shape are decoded by NumPy, the rest by protobuf: on the
    shapes at the edges of the shortcut (steps of every varint width, negative and absent, the
    longest tag it takes and the shortest it leaves, tags of equal length, non-ASCII, NaN and
    infinities, two values in one event), both give the same points in the same order."""
    from gradlog.analysis.foreign import tensorboard

    folder = tmp_path / "edges"
    writer = SummaryWriter(str(folder))
    tags = ["a", "b", "é/ü", "x" * 118, "y" * 119, "grad_norm/t1", "grad_norm/t2"]
    steps = [0, 1, 127, 128, 16_383, 16_384, 2**40, -1, -(2**62), None]
    numbers = [0.5, -2.25, float("nan"), float("inf"), -float("inf"), 1e-30, 3.4e38]
    for i, step in enumerate(steps):
        for j, tag in enumerate(tags):
            writer.add_scalar(tag, numbers[(i + j) % len(numbers)], step, walltime=START + i)
    writer.add_scalars("pair", {"left": 1.0, "right": 2.0}, 7)  # other files, one per key
    both = scalar("one", 1.5)
    both.value.extend(scalar("two", 2.5).value)
    writer.file_writer.add_summary(both, 9)
    writer.close()

    scalars = read_tensorboard(str(folder))
    decoder = tensorboard._Decoder(str(folder))
    expected = []
    for file in event_files(folder):
        data = file.read_bytes()
        bounds = tensorboard._frame(data)
        columns, stop = tensorboard._decode(
            str(file), data, bounds, list(range(len(bounds) - 1)), decoder, []
        )
        assert stop is None
        expected.append(columns.frame().drop("record"))
    by_protobuf = pl.concat(expected)
    ours = scalars.frame.drop("run")
    assert ours.height == len(steps) * len(tags) + 4

    main = event_files(folder)[0]  # the first file: the others are add_scalars' own
    data = main.read_bytes()
    bounds = np.asarray(tensorboard._frame(data))
    simple, _ = tensorboard._simple_scalars(
        np.frombuffer(data, dtype=np.uint8), bounds[:-1] + 12, bounds[1:] - 4
    )
    # all but the file's version, the 119-byte tag and the event of two values
    assert simple.sum() == len(steps) * (len(tags) - 1)
    assert ours.select("step", "tag", "time").equals(by_protobuf.select("step", "tag", "time"))
    assert [np.float64(x).tobytes() for x in ours["value"]] == [
        np.float64(x).tobytes() for x in by_protobuf["value"]
    ]  # NaN too, bit for bit
    assert ours.filter(tag="a")["step"].to_list() == [s if s is not None else 0 for s in steps]
