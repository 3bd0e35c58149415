"""``gradlog report`` on one file of many short runs, against ``gradlog batch`` on the same file.

The report and the batch are the same engine (``gradlog/analysis/engine.py``) over one long frame keyed
by run; the report also renders every event of every run. Target (issue "One engine"): the
report within 3x of the batch on 10,000 runs x 3 events. Run from the repository root:

    python benchmarks/many_runs.py [--runs 10000] [--events 3] [--repeat 3]

Each command runs in a fresh process, output to /dev/null; the two alternate, and the figure is
the median of the pairwise ratios, with the load average printed beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import measure  # noqa: E402
from synth import run_records  # noqa: E402

from gradlog.recorder.writers import JsonlWriter  # noqa: E402


def write(path: Path, runs: int, events: int) -> Path:
    writer = JsonlWriter(path)
    try:
        for i in range(runs):
            for record in run_records(events, run_id=f"run{i:05d}", seed=i):
                writer.write(record)
    finally:
        writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = write(Path(tmp) / "runs.jsonl", args.runs, args.events)
        size = log.stat().st_size / 1e6
        commands = {
            "report": [sys.executable, "-m", "gradlog", "report", str(log)],
            "report --format json": [
                sys.executable,
                "-m",
                "gradlog",
                "report",
                str(log),
                "--format",
                "json",
            ],
            "batch": [sys.executable, "-m", "gradlog", "batch", str(log), "--format", "json"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                wall, peak, _ = measure(command, stdout=subprocess.DEVNULL)
                times[name].append(wall)
                peaks[name].append(peak)
        print(
            f"log: {args.runs} runs x {args.events} events, {size:.1f} MB JSON Lines; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        for name in commands:
            print(
                f"{name:22s} median {statistics.median(times[name]):6.2f} s, "
                f"peak {max(peaks[name]):5.0f} MiB"
            )
        for name in ("report", "report --format json"):
            ratios = [r / b for r, b in zip(times[name], times["batch"])]
            print(f"{name} / batch: {statistics.median(ratios):.2f}x (target: within 3x)")


if __name__ == "__main__":
    main()
