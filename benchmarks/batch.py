"""How fast is ``gradlog batch`` on an archive of runs, against the floor and against a loop?

Generates an archive of RUNS runs x EVENTS events as JSON Lines (one file per run, exactly as
the recorder's writer lays them out), and the same archive as Parquet, then measures, each in
a fresh process (wall time, and the command's own peak resident memory, see measure.py):

* ``gradlog batch DIR`` (the whole command, CSV to a file);
* the floor: a bare Polars scan-and-collect of the same files, with the log schema
  (``pl.scan_ndjson(files, schema=storage_schema()).collect()``, ``pl.scan_parquet``), and, for
  JSON Lines, its lines decoded as gradlog decodes them (only what it reads, typed);
* the one-query floor of issue 14: each run's event count, mean, population std and max of
  the norms in one Polars group-by over the files, and the same in DuckDB where ``duckdb`` is
  installed (``pip install duckdb``; gradlog does not use it);
* what users write by hand: a loop over the lines with the standard library's ``json``,
  computing the same summary per run with gradlog's own rules (``gradlog.classify``); its
  findings are checked against gradlog's.

Targets (issue 3): gradlog within 1.5x of the bare scan, at least 5x faster than the stdlib loop
on JSON Lines, and Parquet at least 5x faster than JSON Lines. Run from the repository root::

    python benchmarks/batch.py                       # 1,000 runs x 1,000 events (the issue's)
    python benchmarks/batch.py --runs 100 --events 500 --keep /tmp/archive --repeat 1

Each command runs ``--repeat`` times (3), the rounds interleaved; the median is reported (the
machine this was written on is shared, and a burst of load elsewhere moves any one figure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import measure  # noqa: E402 - wall time and the command's own peak memory

# -- the archive -------------------------------------------------------------------------------


# The lines of one run, as printf templates: formatting a million lines this way is fast.
RUN_LINE = (
    '{"v":1,"run":"%s","kind":"run","time":1700000000.0,"meta":{"tasks":["pointer","type"],'
    '"log_every":10,"balance_every":5,"weights":[{"name":"pointer","weight":1.0},'
    '{"name":"type","weight":1.0}],"started_at":"2026-11-25T00:00:00+00:00",'
    '"mode":"parameters","model":"Synthetic","tags":[{"key":"seed","value":"%d"}]}}\n'
)
EVENT_HEAD = '{"v":1,"run":"%s","kind":"event","time":%r,"epoch":%d,"step":%d'
EVENT_STATS = (
    ',"mean_norm":%r,"max_norm":%r,"total_norm":%r,"n_grads":18,"n_vanishing":0,"n_exploding":0'
)
EVENT_TASKS = (
    ',"tasks":[{"name":"pointer","grad_norm":%r,"loss":%r,"weight":1.0},'
    '{"name":"type","grad_norm":%r,"loss":%r,"weight":1.0}]}\n'
)


def run_text(run_id: str, n_events: int, seed: int) -> str:
    """One run as JSON Lines, byte for byte what ``JsonlWriter`` writes for these records.

    Written as text directly (the writer's ``json.dumps`` of a million records takes minutes);
    ``check_layout`` proves the bytes are the same. Each run drifts by its own amount, so an
    archive holds healthy runs, imbalance, collapse, and some vanishing or exploding norms.
    """
    rng = random.Random(seed)
    drift = rng.choice((0.0, 0.0, 0.0, 0.0, 0.002, -0.002, 0.006))
    scale = rng.choice((1.0, 1.0, 1.0, 1.0, 1.0, 0.03, 12.0))
    lines = [RUN_LINE % (run_id, seed)]
    gauss, uniform = rng.gauss, rng.random
    log_ratio = 0.0
    for i in range(n_events):
        epoch = (i + 1) * 5
        log_ratio += drift + gauss(0, 0.02)
        base = math.exp(gauss(-1.0, 0.2))
        line = EVENT_HEAD % (run_id, 1.7e9 + i, epoch, epoch * 50)
        if epoch % 10 == 0:
            mean = scale * math.exp(gauss(-1.5, 0.3))
            line += EVENT_STATS % (mean, mean * math.exp(gauss(1.8, 0.2)), mean * 4.2)
        pointer = base * math.exp(log_ratio)
        lines.append(line + EVENT_TASKS % (pointer, uniform(), base, uniform()))
    return "".join(lines)


def check_layout(path: Path) -> None:
    """The generated lines are exactly what gradlog's writer produces for the same records."""
    from gradlog.recorder.writers import dumps

    with open(path, "rb") as fh:
        for _, line in zip(range(50), fh):
            assert dumps(json.loads(line)) == line, line


def generate(root: Path, runs: int, events: int) -> tuple[list[Path], list[Path], float, float]:
    jsonl_dir, parquet_dir = root / "jsonl", root / "parquet"
    jsonl_dir.mkdir(parents=True, exist_ok=True)
    parquet_dir.mkdir(parents=True, exist_ok=True)
    names = [f"run{r:05d}" for r in range(runs)]
    jsonl = [jsonl_dir / f"{n}.jsonl" for n in names]
    parquet = [parquet_dir / f"{n}.parquet" for n in names]
    marker = root / f"archive-{runs}x{events}"
    if marker.exists() and all(p.exists() for p in jsonl + parquet):
        return jsonl, parquet, 0.0, 0.0  # --keep: the same archive, already written
    start = time.perf_counter()
    for r, path in enumerate(jsonl):
        path.write_text(run_text(f"r{r:05d}", events, r), encoding="utf-8")
    t_jsonl = time.perf_counter() - start
    check_layout(jsonl[0])
    import polars as pl

    from gradlog.frames import storage_schema

    start = time.perf_counter()
    for path, out in zip(jsonl, parquet):  # what `gradlog convert` writes: the frame, as Parquet
        pl.read_ndjson(path, schema=storage_schema()).write_parquet(out)
    marker.touch()
    return jsonl, parquet, t_jsonl, time.perf_counter() - start


# -- what users write by hand --------------------------------------------------------------------


def _float(value) -> float:
    return math.nan if value is None else float(value)  # float("NaN") reads the tokens too


def stdlib_summary(paths: list[str], window: int = 10, min_samples: int = 3) -> dict:
    """Per run, with the standard library: the numbers of gradlog batch, by gradlog's rules."""
    from gradlog import classify

    out = {}
    for path in paths:
        runs: dict[str, dict] = {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                run = runs.setdefault(
                    rec["run"],
                    {"tasks": None, "events": 0, "means": [], "peak": None, "samples": []},
                )
                if rec["kind"] == "run":
                    run["tasks"] = rec.get("meta", {}).get("tasks")
                    continue
                run["events"] += 1
                run["epoch"] = rec.get("epoch")
                mean = rec.get("mean_norm")
                if mean is not None:
                    mean, peak = float(mean), float(rec.get("max_norm", "NaN"))
                    run["means"].append(mean)
                    if math.isfinite(peak):
                        run["peak"] = peak if run["peak"] is None else max(run["peak"], peak)
                if rec.get("tasks"):
                    norms = {t["name"]: t.get("grad_norm") for t in reversed(rec["tasks"])}
                    run["samples"].append((rec.get("epoch"), norms))
        for run_id, run in runs.items():
            # the second edition (docs/report.md): the geometric window of every task's norm
            tasks = run["tasks"] or []
            a, b = classify.default_pair(tasks)
            recent: deque = deque(maxlen=window)
            worst = first_imbalance = first_collapse = final = None
            for epoch, norms in run["samples"]:
                values = {t: _float(norms.get(t)) for t in tasks}
                if not classify.defined_sample(values):
                    band = classify.RatioBand.UNDEFINED
                    if (
                        worst is None
                        or classify.RATIO_SEVERITY[band] > classify.RATIO_SEVERITY[worst]
                    ):
                        worst = band
                    continue
                spread = max(values.values()) / min(values.values())
                if first_imbalance is None and classify.outside_healthy_range(spread):
                    first_imbalance = epoch
                recent.append(values)
                logs = classify.window_logs(list(recent), window, min_samples)
                if logs is None:
                    continue
                final = math.exp(logs[a] - logs[b])
                band = classify.spread_band(max(logs.values()) - min(logs.values()))
                if worst is None or classify.RATIO_SEVERITY[band] > classify.RATIO_SEVERITY[worst]:
                    worst = band
                if first_collapse is None and band is classify.RatioBand.COLLAPSE:
                    first_collapse = epoch
            finite = [m for m in run["means"] if math.isfinite(m)]
            mean = math.fsum(finite) / len(finite) if finite else None
            std = (
                math.sqrt(math.fsum((m - mean) ** 2 for m in finite) / len(finite))
                if finite
                else None
            )
            out[(path, run_id)] = {
                "events": run["events"],
                "window_ratio": final,
                "worst_band": worst.value if worst else None,
                "first_imbalance": first_imbalance,
                "first_collapse": first_collapse,
                "mean_norm": mean,
                "mean_norm_std": std,
                "max_norm_peak": run["peak"],
            }
    return out


# -- measuring -----------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


BARE_JSON = """
import sys, polars as pl
from gradlog.frames import storage_schema
files = sys.argv[1:]
print(pl.scan_ndjson(files, schema=storage_schema()).collect().height)
"""
BARE_JSON_COLUMNS = """
import sys, polars as pl
from gradlog.analysis.jsonl_scan import LINE
files = sys.argv[1:]
frame = pl.scan_lines(files).select(pl.col("line").str.json_decode(LINE)).collect()
print(frame.height)
"""
BARE_JSON_STREAMING = BARE_JSON_COLUMNS.replace(".collect()", '.collect(engine="streaming")')
BARE_PARQUET = """
import sys, polars as pl
print(pl.scan_parquet(sys.argv[1:]).collect().height)
"""
BARE_PARQUET_COLUMNS = """
import sys, polars as pl
from gradlog.frames import storage_schema
from gradlog.format import REQUIRED_FIELDS
columns = [*REQUIRED_FIELDS, "epoch", "step", "mean_norm", "max_norm", "tasks", "meta"]
lf = pl.scan_parquet(sys.argv[1:], schema=storage_schema(), missing_columns="insert",
                     cast_options=pl.ScanCastOptions(missing_struct_fields="insert"),
                     extra_columns="ignore", include_file_paths="source")
print(lf.select("source", *columns).collect(engine="streaming").height)
"""
# The one-query floor of issue 14: each run's event count, mean, population std and max of the
# norms, in one group-by over the files, by Polars and (where it is installed) by DuckDB.
GROUP_BY = """
import sys, glob, polars as pl
kind, root = sys.argv[1:]
files = sorted(glob.glob(f"{root}/{kind}/*.{kind}"))
if kind == "parquet":
    lf = pl.scan_parquet(files)
else:
    lf = pl.scan_ndjson(files, schema={"run": pl.String, "kind": pl.String,
                                       "mean_norm": pl.Float64, "max_norm": pl.Float64})
norm = pl.col("mean_norm")
print(lf.filter(pl.col("kind") == "event").group_by("run").agg(
    pl.len(), norm.mean().alias("mean"), norm.std(ddof=0).alias("std"),
    pl.col("max_norm").max()).collect().height)
"""
DUCKDB = """
import sys, duckdb
kind, root = sys.argv[1:]
source = (f"read_parquet('{root}/parquet/*.parquet')" if kind == "parquet" else
          f"read_json('{root}/jsonl/*.jsonl', format='newline_delimited', columns="
          "{run: 'VARCHAR', kind: 'VARCHAR', mean_norm: 'DOUBLE', max_norm: 'DOUBLE'})")
print(len(duckdb.sql(f"SELECT run, count(*), avg(mean_norm), stddev_pop(mean_norm), "
                     f"max(max_norm) FROM {source} WHERE kind = 'event' GROUP BY run").fetchall()))
"""
START_UP = """
import polars
print(0)
"""
STDLIB = """
import sys, json
sys.path.insert(0, {here!r})
from batch import stdlib_summary
summary = stdlib_summary(sys.argv[1:])
print(json.dumps({{"|".join(k): v for k, v in summary.items()}}))
"""


def compare_findings(stdlib_json: str, csv_path: Path) -> tuple[int, int]:
    """How many runs the stdlib loop and gradlog batch agree on (bands, epochs, numbers)."""
    import csv

    hand = json.loads(stdlib_json)
    agree = total = 0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            total += 1
            mine = hand.get(f"{row['file']}|{row['run']}")
            if mine is None:
                continue

            def close(a, b) -> bool:
                if a in ("", None) or b in ("", None):
                    return a in ("", None) and b in ("", None)
                return math.isclose(float(a), float(b), rel_tol=1e-9)

            epoch = lambda label: label.split()[-1] if label else None  # noqa: E731
            same = (
                mine["worst_band"] == (row["worst_band"] or None)
                and str(mine["first_collapse"]) == str(epoch(row["first_collapse"]))
                and str(mine["first_imbalance"]) == str(epoch(row["first_imbalance"]))
                and close(mine["window_ratio"], row["window_ratio"])
                and close(mine["mean_norm"], row["mean_norm"])
                and close(mine["max_norm_peak"], row["max_norm_peak"])
            )
            agree += same
    return agree, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of measurements")
    args = parser.parse_args()

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="gradlog-batch-")
        root = Path(tmp.name)
    else:
        root = args.keep
    here = str(Path(__file__).resolve().parent)
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        jsonl, parquet, t_gen, t_conv = generate(root, args.runs, args.events)
        size = sum(p.stat().st_size for p in jsonl) / 1e6
        psize = sum(p.stat().st_size for p in parquet) / 1e6
        print(
            f"archive: {args.runs} runs x {args.events} events = {args.runs * args.events:,} "
            f"events; JSONL {size:.0f} MB (written in {t_gen:.1f} s), Parquet {psize:.0f} MB "
            f"(converted in {t_conv:.1f} s)" + (" (reused with --keep)" if t_gen == 0 else "")
        )
        files = [str(p) for p in jsonl]
        pfiles = [str(p) for p in parquet]
        csv_out = root / "batch.csv"
        gradlog = [sys.executable, "-m", "gradlog", "batch"]
        commands = {
            "gradlog batch, JSONL": gradlog
            + [str(root / "jsonl"), "--format", "csv", "-o", str(csv_out), "--force"],
            "bare scan, JSONL (log schema)": _python(BARE_JSON) + files,
            "bare scan, JSONL (gradlog's columns)": _python(BARE_JSON_COLUMNS) + files,
            "bare scan, JSONL (gradlog's columns, streaming)": _python(BARE_JSON_STREAMING) + files,
            "stdlib json loop, JSONL": _python(STDLIB.format(here=here)) + files,
            "gradlog batch, Parquet": gradlog
            + [str(root / "parquet"), "--format", "csv", "-o", str(root / "p.csv"), "--force"],
            "bare scan, Parquet": _python(BARE_PARQUET) + pfiles,
            "bare scan, Parquet (gradlog's columns, streaming)": _python(BARE_PARQUET_COLUMNS)
            + pfiles,
            "start-up: python -c 'import polars'": _python(START_UP),
        }
        for kind, label in (("jsonl", "JSONL"), ("parquet", "Parquet")):
            commands[f"one query: Polars group-by, {label}"] = _python(GROUP_BY) + [kind, str(root)]
            if _has("duckdb"):
                commands[f"one query: DuckDB, {label}"] = _python(DUCKDB) + [kind, str(root)]
        # rounds interleave the commands, so that a burst of load elsewhere hits them alike
        runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                runs[name].append(measure(command))
        print(f"{'':50s} {'median s':>9s} {'best s':>8s} {'peak MB':>8s}")
        wall: dict[str, float] = {}
        for name, measured in runs.items():
            times = sorted(m[0] for m in measured)
            wall[name] = statistics.median(times)
            rss = max(m[1] for m in measured)
            print(f"{name:50s} {wall[name]:9.2f} {times[0]:8.2f} {rss:8.0f}")
        agree, total = compare_findings(runs["stdlib json loop, JSONL"][0][2], csv_out)
        print(f"stdlib loop and gradlog batch agree on {agree} of {total} runs")
        g = wall["gradlog batch, JSONL"]
        print(
            "ratios of medians: gradlog/bare scan JSONL {:.2f}x (target <= 1.5x), gradlog/bare "
            "scan of gradlog's columns {:.2f}x; stdlib loop/gradlog {:.1f}x (target >= 5x); "
            "gradlog JSONL/Parquet {:.1f}x (target >= 5x); gradlog/bare scan Parquet {:.2f}x".format(
                g / wall["bare scan, JSONL (log schema)"],
                g / wall["bare scan, JSONL (gradlog's columns)"],
                wall["stdlib json loop, JSONL"] / g,
                g / wall["gradlog batch, Parquet"],
                wall["gradlog batch, Parquet"] / wall["bare scan, Parquet"],
            )
        )
        for label in ("JSONL", "Parquet"):
            floor = wall[f"one query: Polars group-by, {label}"]
            reading = wall[f"bare scan, {label} (gradlog's columns, streaming)"]
            print(
                f"issue 14: gradlog batch {label} / one Polars group-by "
                f"{wall[f'gradlog batch, {label}'] / floor:.2f}x (target 2x); the bare scan of "
                f"gradlog's columns / that group-by {reading / floor:.2f}x"
            )
        # What the targets leave room for: the fastest bare scans of the columns gradlog reads
        # (start-up included, no analysis) bound what a batch built on these readers can reach.
        floor_json = wall["bare scan, JSONL (gradlog's columns, streaming)"]
        floor_parquet = wall["bare scan, Parquet (gradlog's columns, streaming)"]
        print(
            "bounds: stdlib loop/bare streaming scan of gradlog's JSONL columns {:.1f}x (target 2 "
            "at zero analysis cost); bare streaming scans of gradlog's columns, JSONL/Parquet "
            "{:.1f}x (target 3 at zero analysis cost); both targets at once need Parquet <= "
            "{:.2f} s (stdlib loop/25), against {:.2f} s for its bare scan".format(
                wall["stdlib json loop, JSONL"] / floor_json,
                floor_json / floor_parquet,
                wall["stdlib json loop, JSONL"] / 25,
                floor_parquet,
            )
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
