"""``gradlog batch``'s progress: the files are counted as they are found (a folder or a glob of
thousands takes seconds to search), then read up to the total; the bar says which phase it is."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from runlogs import ROOT, write_run

from gradlog.analysis.batch import run_batch

N = 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    for i in range(N):
        sub = root / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        write_run(sub / f"run{i:02d}.jsonl", [1.0, 1.1, 0.9], run=f"run{i}")
    return root


def _calls(paths: list[str]) -> list[tuple[int, int | None]]:
    calls: list[tuple[int, int | None]] = []
    result = run_batch(paths, progress=lambda done, total: calls.append((done, total)))
    assert result.n_sources == N
    return calls


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_files_are_counted_while_found_then_read_to_the_total(folder: Path, how: str) -> None:
    paths = [str(folder)] if how == "folder" else [str(folder / "*" / "*.jsonl")]
    calls = _calls(paths)
    finding = [done for done, total in calls if total is None]
    reading = [(done, total) for done, total in calls if total is not None]
    # found one by one (not 0 for the whole search, then everything at once)
    assert finding == sorted(finding) and finding[-1] == N
    assert set(range(N)) <= set(finding)
    assert calls.index((N, None)) < calls.index((0, N))  # every call of the search comes first
    assert reading[0] == (0, N) and reading[-1] == (N, N)
    assert [d for d, _ in reading] == sorted(d for d, _ in reading)


def test_the_bar_on_a_terminal_names_each_phase(folder: Path) -> None:
    """The real command with standard error on a pseudo-terminal: Rich draws the bar's first
    frame when it starts and its last when it stops, whatever the speed."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADLOG_DEBUG", "GITHUB_STEP_SUMMARY")}
    env.update(NO_COLOR="1", COLUMNS="100", TERM="xterm")
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlog", "batch", str(folder), "--format", "json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=child,
        env=env,
        cwd=ROOT,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the command closed the terminal's other end
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "finding logs" in text
    assert "reading logs" in text and f"{N}/{N}" in text
