"""How much does ``gradlog batch --summary`` save when the archive has not changed?

Generates RUNS runs x EVENTS events as JSON Lines (one file per run, written by gradlog's own
writer: synth.py), then, each in a fresh process (the whole command, start-up included, CSV to
a file; the time is the command's own, from a launcher that also reads its peak memory), in
rounds:

* ``first``: ``gradlog batch DIR --summary T`` with no table yet (every log read, the table
  written);
* ``unchanged``: the same command again (no log read: the table's rows kept, the table untouched);
* ``touched``: the same after ``--touch`` logs got a new modification time (those read again);
* ``plain``: ``gradlog batch DIR`` without a table, for what writing the table costs;
* ``start-up``: ``python -c "import polars"``, the floor of any command that reads Parquet;
* in process (a notebook, a service: no start-up), ``gradlog.analysis.api.batch_result(DIR,
  summary=T)`` with no table, then again, in one fresh process.

Every round checks that the CSV of each incremental batch is byte for byte the first's, and that
the table's own line on standard error says how many logs were read. The short commands (the
unchanged batch, the start-up) run ``--repeat`` times a round, their median kept. Target (issue
13): the unchanged batch under a tenth of the first. Run from the repository root::

    python benchmarks/incremental.py                   # 1,000 runs x 1,000 events
    python benchmarks/incremental.py --runs 200 --events 300 --rounds 1 --keep /tmp/inc

The rounds interleave the commands (the machine this was written on is shared); the ratios are
medians of each round's ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import write_jsonl  # noqa: E402 - logs written by gradlog's own writer

# measure.py's launcher (the command's own peak memory, see there), timing the command itself:
# the launcher's own start-up, tens of milliseconds, would be a tenth of an unchanged batch.
_LAUNCHER = (
    "import os, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "wall = time.perf_counter() - start\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {wall!r}')\n"
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


def run_measured(args: list[str]) -> tuple[float, float, int, bytes, bytes]:
    """Run ``args``: its wall seconds, peak resident MiB, exit code, stdout and stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".measured") as found:
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, found.name, *args], capture_output=True
        )
        peak_kib, wall = Path(found.name).read_text().split()
    return float(wall), int(peak_kib) / 1024, proc.returncode, proc.stdout, proc.stderr


def generate(root: Path, runs: int, events: int) -> list[Path]:
    """``root/logs/run-NNNN.jsonl``, reused when an earlier call (``--keep``) wrote them all."""
    logs = root / "logs"
    paths = [logs / f"run-{i:04d}.jsonl" for i in range(runs)]
    if logs.is_dir() and sorted(logs.iterdir()) == paths:
        return paths
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.iterdir():
        old.unlink()
    for i, path in enumerate(paths):
        write_jsonl(path, events, run_id=f"run-{i:04d}", seed=i)
    return paths


def batch(root: Path, out: str, *extra: str) -> tuple[float, float, str]:
    """One ``gradlog batch`` of the archive: wall s, peak MiB, its standard error."""
    args = [sys.executable, "-m", "gradlog", "batch", str(root / "logs"), "--format", "csv"]
    wall, peak, code, _, err = run_measured([*args, "-o", str(root / out), "--force", *extra])
    if code not in (0, 1):
        raise RuntimeError(f"gradlog batch exited {code}: {err.decode(errors='replace')[-2000:]}")
    return wall, peak, err.decode()


# Both batches in one process, as a notebook would make them; their CSV rows must agree.
IN_PROCESS = """
import json, sys, time
from pathlib import Path
from gradlog.analysis import api
from gradlog.analysis.render.batch import csv_rows
logs, table = sys.argv[1], Path(sys.argv[2])
table.unlink(missing_ok=True)
start = time.perf_counter()
first = api.batch_result(logs, summary=table)
middle = time.perf_counter()
again = api.batch_result(logs, summary=table)
end = time.perf_counter()
assert again.n_read == 0 and repr(csv_rows(again.rows)) == repr(csv_rows(first.rows))
print(json.dumps([middle - start, end - middle]))
"""


