"""read_lightning_csv on the metrics.csv of a real tiny Lightning training: CSVLogger, Lightning's
own grad_norm logged before each optimizer step, per-task norms as grad_norm/{task}, and an
epoch-level metric that leaves most cells of its column empty."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
lightning = pytest.importorskip("lightning")

import polars as pl  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from lightning.pytorch.utilities import grad_norm  # noqa: E402
from torch import nn  # noqa: E402

from gradlog.analysis.foreign.lightning_csv import read_lightning_csv  # noqa: E402
from gradlog.analysis.foreign.scalars import LIGHTNING_CSV, SCALARS_SCHEMA  # noqa: E402
from gradlog.errors import LogFormatError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec", "ignore::UserWarning")
EPOCHS = 3
BATCHES = 4


class TwoTasks(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.pointer_head = nn.Linear(8, 1)
        self.type_head = nn.Linear(8, 1)
        self.logged: list[tuple[int, str, float]] = []  # (global step, key, value) as logged

    def log_points(self, points: dict[str, torch.Tensor]) -> None:
        self.log_dict(points)
        for key, value in points.items():
            self.logged.append((self.trainer.global_step, key, float(value)))

    def training_step(self, batch, _index):  # noqa: ANN001, ANN201
        x, y = batch
        shared = self.encoder(x)
        losses = {
            "pointer": ((self.pointer_head(shared) - y) ** 2).mean(),
            "type": ((self.type_head(shared) + 2 * y) ** 2).mean(),
        }
        encoder = list(self.encoder.parameters())
        norms = {}
        for task, loss in losses.items():
            grads = torch.autograd.grad(loss, encoder, retain_graph=True)
            norms[f"grad_norm/{task}"] = torch.linalg.vector_norm(
                torch.stack([g.norm() for g in grads])
            ).detach()
        self.log_points({**norms, **{f"loss/{t}": v.detach() for t, v in losses.items()}})
        total = sum(losses.values())
        self.log("epoch_loss", total.detach(), on_step=False, on_epoch=True)
        return total

    def on_before_optimizer_step(self, optimizer) -> None:  # noqa: ANN001
        self.log_points(grad_norm(self, norm_type=2))

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.05)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, TwoTasks]:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lightning")
    data = torch.utils.data.TensorDataset(torch.randn(BATCHES * 4, 4), torch.randn(BATCHES * 4, 1))
    model = TwoTasks()
    trainer = lightning.Trainer(
        max_epochs=EPOCHS,
        logger=CSVLogger(str(folder), name="multitask"),
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    return folder / "multitask" / "version_0" / "metrics.csv", model


def test_every_logged_point(trained: tuple[Path, TwoTasks]) -> None:
    path, model = trained
    scalars = read_lightning_csv(str(path))
    assert scalars.kind == LIGHTNING_CSV and scalars.notes == []
    frame = scalars.frame
    assert frame.schema == SCALARS_SCHEMA
    assert frame["run"].unique().to_list() == ["version_0"]
    assert frame["time"].null_count() == frame.height

    steps = EPOCHS * BATCHES
    logged = sorted((key, step, value) for step, key, value in model.logged)
    step_level = frame.filter(pl.col("tag") != "epoch_loss")
    read = sorted(step_level.select("tag", "step", "value").iter_rows())
    assert read == logged  # every point, exactly as logged (a float32's repr reads back exact)
    keys = {key for _, key, _ in model.logged}
    assert {"grad_norm/pointer", "grad_norm/type", "grad_2.0_norm_total"} <= keys
    assert len(model.logged) == steps * len(keys)

    per_epoch = frame.filter(tag="epoch_loss")
    assert per_epoch["epoch"].to_list() == list(range(EPOCHS))  # its column is mostly empty
    assert frame.filter(tag="grad_norm/pointer")["epoch"].to_list() == [
        step // BATCHES for step in range(steps)
    ]


def test_rows_in_the_order_written(trained: tuple[Path, TwoTasks]) -> None:
    path, _ = trained
    steps = read_lightning_csv(str(path)).frame["step"].to_list()
    assert steps == sorted(steps)


def test_a_directory_of_versions(trained: tuple[Path, TwoTasks]) -> None:
    path, _ = trained
    root = path.parent.parent.parent
    scalars = read_lightning_csv(str(root))
    assert scalars.frame["run"].unique().to_list() == ["multitask/version_0"]
    assert scalars.frame.height == read_lightning_csv(str(path)).frame.height


def test_what_is_not_a_lightning_log(tmp_path: Path) -> None:
    wrong = tmp_path / "metrics.csv"
    wrong.write_text("epoch,step,loss\n0,0,0.5\n0,1,half\n")
    with pytest.raises(LogFormatError) as caught:
        read_lightning_csv(str(wrong))
    assert str(caught.value) == f"{wrong}:3: field 'loss': 'half' is not a number"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(LogFormatError, match="no 'step' column"):
        read_lightning_csv(str(wrong))
    wrong.write_text("")
    with pytest.raises(LogFormatError, match="empty"):
        read_lightning_csv(str(wrong))
    (tmp_path / "none").mkdir()
    with pytest.raises(LogFormatError, match=r"no Lightning CSVLogger log \(metrics.csv\)"):
        read_lightning_csv(str(tmp_path / "none"))
    with pytest.raises(LogFormatError, match="no such file or directory"):
        read_lightning_csv(str(tmp_path / "missing.csv"))
