"""Real logs for the batch, compare, Markdown and plot tests, written with gradlog's own writer."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradlog.analysis.convert import convert_log
from gradlog.analysis.readers import read_log
from gradlog.recorder.writers import JsonlWriter

ROOT = Path(__file__).resolve().parent.parent


def write_run(
    path: Path,
    ratios: Sequence[float],
    mean_norms: Sequence[float] | None = None,
    *,
    tasks: Sequence[str] = ("pointer", "type"),
    run: str = "run1",
    weights: dict[str, float] | None = None,
    meta_tasks: bool = True,
    every: int = 5,
    by_steps: bool = False,
    tags: dict[str, str] | None = None,
) -> Path:
    """Append one run: a run record, then one event per ratio (stats on each event).

    The first task's norm is ``0.1 * ratio``, every other task's 0.1 (times its position, so
    three tasks differ). ``mean_norms`` defaults to a healthy 0.25.
    """
    mean_norms = list(mean_norms) if mean_norms is not None else [0.25] * len(ratios)
    weights = weights or {t: 1.0 for t in tasks}
    writer = JsonlWriter(path)
    cadence = "every_steps" if by_steps else "every"
    meta: dict = {
        f"log_{cadence}": every,
        f"balance_{cadence}": every,
        "weights": [{"name": t, "weight": w} for t, w in weights.items()],
        "tags": [{"key": k, "value": v} for k, v in (tags or {"seed": "0"}).items()],
    }
    if meta_tasks:
        meta["tasks"] = list(tasks)
    writer.write({"v": 1, "run": run, "kind": "run", "time": 1.0, "meta": meta})
    for i, (r, m) in enumerate(zip(ratios, mean_norms), start=1):
        norms = [0.1 * r] + [0.1 * (k + 1) for k in range(len(tasks) - 1)]
        writer.write(
            {
                "v": 1,
                "run": run,
                "kind": "event",
                "time": 1.0 + i,
                "epoch": every * i,
                "step": 50 * i,
                "mean_norm": m,
                "max_norm": 4 * m if math.isfinite(m) else m,
                "total_norm": 8 * m if math.isfinite(m) else m,
                "n_grads": 6,
                "n_vanishing": 0,
                "n_exploding": 0,
                "tasks": [
                    {"name": t, "grad_norm": n, "loss": 1.0, "weight": weights[t]}
                    for t, n in zip(tasks, norms)
                ],
            }
        )
    writer.close()
    return path


def to_parquet(source: Path, target: Path) -> Path:
    """What ``gradlog convert SOURCE -o TARGET`` writes (the same library call)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_log(read_log(source), target)
    return target


def gradlog(*args: str, env: dict | None = None, cwd: Path | None = None):
    """The real command line in a fresh process (plain output, as when piped)."""
    full = {
        k: v for k, v in os.environ.items() if k not in ("GRADLOG_DEBUG", "GITHUB_STEP_SUMMARY")
    }
    full.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "gradlog", *args],
        capture_output=True,
        env=full,
        cwd=cwd or ROOT,
        timeout=120,
    )


def gradlog_many(calls: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess]:
    """Independent invocations side by side (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: gradlog(*args), calls))
