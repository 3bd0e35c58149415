"""``gradlog compare BASE HEAD``: did this change make training worse?

Both sides are judged by the one engine (as ``gradlog batch``); a change is shown as a factor
(``x28 lower``, ``x1.5 higher``, ``same``). The comparison of two sample logs is pinned byte for
byte under ``tests/golden/compare/`` (regenerate with ``--update-golden``, review the diff).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import GOLDEN, run_gradlog
from runlogs import gradlog_many, write_run

from gradlog.analysis.compare import Pair, pair_runs
from gradlog.analysis.model import RunSummary
from gradlog.analysis.render.compare import factor_text
from gradlog.analysis.status import Status

# the window's geometric mean passes 5 at the 7th sample (5.60): a collapse from epoch 35
COLLAPSE = [1.0, 2.5, 6.0, 8.0, 10.0, 12.0, 12.0]
HEALTHY = [1.0, 1.1, 0.9, 1.0]
# type's loss weighted by 0.02: the gradient of its weighted loss is about 30 times smaller
# than pointer's, though unweighted (divided by the weight) the two are within 2x
STARVED = [28.0, 30.0, 32.0, 29.0, 31.0, 30.0]


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    base, head = root / "base", root / "head"
    for d in (base, head):
        (d / "nested").mkdir(parents=True)
    write_run(base / "a.jsonl", HEALTHY, run="base-a")
    write_run(head / "a.jsonl", COLLAPSE, run="head-a")  # got worse
    write_run(base / "nested" / "b.jsonl", [1.0] * 4, [0.001] * 4, run="b")
    write_run(head / "nested" / "b.jsonl", [1.0] * 4, run="b")  # got better
    write_run(base / "gone.jsonl", [1.0] * 4, run="gone")
    write_run(head / "new.jsonl", [2.5] * 4, run="new")
    write_run(
        root / "starved.jsonl", STARVED, run="starved", weights={"pointer": 1.0, "type": 0.02}
    )
    return {"base": base, "head": head, "starved": root / "starved.jsonl"}


@pytest.fixture(scope="module")
def results(sides: dict[str, Path]) -> dict:
    b, h, s = str(sides["base"]), str(sides["head"]), str(sides["starved"])
    calls = {
        "sets": ("compare", b, h, "--format", "json", "--fail-on", "collapse"),
        "table": ("compare", b, h),
        "markdown": ("compare", b, h, "--format", "markdown", "--fail-on", "collapse"),
        "one": ("compare", f"{b}/a.jsonl", f"{h}/a.jsonl", "--fail-on", "significant"),
        "reverse": ("compare", f"{h}/a.jsonl", f"{b}/a.jsonl", "--fail-on", "collapse"),
        "minor": ("compare", f"{b}/a.jsonl", f"{h}/new.jsonl", "--fail-on", "collapse"),
        "broken": ("compare", f"{b}/a.jsonl", f"{h}/missing.jsonl"),
        "starved": ("compare", f"{b}/a.jsonl", s, "--fail-on", "collapse"),
        "starved-json": ("compare", f"{b}/a.jsonl", s, "--format", "json"),
        "starved-md": ("compare", f"{b}/a.jsonl", s, "--format", "markdown"),
        "unweighted": ("compare", f"{b}/a.jsonl", s, "--fail-on", "collapse", "--unweighted"),
    }
    return dict(zip(calls, gradlog_many(list(calls.values()))))


def test_sets_are_paired_by_file(results: dict) -> None:
    result = results["sets"]
    assert result.returncode == 1, result.stderr  # a.jsonl collapsed in the head
    data = json.loads(result.stdout)
    assert data["gradlog_compare"] == 2
    changes = {p["run"]: p["change"] for p in data["pairs"]}
    assert changes == {"base-a → head-a": "worse", "b": "better", "new": "new", "gone": "gone"}
    assert data["summary"] == {"worse": 1, "better": 1, "new": 1, "gone": 1}
    assert data["regressions"] == [{"level": "collapse", "run": "base-a → head-a"}]
    assert data["errors"] == []
    worse = next(p for p in data["pairs"] if p["change"] == "worse")
    assert worse["base"]["status"] == "healthy" and worse["head"]["status"] == "collapse"
    assert worse["base"]["spread"] == pytest.approx(1 / statistics.geometric_mean(HEALTHY))
    assert worse["head"]["spread"] == pytest.approx(statistics.geometric_mean(COLLAPSE))
    assert worse["head"]["first_collapse"] == "Epoch 35"
    assert worse["spread_factor"] == worse["head"]["spread"] / worse["base"]["spread"]
    assert worse["mean_norm_factor"] == 1.0
    better = next(p for p in data["pairs"] if p["change"] == "better")
    assert better["mean_norm_factor"] == pytest.approx(250.0)  # 0.001 -> 0.25
    for p in data["pairs"]:
        if p["change"] in ("new", "gone"):
            assert p["spread_factor"] is None and p["mean_norm_factor"] is None
    assert b"findings reach --fail-on collapse" in result.stderr


def test_table_and_exit_code_without_fail_on(results: dict) -> None:
    result = results["table"]
    assert result.returncode == 0
    text = result.stdout.decode()
    lines = {line.split("  ")[0]: line.split() for line in text.splitlines()[2:-2]}
    factor = statistics.geometric_mean(COLLAPSE) * statistics.geometric_mean(HEALTHY)
    worse = lines["base-a → head-a"]
    assert worse[3:9] == ["healthy", "collapse", "worse", "1.00", "5.60", f"x{factor:.3g}"]
    assert worse[9] == "higher" and worse[-1] == "unchanged"  # the mean norm did not change
    better = lines["b"]
    assert better[1:8] == ["vanishing", "healthy", "better", "1.00", "1.00", "unchanged", "0.0010"]
    assert better[-3:] == ["0.2500", "x250", "higher"]
    assert lines["new"][1:4] == ["–", "minor", "new"]
    assert lines["gone"][1:4] == ["healthy", "–", "gone"]
    assert text.rstrip().splitlines()[-1] == "training got worse in 1 of 4 runs"


def test_markdown(results: dict) -> None:
    text = results["markdown"].stdout.decode()
    assert text.startswith(
        "## \N{CROSS MARK} gradlog compare: regression past --fail-on collapse in 1 of 4 runs"
    )
    assert "**1 worse, 1 better, 1 new, 1 gone**" in text
    assert (
        "| Run | Base | Head | Change | Spread (base → head) | Spread change "
        "| Mean norm (base → head) | Norm change |"
    ) in text
    assert "\N{CROSS MARK} worse" in text and "| 1.00 → 5.60 | x5.59 higher |" in text
    assert "| 0.0010 → 0.2500 | x250 higher |" in text
    assert "### Details" in text and "collapse from Epoch 35" in text
    assert "try ` --loss-alpha 5.6 --loss-beta 1 `" in text


def test_two_single_runs(results: dict) -> None:
    assert results["one"].returncode == 1
    assert results["reverse"].returncode == 0  # collapse -> healthy is no regression
    assert "better" in results["reverse"].stdout.decode()
    assert "x5.59 lower" in results["reverse"].stdout.decode()
    assert results["minor"].returncode == 0  # minor imbalance does not reach collapse
    assert results["broken"].returncode == 2


def test_a_starved_task_is_worse_than_a_healthy_base(results: dict) -> None:
    table = results["starved"]
    assert table.returncode == 1, table.stderr  # --fail-on collapse
    assert b"findings reach --fail-on collapse" in table.stderr
    (row,) = [line.split() for line in table.stdout.decode().splitlines()[2:-2] if line]
    assert row[:6] == ["base-a", "→", "starved", "healthy", "collapse", "worse"]
    spread = statistics.geometric_mean(STARVED)
    factor = spread * statistics.geometric_mean(HEALTHY)
    assert row[6:10] == ["1.00", f"{spread:.2f}", f"x{factor:.3g}", "higher"]
    assert table.stdout.decode().rstrip().splitlines()[-1] == (
        "regression past --fail-on collapse in 1 of 1 runs"
    )
    (pair,) = json.loads(results["starved-json"].stdout)["pairs"]
    assert pair["change"] == "worse"
    assert (pair["head"]["dominant"], pair["head"]["starved"]) == ("pointer", "type")
    assert pair["head"]["first_collapse"] == "Epoch 15"  # from the 3rd sample
    assert pair["spread_factor"] == pytest.approx(factor, rel=1e-12)
    # the remedy raises the starved task's weight: 0.02 x the spread
    assert pair["head"]["weights"]["type"] == pytest.approx(0.02 * spread, rel=1e-12)
    markdown = results["starved-md"].stdout.decode()
    assert f"| x{factor:.3g} higher |" in markdown
    assert "\N{CROSS MARK} collapse | \N{CROSS MARK} worse |" in markdown


def test_unweighted_norms_judge_the_losses_themselves(results: dict) -> None:
    """Divided by its weight, the starved task's norm is within the healthy band."""
    result = results["unweighted"]
    assert result.returncode == 0, result.stderr
    (row,) = [line.split() for line in result.stdout.decode().splitlines()[2:-2] if line]
    assert row[3:6] == ["healthy", "healthy", "same"]


