"""Record a Hugging Face ``Trainer`` run with gradlog's callback: a tiny two-task BERT.

A BERT encoder built from a small config (random weights, nothing downloaded) is shared by two
heads: ``tags`` (token classification: is each token above the sequence's median?) and
``label`` (sequence classification: is the sequence's first token larger than its last?), on
synthetic token sequences. The model's ``forward`` returns the total ``loss`` and the
per-task ``losses``; ``gradlog.recorder.integrations.huggingface.GradlogCallback`` records every step
in the cheap mode (per-task gradients at the encoder's output, no extra backward). Needs
``pip install 'gradlog-mtl[huggingface]'`` (``'.[huggingface]'`` in the checkout). From the repository root::

    python examples/huggingface_multitask.py --steps 40 --out runs/huggingface.jsonl
    gradlog report runs/huggingface.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is built here

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from transformers import BertConfig, BertModel, Trainer, TrainingArguments  # noqa: E402

from gradlog.recorder.integrations.huggingface import GradlogCallback  # noqa: E402

VOCAB = 32


class TwoTaskBert(nn.Module):
    """A small BERT encoder, a token-tagging head and a sequence-label head."""

    def __init__(self, hidden: int = 32, layers: int = 2, weights: dict | None = None) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=64,
        )
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.tag_head = nn.Linear(hidden, 2)
        self.label_head = nn.Linear(hidden, 2)
        self.weights = weights or {"tags": 1.0, "label": 1.0}

    def forward(self, input_ids, attention_mask, tag_labels, labels):
        hidden = self.encoder(input_ids, attention_mask=attention_mask).last_hidden_state
        tag_logits = self.tag_head(hidden)
        label_logits = self.label_head(hidden[:, 0])  # the [CLS] position
        losses = {
            "tags": F.cross_entropy(tag_logits.reshape(-1, 2), tag_labels.reshape(-1)),
            "label": F.cross_entropy(label_logits, labels),
        }
        loss = sum(self.weights[name] * value for name, value in losses.items())
        # The Trainer backpropagates "loss"; gradlog reads "losses" (unweighted, attached).
        return {"loss": loss, "losses": losses, "logits": label_logits}


class Sequences(torch.utils.data.Dataset):
    """Random token sequences with their two kinds of labels."""

    def __init__(self, n: int = 256, length: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, length), generator=g)
        median = self.ids.float().median(dim=1, keepdim=True).values
        self.tags = (self.ids.float() > median).long()
        self.labels = (self.ids[:, 0] > self.ids[:, -1]).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones_like(self.ids[i]),
            "tag_labels": self.tags[i],
            "labels": self.labels[i],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="runs/huggingface.jsonl")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    weights = {"tags": 1.0, "label": 1.0}
    model = TwoTaskBert(weights=weights)
    callback = GradlogCallback(
        ["tags", "label"],
        args.out,
        weights=weights,
        mode="representation",
        shared="encoder",  # the BERT encoder whose last hidden state both heads read
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        tags={"script": "examples/huggingface_multitask.py", "seed": args.seed},
    )
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            max_grad_norm=0.0,  # unclipped, so that gradlog logs the gradients as computed
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=args.seed,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=Sequences(seed=args.seed),
            callbacks=[callback],
        )
        trainer.train()
    print(f"gradlog log: {callback.recorder.path} ({trainer.state.global_step} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
