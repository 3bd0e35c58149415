"""Reading a TensorBoard log: gradlog's reader against tbparse, on the same file.

Writes a 100,000-step, 10-tag log with torch's ``SummaryWriter`` (``add_scalar``: the legacy
``simple_value`` encoding, the one tbparse reads: its ``.scalars`` is an empty frame for
tensor-encoded scalars), then reads it alternately (A B A B, each in a fresh process, see
measure.py) with ``read_tensorboard`` into its frame and with ``tbparse.SummaryReader(path)
.scalars``, checking that both return every point. The ratio is the median of the pairwise
ratios of wall time. Writing takes about two minutes (pure-Python checksums in the writer);
``--keep DIR`` writes the log there once and reuses it.

    python benchmarks/tensorboard_read.py --keep /tmp/bench-tb [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from measure import measure  # noqa: E402

GRADLOG = """
import sys
from gradlog.analysis.foreign.tensorboard import read_tensorboard
print(read_tensorboard(sys.argv[1]).frame.height)
"""
TBPARSE = """
import sys
from tbparse import SummaryReader
print(len(SummaryReader(sys.argv[1]).scalars))
"""


def write_log(folder: Path, steps: int, tags: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder), max_queue=10_000, flush_secs=3600)
    for step in range(steps):
        for tag in range(tags):
            writer.add_scalar(f"grad_norm/task{tag}", 1.0 / (1 + step + tag), step)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the log here once, and reuse it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=10)
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="gradlog-tb-"))
    folder = base / f"tb_{args.steps}x{args.tags}"
    if not folder.exists():
        start = time.perf_counter()
        write_log(folder, args.steps, args.tags)
        print(f"wrote {folder} in {time.perf_counter() - start:.0f} s")
    size = sum(f.stat().st_size for f in folder.iterdir())
    points = args.steps * args.tags
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"log: {points:,} points ({args.steps:,} steps x {args.tags} tags), {size / 2**20:.0f} MiB"
    )

    report = [sys.executable, "-m", "gradlog", "report", str(folder), "-o", os.devnull]
    commands = {
        "gradlog read_tensorboard": [sys.executable, "-c", GRADLOG, str(folder)],
        "tbparse SummaryReader(...).scalars": [sys.executable, "-c", TBPARSE, str(folder)],
        # the whole command: read, map the tags to ten tasks, judge, write the text report
        "gradlog report DIR (whole command)": report,
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for round_ in range(args.rounds):
        for name, command in commands.items():
            wall, peak, out = measure(command)
            if command is not report and int(out.split()[-1]) != points:
                raise SystemExit(f"{name} read {out.split()[-1]} points of {points:,}")
            results[name].append((wall, peak))
            print(f"  round {round_ + 1}: {name}: {wall:.2f} s, {peak:.0f} MiB", flush=True)

    ours, theirs, whole = results.values()
    ratios = [t[0] / o[0] for o, t in zip(ours, theirs)]
    report_ratios = [t[0] / o[0] for o, t in zip(whole, theirs)]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| | median s | best s | peak MiB | points read |")
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        peak = max(p for _, p in runs)
        print(
            f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | {peak:.0f} | "
            f"{points:,} |"
        )
    print(
        f"tbparse / gradlog, median of {args.rounds} pairwise ratios: "
        f"{statistics.median(ratios):.1f}x ({', '.join(f'{r:.1f}' for r in ratios)})"
    )
    print(
        f"tbparse / gradlog report (the whole command), median of {args.rounds} pairwise "
        f"ratios: {statistics.median(report_ratios):.1f}x "
        f"({', '.join(f'{r:.1f}' for r in report_ratios)})"
    )


if __name__ == "__main__":
    main()
