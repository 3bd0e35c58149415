"""``gradlog watch``: the real CLI follows a log that a real writer is writing.

The main test runs a real two-task training in a subprocess (the second task's loss weight so
small that its gradient is starved) while ``gradlog watch`` runs in a pseudo-terminal. The
training stops at a gate (a FIFO it reads) once it has logged enough collapsed samples, and
only goes on when the test has read the collapse verdict from the terminal: the view showed
the collapse before the training ended, by construction. Then the watcher must end by itself
when the recorder closes, and print the final report. The others drive a real writer from the
test (``JsonlWriter``, ``ParquetWriter``) to make a log appear late, cut a line, rotate the
file and interrupt the watcher. Nothing waits on a length of time: each step waits for the
watcher's output or for a process, with a generous deadline only as a safety net.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE_LOGS, run_gradlog

pytest.importorskip("torch")

from gradlog.analysis.watch.follow import change, look  # noqa: E402
from gradlog.presence import being_written  # noqa: E402
from gradlog.recorder.writers import JsonlWriter, ParquetWriter  # noqa: E402

PATIENCE_S = 120  # a safety net only: every wait below ends on an event long before
INTERVAL = "0.05"

TRAIN = textwrap.dedent(
    """
    import signal, sys, warnings
    warnings.filterwarnings("ignore")
    signal.alarm(300)  # a safety net, should the test die before it opens the gate
    import torch
    from torch.nn import functional as F
    from gradlog import GradientRecorder

    path, gate = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    encoder, main_head, aux_head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1), torch.nn.Linear(16, 3)
    model = torch.nn.ModuleList([encoder, main_head, aux_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y_main, y_aux = torch.randn(32, 8), torch.randn(32, 1), torch.randint(0, 3, (32,))
    rec = GradientRecorder(
        model, ["main", "aux"], path, weights={"main": 1.0, "aux": 1e-4},
        log_every=None, balance_every=None, log_every_steps=1, balance_every_steps=1, buffer=0,
    )

    def step(n):
        opt.zero_grad()
        h = torch.tanh(encoder(x))
        losses = {"main": F.mse_loss(main_head(h), y_main), "aux": F.cross_entropy(aux_head(h), y_aux)}
        rec.backward(losses, step=n)
        opt.step()

    for n in range(1, 7):
        step(n)
    print("at the gate", flush=True)
    with open(gate) as fh:  # blocks until the test has seen the collapse and opens the gate
        fh.read()
    for n in range(7, 10):
        step(n)
    rec.close()
    print("closed", flush=True)
    """
)

_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r")


class Reader:
    """Everything a file descriptor gives, read by a thread, for waiting on its content."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunks: list[bytes] = []
        self._changed = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:  # EIO: the terminal's other side closed
                data = b""
            with self._changed:
                if not data:
                    self.closed = True
                else:
                    self._chunks.append(data)
                self._changed.notify_all()
            if not data:
                return

    @property
    def text(self) -> str:
        with self._changed:
            raw = b"".join(self._chunks).decode("utf-8", "replace")
        return _CSI.sub("", raw)

    def wait_for(self, pattern: str) -> re.Match:
        regex = re.compile(pattern)
        with self._changed:
            self._changed.wait_for(
                lambda: regex.search(self.text) or self.closed, timeout=PATIENCE_S
            )
        match = regex.search(self.text)
        assert match, f"never saw {pattern!r}; got:\n{self.text[-3000:]}"
        return match

    def wait_closed(self) -> str:
        with self._changed:
            assert self._changed.wait_for(lambda: self.closed, timeout=PATIENCE_S)
        return self.text


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRADLOG_DEBUG", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    env["PYTHONPATH"] = str(ROOT)  # the training's recorder is this gradlog
    return env


def _watch_piped(*args: str) -> tuple[subprocess.Popen, Reader]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlog", "watch", *args, "--interval", INTERVAL],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**_env(), "NO_COLOR": "1"},
        cwd=ROOT,
    )
    return proc, Reader(proc.stdout.fileno())


def _records(name: str = "type_collapse.jsonl") -> list[bytes]:
    return (SAMPLE_LOGS / name).read_bytes().splitlines(keepends=True)


def _write(writer: JsonlWriter, lines: list[bytes]) -> None:
    import json

    for line in lines:
        writer.write(json.loads(line))


def test_pty_view_shows_the_collapse_before_the_training_ends(tmp_path: Path) -> None:
    log, gate, script = tmp_path / "train.jsonl", tmp_path / "gate", tmp_path / "train.py"
    os.mkfifo(gate)
    script.write_text(TRAIN)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 160, 0, 0))
    watch = subprocess.Popen(
        [sys.executable, "-m", "gradlog", "watch", str(log), "--interval", INTERVAL],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        cwd=ROOT,
    )
    os.close(slave)
    screen = Reader(master)
    train = subprocess.Popen(
        [sys.executable, str(script), str(log), str(gate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    try:
        trained = Reader(train.stdout.fileno())
        screen.wait_for("waiting for the log to be created")
        screen.wait_for(r"TASK COLLAPSE DETECTED: Main task dominating")
        assert "Task balance: Task collapse" in screen.text
        assert re.search(r"main +[▁▂▃▄▅▆▇█]+ ", screen.text), screen.text[-2000:]
        trained.wait_for("at the gate")
        assert train.poll() is None  # still training: it cannot pass the gate before we open it
        assert watch.poll() is None
        # the view of the log so far is gradlog report's of the same prefix, number for number
        screen.wait_for("6 events")
        prefix = tmp_path / "prefix.jsonl"
        prefix.write_bytes(log.read_bytes())
        so_far = run_gradlog("report", str(prefix)).stdout.decode()
        verdict = re.search(r"TASK COLLAPSE DETECTED: .*\)", so_far).group()
        assert verdict in screen.text
        for line in ("Mean gradient norm: ", "Max gradient norm: "):
            assert re.search(re.escape(line) + r".*", so_far).group() in screen.text
        with open(gate, "w"):
            pass
        trained.wait_for("closed")
        assert train.wait(PATIENCE_S) == 0
        assert watch.wait(PATIENCE_S) == 0  # ended by itself: the recorder closed the log
        out = screen.wait_closed()
    finally:
        for proc in (train, watch):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.close(master)
    report = out[out.index("[PHASE 4] Gradient monitoring enabled") :]
    assert "[PHASE 4] Gradient Monitoring Summary:" in report
    assert "Recommended action:" in report
    assert "9 events" in out  # the view's last refresh read every record


def test_a_finished_log_ends_at_once_with_the_report_of_gradlog_report(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_bytes((SAMPLE_LOGS / "type_collapse.jsonl").read_bytes())
    watched = run_gradlog("watch", str(log), "--interval", INTERVAL)
    reported = run_gradlog("report", str(log))
    assert watched.returncode == 0, watched.stderr
    first, _, rest = watched.stdout.decode().partition("\n")
    # one plain line, the report's own verdict and bands, then exactly gradlog report's text
    assert first.startswith("type-collapse: ")
    assert "TASK COLLAPSE DETECTED: Type task dominating" in first
    assert rest == "\n" + reported.stdout.decode()
    quiet = run_gradlog("watch", str(log), "--no-report", "--fail-on", "collapse")
    assert quiet.returncode == 1
    assert quiet.stdout.decode().count("\n") == 1


def test_a_log_created_late_then_rotated(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    watch, out = _watch_piped(str(log))
    try:
        out.wait_for("run.jsonl: waiting for the log to be created")
        first = JsonlWriter(log)
        _write(first, _records()[:3])
        out.wait_for("created; following it")
        out.wait_for("type-collapse: 2 events")
        # rotated: a new file takes the path while the old one's writer is still open
        fresh = tmp_path / "fresh.jsonl"
        second = JsonlWriter(fresh)
        _write(second, _records("healthy.jsonl"))
        os.rename(fresh, log)
        out.wait_for("replaced by a new file")
        out.wait_for("healthy: 6 events")
        assert watch.poll() is None
        second.close()  # the log at the path is finished (the old file's writer does not count)
        assert watch.wait(PATIENCE_S) == 0
        first.close()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    text = out.wait_closed()
    assert "Tasks balanced" in text.split("healthy: 6 events")[-1]  # the final report


def test_a_cut_last_line_is_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    lines = _records()
    writer = JsonlWriter(log)
    try:
        _write(writer, lines[:3])
        with open(log, "ab") as fh:  # a record cut in the middle, as a write in progress looks
            fh.write(lines[3][:40])
        watch, out = _watch_piped(str(log))
        out.wait_for("type-collapse: 2 events")  # read up to the last whole record
        assert watch.poll() is None
        with open(log, "ab") as fh:
            fh.write(lines[3][40:])
        out.wait_for("type-collapse: 3 events")
    finally:
        writer.close()
    assert watch.wait(PATIENCE_S) == 0


def test_ctrl_c_prints_the_report_so_far_and_exits_130(tmp_path: Path) -> None:
    log = tmp_path / "run.parquet"
    writer = ParquetWriter(log)
    try:
        _write(writer, _records()[:4])
        assert being_written(log.with_name(log.name + ".journal")) is True
        watch, out = _watch_piped(str(log))
        out.wait_for("type-collapse: 3 events")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(PATIENCE_S) == 130
        text = out.wait_closed()
        assert "[PHASE 4] Gradient Monitoring Summary:" in text
    finally:
        writer.close()
    # closed: the journal is gone, and a watcher ends at once
    done = run_gradlog("watch", str(log), "--no-report")
    assert done.returncode == 0 and done.stdout.startswith(b"type-collapse: 3 events")


def test_a_folder_ends_when_its_last_log_does(tmp_path: Path) -> None:
    (tmp_path / "done.jsonl").write_bytes((SAMPLE_LOGS / "healthy.jsonl").read_bytes())
    writer = JsonlWriter(tmp_path / "live.jsonl")
    try:
        _write(writer, _records()[:2])
        watch, out = _watch_piped(str(tmp_path), "--no-report")
        out.wait_for("healthy: 6 events")
        out.wait_for("type-collapse: 1 event;")
        assert watch.poll() is None
    finally:
        writer.close()
    assert watch.wait(PATIENCE_S) == 0


def test_presence_follows_the_writer_however_it_ends(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    assert being_written(log) is None  # no file: cannot tell
    writer = JsonlWriter(log)
    other = JsonlWriter(log)  # writers of one JSON Lines log share it, as before
    assert being_written(log) is True
    writer.close()
    assert being_written(log) is True
    other.close()
    assert being_written(log) is False
    # a killed writer leaves no lock behind: a JSON Lines log, and a Parquet log's journal
    parquet = tmp_path / "run.parquet"
    script = textwrap.dedent(
        f"""
        import json, time
        from gradlog.recorder.writers import JsonlWriter, ParquetWriter
        JsonlWriter({str(log)!r})
        p = ParquetWriter({str(parquet)!r})
        p.write(json.loads({_records()[0].decode()!r}))
        print("open", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout.readline() == b"open\n"
        assert being_written(log) is True
        assert not look(str(parquet)).ended
    finally:
        proc.kill()
        proc.wait()
    assert being_written(log) is False
    assert look(str(parquet)).ended  # its journal holds a record nobody locks
    assert not look(str(log)).ended  # empty: nothing says a writer is not about to begin


def test_log_text_is_neutralised_in_the_live_view_and_the_lines(tmp_path: Path) -> None:
    hostile = "\x1b]52;c;cHduZWQ=\x07evil\x1b[2J"
    log = tmp_path / "run.jsonl"
    text = (SAMPLE_LOGS / "type_collapse.jsonl").read_text().replace("type-collapse", "R")
    log.write_text(
        text.replace('"type"', f'"{hostile}"'.replace("\x1b", "\\u001b").replace("\x07", "\\u0007"))
    )
    plain = run_gradlog("watch", str(log), "--no-report")
    assert plain.returncode == 0, plain.stderr
    assert b"\x1b" not in plain.stdout and b"\x07" not in plain.stdout
    assert b"\\x1b]52;c;cHduZWQ=\\x07evil\\x1b[2J" in plain.stdout
    master, slave = pty.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-m", "gradlog", "watch", str(log), "--no-report"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        cwd=ROOT,
    )
    os.close(slave)
    screen = Reader(master)
    try:
        assert watch.wait(PATIENCE_S) == 0
        screen.wait_closed()
    finally:
        os.close(master)
    raw = b"".join(screen._chunks)
    assert b"\x1b]52" not in raw and b"\x07" not in raw  # Rich writes its own CSI codes only
    assert "\\x1b]52;c;cHduZWQ=" in screen.text


def test_a_log_cut_short_is_said_and_followed(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_bytes(b"".join(_records()))
    before = look(str(log))
    os.truncate(log, 100)
    assert change(before, look(str(log))) == (
        f"{log}: cut short ({before.size - 100:,} bytes fewer); following what is left"
    )
    assert change(look(str(log)), look(str(log))) is None


def test_what_cannot_be_followed_is_refused_in_one_line() -> None:
    for what in ("-", "s3://bucket/run.jsonl"):
        result = run_gradlog("watch", what)
        assert result.returncode == 2
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and "cannot be followed" in lines[0], lines
