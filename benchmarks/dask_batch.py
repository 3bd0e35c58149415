"""``gradlog batch --scheduler`` on a two-worker LocalCluster against the same batch run locally.

Writes RUNS runs x EVENTS events as JSON Lines (``synth.write_jsonl``: gradlog's own writer),
starts a ``LocalCluster`` of two worker processes (one thread each) on loopback, and then, the
rounds interleaved, each in a fresh process (the whole command, CSV to a file):

* ``gradlog batch DIR`` (local: this process reads and analyses every chunk);
* ``gradlog batch DIR --scheduler ADDRESS`` (the workers read and analyse; warm workers, as a
  standing cluster's are);

checks that both wrote the same bytes, and reports the ratio. To say what dominates, it then
takes the cluster run apart, in this process:

* worker start: the LocalCluster's start-up (once, before the rounds);
* client start: importing ``distributed`` and connecting to the scheduler;
* the analysis: the workers' compute time per chunk, from the scheduler's task stream, against
  the same chunks analysed here (``--chunk-mb``: chunks of another size, here only: the command
  has no option for it);
* serialisation: pickling each chunk's task (its sources and options) and its rows, both ways;
* scheduling: what is left of the cluster run's wall time.

Run from the repository root::

    python benchmarks/dask_batch.py                     # 1,000 runs x 200 events
    python benchmarks/dask_batch.py --chunk-mb 4        # smaller chunks: more tasks to share out
    python benchmarks/dask_batch.py --runs 200 --keep /tmp/dask-archive --repeat 1
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run_measured  # noqa: E402
from synth import write_jsonl  # noqa: E402


def generate(root: Path, runs: int, events: int) -> Path:
    archive = root / f"runs-{runs}x{events}"
    done = archive / ".complete"
    if done.exists():
        return archive  # --keep: written before
    archive.mkdir(parents=True, exist_ok=True)
    for r in range(runs):
        write_jsonl(archive / f"run{r:05d}.jsonl", events, run_id=f"r{r:05d}", seed=r)
    done.touch()
    return archive


def command(archive: Path, out: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "gradlog", "batch", str(archive), "--format", "csv",
            "-o", str(out), "--force", *more]  # fmt: skip


def timed(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--chunk-mb", type=float, default=None, help="chunk size of the breakdown (default 32)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="write the archive here, reuse it")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from gradlog.analysis import engine
    from gradlog.analysis.batch import DEFAULT_CHUNK_BYTES, BatchOptions, _chunks, run_batch
    from gradlog.analysis.cluster import Settings, analyse_on_worker, on_cluster
    from gradlog.analysis.sources import find_sources

    chunk_bytes = int(args.chunk_mb * (1 << 20)) if args.chunk_mb else DEFAULT_CHUNK_BYTES
    work = args.keep or Path(tempfile.mkdtemp(prefix="gradlog-dask-"))
    start = time.perf_counter()
    archive = generate(work, args.runs, args.events)
    size = sum(p.stat().st_size for p in archive.glob("*.jsonl"))
    print(f"archive: {args.runs} runs x {args.events} events, {size / 1e6:.0f} MB of JSON Lines "
          f"({time.perf_counter() - start:.1f} s to write)")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")

    env = dict(os.environ)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=":0")  # fmt: skip
    t_cluster = time.perf_counter() - start
    address = cluster.scheduler_address
    client = Client(address, set_as_default=False)
    # warm the workers (their first task imports gradlog and Polars), as a standing cluster is
    client.run(lambda: __import__("gradlog.analysis.batch"))

    local_out, remote_out = work / "local.csv", work / "cluster.csv"
    walls: dict[str, list[float]] = {"local": [], "cluster": []}
    for _ in range(args.repeat):
        for name, out, more in (("local", local_out, ()), ("cluster", remote_out,
                                                           ("--scheduler", address))):  # fmt: skip
            wall, _, code, _, err = run_measured(command(archive, out, *more))
            assert code == 0, err.decode()
            walls[name].append(wall)
    assert local_out.read_bytes() == remote_out.read_bytes(), "the outputs differ"
    local, remote = (statistics.median(walls[k]) for k in ("local", "cluster"))
    print(f"\nwhole command, median of {args.repeat} (fresh processes, interleaved):")
    print(f"  local    {local:6.2f} s")
    print(f"  cluster  {remote:6.2f} s   ratio cluster / local {remote / local:.2f}x")

    # -- what dominates: the cluster run taken apart, in this process ---------------------------
    judging, options = engine.Options(), BatchOptions(chunk_bytes=chunk_bytes)
    chunks = _chunks(find_sources([str(archive)]), chunk_bytes)
    client.get_task_stream()  # the first call makes the scheduler record the tasks from now on
    median = statistics.median
    t_import, t_bare, t_connect, t_here, t_there, compute, largest = ([] for _ in range(7))
    for _ in range(args.repeat):  # each part alternated with the others, the median kept
        t_bare.append(timed([sys.executable, "-c", "pass"], env))
        t_import.append(timed([sys.executable, "-c", "import distributed"], env))
        connect = f"from distributed import Client; Client({address!r}).close()"
        t_connect.append(timed([sys.executable, "-c", connect], env))
        start = time.perf_counter()
        here = run_batch([str(archive)], judging, options)
        t_here.append(time.perf_counter() - start)
        t0 = time.time()
        start = time.perf_counter()
        there = run_batch([str(archive)], judging, options, analyse=partial(on_cluster, address))
        t_there.append(time.perf_counter() - start)
        assert [repr(r) for r in here.rows] == [repr(r) for r in there.rows]
        spans = [
            ss["stop"] - ss["start"]
            for task in client.get_task_stream(start=t0)
            if str(task["key"]).startswith("gradlog-chunk")
            for ss in task["startstops"]
            if ss["action"] == "compute"
        ]
        compute.append(sum(spans))
        largest.append(max(spans))
    t_bare, t_import, t_connect = median(t_bare), median(t_import), median(t_connect)
    t_here, t_there, compute, largest = (
        median(t_here),
        median(t_there),
        median(compute),
        median(largest),
    )
    settings = Settings.here()
    start = time.perf_counter()
    sent = [pickle.dumps((analyse_on_worker, c, judging, options, settings)) for c in chunks]
    back = [pickle.dumps(r) for r in (there.rows,)]
    for blob in sent + back:
        pickle.loads(blob)
    t_pickle = time.perf_counter() - start
    print(f"\nthe cluster run taken apart, median of {args.repeat} ({len(chunks)} chunks of <= "
          f"{chunk_bytes / (1 << 20):.0f} MiB, 2 workers):")  # fmt: skip
    print(
        f"  worker start (LocalCluster, 2 processes)   {t_cluster:6.2f} s (once, not in the runs)"
    )
    print(f"  client: import distributed                 {t_import - t_bare:6.2f} s "
          f"(python alone {t_bare:.2f} s)")  # fmt: skip
    print(f"  client: import + connect, in a process     {t_connect - t_bare:6.2f} s")
    print(f"  analysis here (run_batch, in process)      {t_here:6.2f} s")
    print(f"  analysis on the cluster (run_batch)        {t_there:6.2f} s")
    print(f"    workers' compute, summed over chunks     {compute:6.2f} s "
          f"(largest chunk {largest:.2f} s)")  # fmt: skip
    print(
        f"    serialisation, both ways, all chunks     {t_pickle:6.3f} s "
        f"({sum(map(len, sent)) / 1e3:.0f} kB out, {sum(map(len, back)) / 1e3:.0f} kB back)"
    )
    # two workers at best share the compute evenly, and no chunk is split
    ideal = max(largest, compute / 2)
    print(f"    the compute's share on 2 workers, ideal  {ideal:6.2f} s")
    print(f"    scheduling, transfers, waiting (rest)    {t_there - ideal:6.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
