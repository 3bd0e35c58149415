"""Shared fixtures: the real CLI as a subprocess, and the golden-file switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LOGS = ROOT / "sample_logs"
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def check_golden(name: str, text: str, update: bool) -> None:
    """``text`` against ``tests/golden/NAME`` (rewritten instead with ``--update-golden``)."""
    golden = GOLDEN / name
    if update:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden}")
    assert golden.exists(), f"no golden file {golden}; run pytest --update-golden"
    assert text == golden.read_text(encoding="utf-8")


def run_gradlog(*args: str, stdin: bytes | None = None, env: dict | None = None):
    """Run the real ``gradlog`` entry point in a fresh process; returns CompletedProcess."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("GRADLOG_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def gradlog_cli():
    return run_gradlog
