"""Out to the loggers: gradlog's events as a few scalars in TensorBoard, Lightning's loggers and
the Hugging Face Trainer's logs (docs/format.md, "Keys written to other tools' loggers").

Every test trains for real (a tiny model on the CPU) and checks the keys, steps and values
the other tool received against gradlog's own log of the same run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from test_syncs import Syncs, count_syncs  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradlog import GradientRecorder  # noqa: E402
from gradlog.errors import RecorderConfigError  # noqa: E402
from gradlog.recorder import writers  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")
TASKS = ["pointer", "type"]
WEIGHTS = {"pointer": 0.5, "type": 2.0}
STATS = ("mean_norm", "max_norm", "total_norm", "n_vanishing", "n_exploding")


def events(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "event"]


def number(value) -> float:
    return float(value)  # "NaN" and "Infinity" as the log writes them, numbers as they are


def expected(event: dict) -> dict[str, float]:
    """The keys docs/format.md promises for one event of gradlog's own log."""
    out: dict[str, float] = {}
    tasks = event.get("tasks") or []
    for task in tasks:
        out[f"grad_norm/{task['name']}"] = number(task["grad_norm"])
        out[f"loss/{task['name']}"] = number(task["loss"])
        out[f"loss_weight/{task['name']}"] = number(task["weight"])
    for pair in event.get("conflicts") or []:
        if pair["cosine"] is not None:
            out[f"cos_grad_sim/{pair['a']}_vs_{pair['b']}"] = number(pair["cosine"])
    norms = [number(t["grad_norm"]) for t in tasks]
    if len(norms) > 1 and all(math.isfinite(n) and n > 0 for n in norms):
        out["grad_stats/spread"] = max(norms) / min(norms)
    for field in (*STATS, "pre_clip_norm", "clip_coef"):
        if field in event:
            out[f"grad_stats/{field}"] = number(event[field])
    return out


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.pointer_head = nn.Linear(8, 2)
        self.type_head = nn.Linear(8, 3)

    def losses(self, x, pointers, types) -> dict[str, torch.Tensor]:
        h = self.encoder(x)
        return {
            "pointer": F.mse_loss(self.pointer_head(h), pointers),
            "type": F.cross_entropy(self.type_head(h), types),
        }


def dataset(n: int):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, 4, generator=g),
        torch.rand(n, 2, generator=g),
        torch.randint(0, 3, (n,), generator=g),
    )