# -- the pieces ---------------------------------------------------------------------------------


def _row(
    source: str, run: str, status: Status = Status.HEALTHY, **numbers: float | None
) -> RunSummary:
    return RunSummary(source=source, run=run, status=status, **numbers)


def test_pairing_rules() -> None:
    base = [_row("/b/x.jsonl", "r1"), _row("/b/x.jsonl", "r2"), _row("/b/y.jsonl", "same")]
    head = [_row("/h/x.jsonl", "q1"), _row("/h/x.jsonl", "r2"), _row("/h/z.jsonl", "same")]
    pairs = pair_runs(base, head, "/b", "/h")
    names = {(p.base.run if p.base else None, p.head.run if p.head else None) for p in pairs}
    # x.jsonl r2 by file and id; x.jsonl r1 and q1 by position; "same" by a unique id
    assert names == {("r2", "r2"), ("r1", "q1"), ("same", "same")}


def test_unreadable_rows_are_never_paired() -> None:
    base = [_row("/b/x.jsonl", "r1"), RunSummary("/b/bad.jsonl", None, Status.ERROR, error="e")]
    head = [_row("/h/x.jsonl", "r1")]
    (pair,) = pair_runs(base, head, "/b", "/h")
    assert pair.base is base[0] and pair.head is head[0]


