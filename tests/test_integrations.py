"""The Lightning and Hugging Face callbacks: a tiny model trained for a few steps, the log read
back. Skipped when the framework is not installed (``pip install -e '.[test]'`` installs both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradlog.analysis.readers import read_log  # noqa: E402
from gradlog.errors import RecorderConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["pointer", "type"]
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")
WEIGHTS = {"pointer": 0.5, "type": 2.0}
STEPS = 4


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_log(path: Path, mode: str, steps: int = STEPS) -> list[dict]:
    """The log has one run and one event per step, each with both kinds of measurement."""
    log = records(path)
    assert log[0]["kind"] == "run" and log[0]["meta"]["mode"] == mode
    assert log[0]["meta"]["weights"] == [{"name": t, "weight": WEIGHTS[t]} for t in TASKS]
    events = log[1:]
    assert [e["step"] for e in events] == list(range(1, steps + 1))
    for event in events:
        assert event["mean_norm"] > 0 and event["n_grads"] > 0
        assert [t["name"] for t in event["tasks"]] == TASKS
        assert all(t["grad_norm"] > 0 for t in event["tasks"])
        assert [(c["a"], c["b"]) for c in event["conflicts"]] == [("pointer", "type")]
        assert -1 <= event["conflicts"][0]["cosine"] <= 1
    assert read_log(path).frame.height == steps + 1  # and the reader takes it
    return events


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.pointer_head = nn.Linear(8, 2)
        self.type_head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.encoder(x)
        return self.pointer_head(h), self.type_head(h)


def dataset(n: int = 32):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, 4, generator=g),
        torch.rand(n, 2, generator=g),
        torch.randint(0, 3, (n,), generator=g),
    )


# -- Lightning ----------------------------------------------------------------------------------


def lightning_fit(
    tmp_path: Path, callbacks: list, returns: str = "dict", epochs: int = 1, **trainer_args
):
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def training_step(self, batch, batch_idx):
            x, pointers, types = batch
            p, t = self.net(x)
            losses = {"pointer": F.mse_loss(p, pointers), "type": F.cross_entropy(t, types)}
            loss = sum(WEIGHTS[k] * v for k, v in losses.items())
            return {"loss": loss, "losses": losses} if returns == "dict" else loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    module = Module()
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **trainer_args,
    )
    loader = DataLoader(TensorDataset(*dataset(8 * STEPS)), batch_size=8)
    trainer.fit(module, loader)
    return module


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_lightning_callback(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("lightning")
    from gradlog.recorder.integrations.lightning import GradlogCallback

    path = tmp_path / "run.jsonl"
    extra = {"shared": "net.encoder"} if mode == "representation" else {}
    callback = GradlogCallback(
        TASKS,
        str(path),
        weights=WEIGHTS,
        mode=mode,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        **extra,
    )
    trained = lightning_fit(tmp_path, [callback])
    events = check_log(path, mode)
    assert {e["epoch"] for e in events} == {1}
    assert "training_step" not in vars(trained)  # the callback put the method back
    # the callback did not change training
    plain = lightning_fit(tmp_path, [])
    for p, q in zip(plain.parameters(), trained.parameters()):
        assert torch.equal(p, q)


def test_lightning_callback_needs_the_task_losses(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from gradlog.recorder.integrations.lightning import GradlogCallback

    callback = GradlogCallback(TASKS, str(tmp_path / "run.jsonl"), weights=WEIGHTS)
    with pytest.raises(RecorderConfigError, match="training_step must return a dict"):
        lightning_fit(tmp_path, [callback], returns="tensor")


def test_lightning_callback_warns_about_other_weights(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from gradlog.recorder.integrations.lightning import GradlogCallback

    callback = GradlogCallback(TASKS, str(tmp_path / "run.jsonl"), balance_every=1)
    with pytest.warns(UserWarning, match="not the sum of the task losses times the weights"):
        lightning_fit(tmp_path, [callback])


CLIP = 0.05  # below the tiny model's gradient norms: every step is clipped


def clip_callback(module_name: str, path: Path, **kwargs):
    callbacks = pytest.importorskip(f"gradlog.recorder.integrations.{module_name}")
    return callbacks.GradlogCallback(
        TASKS,
        str(path),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        **kwargs,
    )


# On a CPU Lightning runs "16-mixed" as bf16 (no loss scaler): the plain-loop GradScaler test in
# test_clip.py covers unscaling.
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lightning_logs_its_clipping_before_it(tmp_path: Path, precision: str) -> None:
    """gradient_clip_val: the statistics are read before Lightning clips (after unscaling), with
    the total norm and the factor Lightning's clipping then applies; training unchanged."""
    pytest.importorskip("lightning")
    path = tmp_path / "run.jsonl"
    args = {"gradient_clip_val": CLIP, "precision": precision}
    trained = lightning_fit(tmp_path, [clip_callback("lightning", path)], **args)
    events = check_log(path, "parameters")
    assert records(path)[0]["meta"]["stats_at"] == "before_clipping"
    for event in events:
        assert event["pre_clip_norm"] == pytest.approx(event["total_norm"], rel=1e-6)
        assert event["clip_coef"] == pytest.approx(CLIP / (event["pre_clip_norm"] + 1e-6))
        assert event["clip_coef"] < 1
    plain = lightning_fit(tmp_path, [], **args)
    for p, q in zip(plain.parameters(), trained.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("precision", "accumulate"), [("32-true", 1), ("bf16-mixed", 1), ("bf16-mixed", 2)]
)
def test_lightning_callback_clips_with_clip(tmp_path: Path, precision: str, accumulate: int):
    """clip= on the callback: gradlog clips in on_before_optimizer_step (after AMP's unscaling
    and the last micro-batch), exactly as Lightning's gradient_clip_val would have."""
    pytest.importorskip("lightning")
    path = tmp_path / "run.jsonl"
    args = {"precision": precision, "accumulate_grad_batches": accumulate}
    callback = clip_callback("lightning", path, clip=CLIP)
    trained = lightning_fit(tmp_path, [callback], **args)
    events = check_log(path, "parameters", steps=STEPS // accumulate)
    assert records(path)[0]["meta"]["stats_at"] == "after_clipping"
    for event in events:
        assert event["pre_clip_norm"] > CLIP and event["clip_coef"] < 1
        assert event["total_norm"] == pytest.approx(CLIP, rel=1e-4)
    plain = lightning_fit(tmp_path, [], gradient_clip_val=CLIP, **args)
    for p, q in zip(plain.parameters(), trained.parameters()):
        assert torch.equal(p, q)


def test_lightning_refuses_clipping_twice(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    callback = clip_callback("lightning", tmp_path / "run.jsonl", clip=CLIP)
    with pytest.raises(RecorderConfigError, match="clip in one place"):
        lightning_fit(tmp_path, [callback], gradient_clip_val=CLIP)


def test_lightning_without_clipping_logs_no_clip_fields(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    path = tmp_path / "run.jsonl"
    lightning_fit(tmp_path, [clip_callback("lightning", path)])
    log = records(path)
    assert log[0]["meta"]["stats_at"] == "before_clipping"
    assert not any("pre_clip_norm" in e or "clip_coef" in e for e in log[1:])


# -- Hugging Face -------------------------------------------------------------------------------


def hf_train(tmp_path: Path, callbacks: list, max_grad_norm: float = 0.0, **training_args):
    transformers = pytest.importorskip("transformers")

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
            loss = sum(WEIGHTS[k] * v for k, v in losses.items())
            return {"loss": loss, "losses": losses}

    class Data(torch.utils.data.Dataset):
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, 16, (32, 6), generator=g)
            self.pointers = torch.rand(32, 2, generator=g)
            self.labels = torch.randint(0, 3, (32,), generator=g)

        def __len__(self) -> int:
            return 32

        def __getitem__(self, i):
            return {
                "input_ids": self.ids[i],
                "pointers": self.pointers[i],
                "labels": self.labels[i],
            }

    torch.manual_seed(0)
    model = Model()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        max_grad_norm=max_grad_norm,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        **training_args,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Data(), callbacks=callbacks
    )
    trainer.train()
    return model


@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_huggingface_callback(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("transformers")
    from gradlog.recorder.integrations.huggingface import GradlogCallback

    path = tmp_path / "run.jsonl"
    extra = {"shared": "encoder"} if mode == "representation" else {}
    callback = GradlogCallback(
        TASKS,
        str(path),
        weights=WEIGHTS,
        mode=mode,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        **extra,
    )
    trained = hf_train(tmp_path, [callback])
    check_log(path, mode)
    plain = hf_train(tmp_path, [])
    for p, q in zip(plain.parameters(), trained.parameters()):
        assert torch.equal(p, q)


def test_huggingface_callback_warns_that_clipping_comes_first(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from gradlog.recorder.integrations.huggingface import GradlogCallback

    callback = GradlogCallback(TASKS, str(tmp_path / "run.jsonl"), weights=WEIGHTS)
    with pytest.warns(UserWarning, match="clips gradients"):
        hf_train(tmp_path, [callback], max_grad_norm=1.0)


def test_huggingface_trainer_clipping_is_after_clipping(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = tmp_path / "run.jsonl"
    with pytest.warns(UserWarning, match="clips gradients"):
        hf_train(tmp_path, [clip_callback("huggingface", path)], max_grad_norm=CLIP)
    events = check_log(path, "parameters")
    assert records(path)[0]["meta"]["stats_at"] == "after_clipping"  # the Trainer clipped first
    assert all(e["total_norm"] == pytest.approx(CLIP, rel=1e-4) for e in events)
    assert not any("pre_clip_norm" in e for e in events)  # it keeps the norm to itself


@pytest.mark.parametrize("bf16", [False, True])
def test_huggingface_callback_clips_with_clip(tmp_path: Path, bf16: bool) -> None:
    """max_grad_norm=0 and clip= on the callback: gradlog clips in on_pre_optimizer_step and
    logs the norm before clipping; training is the Trainer's own clipping, bit for bit."""
    pytest.importorskip("transformers")
    path = tmp_path / "run.jsonl"
    trained = hf_train(tmp_path, [clip_callback("huggingface", path, clip=CLIP)], bf16=bf16)
    events = check_log(path, "parameters")
    assert records(path)[0]["meta"]["stats_at"] == "after_clipping"
    for event in events:
        assert event["pre_clip_norm"] > CLIP and event["clip_coef"] < 1
        assert event["total_norm"] == pytest.approx(CLIP, rel=1e-4)
    plain = hf_train(tmp_path, [], max_grad_norm=CLIP, bf16=bf16)
    for p, q in zip(plain.parameters(), trained.parameters()):
        assert torch.equal(p, q)


def test_huggingface_refuses_clipping_twice(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    callback = clip_callback("huggingface", tmp_path / "run.jsonl", clip=CLIP)
    with pytest.raises(RecorderConfigError, match="clip in one place"):
        hf_train(tmp_path, [callback], max_grad_norm=1.0)


def test_huggingface_without_clipping_is_before_clipping(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = tmp_path / "run.jsonl"
    hf_train(tmp_path, [clip_callback("huggingface", path)])
    assert records(path)[0]["meta"]["stats_at"] == "before_clipping"


# -- the examples, as users run them -------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "module", "args"),
    [
        ("lightning_multitask.py", "lightning", ["--epochs", "1", "--samples", "128"]),
        ("huggingface_multitask.py", "transformers", ["--steps", "3"]),
    ],
)
def test_examples_run_and_their_logs_report(
    tmp_path: Path, example: str, module: str, args: list[str]
) -> None:
    pytest.importorskip(module)
    out = tmp_path / "run.jsonl"
    result = subprocess.run(
        [sys.executable, "-W", "ignore", f"examples/{example}", *args, "--out", str(out)],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
        # the example's folder comes first on sys.path, not the cwd: import this checkout
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "gradlog", "report", str(out)],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert report.returncode == 0, report.stderr.decode()
    assert "Recommended action:" in report.stdout.decode()
    meta = records(out)[0]["meta"]
    assert meta["mode"] == "representation"


def test_importing_gradlog_imports_no_framework() -> None:
    script = (
        "import sys, gradlog, gradlog.recorder.integrations, gradlog.recorder\n"
        "print(sorted({'lightning', 'transformers', 'accelerate'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]"