def train(path: Path, steps: int, **recorder_args) -> None:
    """A plain loop: statistics every step, task balance every other step (stats-only and
    combined events both), buffered, never flushed by the clock."""
    torch.manual_seed(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, pointers, types = dataset(8 * steps)
    args = {
        "weights": WEIGHTS,
        "log_every": None,
        "balance_every": None,
        "log_every_steps": 1,
        "balance_every_steps": 2,
        "flush_seconds": 1e9,
        **recorder_args,
    }
    with GradientRecorder(net, TASKS, path, **args) as rec:
        for i in range(steps):
            batch = slice(8 * i, 8 * i + 8)
            optimizer.zero_grad()
            rec.backward(net.losses(x[batch], pointers[batch], types[batch]))
            optimizer.step()


# -- the recorder's mirror= -----------------------------------------------------------------------


def test_mirror_callable_gets_each_events_keys_at_the_flush(tmp_path: Path) -> None:
    got: list[tuple[int, dict[str, float], bool]] = []

    def mirror(values: dict[str, float], step: int) -> None:
        frame, in_flush = sys._getframe(1), False
        while frame is not None:
            code = frame.f_code
            in_flush |= code.co_name == "_drain" and Path(code.co_filename) == Path(
                writers.__file__
            )
            frame = frame.f_back
        got.append((step, values, in_flush))

    path = tmp_path / "run.jsonl"
    train(path, 12, buffer=5, mirror=mirror)
    logged = events(path)
    assert [step for step, _, _ in got] == [e["step"] for e in logged] == list(range(1, 13))
    assert [values for _, values, _ in got] == [expected(e) for e in logged]
    assert all(in_flush for _, _, in_flush in got)  # handed over as the writer fetched them
    both = got[1][1]  # step 2: statistics and a balance sample
    assert set(both) == {
        "grad_norm/pointer",
        "grad_norm/type",
        "loss/pointer",
        "loss/type",
        "loss_weight/pointer",
        "loss_weight/type",
        "cos_grad_sim/pointer_vs_type",
        "grad_stats/spread",
        *(f"grad_stats/{s}" for s in STATS),
    }
    assert both["grad_stats/spread"] == pytest.approx(
        max(both["grad_norm/pointer"], both["grad_norm/type"])
        / min(both["grad_norm/pointer"], both["grad_norm/type"])
    )
    assert set(got[0][1]) == {f"grad_stats/{s}" for s in STATS}  # step 1: statistics only


def test_mirror_gets_the_clipping_keys(tmp_path: Path) -> None:
    got: list[dict[str, float]] = []
    path = tmp_path / "run.jsonl"
    train(path, 4, clip=0.05, mirror=lambda values, step: got.append(values))
    assert got == [expected(e) for e in events(path)]
    assert all(v["grad_stats/clip_coef"] < 1 and "grad_stats/pre_clip_norm" in v for v in got)


def test_mirror_files_a_sample_without_a_step_at_the_last_step(tmp_path: Path) -> None:
    """sample_balance with epoch cadences: the log's event has no step (it belongs to its
    epoch); the mirror files it at the step of the last call before it."""
    got: list[tuple[int, dict[str, float]]] = []
    path = tmp_path / "run.jsonl"
    torch.manual_seed(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, pointers, types = dataset(32)
    rec = GradientRecorder(
        net,
        TASKS,
        path,
        weights=WEIGHTS,
        log_every=1,
        balance_every=None,
        mirror=lambda values, step: got.append((step, values)),
    )
    for epoch in (1, 2):
        for i in range(3):
            optimizer.zero_grad()
            rec.backward(net.losses(x[8 * i : 8 * i + 8], pointers[:8], types[:8]), epoch=epoch)
            optimizer.step()
        rec.sample_balance(net.losses(x[24:], pointers[24:], types[24:]), epoch=epoch)
    rec.close()
    logged = events(path)
    assert [(e["epoch"], e["step"], "tasks" in e) for e in logged] == [
        (1, 1, False),
        (1, None, True),
        (2, 4, False),
        (2, None, True),
    ]
    assert [step for step, _ in got] == [1, 3, 4, 6]
    assert [values for _, values in got] == [expected(e) for e in logged]


def test_mirror_summary_writer(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    path = tmp_path / "run.jsonl"
    writer = SummaryWriter(str(tmp_path / "tb"))
    train(path, 6, mirror=writer)
    writer.close()
    logged = events(path)
    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    want: dict[str, list[tuple[int, float, float]]] = {}
    for event in logged:
        for tag, value in expected(event).items():
            want.setdefault(tag, []).append((event["step"], value, event["time"]))
    assert sorted(board.Tags()["scalars"]) == sorted(want)
    for tag, points in want.items():
        seen = board.Scalars(tag)
        assert [s.step for s in seen] == [step for step, _, _ in points]
        # TensorBoard stores float32; the wall time is the event's, not the flush's
        assert [s.value for s in seen] == pytest.approx([v for _, v, _ in points], rel=1e-6)
        assert [s.wall_time for s in seen] == pytest.approx([t for _, _, t in points], abs=1e-3)


def test_a_failing_mirror_warns_once_and_the_log_is_whole(tmp_path: Path) -> None:
    calls = []

    def broken(values, step):
        calls.append(step)
        raise OSError("disk full")

    path = tmp_path / "run.jsonl"
    with pytest.warns(RuntimeWarning, match="mirror function failed at step 1.*disk full"):
        train(path, 6, buffer=3, mirror=broken)
    assert calls == [1]
    assert [e["step"] for e in events(path)] == list(range(1, 7))


def test_mirror_must_take_scalars(tmp_path: Path) -> None:
    with pytest.raises(RecorderConfigError, match="mirror must be a TensorBoard SummaryWriter"):
        train(tmp_path / "run.jsonl", 1, mirror=42)


# -- Lightning ------------------------------------------------------------------------------------


def lightning_fit(
    tmp_path: Path, callback, loggers: list, log_every_n_steps: int = 2, weights=WEIGHTS
) -> None:
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def training_step(self, batch, batch_idx):
            losses = self.net.losses(*batch)
            self.log("user_pointer_loss", losses["pointer"])  # the user's own key, same batch
            return {"loss": sum(weights[k] * v for k, v in losses.items()), "losses": losses}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=loggers,
        log_every_n_steps=log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Module(), DataLoader(TensorDataset(*dataset(40)), batch_size=8))


def test_lightning_logs_the_keys_to_its_loggers(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    from gradlog.recorder.integrations.lightning import GradlogCallback

    path = tmp_path / "run.jsonl"
    callback = GradlogCallback(
        TASKS,
        str(path),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=2,
        log_to_trainer=True,
    )
    loggers = [CSVLogger(tmp_path, name="csv")]
    tensorboard = _tensorboard_logger(tmp_path)
    loggers += [tensorboard] if tensorboard else []
    lightning_fit(tmp_path, callback, loggers)
    logged = events(path)
    assert [e["step"] for e in logged] == list(range(1, 11))  # 5 batches x 2 epochs

    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ours = [r for r in rows if r.get("grad_stats/mean_norm")]
    assert len(ours) == len(logged)
    for row, event in zip(sorted(ours, key=lambda r: int(r["step"])), logged):
        # Lightning's step and epoch of the batch, counted from 0 as its own self.log does
        assert int(row["step"]) == event["step"] - 1
        assert int(row["epoch"]) == event["epoch"] - 1
        keys = expected(event)
        assert {k: float(row[k]) for k in keys} == keys  # exactly the log's values
        assert all(row[k] == "" for k in row if k not in keys and "/" in k)
    # the keys line up with the user's own self.log of the same batch
    user = {r["step"]: float(r["user_pointer_loss"]) for r in rows if r.get("user_pointer_loss")}
    mine = {r["step"]: float(r["loss/pointer"]) for r in ours if r.get("loss/pointer")}
    assert mine and all(user[step] == pytest.approx(v, rel=1e-6) for step, v in mine.items())

    if tensorboard:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        board = EventAccumulator(tensorboard.log_dir)
        board.Reload()
        seen = board.Scalars("grad_norm/type")
        balance = [e for e in logged if e.get("tasks")]
        assert [s.step for s in seen] == [e["step"] - 1 for e in balance]
        assert [s.value for s in seen] == pytest.approx(
            [e["tasks"][1]["grad_norm"] for e in balance], rel=1e-6
        )


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    return count_syncs(monkeypatch)


def test_lightning_fetches_once_per_logging_step(tmp_path: Path, syncs: Syncs) -> None:
    """The values are fetched where Lightning writes its logs (log_every_n_steps), one
    transfer for all the events since the last, not at every step."""
    pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    from gradlog.recorder.integrations.lightning import GradlogCallback

    callback = GradlogCallback(
        TASKS,
        str(tmp_path / "run.jsonl"),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        log_to_trainer=True,
    )
    lightning_fit(tmp_path, callback, [CSVLogger(tmp_path, name="csv")], log_every_n_steps=5)
    # 10 steps: a fetch at steps 5 and 10; the callback's one check of the weights (two values)
    assert syncs.outside == Counter({"tolist": 2, "__float__": 2}), syncs.where


def _tensorboard_logger(tmp_path: Path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return None
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(tmp_path, name="tb")


def test_lightning_without_a_logger_warns(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from gradlog.recorder.integrations.lightning import GradlogCallback

    callback = GradlogCallback(
        TASKS, str(tmp_path / "run.jsonl"), weights=WEIGHTS, log_to_trainer=True
    )
    with pytest.warns(UserWarning, match="no logger"):
        lightning_fit(tmp_path, callback, loggers=False)


# -- Hugging Face ---------------------------------------------------------------------------------


def hf_train(tmp_path: Path, callback, attach: bool, **training_args):
    transformers = pytest.importorskip("transformers")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def forward(self, x, pointers, labels):
            losses = self.net.losses(x, pointers, labels)
            return {"loss": sum(WEIGHTS[k] * v for k, v in losses.items()), "losses": losses}

    class Data(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x, self.pointers, self.labels = dataset(32)

        def __len__(self) -> int:
            return 32

        def __getitem__(self, i):
            return {"x": self.x[i], "pointers": self.pointers[i], "labels": self.labels[i]}

    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        max_grad_norm=0.0,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **training_args,
    )
    trainer = transformers.Trainer(
        model=Model(), args=args, train_dataset=Data(), callbacks=[callback]
    )
    if attach:
        callback.attach(trainer)
    trainer.train()
    return trainer


def hf_callback(path: Path):
    from gradlog.recorder.integrations.huggingface import GradlogCallback

    return GradlogCallback(
        TASKS,
        str(path),
        weights=WEIGHTS,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        log_to_trainer=True,
    )


def test_huggingface_adds_the_keys_to_the_trainers_logs(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = tmp_path / "run.jsonl"
    trainer = hf_train(tmp_path, hf_callback(path), attach=False, report_to=[], logging_steps=1)
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    logged = events(path)
    steps = [h for h in history if "loss" in h]
    assert [h["step"] for h in steps] == [e["step"] for e in logged] == [1, 2, 3, 4]
    for entry, event in zip(steps, logged):
        keys = expected(event)
        assert {k: entry[k] for k in keys} == keys
        # the Trainer's own total norm is gradlog's (no clipping: max_grad_norm=0)
        assert entry["grad_norm"] == pytest.approx(keys["grad_stats/total_norm"], rel=1e-6)


def test_huggingface_logging_every_other_step_gives_each_keys_latest_value(tmp_path: Path):
    pytest.importorskip("transformers")
    path = tmp_path / "run.jsonl"
    trainer = hf_train(tmp_path, hf_callback(path), attach=False, report_to=[], logging_steps=2)
    logged = events(path)
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in steps] == [2, 4]
    for entry, event in zip(steps, logged[1::2]):
        keys = expected(event)
        assert {k: entry[k] for k in keys} == keys


def test_huggingface_attach_reaches_the_tensorboard_integration(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tmp_path / "run.jsonl"
    trainer = hf_train(
        tmp_path, hf_callback(path), attach=True, report_to=["tensorboard"], logging_steps=1
    )
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("GradlogCallback") < names.index("TensorBoardCallback")
    (run,) = (tmp_path / "hf" / "runs").iterdir()
    board = EventAccumulator(str(run))
    board.Reload()
    logged = events(path)
    # the Trainer's TensorBoard callback prefixes training logs with "train/"
    for key in expected(logged[0]):
        seen = board.Scalars(f"train/{key}")
        assert [s.step for s in seen] == [1, 2, 3, 4]
        assert [s.value for s in seen] == pytest.approx(
            [expected(e)[key] for e in logged], rel=1e-6
        )


def test_huggingface_warns_when_integrations_come_first(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("tensorboard")
    with pytest.warns(UserWarning, match=r"callback.attach\(trainer\)"):
        hf_train(
            tmp_path,
            hf_callback(tmp_path / "run.jsonl"),
            attach=False,
            report_to=["tensorboard"],
            logging_steps=1,
        )


# -- the round trip through gradlog's own readers of other tools' logs --------------------------


@pytest.mark.parametrize(
    ("weights", "status"),
    [(WEIGHTS, "minor"), ({"pointer": 1.0, "type": 0.002}, "collapse")],
    ids=["minor", "type-starved"],
)
def test_round_trip_through_the_foreign_readers(tmp_path: Path, weights, status) -> None:
    """The keys the Lightning callback logged, read back by gradlog's TensorBoard and CSV
    readers, give the report of gradlog's own log: a collapsed run is reported as collapsed,
    with the same numbers, from a Lightning metrics.csv and a TensorBoard directory."""
    import gradlog.analysis.foreign as foreign

    if not (hasattr(foreign, "read_tensorboard") or hasattr(foreign, "read_foreign")):
        pytest.skip(
            "gradlog.analysis.foreign has no read_tensorboard/read_foreign yet: the readers "
            "of issue 12 are merged separately"
        )
    pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    import gradlog
    from gradlog.recorder.integrations.lightning import GradlogCallback

    path = tmp_path / "run.jsonl"
    callback = GradlogCallback(
        TASKS,
        str(path),
        weights=weights,
        log_every=None,
        balance_every=None,
        log_every_steps=1,
        balance_every_steps=1,
        log_to_trainer=True,
    )
    loggers = [CSVLogger(tmp_path, name="csv")]
    tensorboard = _tensorboard_logger(tmp_path)
    loggers += [tensorboard] if tensorboard else []
    lightning_fit(tmp_path, callback, loggers, weights=weights)
    own = judged(gradlog.analyse(path).to_dict())
    assert own["status"] == status
    foreign_logs = [tmp_path / "csv" / "version_0" / "metrics.csv"]
    foreign_logs += [Path(tensorboard.log_dir)] if tensorboard else []
    for foreign_log in foreign_logs:
        report = gradlog.analyse(foreign_log).to_dict()
        theirs = judged(report)
        assert same(theirs, own), foreign_log
        # Lightning's loggers number a step as Lightning does, from 0: one less than gradlog's
        # optimizer steps, counted from 1 (docs/format.md)
        steps = gradlog.analyse(path).to_dict()["runs"][0]["events"]["step"]
        assert report["runs"][0]["events"]["step"] == [s - 1 for s in steps], foreign_log


# What the keys cannot carry (docs/format.md): where the log came from, the run record, and
# gradlog's own step and epoch numbers (a trainer's logger numbers them its own way).
NOT_CARRIED = (
    "source",
    "run",
    "started_at",
    "stats_at",
    "tags",
    "notes",
    "log_every",
    "log_every_steps",
    "last_epoch",
    "first_imbalance",
    "first_collapse",
)
NUMBERED = ("epoch", "step", "label")


def judged(report: dict) -> dict:
    """A report's one run, without what the keys do not carry."""
    (run,) = report["runs"]
    out = {k: v for k, v in run.items() if k not in NOT_CARRIED}
    out["events"] = {k: v for k, v in run["events"].items() if k not in NUMBERED}
    return out


def same(a, b) -> bool:
    """Equal, floats to float32 rounding (TensorBoard's)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return a == pytest.approx(b, rel=1e-5, nan_ok=True)
    return a == b
