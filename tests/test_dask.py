"""``gradlog batch --scheduler``: the batch analysed by a real Dask cluster on loopback.

One ``LocalCluster`` (two worker processes, one thread each) serves the module. The real command
line, run against it, must print byte for byte what it prints without it, for an archive of
every kind of source (JSON Lines, gzip, Parquet, a hive dataset, another tool's log read through
``--map``, a crashed log, a corrupt one), since the workers run gradlog's own chunk analysis with
the command's settings. A worker that dies is killed for real, by a worker plugin that this test
registers on its cluster (gradlog has no hook for it): the task is run again on another worker,
and a chunk whose every worker dies becomes error rows and exit 2, never a silent gap.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import dask
import polars as pl
import pytest
from distributed import Client, LocalCluster, WorkerPlugin
from runlogs import ROOT, gradlog, gradlog_many, to_parquet, write_run

from gradlog.analysis.batch import BatchOptions, run_batch
from gradlog.analysis.cluster import on_cluster
from gradlog.format import MAX_EVENTS_ENV

FORMATS = ("table", "csv", "json")
MAP = ("--map", "gn/{task}=grad_norm")  # the W&B log's keys, which no built-in rule reads
COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0]
MARKER = "doomed.jsonl"  # the source whose chunk the dying workers are handed


@pytest.fixture(scope="module")
def cluster():
    # A task survives one death of its worker (Dask's default is 3), so "always dies" is two
    # deaths. A worker holds only the task it runs (saturation 1.0; Dask's default queues more),
    # since a death counts against every task the dying worker holds: only the doomed chunk's.
    settings = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        with LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: never another cluster's 8787
        ) as cluster:
            yield cluster


@pytest.fixture
def client(cluster: LocalCluster):
    """The test's own client; both workers are up when the test starts (a test that killed
    some leaves their nannies restarting them)."""
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        yield client


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    side = tmp_path_factory.mktemp("side")
    write_run(root / "healthy.jsonl", [1.0, 1.2, 0.9, 1.1, 1.0, 1.3], run="healthy")
    write_run(
        root / "collapse.jsonl", COLLAPSE, run="collapse", weights={"pointer": 1.0, "type": 0.5}
    )
    minor = write_run(side / "dask-minor.jsonl", [2.5] * 5, run="minor")
    (root / "minor.jsonl.gz").write_bytes(gzip.compress(minor.read_bytes()))
    to_parquet(
        write_run(side / "dask-sig.jsonl", [4.0] * 5, run="sig"), root / "sub" / "sig.parquet"
    )
    write_run(root / "two.jsonl", [1.0, 1.1, 0.9], run="two-a")
    write_run(root / "two.jsonl", [0.05] * 4, run="two-b")
    hive = [
        pl.read_parquet(
            to_parquet(write_run(side / f"dask-{r}.jsonl", x, run=r), side / f"dask-{r}.parquet")
        )
        for r, x in (("h1", COLLAPSE), ("h2", [1.0] * 5))
    ]
    pl.concat(hive).write_parquet(root / "hive", partition_by=["run"])
    corrupt = write_run(root / "corrupt.jsonl", [1.0], run="corrupt")
    with open(corrupt, "ab") as fh:
        fh.write(b'{"v":1,"run":"corrupt","kind":"event","epoch":"zz"}\n')
    with open(root / "wandb.csv", "w", newline="") as fh:  # read only through --map
        writer = csv.writer(fh)
        writer.writerow(["_step", "_timestamp", "gn/pointer", "gn/type"])
        writer.writerows([i + 1, 1.7e9 + i, 1.0 + 2.0 * i, 1.0] for i in range(12))
    # A crashed log (no newline at its end) is a chunk of its own: the dying workers' target.
    # With it, the archive is 6 chunks, more than twice the cluster's threads, which makes Dask
    # queue them on the scheduler (where saturation 1.0 applies) rather than on the workers.
    for name in (MARKER, "crashed.jsonl"):
        crashed = write_run(root / name, [1.0, 1.1, 1.2], run=name.split(".")[0])
        with open(crashed, "ab") as fh:
            fh.write(b'{"v":1,"run":"crashed","kind":"event","epo')
    return root


@pytest.fixture(scope="module")
def local(archive: Path) -> dict[str, subprocess.CompletedProcess]:
    """The batch without a cluster, in every format."""
    return dict(zip(FORMATS, gradlog_many([_batch(archive, f) for f in FORMATS])))


def _batch(archive: Path, fmt: str, *more: str) -> tuple[str, ...]:
    return ("batch", str(archive), "--format", fmt, *MAP, *more)


def _same(got: subprocess.CompletedProcess, want: subprocess.CompletedProcess) -> None:
    assert got.stderr.decode() == want.stderr.decode()
    assert got.stdout.decode() == want.stdout.decode()
    assert got.returncode == want.returncode


def test_the_cluster_prints_what_a_local_run_prints(cluster, archive: Path, local) -> None:
    address = cluster.scheduler_address
    remote = gradlog_many([_batch(archive, f, "--scheduler", address) for f in FORMATS])
    for fmt, got in zip(FORMATS, remote):
        _same(got, local[fmt])
    rows = json.loads(local["json"].stdout)["runs"]
    assert len(rows) == 12 and local["json"].returncode == 2  # corrupt.jsonl: unreadable
    assert {r["run"] for r in rows} >= {"h1", "h2", "sig", "minor", "doomed", "wandb"}


def test_many_chunks_come_back_in_the_order_of_the_sources(
    cluster, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One source a chunk, finishing in any order, and a reading limit that only this
    process's environment sets: the rows are the local run's, and progress counts to the end."""
    monkeypatch.setenv(MAX_EVENTS_ENV, "5")  # collapse.jsonl (7 events) is refused
    options = BatchOptions(chunk_bytes=1)
    want = run_batch([str(archive)], options=options)
    seen: list[tuple[int, int | None]] = []

    def analyse(chunks, judging, options):
        return on_cluster(cluster.scheduler_address, chunks, judging, options)

    got = run_batch(
        [str(archive)], options=options, progress=lambda *p: seen.append(p), analyse=analyse
    )
    assert [repr(r) for r in got.rows] == [repr(r) for r in want.rows]
    assert any("more than 5 events" in (r.error or "") for r in got.rows)
    # the files are counted as they are found (total None), then read up to the total
    reading = [p for p in seen if p[1] is not None]
    assert seen[: len(seen) - len(reading)] == [p for p in seen if p[1] is None]
    assert reading[0] == (0, got.n_sources) and reading[-1] == (got.n_sources, got.n_sources)
    assert [done for done, _ in reading] == sorted({done for done, _ in reading})
    assert len(reading) > 5


