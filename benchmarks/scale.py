"""Numbers at scale: ``gradlog batch`` over 5 GB of logs, ``gradlog report`` on a million events.

Two measurements, each of the whole command in a fresh process (interpreter start, imports,
reading, analysis, output), with its wall time and its peak resident memory (the kernel's
accounting of that one process, from ``wait4``):

1. ``gradlog batch DIR`` over at least ``--gb`` (5) GB of JSON Lines logs: one file per run, laid
   out byte for byte as the recorder's writer writes them. Target: peak memory under 1 GiB.
2. ``gradlog report`` on one log of ``--events`` (1,000,000) events, as JSON Lines and as
   Parquet, the report written to a file. Target: under 5 s wall.

The logs are written as text directly (the writer's ``json.dumps`` of millions of records takes
minutes) into a temporary folder under ``--tmp`` (default /tmp; free space is checked first) that
is deleted at the end unless ``--keep``. Run from the repository root::

    python benchmarks/scale.py                    # both: 5 GB batch, 1M-event report
    python benchmarks/scale.py --gb 1 --events 100000 --repeat 1     # a quick look
    python benchmarks/scale.py --skip-batch       # only the million-event report

The machine's load average is printed before and after each measurement: on a shared machine a
busy neighbour moves the figures, so quote them with it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import check_layout, run_text  # noqa: E402 - the archive's layout, shared
from measure import measure  # noqa: E402

GiB = 1024**3
EVENTS_PER_FILE = 100_000  # about 35 MB of JSON Lines per run
TEMPLATES = 8  # distinct runs; each file is one of them under its own run id


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def gradlog(*args: str) -> list[str]:
    return [sys.executable, "-m", "gradlog", *args]


def check_space(folder: Path, needed: float) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + GiB:
        sys.exit(f"{folder}: {free / GiB:.1f} GiB free, {needed / GiB + 1:.1f} GiB needed")


def write_archive(root: Path, gigabytes: float) -> tuple[int, int, int]:
    """JSON Lines runs until ``gigabytes`` are written: (files, bytes, events)."""
    root.mkdir(parents=True, exist_ok=True)
    placeholder = "rTEMPLATE"
    templates = [
        run_text(f"{placeholder}{k}", EVENTS_PER_FILE, seed=k).encode() for k in range(TEMPLATES)
    ]
    target = gigabytes * 1e9
    written = files = 0
    while written < target:
        k = files % TEMPLATES
        run_id = f"r{files:09d}"  # as long as the placeholder: same bytes, another run
        data = templates[k].replace(f"{placeholder}{k}".encode(), run_id.encode())
        path = root / f"{run_id}.jsonl"
        path.write_bytes(data)
        written += len(data)
        files += 1
    check_layout(root / "r000000000.jsonl")
    return files, written, files * EVENTS_PER_FILE


def bench_batch(tmp: Path, gigabytes: float, repeat: int) -> None:
    archive = tmp / "archive"
    start = time.perf_counter()
    files, size, events = write_archive(archive, gigabytes)
    print(
        f"archive: {files} JSON Lines files, {size / 1e9:.2f} GB, {events:,} events "
        f"(written in {time.perf_counter() - start:.0f} s)"
    )
    rows = tmp / "batch.csv"
    for i in range(repeat):
        print(f"  before: {load()}")
        # exit 1 means a run's finding reached --fail-on: none is asked for, so 0 (2: unreadable)
        wall, peak, _ = measure(
            gradlog("batch", str(archive), "--format", "csv", "-o", str(rows), "--force"),
            stdout=subprocess.DEVNULL,
        )
        print(
            f"gradlog batch ({i + 1}/{repeat}): wall {wall:.1f} s, "
            f"{size / 1e9 / wall:.2f} GB/s, peak memory {peak:.0f} MiB "
            f"({'under' if peak < 1024 else 'OVER'} the 1 GiB target)"
        )
    n_rows = max(0, len(rows.read_text().splitlines()) - 1)
    print(f"  {n_rows} runs summarised; after: {load()}")
    shutil.rmtree(archive)


def bench_report(tmp: Path, events: int, repeat: int) -> None:
    jsonl = tmp / "million.jsonl"
    parquet = tmp / "million.parquet"
    start = time.perf_counter()
    jsonl.write_text(run_text("million", events, seed=1), encoding="utf-8")
    check_layout(jsonl)
    measure(gradlog("convert", str(jsonl), "-o", str(parquet), "--force"))
    print(
        f"log: {events:,} events, {jsonl.stat().st_size / 1e6:.0f} MB JSON Lines, "
        f"{parquet.stat().st_size / 1e6:.0f} MB Parquet (written in {time.perf_counter() - start:.0f} s)"
    )
    outputs = {}
    for label, path in (("jsonl", jsonl), ("parquet", parquet)):
        walls, peaks = [], []
        outputs[label] = tmp / f"report-{label}.txt"
        print(f"  before: {load()}")
        for _ in range(repeat):
            wall, peak, _ = measure(gradlog("report", str(path)), stdout=outputs[label])
            walls.append(wall)
            peaks.append(peak)
        best, median = min(walls), statistics.median(walls)
        print(
            f"gradlog report {label:8s}: best {best:.2f} s, median {median:.2f} s of {repeat}, "
            f"peak memory {max(peaks):.0f} MiB ({'under' if best < 5 else 'OVER'} the 5 s target); "
            f"report {outputs[label].stat().st_size / 1e6:.0f} MB"
        )
        print(f"  after: {load()}")
    same = outputs["jsonl"].read_bytes() == outputs["parquet"].read_bytes().replace(
        str(parquet).encode(), str(jsonl).encode()
    )
    print(f"  JSON Lines and Parquet reports identical: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=5.0, help="GB of logs for gradlog batch")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the report log")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-report", action="store_true")
    args = parser.parse_args()

    print(f"{platform.node()}: {platform.processor() or platform.machine()}, {load()}")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    needed = (0 if args.skip_batch else args.gb * 1e9) + (
        0 if args.skip_report else args.events * 600
    )
    check_space(args.tmp, needed)
    tmp = Path(tempfile.mkdtemp(prefix="gradlog-scale-", dir=args.tmp))
    try:
        if not args.skip_report:
            bench_report(tmp, args.events, args.repeat)
        if not args.skip_batch:
            bench_batch(tmp, args.gb, args.repeat)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
