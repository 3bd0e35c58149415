"""Issue 14's analyser targets, each as a ratio to its floor, measured in one run.

Every target pairs a gradlog command with a floor command; the two run alternately (A B A B,
each in a fresh process, see measure.py), and the table gives the median of the pairwise ratios
of wall time (and of peak memory where the target is about memory), so that a burst of load
elsewhere on a shared machine falls on both alike. The floors:

* batch: a bare Polars ``scan_*().group_by(run)`` giving each run's event count, mean, population
  std and max of ``mean_norm`` (the one-query floor of the issue), on the archive of
  ``batch.py`` (1,000 runs x 1,000 events, JSON Lines and Parquet); and, to show what reading
  alone costs, the bare scan of the columns gradlog reads (nested ``tasks`` and ``meta``);
* ``report --format json`` against the text report of the same 10,000-event log;
* a 100,000-event report's peak memory against a bare Polars read of the same log as Parquet;
* start-up: ``gradlog --help`` and the shortest report (a sample log) against
  ``python -c "import polars, typer, rich"``, with gradlog's modules compiled to bytecode first
  as installing the package does (a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` compiles
  them at every start; ``startup.py --source`` measures that, and each step of the report).

Run from the repository root (the archive is generated once, or reused with ``--keep``)::

    python benchmarks/targets.py --keep /tmp/bench [--rounds 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from batch import GROUP_BY, generate  # noqa: E402 - the archive and floor of batch.py
from measure import measure  # noqa: E402
from synth import write_jsonl  # noqa: E402

COLUMNS = """
import sys, glob, polars as pl
from gradlog.analysis.jsonl_scan import LINE
kind, root = sys.argv[1:]
files = sorted(glob.glob(f"{root}/{kind}/*.{kind}"))
if kind == "parquet":
    lf = pl.scan_parquet(files, include_file_paths="source").select(
        "source", "v", "run", "kind", "epoch", "step", "mean_norm", "max_norm", "tasks", "meta")
else:
    lf = pl.scan_lines(files, include_file_paths="source").select(
        "source", pl.col("line").str.json_decode(LINE))
print(lf.collect(engine="streaming").height)
"""
READ_PARQUET = """
import sys, polars as pl
print(pl.read_parquet(sys.argv[1]).height)
"""
IMPORTS = "import polars, typer, rich"


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def gradlog(*args: str) -> list[str]:
    return [sys.executable, "-m", "gradlog", *args]


def pairwise(a: list[str], b: list[str], rounds: int) -> tuple[float, float, float, float]:
    """Median wall of ``a`` and of ``b``, and the medians of the pairwise ratios a/b of wall
    time and of peak memory."""
    runs = []
    for _ in range(rounds):
        first = measure(a, stdout=subprocess.DEVNULL)
        second = measure(b, stdout=subprocess.DEVNULL)
        runs.append((first, second))
    return (
        statistics.median(x[0] for x, _ in runs),
        statistics.median(y[0] for _, y in runs),
        statistics.median(x[0] / y[0] for x, y in runs),
        statistics.median(x[1] / y[1] for x, y in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="the batch archive (generated if absent)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    compileall.compile_dir(ROOT / "gradlog", quiet=1)  # as an installed package has them
    tmp = tempfile.TemporaryDirectory(prefix="gradlog-targets-")
    root = args.keep or Path(tmp.name) / "archive"
    work = Path(tmp.name)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []

    def row(target: str, goal: str, a: list[str], b: list[str], memory: bool = False) -> None:
        wall_a, wall_b, ratio, mem_ratio = pairwise(a, b, args.rounds)
        measured = mem_ratio if memory else ratio
        rows.append((target, goal, wall_a, wall_b, ratio, mem_ratio, measured))
        print(
            f"{target}: {wall_a:.2f} s / {wall_b:.2f} s = {ratio:.2f}x time, "
            f"{mem_ratio:.2f}x peak memory (goal {goal})",
            flush=True,
        )

    if not args.skip_batch:
        generate(root, 1000, 1000)
        for kind, name in (("parquet", "Parquet"), ("jsonl", "JSON Lines")):
            batch = gradlog(
                "batch", str(root / kind), "--format", "csv", "-o", str(work / "b.csv"), "--force"
            )
            row(f"batch, {name} / bare group-by", "2x", batch, python(GROUP_BY, kind, str(root)))
            row(
                f"bare scan of gradlog's columns, {name} / bare group-by",
                "(the floor of reading)",
                python(COLUMNS, kind, str(root)),
                python(GROUP_BY, kind, str(root)),
            )
    log10k, log100k = work / "r10k.jsonl", work / "r100k.jsonl"
    write_jsonl(log10k, 10_000)
    write_jsonl(log100k, 100_000)
    parquet100k = work / "r100k.parquet"
    subprocess.run(gradlog("convert", str(log100k), "-o", str(parquet100k), "--force"), check=True)
    row(
        "report --format json / text, 10,000 events",
        "1x",
        gradlog("report", str(log10k), "--format", "json"),
        gradlog("report", str(log10k)),
    )
    row(
        "report --format json, 100,000 events (Parquet) / bare read of it",
        "2x memory",
        gradlog("report", str(parquet100k), "--format", "json"),
        python(READ_PARQUET, str(parquet100k)),
        memory=True,
    )
    row(
        "report (text), 100,000 events (Parquet) / bare read of it",
        "(the report's own frames)",
        gradlog("report", str(parquet100k)),
        python(READ_PARQUET, str(parquet100k)),
        memory=True,
    )
    row("gradlog --help / imports", "1.2x", gradlog("--help"), python(IMPORTS))
    row(
        "report sample_logs/healthy.jsonl / imports",
        "1.2x",
        gradlog("report", "sample_logs/healthy.jsonl"),
        python(IMPORTS),
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print("| target | goal | gradlog s | floor s | time ratio | memory ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for target, goal, wall_a, wall_b, ratio, mem_ratio, _ in rows:
        print(
            f"| {target} | {goal} | {wall_a:.2f} | {wall_b:.2f} | {ratio:.2f}x | {mem_ratio:.2f}x |"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
