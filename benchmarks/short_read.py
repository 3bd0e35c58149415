"""The careful JSON Lines reader's two columnar reads against a log's size: where the slicing
read (flat fields by Polars, nested values cut out of each line) starts to pay for its dozen
small queries over Polars' own read (nested values as text).

Below ``gradlog.analysis.readers.fast.SLICED_FROM`` a log is read by Polars' own reader first;
this is the measurement that places it. Best of ``--repeat`` in one process, each read decoded
as the reader decodes it; logs written by ``synth.py``.

Run from the repository root::

    python benchmarks/short_read.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # synth.py, and this checkout's gradlog

from synth import write_jsonl  # noqa: E402

from gradlog.analysis.readers import fast  # noqa: E402

EVENTS = (10, 30, 100, 300, 1_000, 3_000, 10_000)


def best(read, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fast._decode_nested(read(path))
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"SLICED_FROM = {fast.SLICED_FROM:,} bytes")
    print()
    print("| events | bytes | Polars' own read ms | slicing read ms | slicing / own |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="gradlog-short-read-") as tmp:
        for n in EVENTS:
            path = str(write_jsonl(Path(tmp) / f"r{n}.jsonl", n))
            own = best(fast._nested_as_text_read, path, args.repeat)
            sliced = best(fast._sliced_read, path, args.repeat)
            size = os.path.getsize(path)
            print(
                f"| {n:,} | {size:,} | {own * 1e3:.2f} | {sliced * 1e3:.2f} | {sliced / own:.2f}x |"
            )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
