"""Hugging Face's trainer_state.json and W&B history exports, written by real training.

Each training is recorded twice: by the tool's own logging and by gradlog's recorder. The report
of the tool's log must find what gradlog's own log shows: a collapsed run, with the same
window ratio (and, where the tool logged them, the same norms).
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from pathlib import Path

import polars as pl
import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import gradlog  # noqa: E402
from gradlog.analysis.foreign import sniff  # noqa: E402
from gradlog.analysis.readers import read_log  # noqa: E402
from tests.conftest import run_gradlog  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
    pytest.mark.filterwarnings("ignore:.*the Trainer clips gradients"),
]
TASKS = ["pointer", "type"]
# The type task's loss weighted down fifty-fold: its gradient is starved, the run collapses.
WEIGHTS = {"pointer": 1.0, "type": 0.02}
HF_STEPS = 12
LOOP_STEPS = 20


def task_norms(losses: dict, params: list) -> dict[str, float]:
    """Each task's weighted-loss gradient norm over all parameters, as multi-task code logs it."""
    out = {}
    for name, loss in losses.items():
        grads = torch.autograd.grad(
            WEIGHTS[name] * loss, params, retain_graph=True, allow_unused=True
        )
        norms = [torch.linalg.vector_norm(g) for g in grads if g is not None]
        out[name] = torch.linalg.vector_norm(torch.stack(norms)).item()
    return out


def report(path: Path, *args: str) -> dict:
    result = run_gradlog("report", str(path), "--format", "json", *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)["runs"][0]


# -- Hugging Face: a tiny two-task BERT under the real Trainer ------------------------------------


def hf_train(out: Path) -> tuple[Path, Path]:
    """Train; the model's per-task norms go into the Trainer's logs (so into log_history), and
    gradlog's callback records the same training. Returns (trainer_state.json, gradlog's log)."""
    transformers = pytest.importorskip("transformers")
    from gradlog.recorder.integrations.huggingface import GradlogCallback

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            config = transformers.BertConfig(
                vocab_size=16,
                hidden_size=8,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=16,
                max_position_embeddings=16,
            )
            self.encoder = transformers.BertModel(config, add_pooling_layer=False)
            self.pointer_head = nn.Linear(8, 2)
            self.type_head = nn.Linear(8, 3)

        def forward(self, input_ids, pointers, labels):
            h = self.encoder(input_ids).last_hidden_state
            losses = {
                "pointer": F.mse_loss(self.pointer_head(h).mean(dim=1), pointers),
                "type": F.cross_entropy(self.type_head(h[:, 0]), labels),
            }
            return {"loss": sum(WEIGHTS[k] * v for k, v in losses.items()), "losses": losses}

    class Data(torch.utils.data.Dataset):
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, 16, (32, 6), generator=g)
            self.pointers = torch.rand(32, 2, generator=g) * 10
            self.labels = torch.randint(0, 3, (32,), generator=g)

        def __len__(self) -> int:
            return 32

        def __getitem__(self, i):
            return {
                "input_ids": self.ids[i],
                "pointers": self.pointers[i],
                "labels": self.labels[i],
            }

    class TaskNormTrainer(transformers.Trainer):
        """What a user adds to log per-task norms: measured in compute_loss, logged with the
        Trainer's own entry of the step (beside its loss and grad_norm)."""

        task_logs: dict[str, float] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            if model.training:
                params = [p for p in model.parameters() if p.requires_grad]
                norms = task_norms(out["losses"], params)
                self.task_logs = {f"grad_norm/{k}": v for k, v in norms.items()}
                self.task_logs |= {f"loss/{k}": v.item() for k, v in out["losses"].items()}
            return (out["loss"], out) if return_outputs else out["loss"]

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                logs = {**logs, **self.task_logs}
            super().log(logs, *args, **kwargs)

    torch.manual_seed(0)
    own = out / "gradlog.jsonl"
    callback = GradlogCallback(
        TASKS,
        str(own),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
    )
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"),
        max_steps=HF_STEPS,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        max_grad_norm=1e6,  # the Trainer computes (and logs) the total norm, and clips nothing
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    trainer = TaskNormTrainer(model=Model(), args=args, train_dataset=Data(), callbacks=[callback])
    trainer.train()
    trainer.save_state()
    return out / "hf" / "trainer_state.json", own


