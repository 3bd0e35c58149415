"""Where the shortest report's start-up goes: its steps, each added in a fresh process.

Issue 14 asks for ``gradlog report`` on a sample log within 1.2x of ``python -c "import polars,
typer, rich"``. Each row here runs one more step of the report than the row above (the floor's
imports; gradlog's own imports of the report path; reading the log; the analysis; the text
renderer; the whole command), and ``bare read`` is the floor plus the least Polars can do with
the file. The rows run alternately (one round runs each once, in a fresh process), and the
table gives the median wall and CPU time (user + system) of each and the median of its
pairwise ratios to the floor's, so that load elsewhere on a shared machine falls on all alike.

The whole command runs as installed (:func:`gradlog.cli.run`): Python's collector looks for
reference cycles every 100,000 new objects, not every 700, and the objects still alive at exit
are frozen so that Python's exit does not sweep them. The rows of single steps are ``python -c``
scripts with Python's defaults, so the whole command can take less than its steps; the last
row shows what the same settings would save the floor itself.

gradlog's modules are compiled to bytecode first, as installing the package does (pip writes
the ``.pyc`` files): a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` compiles its sixty-odd
modules again at every start, which ``--source`` measures instead.

Run from the repository root::

    python benchmarks/startup.py [--rounds 15] [--log sample_logs/healthy.jsonl] [--source]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOOR = "import polars, typer, rich"
IMPORTS = (
    FLOOR + "\nimport gradlog.cli, gradlog.analysis.report"
    "\nfrom gradlog.analysis import api, output, readers"
    "\nfrom gradlog.analysis.render import text"
)
READ = IMPORTS + "\nlog = readers.read_log(LOG)"
ANALYSE = READ + "\nimport gradlog.analysis.report as r\nresult = r.analyse(log)"
RENDER = ANALYSE + "\nlines = list(text.text_blocks(result))"


def steps(log: str) -> list[tuple[str, list[str]]]:
    def python(code: str) -> list[str]:
        return [sys.executable, "-c", code.replace("LOG", repr(log))]

    return [
        ("floor: " + FLOOR, python(FLOOR)),
        ("bare read: the floor + pl.read_ndjson(log)", python(FLOOR + BARE_READ)),
        ("+ gradlog's imports of the report path", python(IMPORTS)),
        ("+ reading the log", python(READ)),
        ("+ the analysis", python(ANALYSE)),
        ("+ the text renderer", python(RENDER)),
        (
            "gradlog report LOG (the whole command)",
            [sys.executable, "-m", "gradlog", "report", log],
        ),
        ("gradlog --help", [sys.executable, "-m", "gradlog", "--help"]),
        # what the floor itself would take with the program's collector settings
        # (gradlog.cli.run): they save both at exit, and the steps above pay Python's defaults
        ("the floor with gradlog's collector settings", python(GC + FLOOR + "\ngc.freeze()")),
    ]


GC = "import gc\ngc.set_threshold(100_000, *gc.get_threshold()[1:])\n"


BARE_READ = "\nimport polars as pl\nprint(pl.read_ndjson(LOG).height)"


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (the child's user + system) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {args}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--log", default="sample_logs/healthy.jsonl")
    parser.add_argument("--source", action="store_true", help="no bytecode: compile at each start")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.source:
        # gradlog's modules (only they: polars, typer and rich keep theirs in site-packages)
        # compiled at every start, as in a checkout run with PYTHONDONTWRITEBYTECODE=1
        for cache in (ROOT / "gradlog").rglob("__pycache__"):
            shutil.rmtree(cache)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        compileall.compile_dir(ROOT / "gradlog", quiet=1)
    rows = steps(args.log)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in rows}
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    for _ in range(args.rounds):
        for name, command in rows:
            times[name].append(run(command, env))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    floor = times[rows[0][0]]
    print()
    print("| step | wall s | CPU s | wall ratio | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in rows:
        t = times[name]
        wall = statistics.median(w for w, _ in t)
        cpu = statistics.median(c for _, c in t)
        wall_ratio = statistics.median(w / f for (w, _), (f, _) in zip(t, floor))
        cpu_ratio = statistics.median(c / f for (_, c), (_, f) in zip(t, floor))
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall_ratio:.2f}x | {cpu_ratio:.2f}x |")


if __name__ == "__main__":
    main()
