"""``gradlog batch`` on runs in object storage against the same files on disk.

1,000 runs (one JSON Lines file each) are written to a local folder and uploaded to an
S3-compatible server on loopback (moto's, in its own process, as the tests use it); then
``gradlog batch 's3://bench/runs/*.jsonl'`` and ``gradlog batch 'DIR/*.jsonl'`` run alternately,
each in a fresh process, and the figure is the median of the pairwise ratios. A breakdown,
in process, says where the remote time goes: listing the objects, fetching their bytes
(obstore, one by one), the scans (Polars fetching and parsing the objects, against the same
scan of local files), and the analysis (the same for both). Run from the repository root:

    python benchmarks/object_store.py [--runs 1000] [--events 100] [--repeat 3] [--cut 0]

``--cut 1`` cuts one run short, as a crash does: its chunk's scan fails and is split until the
cut object stands alone (re-fetching the rest), and the careful reader then recovers it.

Needs the cloud and test extras (obstore, moto[server]).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import measure  # noqa: E402
from synth import write_jsonl  # noqa: E402

BUCKET = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server(requests: Path):
    """moto's S3 server in its own process (so it never shares a GIL with what is measured);
    its log of requests (one line each) goes to ``requests``."""
    port = _free_port()
    log = open(requests, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute for it to start on a loaded machine
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto server did not start")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()
        log.close()


def _requests(log: Path) -> int:
    """Requests the server has logged (a ranged GET, as Polars makes, is logged in colour)."""
    return sum(1 for line in log.read_text().splitlines() if "GET /" in line or "HEAD /" in line)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _fetch_concurrently(store, keys: list[str], at_once: int = 16) -> list[bytes]:
    import asyncio

    import obstore

    async def fetch_all():
        gate = asyncio.Semaphore(at_once)

        async def one(key):
            async with gate:
                got = await obstore.get_async(store, key)
                return bytes(await got.bytes_async())

        return await asyncio.gather(*(one(k) for k in keys))

    return asyncio.run(fetch_all())


def breakdown(urls: list[str], paths: list[str], options: dict, log: Path) -> dict[str, tuple]:
    """Where the time of one batch goes, remote and local, in this process: each phase's
    seconds, and the requests the server answered for it."""
    import obstore

    from gradlog.analysis import engine, jsonl_scan, remote
    from gradlog.analysis.sources import find_sources

    glob = f"s3://{BUCKET}/runs/*.jsonl"
    local_glob = str(Path(paths[0]).parent / "*.jsonl")
    out: dict[str, tuple] = {}

    def phase(name, fn):
        before = _requests(log)
        seconds, result = _timed(fn)
        out[name] = (seconds, _requests(log) - before)
        return result

    phase("list (remote)", lambda: find_sources([glob], storage_options=options))
    phase("list (local)", lambda: find_sources([local_glob]))
    store = remote._store(f"s3://{BUCKET}", options)
    keys = [u.removeprefix(f"s3://{BUCKET}/") for u in urls]
    phase(
        "fetch every object, one by one (obstore)",
        lambda: [bytes(obstore.get(store, k).bytes()) for k in keys],
    )
    phase("fetch every object, 16 at a time (obstore)", lambda: _fetch_concurrently(store, keys))
    phase(
        "scan (remote: Polars fetches, parses)",
        lambda: jsonl_scan.read_json(urls, 0, storage_options=options),
    )
    local_chunk = phase("scan (local)", lambda: jsonl_scan.read_json(paths, 0))
    phase("analysis", lambda: engine.judge(local_chunk, engine.Options()).runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cut",
        type=int,
        default=0,
        help="cut this many runs short, as a crash does (the batch then finds and recovers them)",
    )
    args = parser.parse_args()
    import obstore
    from obstore.store import S3Store

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp) / "requests.log") as endpoint:
        log = Path(tmp) / "requests.log"
        folder = Path(tmp) / "runs"
        folder.mkdir()
        paths = [
            str(
                write_jsonl(folder / f"run{i:05d}.jsonl", args.events, run_id=f"run{i:05d}", seed=i)
            )
            for i in range(args.runs)
        ]
        cut = paths[len(paths) // 2 :][: args.cut]
        for p in cut:  # a recorder killed mid-write
            with open(p, "ab") as fh:
                fh.write(b'{"v":1,"run":"cut","kind":"event","epo')
        size = sum(os.path.getsize(p) for p in paths) / 1e6
        options = {
            "aws_endpoint_url": endpoint,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
            "aws_region": "us-east-1",
            "aws_allow_http": "true",
        }
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=30
        ).read()
        store = S3Store(
            BUCKET,
            endpoint=endpoint,
            access_key_id="bench",
            secret_access_key="bench",
            region="us-east-1",
            client_options={"allow_http": True},
        )
        for p in paths:
            obstore.put(store, f"runs/{Path(p).name}", Path(p).read_bytes())
        urls = [f"s3://{BUCKET}/runs/{Path(p).name}" for p in paths]

        env = {**os.environ, **{k.upper(): v for k, v in options.items()}}
        gradlog = [sys.executable, "-m", "gradlog", "batch", "--format", "csv", "-o", os.devnull]
        commands = {
            "local": [*gradlog, str(folder / "*.jsonl")],
            "object store": [*gradlog, f"s3://{BUCKET}/runs/*.jsonl"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        os.environ.update(env)  # the AWS_* environment, as a user would set it
        asked = []  # requests one remote batch made of the server
        for _ in range(args.repeat):
            for name, command in commands.items():
                before = _requests(log)
                wall, _, _ = measure(command, stdout=subprocess.DEVNULL, ok=(0, 1))
                times[name].append(wall)
                if name == "object store":
                    asked.append(_requests(log) - before)
        whole = [(u, p) for u, p in zip(urls, paths) if p not in cut]  # what one scan reads
        parts = breakdown([u for u, _ in whole], [p for _, p in whole], options, log)

    print(
        f"{args.runs} runs x {args.events} events ({args.cut} cut), {size:.1f} MB of JSON Lines; "
        "load average "
        f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    for name in commands:
        print(f"gradlog batch ({name:12s}) median {statistics.median(times[name]):6.2f} s")
    ratios = [r / b for r, b in zip(times["object store"], times["local"])]
    print(f"object store / local: {statistics.median(ratios):.2f}x")
    print(f"requests to the server per remote batch: {statistics.median(asked):.0f}")
    print("in process:")
    for name, (seconds, requests) in parts.items():
        print(f"  {name:44s} {seconds:6.2f} s  {requests:5d} requests to the server")


if __name__ == "__main__":
    main()
