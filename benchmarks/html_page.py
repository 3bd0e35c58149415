"""The HTML report's size and cost on long and many runs (``--format html``, docs/batch.md).

Two logs by gradlog's own writer: one run of 50,000 events and 12 tasks, and one file of 80 runs
of 3,000 events. For each, ``gradlog report --format html`` and ``--format json`` run
alternately in fresh processes (output to a file); the page's size, the wall times and their
ratio (median of the pairs) are printed, and, when a Chromium is found (``tests/browser.py``),
the time from opening the page to its load event (its script has drawn every chart by then).
Run from the repository root:

    python benchmarks/html_page.py [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from synth import run_records  # noqa: E402

from gradlog.recorder.writers import JsonlWriter  # noqa: E402


def write(path: Path, runs: int, events: int, tasks: int) -> Path:
    if path.exists():
        return path
    names = ("pointer", "type", *(f"task{k}" for k in range(tasks - 2)))
    writer = JsonlWriter(path)
    try:
        for i in range(runs):
            for record in run_records(events, run_id=f"run{i:03d}", tasks=names, seed=i):
                writer.write(record)
    finally:
        writer.close()
    return path


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradlog", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="a folder for the logs (kept between runs)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="gradlog-html-"))
    folder.mkdir(parents=True, exist_ok=True)
    logs = {
        "1 run x 50,000 events, 12 tasks": write(folder / "long.jsonl", 1, 50_000, 12),
        "80 runs x 3,000 events, 2 tasks": write(folder / "many.jsonl", 80, 3_000, 2),
    }
    print(f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}")
    from browser import Browser, find_browser

    executable = find_browser()
    for what, log in logs.items():
        page, data = folder / "page.html", folder / "data.json"
        pairs = []
        for _ in range(args.repeat):
            html = timed(["report", str(log), "--format", "html", "-o", str(page), "--force"])
            json = timed(["report", str(log), "--format", "json", "-o", str(data), "--force"])
            pairs.append((html, json))
        html_s = statistics.median(h for h, _ in pairs)
        ratio = statistics.median(h / j for h, j in pairs)
        line = (
            f"{what}: page {page.stat().st_size / 1e6:.2f} MB (JSON report "
            f"{data.stat().st_size / 1e6:.1f} MB); --format html {html_s:.2f} s, "
            f"{ratio:.2f}x --format json"
        )
        if executable is not None:
            with Browser(executable) as browser:
                start = time.perf_counter()
                opened = browser.open(page)
                drawn = time.perf_counter() - start
                charts = opened.eval("document.documentElement.dataset.rendered")
            line += f"; Chromium: {charts} charts drawn, {drawn:.2f} s to the load event"
        print(line)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
