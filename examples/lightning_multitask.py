"""Record a Lightning run with gradlog's callback: the dual-task LSTM of train_multitask.py.

A ``LightningModule`` wraps ``MultiTaskLSTM`` (pointer regression + pattern-type
classification on synthetic OHLC sequences); ``training_step`` returns the total loss and the
per-task losses, and ``gradlog.recorder.integrations.lightning.GradlogCallback`` records every step in
the cheap mode (per-task gradients at the encoder's output, no extra backward). Needs
``pip install 'gradlog-mtl[lightning]'`` (``'.[lightning]'`` in the checkout). From the repository root::

    python examples/lightning_multitask.py --epochs 5 --out runs/lightning.jsonl
    gradlog report runs/lightning.jsonl
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from train_multitask import MultiTaskLSTM, make_data, task_losses  # noqa: E402

from gradlog.recorder.integrations.lightning import GradlogCallback  # noqa: E402


class MultiTaskModule(lightning.LightningModule):
    """``MultiTaskLSTM`` trained on ``beta * pointer_loss + alpha * type_loss``."""

    def __init__(self, weights: dict[str, float], hidden: int = 24, lr: float = 4e-3) -> None:
        super().__init__()
        self.net = MultiTaskLSTM(hidden=hidden)
        self.weights = weights
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, pointers, types = batch
        losses = task_losses(self.net, x, pointers, types)
        loss = sum(self.weights[name] * value for name, value in losses.items())
        # gradlog reads "losses" (unweighted, attached); Lightning backpropagates "loss".
        return {"loss": loss, "losses": losses}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/lightning.jsonl")
    parser.add_argument("--loss-alpha", type=float, default=1.0, help="weight of the type loss")
    parser.add_argument("--loss-beta", type=float, default=1.0, help="weight of the pointer loss")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = make_data(args.samples, seed=args.seed)
    loader = DataLoader(
        TensorDataset(data.x, data.pointers, data.types), batch_size=args.batch_size, shuffle=True
    )
    weights = {"pointer": args.loss_beta, "type": args.loss_alpha}
    callback = GradlogCallback(
        ["pointer", "type"],
        args.out,
        weights=weights,
        mode="representation",
        shared="net.encoder",  # the LSTM whose output both heads read
        log_every_steps=1,
        balance_every_steps=1,
        tags={"script": "examples/lightning_multitask.py", "seed": args.seed},
    )
    trainer = lightning.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(MultiTaskModule(weights), loader)
    print(f"gradlog log: {callback.recorder.path} ({trainer.global_step} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
