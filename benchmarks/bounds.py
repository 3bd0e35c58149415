"""Memory on hostile and huge inputs: the bounds of docs/format.md ("Limits"), measured.

Each case runs ``gradlog report`` and ``gradlog batch`` on one input in a fresh process and
prints its exit code, first line of standard error, wall time and peak resident memory:

* a 1 GB JSON Lines log (one run of 2.9 million events, as the recorder lays it out): ``batch``
  must stay under 1 GiB; ``report`` either stays within its documented bound or refuses up front
  (both refuse it: more events than ``MAX_EVENTS``);
* a log of exactly ``MAX_EVENTS`` (1,000,000) events, the most the analysis takes: what a log
  at the limit costs, ``report`` as text and as JSON, and ``batch``;
* gzip bombs: 4 GB of newlines, 3 GB of valid records, and one 4 GB line, each a few MB on disk;
* a 100 MB line in a plain file.

Run from the repository root (about 10 minutes; needs 2 GB free under ``--tmp``)::

    python benchmarks/bounds.py
    python benchmarks/bounds.py --gb 0.25     # a quicker look with a smaller JSON Lines log

The machine's load average is printed with each measurement: quote the figures with it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import run_text  # noqa: E402 - the recorder's layout, shared
from measure import run_measured  # noqa: E402
from scale import gradlog, load  # noqa: E402

from gradlog.format import MAX_EVENTS  # noqa: E402

GiB = 1024**3
MiB = 1024**2


def gzip_of_repeats(path: Path, block: bytes, total: int) -> None:
    """A gzip file of ``block`` repeated up to ``total`` bytes, written without holding it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = block * max(1, (4 * MiB) // len(block))
    written = 0
    with open(path, "wb") as fh:
        while written < total:
            piece = chunk[: total - written]
            fh.write(compressor.compress(piece))
            written += len(piece)
        fh.write(compressor.flush())


def make_inputs(tmp: Path, gigabytes: float) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    big = tmp / "big.jsonl"
    events = 100_000
    one = run_text("big", events, seed=1).encode()
    with open(big, "wb") as fh:  # the same run's events again and again: one run, many events
        written = 0
        while written < gigabytes * 1e9:
            fh.write(one)
            written += len(one)
    inputs[f"{big.stat().st_size / 1e9:.2f} GB JSON Lines"] = big

    limit = tmp / "limit.jsonl"
    limit.write_text(run_text("limit", MAX_EVENTS, seed=4), encoding="utf-8")
    inputs[f"{MAX_EVENTS:,} events"] = limit

    newlines = tmp / "newlines.jsonl.gz"
    gzip_of_repeats(newlines, b"\n", 4 * 10**9)
    inputs["gzip: 4 GB of newlines"] = newlines

    records = tmp / "records.jsonl.gz"
    sample = run_text("bomb", 1_000, seed=2).encode()
    gzip_of_repeats(records, sample, 3 * 10**9)
    inputs["gzip: 3 GB of records"] = records

    line = tmp / "line.jsonl.gz"
    gzip_of_repeats(line, b"x", 4 * 10**9)
    inputs["gzip: one 4 GB line"] = line

    long = tmp / "long.jsonl"
    with open(long, "wb") as fh:
        fh.write(run_text("long", 10, seed=3).encode())
        fh.write(b'{"v":1,"run":"long","kind":"event","note":"' + b"y" * (100 * MiB) + b'"}\n')
    inputs["100 MB line"] = long
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="GB of the JSON Lines log")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gradlog-bounds-", dir=args.tmp))
    try:
        inputs = make_inputs(tmp, args.gb)
        print(f"{load()}")
        print(
            f"{'input':26s} {'on disk':>9s}  {'command':12s} {'exit':>4s} {'wall':>7s} {'peak':>9s}"
        )
        for label, path in inputs.items():
            commands = [("report", "json"), ("batch", "json")]
            if path.name == "limit.jsonl":
                commands.insert(0, ("report", "text"))
            for command, form in commands:
                wall, peak, code, _, err = run_measured(
                    gradlog(command, str(path), "--format", form), stdout=subprocess.DEVNULL
                )
                first = (err.decode(errors="replace").splitlines() or [""])[0]
                print(
                    f"{label:26s} {path.stat().st_size / MiB:7.1f}MiB  {command + ' ' + form:12s} {code:4d} "
                    f"{wall:6.1f}s {peak:7.0f}MiB  {first[:110]}"
                )
        print(f"{load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
