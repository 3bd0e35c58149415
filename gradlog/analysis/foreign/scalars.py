"""What every reader of another tool's log gives back: its scalars, in one long frame.

TensorBoard event files, Lightning's ``metrics.csv``, Hugging Face's ``trainer_state.json`` and
W&B history exports all come down to named scalars at steps. Each reader turns its format into
:class:`Scalars`; :mod:`gradlog.analysis.foreign.mapping` alone turns scalars into gradlog's
records, so a key convention is understood the same way whatever file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

SCALARS_SCHEMA = pl.Schema(
    {
        "run": pl.String,  # a run id: the file's (or directory's) own name unless it has one
        "step": pl.Int64,  # the tool's step (global step, optimizer step); null if it has none
        "epoch": pl.Int64,  # null where the tool does not say
        "tag": pl.String,  # the key as the tool wrote it: "grad_norm/pointer", "train/loss"
        "value": pl.Float64,  # NaN and infinities as the tool stored them
        "time": pl.Float64,  # wall time, Unix seconds; null where the tool does not say
    }
)

TENSORBOARD = "tensorboard"
LIGHTNING_CSV = "lightning-csv"
HUGGINGFACE = "huggingface"
WANDB = "wandb"
KINDS = (TENSORBOARD, LIGHTNING_CSV, HUGGINGFACE, WANDB)

# What a run read from another tool's log says of itself, in its run record's meta.tags.
SOURCE_TAG = "gradlog.source"  # which tool's log the run was read from
READ_TAG = "gradlog.read."  # gradlog.read.FIELD = the template(s) FIELD was read from


@dataclass
class Scalars:
    """One foreign log, read: every scalar point of every tag, none sampled away."""

    path: str
    kind: str  # one of KINDS
    frame: pl.DataFrame  # SCALARS_SCHEMA, in the order the tool wrote the points
    notes: list[str] = field(default_factory=list)
