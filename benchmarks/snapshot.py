"""What a Parquet snapshot costs a training that logs every step, as the log grows.

The Parquet writer rewrites the whole file atomically at most every ``snapshot_seconds`` (30 s)
(docs/format.md, crash safety); the training waits for it. This writes ``--records`` synthetic
event records through ``ParquetWriter`` as the recorder would, snapshotting every ``--every``
records, and prints how long each snapshot took at a few sizes. Run from the repository root::

    python benchmarks/snapshot.py [--records 200000] [--every 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import run_records  # noqa: E402

from gradlog.recorder.writers import ParquetWriter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=20_000)
    args = parser.parse_args()
    records = run_records(args.records)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.parquet"
        writer = ParquetWriter(path, snapshot_seconds=float("inf"))
        for i, record in enumerate(records, 1):
            writer.write(record)
            if i % args.every == 0:
                start = time.perf_counter()
                writer.snapshot()
                took = time.perf_counter() - start
                print(
                    f"snapshot at {i:>9,} records: {1000 * took:7.1f} ms "
                    f"({path.stat().st_size / 1e6:.1f} MB file)"
                )
        writer.close()


if __name__ == "__main__":
    main()
