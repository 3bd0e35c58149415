"""``-o`` means the same in every command (docs/report.md, "Writing to a file"): an existing
file is replaced only with ``--force``, never when it is one of the command's own inputs, and a
device (``/dev/null``) is written to as it is. Checked before any work, by the real commands."""

from __future__ import annotations

import pytest
from runlogs import ROOT, gradlog_many

SAMPLE = ROOT / "sample_logs" / "healthy.jsonl"
PRECIOUS = b"precious\n"


def _commands() -> dict[str, tuple[list[str], str]]:
    """command -> (its arguments before -o, the output's name)"""
    s = str(SAMPLE)
    out = {
        "report": (["report", s, "--format", "markdown"], "report.md"),
        "batch": (["batch", s, "--format", "csv"], "batch.csv"),
        "compare": (["compare", s, s, "--format", "json"], "compare.json"),
        "convert": (["convert", s], "copy.parquet"),
    }
    if _has_matplotlib():
        out["plot"] = (["plot", s], "plot.svg")
    return out


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("overwrite")
    commands = _commands()
    calls, keys = [], []
    for name, (args, target) in commands.items():
        for force in (False, True):
            path = tmp / f"{'forced' if force else 'kept'}-{target}"
            path.write_bytes(PRECIOUS)
            calls.append((*args, "-o", str(path), *(["--force"] if force else [])))
            keys.append((name, force, path))
    # an input named as the output: refused even with --force (by name, by glob, in a folder)
    logs = tmp / "logs"
    logs.mkdir()
    own = logs / "run.jsonl"
    own.write_bytes(SAMPLE.read_bytes())
    for name, args in {
        "report-self": ["report", str(own)],
        "convert-self": ["convert", str(own)],
        "batch-folder": ["batch", str(logs)],
        "batch-glob": ["batch", str(logs / "*.jsonl")],
        "compare-head": ["compare", str(SAMPLE), str(own)],
    }.items():
        calls.append((*args, "-o", str(own), "--force"))
        keys.append((name, True, own))
    results = gradlog_many(calls)
    return {"results": dict(zip([k[:2] for k in keys], results)), "paths": keys, "own": own}


def _one_line(result) -> str:
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2, result.stderr.decode()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name", ["report", "batch", "compare", "convert", "plot"])
def test_an_existing_file_is_kept_without_force(runs: dict, name: str) -> None:
    if (name, False) not in runs["results"]:
        pytest.skip("matplotlib is not installed")
    path = next(p for n, f, p in runs["paths"] if (n, f) == (name, False))
    line = _one_line(runs["results"][name, False])
    assert line == f"Error: {path}: exists; pass --force to overwrite it"
    assert path.read_bytes() == PRECIOUS


@pytest.mark.parametrize("name", ["report", "batch", "compare", "convert", "plot"])
def test_force_replaces_it(runs: dict, name: str) -> None:
    if (name, True) not in runs["results"]:
        pytest.skip("matplotlib is not installed")
    path = next(p for n, f, p in runs["paths"] if (n, f) == (name, True))
    result = runs["results"][name, True]
    assert result.returncode == 0, result.stderr.decode()
    assert path.read_bytes() != PRECIOUS and path.stat().st_size > 100


@pytest.mark.parametrize(
    "name", ["report-self", "convert-self", "batch-folder", "batch-glob", "compare-head"]
)
def test_an_input_is_never_overwritten_even_with_force(runs: dict, name: str) -> None:
    own = runs["own"]
    line = _one_line(runs["results"][name, True])
    assert line == f"Error: {own}: is one of this command's inputs; write the output elsewhere"
    assert own.read_bytes() == SAMPLE.read_bytes()
