"""Where a large report's peak memory comes from: ``gradlog report`` stopped after each phase.

Each phase runs in a fresh process (``measure.py``: the process's own peak resident set) that
does the report's work up to that phase and stops: the imports; the careful reader
(``readers.read_log``); the analysis (``report.analyse``: the engine's frames and the result
objects); the output made and written to ``/dev/null``. Beside them: the bare Polars read of
the same Parquet log (the floor of issue 14's target), and the whole command as shipped and
with Polars' own allocator settings (``_RJEM_MALLOC_CONF``: freed pages kept for reuse, which
``gradlog report`` turns off, ``gradlog.cli.app.return_freed_memory``). The phases run as the
command does, with its allocator settings.

Run from the repository root::

    python benchmarks/report_memory.py [--events 100000] [--keep /tmp/report-memory]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from measure import measure  # noqa: E402
from synth import write_jsonl  # noqa: E402

# the report's work, stopped after a phase (argv: log, format, phase)
PHASES = """
import contextlib, os, sys
path, fmt, phase = sys.argv[1:]
from gradlog.cli.app import return_freed_memory
return_freed_memory()
from gradlog.analysis import output
from gradlog.analysis.limits import event_limit
from gradlog.analysis.readers import read_log
from gradlog.analysis.render import json as render_json
from gradlog.analysis.render.text import text_blocks
from gradlog.analysis.report import analyse
if phase == "imports":
    sys.exit()
log = read_log(path, max_events=event_limit())
if phase == "read":
    sys.exit()
result = analyse(log)
if phase == "analysis":
    sys.exit()
out = output.Output(None)
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
    if fmt == "json":
        out.json(render_json.report_data(result, encoded=True))
    else:
        out.blocks(text_blocks(result))
"""
READ_PARQUET = "import sys, polars as pl; pl.read_parquet(sys.argv[1])"
# Polars' own settings (polars/__init__.py): set, they keep gradlog from changing them
POLARS_DEFAULTS = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:500,muzzy_decay_ms:1000"}


def peak(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak MiB of ``args``, with ``env`` added to the environment."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        wall, mib, _ = measure(args, stdout=subprocess.DEVNULL)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return wall, mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="a folder for the logs (reused if there)")
    parser.add_argument("--rounds", type=int, default=3, help="the median of this many runs")
    args = parser.parse_args()
    os.chdir(ROOT)
    tmp = tempfile.TemporaryDirectory(prefix="gradlog-report-memory-")
    folder = args.keep or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    jsonl, parquet = folder / f"r{args.events}.jsonl", folder / f"r{args.events}.parquet"
    if not parquet.exists():
        write_jsonl(jsonl, args.events)
        subprocess.run(
            [sys.executable, "-m", "gradlog", "convert", str(jsonl), "-o", str(parquet), "--force"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{args.events:,} events, {parquet.stat().st_size / 2**20:.1f} MB of Parquet")

    def median_of(make) -> tuple[float, float]:
        runs = sorted((make() for _ in range(args.rounds)), key=lambda r: r[1])
        return runs[len(runs) // 2]

    floor = median_of(lambda: peak([sys.executable, "-c", READ_PARQUET, str(parquet)]))[1]
    print("\n| phase | json: peak MiB | text: peak MiB |\n|---|---:|---:|")
    print(f"| bare `pl.read_parquet` of the log (the floor) | {floor:.0f} | {floor:.0f} |")
    for phase in ("imports", "read", "analysis", "output"):
        cells = []
        for fmt in ("json", "text"):
            cmd = [sys.executable, "-c", PHASES, str(parquet), fmt, phase]
            cells.append(median_of(lambda cmd=cmd: peak(cmd))[1])
        print(
            f"| up to {phase} | {cells[0]:.0f} ({cells[0] / floor:.2f}x) "
            f"| {cells[1]:.0f} ({cells[1] / floor:.2f}x) |"
        )
    print("\n| whole command | json: wall s, peak MiB | text: wall s, peak MiB |\n|---|---:|---:|")
    for name, env in (("as shipped", None), ("Polars' allocator settings", POLARS_DEFAULTS)):
        cells = []
        for fmt in ("json", "text"):
            cmd = [sys.executable, "-m", "gradlog", "report", str(parquet), "--format", fmt]
            wall, mib = median_of(lambda cmd=cmd, env=env: peak(cmd, env))
            cells.append(f"{wall:.2f} s, {mib:.0f} ({mib / floor:.2f}x)")
        print(f"| `gradlog report`, {name} | {cells[0]} | {cells[1]} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
