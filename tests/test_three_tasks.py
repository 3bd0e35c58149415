"""Every task is judged: a real three-task model whose third task is starved.

A shared MLP with three heads (price and volume regression, a three-class regime), trained with
the real recorder. With the regime's loss weight at 0.005 its weighted gradient is starved:
``report``, ``batch`` and ``compare`` must all find the collapse (and name the starved task),
whatever the order of the tasks and whichever pair messages print, and exit 1 under
``--fail-on collapse``. With balanced weights none of them does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_gradlog

torch = pytest.importorskip("torch")

from gradlog import GradientRecorder  # noqa: E402

TASKS = ["price", "volume", "regime"]


def train(path: Path, weights: dict[str, float], *, epochs: int = 12, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    n, features = 256, 8
    x = torch.randn(n, features)
    price = (x[:, :3].sum(dim=1, keepdim=True) / 3).detach()
    volume = (x[:, 3:6].sum(dim=1, keepdim=True) / 3).detach()
    regime = (x[:, 6] > 0.5).long() + (x[:, 7] > 0.5).long()  # three classes

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = torch.nn.Sequential(torch.nn.Linear(features, 32), torch.nn.ReLU())
            self.price = torch.nn.Linear(32, 1)
            self.volume = torch.nn.Linear(32, 1)
            self.regime = torch.nn.Linear(32, 3)

        def forward(self, inputs):
            h = self.trunk(inputs)
            return self.price(h), self.volume(h), self.regime(h)

    model = Model()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    with GradientRecorder(
        model, TASKS, path, weights=weights, log_every=1, balance_every=1, tags={"seed": str(seed)}
    ) as rec:
        for epoch in range(1, epochs + 1):
            for start in range(0, n, 64):
                batch = slice(start, start + 64)
                optimiser.zero_grad()
                p, v, r = model(x[batch])
                losses = {
                    "price": torch.nn.functional.mse_loss(p, price[batch]),
                    "volume": torch.nn.functional.mse_loss(v, volume[batch]),
                    "regime": torch.nn.functional.cross_entropy(r, regime[batch]),
                }
                rec.backward(losses, epoch=epoch)
                optimiser.step()
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("three")
    return {
        "starved": train(root / "starved.jsonl", {"price": 1.0, "volume": 1.0, "regime": 0.005}),
        "balanced": train(root / "balanced.jsonl", {"price": 1.0, "volume": 1.0, "regime": 1.0}),
    }


def test_report_finds_the_starved_third_task(logs: dict[str, Path]) -> None:
    result = run_gradlog("report", str(logs["starved"]), "--fail-on", "collapse")
    assert result.returncode == 1, result.stderr.decode()
    text = result.stdout.decode()
    # the collapse line names the real extremes, whichever two tasks come first in the log
    assert "TASK COLLAPSE DETECTED:" in text
    assert "Regime starved" in text
    summary = json.loads(run_gradlog("report", str(logs["starved"]), "--format", "json").stdout)
    (run,) = summary["runs"]
    assert run["status"] == "collapse"
    assert run["starved"] == "regime"
    assert run["spread"] > 5
    # the advice raises the starved task's weight, never the others'
    weights = run["advice"]["weights"]
    assert weights["regime"] > 0.005 and weights[run["dominant"]] == 1.0


def test_report_with_a_pair_of_healthy_tasks_still_judges_every_task(
    logs: dict[str, Path],
) -> None:
    """--pair price/volume prints that pair's ratio, names the extremes on one more line, and
    the verdict and exit code are the spread's."""
    result = run_gradlog(
        "report", str(logs["starved"]), "--pair", "price/volume", "--fail-on", "collapse"
    )
    assert result.returncode == 1
    text = result.stdout.decode()
    summary = text[text.index("[PHASE 4] Gradient Monitoring Summary") :].splitlines()
    assert summary[3].startswith("  Task balance: Tasks balanced (ratio=")  # price/volume
    assert summary[4].startswith("  TASK COLLAPSE DETECTED: Price task dominating (ratio=")
    assert "Regime starved" in text


def test_batch_and_compare_find_it_too(logs: dict[str, Path]) -> None:
    batch = run_gradlog(
        "batch",
        str(logs["starved"]),
        str(logs["balanced"]),
        "--format",
        "json",
        "--fail-on",
        "collapse",
    )
    assert batch.returncode == 1
    rows = {Path(r["file"]).stem: r for r in json.loads(batch.stdout)["runs"]}
    assert rows["starved"]["status"] == "collapse"
    assert rows["starved"]["starved"] == "regime"
    assert rows["balanced"]["status"] != "collapse"
    # the batch ranks the starved run first
    assert Path(json.loads(batch.stdout)["runs"][0]["file"]).stem == "starved"

    compare = run_gradlog(
        "compare",
        str(logs["balanced"]),
        str(logs["starved"]),
        "--fail-on",
        "collapse",
        "--format",
        "json",
    )
    assert compare.returncode == 1
    (pair,) = json.loads(compare.stdout)["pairs"]
    assert pair["change"] == "worse"
    assert pair["head"]["status"] == "collapse"


def test_balanced_weights_are_not_a_collapse(logs: dict[str, Path]) -> None:
    for command in (
        ("report", str(logs["balanced"])),
        ("batch", str(logs["balanced"])),
        ("compare", str(logs["balanced"]), str(logs["balanced"])),
    ):
        result = run_gradlog(*command, "--fail-on", "collapse")
        assert result.returncode == 0, (command, result.stdout.decode(), result.stderr.decode())
        assert "collapse" not in result.stdout.decode().lower().replace("first collapse", "")


def test_the_same_numbers_from_report_batch_and_api(logs: dict[str, Path]) -> None:
    from gradlog.analysis import api as gradlog

    report = gradlog.analyse(logs["starved"]).runs[0].summary
    row = gradlog.batch(logs["starved"]).row(0, named=True)
    data = json.loads(run_gradlog("report", str(logs["starved"]), "--format", "json").stdout)
    run = data["runs"][0]
    for field in ("spread", "window_ratio", "worst_spread"):
        assert getattr(report, field) == row[field] == run[field]
    assert report.status.value == row["status"] == run["status"]
    assert report.first_collapse == row["first_collapse"] == run["first_collapse"]
    assert math.isfinite(report.spread)
