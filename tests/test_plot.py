"""``gradlog plot`` (a real PNG, SVG and HTML) and ``gradlog report --chart``."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from runlogs import ROOT, gradlog_many, write_run

COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0, 11.0]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plot")
    return {
        "root": root,
        "collapse": write_run(root / "collapse.jsonl", COLLAPSE, run="collapse"),
        "healthy": write_run(root / "healthy.jsonl", [1.0, 1.2, 0.8, 1.1, 0.9], run="healthy"),
    }


@pytest.fixture(scope="module")
def results(logs: dict[str, Path]) -> dict:
    c, h, root = str(logs["collapse"]), str(logs["healthy"]), logs["root"]
    calls = {
        "png": ("plot", c, h, "-o", str(root / "runs.png")),
        "svg": ("plot", c, "-o", str(root / "run.svg"), "--title", "a $title"),
        "html": ("plot", c, "-o", str(root / "run.html")),
        "bad": ("plot", c, "-o", str(root / "run.gif")),
        "chart": ("report", c, "--chart"),
    }
    return dict(zip(calls, gradlog_many(list(calls.values()))))


def test_png_is_a_real_picture(results: dict, logs: dict[str, Path]) -> None:
    assert results["png"].returncode == 0, results["png"].stderr
    assert b"Wrote" in results["png"].stderr and b"(2 runs)" in results["png"].stderr
    data = (logs["root"] / "runs.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 600
    assert len(data) > 30_000  # three panels of lines and bands, not an empty canvas
    assert data.endswith(b"IEND\xaeB`\x82")


def test_svg_and_html(results: dict, logs: dict[str, Path]) -> None:
    assert results["svg"].returncode == 0, results["svg"].stderr
    svg = (logs["root"] / "run.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert results["html"].returncode == 0, results["html"].stderr
    page = (logs["root"] / "run.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    assert "<title>gradlog: run collapse (collapse.jsonl)</title>" in page


def test_unknown_picture_format(results: dict) -> None:
    assert results["bad"].returncode == 2
    assert b"use a name ending in .png, .svg or .html" in results["bad"].stderr


def test_without_matplotlib_one_clear_line(logs: dict[str, Path]) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "sys.argv = ['gradlog', 'plot', sys.argv[1], '-o', sys.argv[2]]\n"
        "import gradlog.cli; gradlog.cli.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(logs["collapse"]), str(logs["root"] / "x.png")],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "Error: gradlog plot needs matplotlib: pip install 'gradlog-mtl[plot]' "
        "(or pip install matplotlib)"
    )


def test_report_chart(results: dict) -> None:
    result = results["chart"]
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    start = lines.index(
        "pointer/type gradient ratio, log scale, 8 balance samples: ● window, · sample, × undefined"
    )
    chart = lines[start + 1 : start + 7]
    # on a log scale: the 3rd to 6th samples are past 5 while their (geometric) window is
    # 2-5, collapsed from the 7th sample on; the first two samples are drawn too
    assert chart == [
        "   > 10 │                ·  ·  ·",
        "   5-10 │       ·  ·  ·     ●  ●",
        "      5 ┼" + "┈" * 24 + "  collapse above 5",
        "    2-5 │    ·  ●  ●  ●  ●",
        "      2 ┼" + "┈" * 24 + "  healthy 0.5-2",
        "    1-2 │ ·",
    ]
    assert lines[-1].split() == ["5", "40", "epoch"]


def test_only_the_plot_command_imports_matplotlib(logs: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "sys.argv = ['gradlog', 'batch', sys.argv[1], '--format', 'json']\n"
        "import gradlog.cli\n"
        "try:\n"
        "    gradlog.cli.main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = {'matplotlib', 'torch'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(logs["collapse"])],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
