"""How long ``gradlog report`` takes on a 10,000-event log (target: well under a second).

Measures the whole command as a user runs it (a fresh process: interpreter start, imports,
reading, analysis, rendering), and separately the in-process phases. Run from the repository
root with the package installed::

    python benchmarks/report_speed.py [--events 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import write_jsonl  # noqa: E402


def _time_command(args: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from gradlog.analysis.readers import read_log
    from gradlog.analysis.render.text import format_text
    from gradlog.analysis.report import analyse

    with tempfile.TemporaryDirectory() as tmp:
        log = write_jsonl(Path(tmp) / "bench.jsonl", args.events)
        parquet = Path(tmp) / "bench.parquet"
        subprocess.run(
            [sys.executable, "-m", "gradlog", "convert", str(log), "-o", str(parquet)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        print(f"log: {args.events} events, {log.stat().st_size / 1e6:.2f} MB JSONL")
        for label, path in (("jsonl", log), ("parquet", parquet)):
            cmd = [sys.executable, "-m", "gradlog", "report", str(path)]
            wall = _time_command(cmd, args.repeat)
            phases = {"read": [], "analyse": [], "render": []}
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                loaded = read_log(path)
                t1 = time.perf_counter()
                report = analyse(loaded)
                t2 = time.perf_counter()
                format_text(report)
                t3 = time.perf_counter()
                phases["read"].append(t1 - t0)
                phases["analyse"].append(t2 - t1)
                phases["render"].append(t3 - t2)
            inner = "  ".join(
                f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in phases.items()
            )
            print(
                f"{label:8s} gradlog report (whole command): median {statistics.median(wall):.3f} s, "
                f"best {min(wall):.3f} s | in process: {inner}"
            )
        help_wall = _time_command([sys.executable, "-m", "gradlog", "--help"], args.repeat)
        print(f"gradlog --help: median {statistics.median(help_wall):.3f} s")


if __name__ == "__main__":
    main()