def in_process(root: Path) -> tuple[float, float]:
    """Seconds of the first and the unchanged ``batch_result`` in one process."""
    args = [sys.executable, "-c", IN_PROCESS, str(root / "logs"), str(root / "in-process.parquet")]
    _, _, code, out, err = run_measured(args)
    if code != 0:
        raise RuntimeError(f"in process: {err.decode(errors='replace')[-2000:]}")
    first, again = json.loads(out)
    return first, again


def _median(runs: list[tuple[float, float, str]]) -> tuple[float, float, str]:
    """The run of median wall time (its peak and standard error with it)."""
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--touch", type=int, default=10, help="logs touched for 'touched'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs of a short command a round")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    args = parser.parse_args()

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="gradlog-incremental-")
        root = Path(tmp.name)
    else:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        paths = generate(root, args.runs, args.events)
        size = sum(p.stat().st_size for p in paths) / 1e6
        print(f"archive: {args.runs:,} runs x {args.events:,} events, JSON Lines, {size:.0f} MB")
        table = str(root / "summary.parquet")
        n = len(paths)
        names = ("first", "unchanged", "touched", "plain", "start-up", "api-first", "api-again")
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for _ in range(args.rounds):
            Path(table).unlink(missing_ok=True)
            measured = {"first": batch(root, "first.csv", "--summary", table)}
            # the short commands are repeated and their median kept: on a shared machine one
            # burst of load elsewhere would otherwise decide a figure of a few tenths of a second
            measured["unchanged"] = _median(
                [batch(root, "unchanged.csv", "--summary", table) for _ in range(args.repeat)]
            )
            for path in paths[: args.touch]:
                os.utime(path)  # a new modification time: to be read again, same content
            measured["touched"] = batch(root, "touched.csv", "--summary", table)
            measured["plain"] = batch(root, "plain.csv")
            start_up = [sys.executable, "-c", "import polars"]
            measured["start-up"] = _median(
                [run_measured(start_up)[:2] + ("",) for _ in range(args.repeat)]
            )
            api_first, api_again = in_process(root)
            measured["api-first"], measured["api-again"] = (api_first, 0, ""), (api_again, 0, "")
            expect = {
                "first": f"{n:,} of {n:,} files read, 0 unchanged",
                "unchanged": f"0 of {n:,} files read, {n:,} unchanged",
                "touched": f"{args.touch:,} of {n:,} files read, {n - args.touch:,} unchanged",
            }
            for name, said in expect.items():
                assert f"{table}: {said}" in measured[name][2], measured[name][2]
            first = (root / "first.csv").read_bytes()
            for name in ("unchanged", "touched", "plain"):
                assert (root / f"{name}.csv").read_bytes() == first, name
            for name, (wall, peak, _) in measured.items():
                runs[name].append((wall, peak))
        print(f"{'':42s} {'median s':>9s} {'best s':>8s} {'peak MB':>8s}")
        labels = {
            "first": "first batch, --summary (no table yet)",
            "unchanged": "again, nothing changed",
            "touched": f"again, {args.touch} logs touched",
            "plain": "a batch without --summary",
            "start-up": "python -c 'import polars'",
            "api-first": "in process: first batch_result(summary=)",
            "api-again": "in process: again, nothing changed",
        }
        for name in names:
            times = sorted(w for w, _ in runs[name])
            peak = max(p for _, p in runs[name])
            shown = f"{peak:8.0f}" if peak else f"{'-':>8s}"
            print(f"{labels[name]:42s} {statistics.median(times):9.3f} {times[0]:8.3f} {shown}")

        def ratio(a: str, b: str) -> float:
            return statistics.median(x[0] / y[0] for x, y in zip(runs[a], runs[b]))

        print(
            f"unchanged/first {ratio('unchanged', 'first'):.3f} (target < 0.1); "
            f"touched/first {ratio('touched', 'first'):.3f}; "
            f"first/plain {ratio('first', 'plain'):.3f} (what writing the table costs); "
            f"unchanged/start-up {ratio('unchanged', 'start-up'):.2f}; "
            f"in process, unchanged/first {ratio('api-again', 'api-first'):.3f}"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
