"""Files gradlog replaces are written whole and privately; a full disk is one clear line.

Report, convert and plot outputs and the Parquet recorder's snapshots go to a temporary file
created exclusively, under a random name, in the target's directory, renamed over the target at
the end (``gradlog.files.replacing``): a symbolic link planted at a predictable name is never
followed, nothing half-written ever has the target's name, and a failure leaves no temporary file
behind. Disk full and permission errors become one ``GradlogError`` line naming the file and the
cause. The full disk is real where the test may mount a small tmpfs; it is also injected, so that
the same paths are tested everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import run_gradlog

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog import files as files_module  # noqa: E402
from gradlog.analysis.convert import convert_log  # noqa: E402
from gradlog.analysis.publish import write_output  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.analysis.report import analyse  # noqa: E402
from gradlog.errors import GradlogError  # noqa: E402
from gradlog.recorder import writers as writers_module  # noqa: E402
from gradlog.recorder.writers import JsonlWriter, journal_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs" / "healthy.jsonl"
TASKS = ["pointer", "type"]
DISK_FULL = "cannot write (No space left on device)"


class Scalar(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))


def train(rec: GradientRecorder, model: Scalar, epochs) -> None:
    for epoch in epochs:
        model.zero_grad()
        rec.backward({"pointer": 3.0 * model.w.sum(), "type": model.w.sum()}, epoch=epoch)


def recorder(path: Path, model: Scalar, **kwargs) -> GradientRecorder:
    return GradientRecorder(model, TASKS, path, log_every=1, balance_every=1, **kwargs)


def plot_to(out: Path) -> None:
    pytest.importorskip("matplotlib")
    from gradlog.analysis.plot import plot_runs

    plot_runs([(str(SAMPLE), run) for run in analyse(read_log(SAMPLE)).runs], out)


def snapshot_to(out: Path) -> None:
    model = Scalar()
    with recorder(out, model) as rec:
        train(rec, model, [1, 2])
        rec.flush()


WRITERS = {  # output name: how gradlog writes it
    "out.md": lambda out: write_output("# report\n", out),
    "out.parquet": lambda out: convert_log(read_log(SAMPLE), out, overwrite=True),
    "out.jsonl": lambda out: convert_log(read_log(SAMPLE), out, overwrite=True),
    "out.jsonl.gz": lambda out: convert_log(read_log(SAMPLE), out, overwrite=True),
    "out.svg": plot_to,
    "run.parquet": snapshot_to,
}


def check_written(out: Path) -> None:
    if out.name == "out.md":
        assert out.read_text() == "# report\n"
    elif out.suffix in (".parquet", ".jsonl", ".gz"):
        assert read_log(out).frame.height >= 3
    else:
        assert out.read_bytes().lstrip().startswith(b"<?xml")


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_symlink_planted_at_a_predictable_name_is_never_followed(
    tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    planted = folder / f".{name}.{os.getpid()}.tmp"  # the name gradlog used to write through
    planted.symlink_to(victim)
    out = folder / name
    WRITERS[name](out)
    assert victim.read_text() == "precious\n"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    check_written(out)
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, planted.name])
    # a new file gets the mode a plain open() gives it, not the temporary file's 0600
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


class FullDisk:
    """A file object whose writes take a few bytes, then fail as a full disk does."""

    def __init__(self, fh) -> None:
        self._fh = fh

    def write(self, data) -> int:
        self._fh.write(bytes(data)[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


@pytest.mark.parametrize("name", list(WRITERS))
def test_disk_full_is_one_line_and_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / name
    WRITERS[name](out)  # a good one first: a failed write must leave it as it was
    if name == "run.parquet":
        model = Scalar()
        rec = recorder(out, model)  # rewrites the file (its journal starts anew)
        train(rec, model, [3])
    before = out.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(files_module.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(GradlogError) as raised:
        if name == "run.parquet":
            rec.flush()
        else:
            WRITERS[name](out)
    assert str(raised.value) == f"{out}: {DISK_FULL}"
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    if name == "run.parquet":  # the journal kept the record the snapshot could not
        assert read_log(out).frame.height == 5  # 3 of the first run, 2 of this one
        rec.close()
        assert read_log(out).frame.height == 5 and not journal_path(out).exists()


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(files_module.tempfile, "mkstemp", refuse)
    out = tmp_path / "out.md"
    with pytest.raises(GradlogError, match=r"^.*out\.md: cannot write \(Permission denied\)$"):
        write_output("# report\n", out)
    assert not out.exists()


def test_a_journal_write_cut_by_a_full_disk_costs_only_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write, then ENOSPC: the error says what was lost; once there is room again the
    next record starts a line of its own, and the readers skip the cut line with a note."""
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path)
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": TASKS}})
    real_write = os.write
    calls = []

    def short_then_full(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:7])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers_module.os, "write", short_then_full)
    with pytest.raises(GradlogError) as raised:
        writer.write({"v": 1, "run": "r", "kind": "event", "epoch": 1})
    assert str(raised.value) == f"{path}: {DISK_FULL}; 1 record not written"
    monkeypatch.undo()
    writer.write({"v": 1, "run": "r", "kind": "event", "epoch": 2})
    writer.close()
    log = read_log(path)
    assert log.frame["epoch"].to_list() == [None, 2]
    assert len(log.notes) == 1
    assert log.notes[0].startswith(f"{path}:2: skipped a line that is not valid JSON")


