"""``gradlog batch`` from two or more checkouts, alternated on the same archive: which is faster?

Each checkout (a ``git worktree`` of the commit to compare) runs ``python -m gradlog batch DIR
--format csv -o OUT`` from its own root, so each imports its own gradlog; the checkouts take
turns, round after round, so a burst of load elsewhere falls on all of them alike. Prints each
one's median and range of wall time and of CPU time (user and system: on a shared machine,
less moved by the neighbours than wall time), its peak memory (the command's own,
:mod:`measure`), the medians of the pairwise ratios to the first checkout, whether its CSV is
the same bytes as the last checkout's, and the load average before and after. Two checkouts of the same commit give
the noise of the moment (an A/A ratio). Build the archive first (``batch.py --keep DIR``)::

    git worktree add /tmp/wt-first cb50f32
    python benchmarks/batch_ab.py --archive /tmp/bench /tmp/wt-first /path/to/this/checkout
"""

from __future__ import annotations

import argparse
import compileall
import filecmp
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import measure  # noqa: E402 - wall time and the command's own peak memory


def _children_cpu() -> float:
    """User and system seconds of every finished child (the launcher and the command)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="roots of the checkouts")
    parser.add_argument("--archive", type=Path, required=True, help="batch.py's --keep folder")
    parser.add_argument("--formats", default="jsonl,parquet", help="subfolders of the archive")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    formats = args.formats.split(",")
    names = [str(c) for c in args.checkouts]
    wall: dict[tuple[str, str], list[float]] = {(n, f): [] for n in names for f in formats}
    peak: dict[tuple[str, str], list[float]] = {(n, f): [] for n in names for f in formats}
    cpu: dict[tuple[str, str], list[float]] = {(n, f): [] for n in names for f in formats}
    for checkout in args.checkouts:  # bytecode, as an installed package has it: a checkout
        # on a machine with PYTHONDONTWRITEBYTECODE=1 compiles every module at every start
        compileall.compile_dir(checkout / "gradlog", quiet=1)
    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for r in range(args.rounds):
            for fmt in formats:
                for i, checkout in enumerate(args.checkouts):
                    csv = out / f"{i}-{fmt}.csv"
                    os.chdir(checkout)  # `python -m` imports the gradlog of the current folder
                    cmd = [sys.executable, "-m", "gradlog", "batch", str(args.archive / fmt)]
                    # removed, not --force: an older checkout (the first edition) has no --force
                    csv.unlink(missing_ok=True)
                    before = _children_cpu()
                    seconds, mib, _ = measure([*cmd, "--format", "csv", "-o", str(csv)])
                    used = _children_cpu() - before
                    wall[names[i], fmt].append(seconds)
                    peak[names[i], fmt].append(mib)
                    cpu[names[i], fmt].append(used)
                    print(
                        f"round {r + 1} {fmt:8s} {names[i]}: {seconds:.2f} s, CPU {used:.2f} s, "
                        f"{mib:.0f} MiB"
                    )
        last = len(names) - 1  # each checkout's CSV against the last one's (the one under test)
        same = {
            (name, fmt): filecmp.cmp(
                out / f"{i}-{fmt}.csv", out / f"{last}-{fmt}.csv", shallow=False
            )
            for i, name in enumerate(names)
            for fmt in formats
        }
    print(f"load average after: {_load()}")
    first = names[0]
    for fmt in formats:
        print(f"\n{fmt}:")
        for name in names:
            w = wall[name, fmt]
            ratios = [a / b for a, b in zip(w, wall[first, fmt])]
            c = cpu[name, fmt]
            cpu_ratios = [a / b for a, b in zip(c, cpu[first, fmt])]
            print(
                f"  {name}: median {statistics.median(w):.2f} s ({min(w):.2f}-{max(w):.2f}), "
                f"CPU {statistics.median(c):.2f} s ({min(c):.2f}-{max(c):.2f}), "
                f"peak {statistics.median(peak[name, fmt]):.0f} MiB, "
                f"ratio to {first}: {statistics.median(ratios):.3f} (CPU "
                f"{statistics.median(cpu_ratios):.3f}), "
                f"CSV {'the same bytes as' if same[name, fmt] else 'differs from'} {names[-1]}'s"
            )


if __name__ == "__main__":
    main()
