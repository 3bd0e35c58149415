"""Synthetic gradlog logs for benchmarks: realistic records, written by gradlog's own writer.

The numbers follow a drifting random walk, so a log has healthy stretches, imbalance and the
occasional collapse; the shape of each record is exactly what the recorder writes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from gradlog.format import KIND_EVENT, KIND_RUN, SCHEMA_VERSION, Record
from gradlog.recorder.writers import JsonlWriter


def run_records(
    n_events: int,
    *,
    run_id: str = "bench",
    tasks: tuple[str, ...] = ("pointer", "type"),
    seed: int = 0,
    log_every: int = 10,
    balance_every: int = 5,
) -> list[Record]:
    """A run record and ``n_events`` events (stats on every other event, balance on each)."""
    rng = random.Random(seed)
    records: list[Record] = [
        {
            "v": SCHEMA_VERSION,
            "run": run_id,
            "kind": KIND_RUN,
            "time": 1.7e9,
            "meta": {
                "tasks": list(tasks),
                "log_every": log_every,
                "balance_every": balance_every,
                "weights": [{"name": t, "weight": 1.0} for t in tasks],
                "started_at": "2026-11-25T00:00:00+00:00",
                "mode": "parameters",
                "model": "Synthetic",
                "tags": [{"key": "seed", "value": str(seed)}],
            },
        }
    ]
    log_ratio = 0.0
    for i in range(n_events):
        epoch = (i + 1) * balance_every
        log_ratio += rng.gauss(0, 0.08)
        record: Record = {
            "v": SCHEMA_VERSION,
            "run": run_id,
            "kind": KIND_EVENT,
            "time": 1.7e9 + i,
            "epoch": epoch,
            "step": epoch * 50,
        }
        if epoch % log_every == 0:
            mean = math.exp(rng.gauss(-1.5, 0.3))
            record.update(
                mean_norm=mean,
                max_norm=mean * math.exp(rng.gauss(1.8, 0.2)),
                total_norm=mean * 4.2,
                n_grads=18,
                n_vanishing=0,
                n_exploding=int(rng.random() < 0.01),
            )
        base = math.exp(rng.gauss(-1.0, 0.2))
        norms = {t: base for t in tasks}
        norms[tasks[0]] = base * math.exp(log_ratio)
        record["tasks"] = [
            {"name": t, "grad_norm": norms[t], "loss": rng.random(), "weight": 1.0} for t in tasks
        ]
        records.append(record)
    return records


def write_jsonl(path: Path, n_events: int, **kwargs) -> Path:
    writer = JsonlWriter(path)
    try:
        for record in run_records(n_events, **kwargs):
            writer.write(record)
    finally:
        writer.close()
    return path