# -- a real full disk: a tiny tmpfs --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    where = tmp_path / "small"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the injected disk-full tests cover these paths")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(
            "cannot mount a 64 KiB tmpfs to fill (needs root, CAP_SYS_ADMIN): "
            + done.stderr.decode(errors="replace").strip()
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def gradlog(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADLOG_DEBUG"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args], capture_output=True, timeout=120, env=env
    )


def test_the_cli_on_a_full_disk(small_disk: Path) -> None:
    fill(small_disk)
    calls = {
        "out.md": ("report", str(SAMPLE), "-o"),
        "out.parquet": ("convert", str(SAMPLE), "-o"),
        "out.jsonl.gz": ("convert", str(SAMPLE), "-o"),
    }
    if _has_matplotlib():
        calls["out.png"] = ("plot", str(SAMPLE), "-o")
    for name, call in calls.items():
        out = small_disk / name
        result = gradlog(*call, str(out))
        assert result.returncode == 2, result
        assert result.stderr.decode() == f"Error: {out}: {DISK_FULL}\n"
        assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def train_until_full(rec: GradientRecorder, model: Scalar, first: int) -> tuple[int, str]:
    """Train from epoch ``first`` until a record cannot be written: that epoch, and the error."""
    for epoch in range(first, first + 100_000):
        try:
            train(rec, model, [epoch])
        except GradlogError as exc:
            return epoch, str(exc)
    raise AssertionError("the disk never filled up")


def test_the_recorders_on_a_full_disk(small_disk: Path) -> None:
    """Every record that was written survives; the one that could not be is named in the
    error; once there is room again, the same recorder goes on."""
    model = Scalar()
    jsonl, parquet = small_disk / "run.jsonl", small_disk / "run.parquet"
    plain, journaled = recorder(jsonl, model), recorder(parquet, model)
    filler = fill(small_disk)
    lost, said = train_until_full(plain, model, 1)
    assert said == f"{jsonl}: {DISK_FULL}; 1 record not written"
    lost_j, said = train_until_full(journaled, model, 1)
    assert said == f"{journal_path(parquet)}: {DISK_FULL}; 1 record not written"
    with pytest.raises(GradlogError, match=rf"^{parquet}: cannot write \(No space left"):
        journaled.flush()  # the snapshot
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".tmp")]
    filler.unlink()
    train(plain, model, [lost + 1])
    train(journaled, model, [lost_j + 1])
    plain.close()
    journaled.close()
    kept = [*range(1, lost), lost + 1]
    assert read_log(jsonl).frame["epoch"].drop_nulls().to_list() == kept
    assert read_log(parquet).frame["epoch"].drop_nulls().to_list() == [
        *range(1, lost_j),
        lost_j + 1,
    ]
    assert sorted(p.name for p in small_disk.iterdir()) == ["run.jsonl", "run.parquet"]


@pytest.mark.parametrize("command", [("report",), ("batch", "--format", "csv")])
def test_output_to_a_device_writes_to_it_and_leaves_it_a_device(command) -> None:
    """``-o /dev/null`` as root once renamed a file over the device: every later write to
    /dev/null on the machine then landed in that file."""
    result = run_gradlog(*command, "sample_logs/healthy.jsonl", "-o", os.devnull)
    assert result.returncode == 0, result.stderr.decode()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