# -- W&B: a plain training loop that logs a history row per step --------------------------------


def wandb_train(out: Path) -> tuple[Path, Path]:
    """A two-task MLP; each step's row (per-task norms and losses, per-parameter norms as
    Lightning's grad_norm() names them) as wandb.log would get it, written as W&B's history CSV;
    gradlog's recorder records the same loop. Returns (history.csv, gradlog's log)."""
    from gradlog import GradientRecorder

    torch.manual_seed(0)
    model = nn.ModuleDict(
        {
            "encoder": nn.Sequential(nn.Linear(4, 8), nn.Tanh()),
            "pointer_head": nn.Linear(8, 2),
            "type_head": nn.Linear(8, 3),
        }
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    g = torch.Generator().manual_seed(0)
    x, pointers, labels = torch.randn(64, 4, generator=g), torch.randn(64, 2, generator=g), None
    labels = torch.randint(0, 3, (64,), generator=g)
    own = out / "gradlog.jsonl"
    rows = []
    start = time.time()
    with GradientRecorder(
        model,
        TASKS,
        str(own),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
    ) as rec:
        for step in range(1, LOOP_STEPS + 1):
            batch = slice((step * 8) % 64, (step * 8) % 64 + 8)
            h = model["encoder"](x[batch])
            losses = {
                "pointer": F.mse_loss(model["pointer_head"](h), pointers[batch]),
                "type": F.cross_entropy(model["type_head"](h), labels[batch]),
            }
            optimizer.zero_grad()
            row = {"_step": step, "_timestamp": time.time(), "_runtime": time.time() - start}
            row |= {f"grad_norm/{k}": v for k, v in task_norms(losses, params).items()}
            row |= {f"loss/{k}": v.item() for k, v in losses.items()}
            rec.backward(losses, step=step)
            for name, p in model.named_parameters():
                row[f"grad_2.0_norm/{name}"] = p.grad.norm().item()
            optimizer.step()
            rows.append(row)
    history = out / "history.csv"
    with open(history, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return history, own


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory) -> tuple[Path, Path]:
    return hf_train(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory) -> tuple[Path, Path]:
    return wandb_train(tmp_path_factory.mktemp("wandb"))


def test_trainer_state_is_told_by_content(hf_run, tmp_path: Path) -> None:
    state, _ = hf_run
    assert sniff(state) == "huggingface"
    renamed = tmp_path / "anything.txt"
    renamed.write_bytes(state.read_bytes())
    assert sniff(renamed) == "huggingface"
    assert read_log(renamed).frame.height == HF_STEPS + 1


def test_hugging_face_run_reports_the_same_collapse(hf_run) -> None:
    state, own = hf_run
    theirs, ours = report(state), report(own)
    assert theirs["final_band"] == ours["final_band"] == "collapse"
    assert theirs["dominant"] == ours["dominant"] == "pointer"
    assert theirs["window_ratio"] == pytest.approx(ours["window_ratio"], rel=1e-5)
    assert theirs["n_balance"] == ours["n_balance"] == HF_STEPS
    # Only the total norm: the statistics part is there, and says what it was read from.
    assert theirs["n_stats"] == HF_STEPS
    assert theirs["tags"]["gradlog.source"] == "huggingface"
    assert theirs["tags"]["gradlog.read.grad_norm"] == "grad_norm/{task}"
    assert theirs["tags"]["gradlog.read.total_norm"] == "grad_norm"
    assert "integer part" in theirs["tags"]["gradlog.read.epoch"]


def test_hugging_face_grad_norm_is_gradlogs_total_norm(hf_run) -> None:
    state, own = hf_run
    events = pl.col("kind") == "event"
    theirs = read_log(state).frame.filter(events)
    ours = read_log(own).frame.filter(events)
    assert theirs.get_column("step").to_list() == ours.get_column("step").to_list()
    assert theirs.get_column("total_norm").to_list() == pytest.approx(
        ours.get_column("total_norm").to_list(), rel=1e-5
    )
    # the integer part of Hugging Face's fractional epoch (0.25, 0.5, ... 3.0)
    assert theirs.get_column("epoch").to_list() == [(s * 8) // 32 for s in range(1, HF_STEPS + 1)]


def test_hugging_face_text_report_says_collapse_and_its_sources(hf_run) -> None:
    state, _ = hf_run
    result = run_gradlog("report", str(state))
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "TASK COLLAPSE DETECTED: Pointer task dominating" in text
    assert "Read from a Hugging Face trainer_state.json: " in text
    assert "grad_norm from grad_norm/{task}" in text


def test_wandb_history_reports_the_same_numbers(wandb_run) -> None:
    history, own = wandb_run
    assert sniff(history) == "wandb"
    theirs, ours = report(history), report(own)
    assert theirs["status"] == ours["status"] == "collapse"
    for key in ("window_ratio", "mean_norm", "mean_norm_std", "max_norm_peak", "worst_spread"):
        assert theirs[key] == pytest.approx(ours[key], rel=1e-5), key
    for key in ("n_events", "n_stats", "n_balance", "first_collapse", "dominant"):
        assert theirs[key] == ours[key], key
    assert "mean_norm" in theirs["tags"]["gradlog.read.param_norm"]


def test_wandb_per_parameter_norms_give_gradlogs_counts(wandb_run) -> None:
    history, own = wandb_run
    events = pl.col("kind") == "event"
    cols = ["step", "n_grads", "n_vanishing", "n_exploding"]
    theirs = read_log(history).frame.filter(events).select(cols)
    ours = read_log(own).frame.filter(events).select(cols)
    assert theirs.equals(ours)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_wandb_json_lines_and_parquet_read_as_the_csv(wandb_run, tmp_path: Path, suffix) -> None:
    history, _ = wandb_run
    table = pl.read_csv(history)
    path = tmp_path / f"history{suffix}"
    table.write_ndjson(path) if suffix == ".jsonl" else table.write_parquet(path)
    assert sniff(path) == "wandb"
    assert report(path)["window_ratio"] == report(history)["window_ratio"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_convert_foreign_logs_to_gradlogs(hf_run, wandb_run, tmp_path: Path, suffix) -> None:
    for source in (hf_run[0], wandb_run[0]):
        out = tmp_path / f"{source.stem}{suffix}"
        result = run_gradlog("convert", str(source), "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()
        assert sniff(out) is None  # gradlog's own log now
        converted, original = report(out), report(source)
        assert converted["window_ratio"] == original["window_ratio"]
        assert converted["tags"] == original["tags"]  # still says where the numbers came from


def test_batch_over_a_folder_mixing_them(hf_run, wandb_run, tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    (folder / "checkpoint-12").mkdir(parents=True)
    (folder / "checkpoint-12" / "trainer_state.json").write_bytes(hf_run[0].read_bytes())
    (folder / "wandb").mkdir()
    (folder / "wandb" / "history.csv").write_bytes(wandb_run[0].read_bytes())
    (folder / "own.jsonl").write_bytes(wandb_run[1].read_bytes())
    (folder / "notes.csv").write_text("what,when\nlunch,noon\n")  # no log: left out
    (folder / "config.json").write_text('{"lr": 0.1}\n')  # no log: left out
    result = run_gradlog("batch", str(folder), "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)["runs"]}
    assert set(rows) == {"trainer_state.json", "history.csv", "own.jsonl"}
    assert rows["trainer_state.json"]["run"] == "checkpoint-12"
    assert rows["history.csv"]["status"] == rows["own.jsonl"]["status"] == "collapse"
    assert rows["history.csv"]["window_ratio"] == pytest.approx(rows["own.jsonl"]["window_ratio"])


def test_gradlog_read_takes_foreign_logs(hf_run, wandb_run) -> None:
    frame = gradlog.read([hf_run[0], wandb_run[0]])
    assert set(frame.get_column("source").unique()) == {str(hf_run[0]), str(wandb_run[0])}
    assert frame.filter(pl.col("kind") == "run").height == 2


def test_reporting_a_foreign_log_imports_no_torch(wandb_run) -> None:
    code = (
        "import sys; from gradlog.analysis import api; "
        f"api.analyse({str(wandb_run[0])!r}); print('torch' in sys.modules)"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.stdout.decode().strip() == "False", result.stderr.decode()