def test_pair_change_and_name() -> None:
    healthy, collapse = _row("a", "a"), _row("a", "a", Status.COLLAPSE)
    assert Pair(healthy, collapse).change == "worse"
    assert Pair(collapse, healthy).change == "better"
    assert Pair(healthy, healthy).change == "same"
    assert Pair(None, healthy).change == "new"
    assert Pair(healthy, None).change == "gone"
    assert Pair(healthy, collapse).name == "a"
    assert Pair(_row("x.jsonl", "a"), _row("x.jsonl", "b")).name == "a → b"
    assert Pair(_row("runs/x.jsonl", ""), None).name == "x"  # no id: the file's stem


def test_pair_factor() -> None:
    base = _row("a", "a", spread=2.0, mean_norm=0.5)
    assert Pair(base, _row("a", "a", spread=56.0, mean_norm=0.25)).factor("spread") == 28.0
    assert Pair(base, _row("a", "a", spread=56.0, mean_norm=0.25)).factor("mean_norm") == 0.5
    assert Pair(base, _row("a", "a", spread=None)).factor("spread") is None
    assert Pair(_row("a", "a", spread=0.0), base).factor("spread") is None  # nothing to scale
    to_zero = Pair(_row("a", "a", mean_norm=1.0), _row("a", "a", mean_norm=0.0))
    assert to_zero.factor("mean_norm") == 0.0
    assert Pair(base, None).factor("spread") is None


@pytest.mark.parametrize(
    ("factor", "text"),
    [
        (1 / 28, "x28 lower"),
        (28.0, "x28 higher"),
        (1.5, "x1.5 higher"),
        (1 / 1.5, "x1.5 lower"),
        (1.0, "unchanged"),
        (1.004, "unchanged"),  # shown at 3 digits, x1.00: no change to show
        (1 / 1.004, "unchanged"),
        (1.006, "x1.01 higher"),
        (1 / 1.006, "x1.01 lower"),
        (0.0, "to zero"),
        (None, "–"),
        (2.5e7, "x2.50e+07 higher"),
        (1 / 2.5e7, "x2.50e+07 lower"),
    ],
)
def test_factor_text(factor: float | None, text: str) -> None:
    assert factor_text(factor) == text


# -- golden output: a healthy run against a collapsed one ---------------------------------------

SAMPLES = ("sample_logs/healthy.jsonl", "sample_logs/pointer_collapse.jsonl")


def _check(name: str, text: str, update: bool) -> None:
    golden = GOLDEN / "compare" / name
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden}")
    assert golden.exists(), f"no golden file {golden}; run pytest --update-golden"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("fmt", "name"), [("table", "table.txt"), ("markdown", "compare.md"), ("json", "compare.json")]
)
def test_sample_compare_matches_golden(fmt: str, name: str, update_golden: bool) -> None:
    result = run_gradlog("compare", *SAMPLES, "--format", fmt)
    assert result.returncode == 0, result.stderr.decode()  # worse, but no --fail-on
    assert result.stderr == b""
    text = result.stdout.decode("utf-8")
    if fmt == "json":
        (pair,) = json.loads(text)["pairs"]
        assert pair["change"] == "worse" and pair["spread_factor"] > 1
    else:
        assert "x18.7 higher" in text and "x1.99 lower" in text
    _check(name, text, update_golden)


def test_sample_compare_fails_on_collapse() -> None:
    result = run_gradlog("compare", *SAMPLES, "--fail-on", "collapse")
    assert result.returncode == 1
    assert result.stderr.decode() == "gradlog: findings reach --fail-on collapse\n"