@pytest.fixture(scope="module")
def bucket(archive: Path):
    """The archive's JSON Lines logs (the crashed ones too) in a bucket of an S3-compatible
    server on loopback (moto's); yields the options that reach it, as --storage-option takes
    them. Only the command has them: the workers' environment holds no credentials."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "aws_endpoint_url": f"http://{host}:{port}",
        "aws_access_key_id": "gradlog",
        "aws_secret_access_key": "gradlog",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=options["aws_endpoint_url"],
            aws_access_key_id="gradlog",
            aws_secret_access_key="gradlog",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="runs")
        for path in sorted(archive.glob("*.jsonl")):
            s3.put_object(Bucket="runs", Key=f"shards/{path.name}", Body=path.read_bytes())
        yield options
    finally:
        server.stop()


def test_the_workers_read_object_storage(cluster, bucket: dict[str, str]) -> None:
    flags = [f"--storage-option={key}={value}" for key, value in bucket.items()]
    args = ("batch", "s3://runs/shards/", "--format", "csv", *flags)
    want, got = gradlog_many([args, (*args, "--scheduler", cluster.scheduler_address)])
    _same(got, want)
    rows = list(csv.DictReader(io.StringIO(got.stdout.decode())))
    assert len(rows) == 7  # six logs: two runs in one, and corrupt.jsonl's error row
    assert all(r["file"].startswith("s3://runs/shards/") for r in rows)
    assert [r["status"] for r in rows].count("error") == 1


class DieOnMarker(WorkerPlugin):
    """Ends the worker's process when it starts a task that holds ``marker``'s source; with
    ``once``, only the first time (the file ``once`` remembers it across the workers)."""

    def __init__(self, name: str, marker: str, once: Path | None = None) -> None:
        self.name = name
        self.marker = marker.encode()
        self.once = once

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing":
            return
        task = self.worker.state.tasks.get(key)
        if task is None or self.marker not in pickle.dumps(task.run_spec):
            return
        if self.once is not None:
            try:
                self.once.touch(exist_ok=False)
            except FileExistsError:
                return
        os._exit(1)  # as a worker killed for memory: no goodbye to the scheduler


def test_a_worker_that_dies_has_its_chunk_run_again(
    cluster, client: Client, archive: Path, local, tmp_path: Path
) -> None:
    died = tmp_path / "died"
    client.register_plugin(DieOnMarker("die-once", str(archive / MARKER), once=died))
    try:
        got = gradlog(*_batch(archive, "json", "--scheduler", cluster.scheduler_address))
    finally:
        client.unregister_worker_plugin("die-once")
    assert died.exists()  # a worker really died
    _same(got, local["json"])


def test_a_chunk_whose_workers_all_die_is_error_rows(
    cluster, client: Client, archive: Path, local
) -> None:
    client.register_plugin(DieOnMarker("die-always", str(archive / MARKER)))
    try:
        got = gradlog(*_batch(archive, "json", "--scheduler", cluster.scheduler_address))
    finally:
        client.unregister_worker_plugin("die-always")
    assert got.returncode == 2
    rows = json.loads(got.stdout)["runs"]
    want = json.loads(local["json"].stdout)["runs"]
    doomed = [r for r in rows if r["file"] == str(archive / MARKER)]
    assert len(doomed) == 1 and doomed[0]["status"] == "error"
    assert "each Dask worker that ran it died" in doomed[0]["error"]
    # every other row as a local run gives it, and the sources' order kept
    assert [r for r in rows if r is not doomed[0]] == [r for r in want if r["run"] != "doomed"]
    assert len(rows) == len(want)
    # on stderr, no word from Dask: the local run's notes but the doomed log's, and two errors
    *notes, summary, last = got.stderr.decode().splitlines()
    assert notes == [n for n in local["json"].stderr.decode().splitlines()[:-2] if MARKER not in n]
    assert summary.endswith("; 2 unreadable") and last == "gradlog: 2 file(s) could not be read"


def test_a_cluster_without_workers_is_waited_for_with_a_note(archive: Path, local) -> None:
    """An autoscaled cluster may have no worker yet: the command says so, and goes on when one
    comes (the worker is started on reading the note, not after a while)."""
    with LocalCluster(
        n_workers=0, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    ) as empty:
        args = _batch(archive, "csv", "--scheduler", empty.scheduler_address)
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("GRADLOG_DEBUG", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gradlog", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        try:
            first = proc.stderr.readline().decode()
            empty.scale(1)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # it would wait for a worker forever
                proc.kill()
                proc.communicate()
    assert first == (
        f"Note: the Dask scheduler at {empty.scheduler_address} has no workers yet: "
        "waiting for one\n"
    )
    assert out == local["csv"].stdout
    assert err == local["csv"].stderr
    assert proc.returncode == local["csv"].returncode


def test_no_scheduler_at_the_address_is_one_line(archive: Path) -> None:
    with socket.socket() as held:  # bound, never listening: nothing answers on its port
        held.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{held.getsockname()[1]}"
        env = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
        got = gradlog("batch", str(archive), "--scheduler", address, env=env)
    assert got.returncode == 2
    (line,) = got.stderr.decode().splitlines()
    assert line.startswith(f"Error: --scheduler {address}: no Dask scheduler answered ("), line
    assert got.stdout == b""


def test_without_dask_installed_the_option_names_the_install(archive: Path) -> None:
    # None in sys.modules is how Python reports a package that is not there
    code = (
        "import sys; sys.modules['distributed'] = None; import gradlog.cli; "
        f"sys.argv = ['gradlog', 'batch', {str(archive)!r}, '--scheduler', 'tcp://127.0.0.1:1']; "
        "gradlog.cli.main()"
    )
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GRADLOG_DEBUG", None)
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert got.returncode == 2
    assert got.stderr.decode().splitlines() == [
        "Error: --scheduler needs Dask's distributed package: pip install 'gradlog-mtl[dask]'"
    ]


def test_a_local_batch_never_imports_dask(archive: Path) -> None:
    code = (
        "import sys, gradlog.cli\n"
        f"sys.argv = ['gradlog', 'batch', {str(archive)!r}, '--format', 'csv']\n"
        "try:\n    gradlog.cli.main()\nexcept SystemExit:\n    pass\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules, 'dask imported'\n"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr.decode()
