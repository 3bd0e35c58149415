"""Where a batch's CPU time goes: each chunk of an archive read and judged in process, the two
phases timed apart (user + system CPU seconds, from ``getrusage``: less moved by neighbours on
a shared machine than wall time), the median of ``--rounds`` over the whole archive.

This is what a floor argument needs: however fast the judging became, a batch on two cores
takes at least (read CPU + judge CPU) / 2 plus Python's and Polars' start. Run from the
repository root on ``batch.py``'s archive::

    python benchmarks/batch_phases.py /tmp/bench [--formats jsonl,parquet] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
from pathlib import Path

from gradlog.analysis.batch import DEFAULT_CHUNK_BYTES, BatchOptions, _chunks, _read
from gradlog.analysis.engine import judge
from gradlog.analysis.sources import find_sources


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="batch.py's --keep folder")
    parser.add_argument("--formats", default="jsonl,parquet")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for fmt in args.formats.split(","):
        chunks = _chunks(find_sources([str(args.archive / fmt)]), DEFAULT_CHUNK_BYTES)
        reads, judges = [], []
        for _ in range(args.rounds):
            read = judged = 0.0
            for chunk in chunks:
                start = _cpu()
                base = _read(chunk, BatchOptions())
                middle = _cpu()
                judge(base)
                read, judged = read + middle - start, judged + _cpu() - middle
            reads.append(read)
            judges.append(judged)
        r, j = statistics.median(reads), statistics.median(judges)
        print(
            f"{fmt}: {len(chunks)} chunks; CPU s, median of {args.rounds}: read {r:.2f}, "
            f"judge {j:.2f}; on two cores at least {(r + j) / 2:.2f} s of wall time"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
