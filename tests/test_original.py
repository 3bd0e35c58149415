"""``--original``: the original monitor's lines, held to a re-implementation of it written from
the spec (``tests/original_monitor.py``), and the same rules in every command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import run_gradlog
from original_monitor import Epoch, console

from gradlog.recorder.writers import JsonlWriter

SEPARATOR = "-" * 60


def write_log(path: Path, epochs: list[Epoch], weights: dict[str, float]) -> Path:
    """The log a recorder writes at the original's moments: statistics of every batch of a
    logged epoch, labelled with the loop's 0-based epoch, and the balance sample at the end of
    the epoch, labelled with the 1-based one, holding the *weighted* norms (raw x weight)."""
    writer = JsonlWriter(path)
    meta = {"tasks": ["pointer", "type"], "log_every": 10, "balance_every": 5}
    meta["weights"] = [{"name": t, "weight": w} for t, w in weights.items()]
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": meta})
    step = 0
    for e, epoch in enumerate(epochs):
        for mean, top in epoch.batches:
            step += 1
            event = {"epoch": e, "step": step, "mean_norm": mean, "max_norm": top}
            writer.write({"v": 1, "run": "r", "kind": "event", **event})
        if epoch.balance is not None:
            tasks = [
                {"name": name, "grad_norm": raw * weights[name], "weight": weights[name]}
                for name, raw in zip(("pointer", "type"), epoch.balance)
            ]
            event = {"epoch": e + 1, "step": step, "tasks": tasks}
            writer.write({"v": 1, "run": "r", "kind": "event", **event})
    writer.close()
    return path


def training(seed: int, drift: float, n_epochs: int = 60, batches: int = 3) -> list[Epoch]:
    """Plausible numbers: the raw pointer/type ratio drifts by ``drift`` a sample, with noise."""
    rng = random.Random(seed)
    epochs = []
    ratio = 1.0
    for e in range(n_epochs):
        epoch = Epoch()
        if e % 10 == 0:
            epoch.batches = [
                (rng.uniform(0.05, 0.5), rng.uniform(0.5, 3.0)) for _ in range(batches)
            ]
        if (e + 1) % 5 == 0:
            ratio *= drift * rng.uniform(0.8, 1.25)
            type_norm = rng.uniform(0.05, 0.5)
            epoch.balance = (ratio * type_norm, type_norm)
        epochs.append(epoch)
    return epochs


def report_lines(path: Path, *args: str) -> list[str]:
    result = run_gradlog("report", str(path), "--original", *args)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    return lines[: lines.index(SEPARATOR) - 1]  # the original's console ends with the summary


SETTINGS = {
    # name: (drift of the raw ratio per sample, loss weights)
    "balanced": (1.0, {"pointer": 1.0, "type": 1.0}),
    "type-starved": (0.7, {"pointer": 1.0, "type": 0.02}),
    "pointer-starved": (1.4, {"pointer": 0.02, "type": 1.0}),
}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_original_console_line_for_line(tmp_path, setting, seed):
    drift, weights = SETTINGS[setting]
    epochs = training(seed, drift)
    path = write_log(tmp_path / "run.jsonl", epochs, weights)
    assert report_lines(path) == console(epochs)


def test_the_settings_reach_every_verdict(tmp_path):
    """The settings above are not all balanced: the comparison covers collapse lines both
    ways, the gating of "Tasks balanced", and imbalance lines."""
    seen = set()
    for setting, (drift, _) in SETTINGS.items():
        lines = console(training(0, drift))
        seen |= {setting for line in lines if "COLLAPSE" in line}
        if setting == "balanced":
            assert any("Tasks balanced" in line for line in lines)
    assert seen == {"type-starved", "pointer-starved"}


def test_original_gating_prints_nothing_before_the_window_is_full(tmp_path):
    epochs = training(3, 1.0, n_epochs=45)  # nine balance samples: one short of the window
    lines = report_lines(write_log(tmp_path / "run.jsonl", epochs, {"pointer": 1, "type": 1}))
    assert not any("Task balance" in line for line in lines[:-1])
    assert lines[-1] == "  Task balance: Not enough data"


def test_original_judges_raw_norms_where_the_default_judges_weighted(tmp_path):
    """Issue 11's first point: a starved type weight makes the raw type norm dominate (the
    original's verdict) while the weighted pointer norm dominates (the second edition's)."""
    weights = {"pointer": 1.0, "type": 0.01}
    epochs = [Epoch(balance=(1.0, 10.0)) if (e + 1) % 5 == 0 else Epoch() for e in range(60)]
    path = write_log(tmp_path / "run.jsonl", epochs, weights)
    original = json.loads(run_gradlog("report", str(path), "--original", "--format", "json").stdout)
    default = json.loads(run_gradlog("report", str(path), "--format", "json").stdout)
    for data, dominant in ((original, "type"), (default, "pointer")):
        assert data["runs"][0]["final_band"] == "collapse"
        assert data["runs"][0]["dominant"] == dominant
    assert original["runs"][0]["original"] is True


@pytest.mark.parametrize("command", ["batch", "compare"])
def test_every_command_judges_by_the_same_original_rules(tmp_path, command):
    drift, weights = SETTINGS["type-starved"]
    path = write_log(tmp_path / "run.jsonl", training(0, drift), weights)
    report = json.loads(run_gradlog("report", str(path), "--original", "--format", "json").stdout)
    args = [str(path)] if command == "batch" else [str(path), str(path)]
    result = run_gradlog(command, *args, "--original", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    row = data["runs"][0] if command == "batch" else data["pairs"][0]["head"]
    summary = report["runs"][0]
    keys = ("status", "window_ratio", "final_band", "worst_band", "first_collapse")
    for key in (*keys, "first_imbalance"):
        assert row[key] == summary[key], key


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_live_echo_original_matches_the_offline_report(tmp_path, n_tasks):
    """A real model trained with one starved weight: the recorder's echo with ``original=True``
    prints what ``gradlog report --original`` prints of its log, the summary included."""
    import io

    torch = pytest.importorskip("torch")
    from gradlog import GradientRecorder

    torch.manual_seed(0)
    tasks = ["pointer", "type", "regime"][:n_tasks]
    trunk = torch.nn.Linear(6, 8)
    heads = torch.nn.ModuleList(torch.nn.Linear(8, 1) for _ in tasks)
    model = torch.nn.ModuleDict({"trunk": trunk, "heads": heads})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    weights = {t: w for t, w in zip(tasks, (1.0, 0.01, 0.5))}
    path, echo = tmp_path / "run.jsonl", io.StringIO()
    with GradientRecorder(
        model, tasks, path, weights=weights, log_every=10, balance_every=1, echo=echo, original=True
    ) as rec:
        for epoch in range(1, 26):
            x = torch.randn(16, 6)
            h = torch.relu(trunk(x))
            losses = {
                t: (head(h).squeeze(1) - x[:, i]).pow(2).mean()
                for i, (t, head) in enumerate(zip(tasks, heads))
            }
            optimizer.zero_grad()
            rec.backward(losses, epoch=epoch)
            optimizer.step()
    result = run_gradlog("report", str(path), "--original")
    assert result.returncode == 0, result.stderr.decode()
    report = result.stdout.decode()
    assert "Task balance: Tasks balanced" in report or "TASK COLLAPSE" in report
    assert echo.getvalue() == report[: report.index("\n" + SEPARATOR)]
