"""Object storage as a source: a real S3-compatible server (moto's) on loopback, started and
stopped here, with its authentication on, read through the real CLI and the API.

The bucket holds the same files as a local folder, so every answer from storage is checked
against gradlog's answer on disk: a glob of seven logs (one cut by a crash) is seven rows and
the cut one is recovered with the note a local file gets; a prefix lists every log below it;
a hive-partitioned dataset is one source; ``report`` on a URL is ``report`` on the file. What
cannot be read is one row (a missing object, a missing bucket) or, when nothing can be (bad
credentials, bad ``--storage-option``, obstore not installed), one line and exit 2.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from moto.server import ThreadedMotoServer  # the test extra: these tests never skip
from runlogs import gradlog, to_parquet, write_run

from gradlog.analysis import api

BUCKET = "runs"
CUT = b'{"v":1,"run":"r6","kind":"event","epo'  # a recorder killed mid-write


@dataclass(frozen=True)
class Store:
    endpoint: str
    options: dict[str, str]  # Polars' storage_options, as --storage-option takes them
    env: dict[str, str]  # the same, as the AWS_* environment
    local: Path  # the same files on disk


def _moto_api(endpoint: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(
        endpoint + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def _files(local: Path) -> None:
    """Seven runs (the last cut short), one below them, a file that is no log, a hive dataset
    and a Parquet log."""
    archive = local / "archive"
    archive.mkdir()
    for i in range(7):
        write_run(archive / f"r{i}.jsonl", [1.0 + i] * 8, run=f"r{i}")
    with open(archive / "r6.jsonl", "ab") as fh:
        fh.write(CUT)
    (archive / "sub").mkdir()
    write_run(archive / "sub" / "deep.jsonl", [1.0] * 8, run="deep")
    (archive / "readme.txt").write_text("not a log\n")
    side = local.parent / "side"
    side.mkdir()
    frames = []
    for run, ratios in (("h1", [12.0] * 8), ("h2", [1.0] * 8)):
        # (named apart from test_batch.py's h1.jsonl, which its fixture finds by name)
        source = write_run(side / f"dataset-{run}.jsonl", ratios, run=run)
        frames.append(pl.read_parquet(to_parquet(source, side / f"dataset-{run}.parquet")))
    pl.concat(frames, how="vertical_relaxed").write_parquet(
        local / "datasets" / "hive", partition_by=["run"]
    )
    to_parquet(archive / "r0.jsonl", local / "parquet" / "p.parquet")
    broken = local / "broken"
    broken.mkdir()
    write_run(broken / "a.jsonl", [1.0] * 8, run="a")
    corrupt = write_run(broken / "b.jsonl", [1.0] * 8, run="b").read_bytes().splitlines(True)
    (broken / "b.jsonl").write_bytes(b"".join(corrupt[:3] + [b"{not json\n"] + corrupt[3:]))
    cut = write_run(broken / "c.jsonl", [4.0] * 8, run="c")
    with open(cut, "ab") as fh:
        fh.write(CUT.replace(b"r6", b"c"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    import boto3

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        setup = {
            "endpoint_url": endpoint,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
            "region_name": "us-east-1",
        }
        # a user allowed everything, then authentication on: wrong keys are refused from here
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="reader")
        allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        iam.put_user_policy(
            UserName="reader",
            PolicyName="all",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow]}),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        s3 = boto3.client("s3", **setup)
        s3.create_bucket(Bucket=BUCKET)
        local = tmp_path_factory.mktemp("store") / "bucket"
        local.mkdir()
        _files(local)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            s3.put_object(
                Bucket=BUCKET, Key=path.relative_to(local).as_posix(), Body=path.read_bytes()
            )
        _moto_api(endpoint, "/moto-api/reset-auth", b"0")
        options = {
            "aws_endpoint_url": endpoint,
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
            "aws_region": "us-east-1",
            "aws_allow_http": "true",
        }
        yield Store(endpoint, options, {k.upper(): v for k, v in options.items()}, local)
    finally:
        _moto_api(endpoint, "/moto-api/reset-auth", b"inf")
        server.stop()


def _url(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def _as_local(frame: pl.DataFrame, store: Store, column: str = "file") -> pl.DataFrame:
    """A frame read from storage with its URLs written as the local paths of the same files."""
    prefix = str(store.local) + "/"
    return frame.with_columns(
        pl.col(column).str.replace(f"s3://{BUCKET}/", prefix, literal=True),
        *(
            [
                pl.col("notes").list.eval(
                    pl.element().str.replace(f"s3://{BUCKET}/", prefix, literal=True)
                )
            ]
            if "notes" in frame.columns
            else []
        ),
    )


def test_a_glob_is_read_object_by_object_and_a_cut_log_recovered(store: Store) -> None:
    remote = api.batch(_url("archive/*.jsonl"), storage_options=store.options)
    local = api.batch(str(store.local / "archive" / "*.jsonl"))
    assert remote.height == 7
    assert remote["file"].to_list() == [_url(f"archive/r{i}.jsonl") for i in range(7)]
    assert remote["error"].null_count() == 7
    cut = remote.filter(pl.col("run") == "r6")
    assert cut["notes"].to_list() == [
        [
            f"s3://{BUCKET}/archive/r6.jsonl:10: skipped a partly written last line ({len(CUT)} bytes)"
        ]
    ]
    assert _as_local(remote, store).equals(local)


def test_a_broken_object_is_its_own_row_beside_a_cut_one(store: Store) -> None:
    """A line that is no JSON (the object ends whole) and a cut last line in the same scan:
    each object found and read by the careful reader, with the notes a file on disk gets."""
    remote = api.batch(_url("broken/"), storage_options=store.options)
    local = api.batch(str(store.local / "broken"))
    assert remote["run"].to_list() == ["a", "b", "c"]
    assert remote["error"].null_count() == 3
    assert [len(n) for n in remote["notes"]] == [0, 1, 1]
    assert remote["notes"][1][0].startswith(_url("broken/b.jsonl:4: skipped"))
    assert _as_local(remote, store).equals(local)


def test_a_prefix_lists_every_log_below_it(store: Store) -> None:
    every = [_url(f"archive/r{i}.jsonl") for i in range(7)] + [_url("archive/sub/deep.jsonl")]
    for given in ("archive/", "archive", "archive/**/*.jsonl"):
        rows = api.batch(_url(given), storage_options=store.options)
        assert sorted(rows["file"].to_list()) == sorted(every), given  # readme.txt left out


def test_a_hive_dataset_is_one_source(store: Store) -> None:
    remote = api.batch(_url("datasets/"), storage_options=store.options)
    local = api.batch(str(store.local / "datasets"))
    assert remote["run"].to_list() == ["h1", "h2"]
    assert remote["file"].unique().to_list() == [_url("datasets/hive/")]
    assert remote.drop("file").equals(local.drop("file"))


def test_read_takes_urls(store: Store) -> None:
    remote = api.read(
        [_url("archive/r*.jsonl"), _url("parquet/p.parquet")], storage_options=store.options
    )
    local = api.read(
        [str(store.local / "archive" / "r*.jsonl"), str(store.local / "parquet" / "p.parquet")]
    )
    assert _as_local(remote, store, "source").equals(local)


def test_missing_objects_and_buckets_are_rows(store: Store, tmp_path: Path) -> None:
    done = gradlog(
        "batch",
        _url("archive/r0.jsonl"),
        _url("archive/nope.jsonl"),
        _url("nothing/*.jsonl"),
        "s3://no-such-bucket/run.jsonl",
        "--format",
        "csv",
        env=store.env,
    )
    assert done.returncode == 2, done.stderr
    rows = {r["file"]: r for r in csv_rows(done.stdout)}
    assert rows[_url("archive/r0.jsonl")]["status"] == "healthy"
    assert rows[_url("archive/nope.jsonl")]["error"] == "no such object"
    assert rows[_url("nothing/*.jsonl")]["error"] == "no object matches"
    assert rows["s3://no-such-bucket/run.jsonl"]["error"] == "no such bucket"
    done = gradlog("report", _url("archive/nope.jsonl"), env=store.env)
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"Error: {_url('archive/nope.jsonl')}: no such object"
    ]


def csv_rows(text: bytes) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text.decode())))


def test_report_on_a_url_is_report_on_the_file(store: Store) -> None:
    """The storage options given as --storage-option (no environment): a cut log's report and
    note, word for word those of the same file on disk."""
    flags = [a for k, v in store.options.items() for a in ("--storage-option", f"{k}={v}")]
    remote = gradlog("report", _url("archive/r6.jsonl"), "--format", "json", *flags)
    local = gradlog("report", str(store.local / "archive" / "r6.jsonl"), "--format", "json")
    assert remote.returncode == local.returncode == 0, remote.stderr
    here = str(store.local).encode() + b"/"
    there = f"s3://{BUCKET}/".encode()
    assert remote.stdout.replace(there, here) == local.stdout
    assert remote.stderr.replace(there, here) == local.stderr
    assert b"partly written last line" in remote.stderr


def test_bad_credentials_are_one_line(store: Store) -> None:
    for wrong in ("aws_secret_access_key=wrong", "aws_access_key_id=AKIANOTKNOWN"):
        done = gradlog("batch", _url("archive/*.jsonl"), "--storage-option", wrong, env=store.env)
        assert done.returncode == 2
        assert not done.stdout
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert "access denied" in lines[0] and _url("archive/*.jsonl") in lines[0]


def test_bad_storage_option_syntax_is_one_line(store: Store) -> None:
    done = gradlog("report", _url("archive/r0.jsonl"), "--storage-option", "aws_region")
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        "Error: --storage-option 'aws_region': expected KEY=VALUE (as aws_region=eu-west-1)"
    ]


def test_without_obstore_a_url_names_the_install(tmp_path: Path) -> None:
    blocked = tmp_path / "obstore"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('obstore is not installed')\n")
    done = gradlog("report", _url("archive/r0.jsonl"), env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "pip install obstore" in lines[0], lines


def test_compare_and_convert_take_urls(store: Store, tmp_path: Path) -> None:
    remote = gradlog(
        "compare",
        _url("archive/r0.jsonl"),
        _url("archive/r5.jsonl"),
        "--format",
        "json",
        env=store.env,
    )
    local = gradlog(
        "compare",
        str(store.local / "archive" / "r0.jsonl"),
        str(store.local / "archive" / "r5.jsonl"),
        "--format",
        "json",
    )
    assert remote.returncode == local.returncode, remote.stderr
    here = str(store.local).encode() + b"/"
    assert remote.stdout.replace(f"s3://{BUCKET}/".encode(), here) == local.stdout
    done = gradlog(
        "convert", _url("archive/r6.jsonl"), "-o", str(tmp_path / "r6.parquet"), env=store.env
    )
    assert done.returncode == 0, done.stderr
    assert b"partly written last line" in done.stderr
    assert (
        api.read(tmp_path / "r6.parquet")
        .drop("source")
        .equals(api.read(store.local / "archive" / "r6.jsonl").drop("source"))
    )


def test_an_unreachable_endpoint_is_one_line(store: Store) -> None:
    with socket.socket() as closed:  # bound, never listening: a connection is refused at once
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        done = gradlog(
            "report",
            _url("archive/r0.jsonl"),
            "--storage-option",
            f"aws_endpoint_url={endpoint}",
            "--storage-option",
            "max_retries=0",
            env=store.env,
        )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot reach the object store" in lines[0], lines


def test_an_html_batch_details_the_runs_it_read_from_storage(store: Store, tmp_path: Path) -> None:
    """``--format html`` reads its detailed runs again for their charts, with the same
    ``--storage-option``s: every run of the glob has its section, as on disk."""
    flags = [a for k, v in store.options.items() for a in ("--storage-option", f"{k}={v}")]
    page = tmp_path / "runs.html"
    result = gradlog("batch", _url("archive/*.jsonl"), "--format", "html", "-o", str(page), *flags)
    assert result.returncode == 0, result.stderr
    text = page.read_text(encoding="utf-8")
    assert text.count("<section>") == 7 and text.count('href="#run-') == 7


def test_a_summary_table_reads_only_new_or_changed_objects(store: Store, tmp_path: Path) -> None:
    """``--summary`` over a prefix: an object's stamp is its ETag, so an unchanged object is not
    read again, a rewritten or new one is, and the rows are those of a full batch."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.options["aws_access_key_id"],
        aws_secret_access_key=store.options["aws_secret_access_key"],
        region_name="us-east-1",
    )

    def put(key: str, run: int) -> None:
        body = (store.local / "archive" / f"r{run}.jsonl").read_bytes()
        s3.put_object(Bucket=BUCKET, Key=f"incremental/{key}", Body=body)

    for i in range(3):
        put(f"r{i}.jsonl", i)
    prefix, summary = _url("incremental/"), tmp_path / "summary.parquet"
    first = api.batch_result(prefix, storage_options=store.options, summary=summary)
    assert first.n_read == 3 and pl.read_parquet(summary)["stamp"].null_count() == 0
    assert api.batch_result(prefix, storage_options=store.options, summary=summary).n_read == 0
    put("r0.jsonl", 4)  # rewritten: a new ETag
    put("r9.jsonl", 5)  # new
    later = api.batch_result(prefix, storage_options=store.options, summary=summary)
    assert later.n_read == 2
    full = api.batch(prefix, storage_options=store.options)
    assert pl.read_parquet(summary).drop("source", "stamp").equals(full)
    assert full["run"].to_list() == ["r4", "r1", "r2", "r5"]
