"""The mapping from other tools' keys to gradlog's fields: built-in templates, --map, the map
file, and what is said when nothing maps. Logs are W&B history files written here, read by the
real command line."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import gradlog
from gradlog.analysis.foreign import read_scalars, sniff
from gradlog.analysis.foreign.mapping import (
    DEFAULT,
    current_mapping,
    load_map_file,
    make_mapping,
    parse_map,
)
from gradlog.analysis.foreign.records import to_log
from gradlog.analysis.foreign.scalars import SCALARS_SCHEMA, Scalars
from gradlog.classify import LAYER_EXPLODING, LAYER_VANISHING
from gradlog.errors import GradlogError, LogFormatError
from tests.conftest import run_gradlog

STEPS = 12


def write_history(path: Path, columns: dict[str, list[float]]) -> Path:
    """A W&B history CSV: ``_step`` and ``_timestamp`` beside the logged columns."""
    n = len(next(iter(columns.values())))
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["_step", "_timestamp", *columns])
        for i in range(n):
            writer.writerow([i + 1, 1.7e9 + i, *(c[i] for c in columns.values())])
    return path


def collapsing(prefix: str = "grad_norm/{}") -> dict[str, list[float]]:
    """Two tasks whose norm ratio grows from 1 to 30: a collapse by the end."""
    return {
        prefix.format("pointer"): [1.0 + 29.0 * i / (STEPS - 1) for i in range(STEPS)],
        prefix.format("type"): [1.0] * STEPS,
    }


def report_json(path: Path, *args: str) -> dict:
    result = run_gradlog("report", str(path), "--format", "json", *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)["runs"][0]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def scalars(rows: list[tuple], kind: str = "tensorboard") -> Scalars:
    frame = pl.DataFrame(rows, schema=SCALARS_SCHEMA, orient="row")
    return Scalars("log", kind, frame)


# -- the built-in templates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["grad_norm/{}", "{}_grad_norm", "grad_norm_{}", "train/grad_norm/{}"]
)
def test_each_per_task_convention_reports_the_collapse(tmp_path: Path, key: str) -> None:
    path = write_history(tmp_path / "h.csv", collapsing(key))
    run = report_json(path)
    assert run["status"] == "collapse" and run["dominant"] == "pointer"
    assert run["tasks"] == ["pointer", "type"]


def test_totals_are_not_tasks() -> None:
    rows = [
        (None, s, None, t, 1.0, None) for s in (1, 2) for t in ("grad_norm_total", "a_grad_norm")
    ]
    frame = to_log(scalars(rows), DEFAULT).frame
    assert frame.row(0, named=True)["meta"]["tasks"] == ["a"]
    assert frame.filter(pl.col("kind") == "event").get_column("total_norm").to_list() == [1.0, 1.0]


def test_values_at_one_step_from_different_tags_are_one_event() -> None:
    """TensorBoard writes each tag on its own: one step's points are far apart in the file."""
    tags = ["grad_norm/a", "grad_norm/b", "loss/a", "cos_grad_sim/a_vs_b", "grad_norm"]
    rows = [("r", s, 0, tag, float(s + i), None) for i, tag in enumerate(tags) for s in (1, 2, 3)]
    events = to_log(scalars(rows), DEFAULT).frame.filter(pl.col("kind") == "event")
    assert events.get_column("step").to_list() == [1, 2, 3]
    first = events.row(0, named=True)
    assert [(t["name"], t["grad_norm"], t["loss"]) for t in first["tasks"]] == [
        ("a", 1.0, 3.0),
        ("b", 2.0, None),
    ]
    assert first["conflicts"] == [{"a": "a", "b": "b", "cosine": 4.0}]
    assert first["total_norm"] == 5.0


def test_tasks_only_where_every_task_has_a_norm() -> None:
    rows = [("r", 1, None, "grad_norm/a", 1.0, None), ("r", 1, None, "grad_norm/b", 2.0, None)]
    rows += [("r", 2, None, "grad_norm/a", 1.0, None), ("r", 2, None, "grad_norm", 3.0, None)]
    events = to_log(scalars(rows), DEFAULT).frame.filter(pl.col("kind") == "event")
    assert events.get_column("tasks").list.len().to_list() == [2, None]
    assert events.get_column("total_norm").to_list() == [None, 3.0]


def test_per_parameter_norms_become_the_statistics() -> None:
    norms = [LAYER_VANISHING / 10, 0.5, 1.5, LAYER_EXPLODING * 2]
    rows = [("r", 1, None, f"grad_2.0_norm/layer{i}.weight", v, None) for i, v in enumerate(norms)]
    event = to_log(scalars(rows), DEFAULT).frame.row(1, named=True)
    assert event["mean_norm"] == pytest.approx(sum(norms) / 4)
    assert event["max_norm"] == LAYER_EXPLODING * 2
    assert (event["n_grads"], event["n_vanishing"], event["n_exploding"]) == (4, 1, 1)


def test_a_value_written_twice_at_a_step_counts_once_the_later() -> None:
    rows = [("r", 1, None, "grad_norm", 1.0, None), ("r", 1, None, "grad_norm", 2.0, None)]
    events = to_log(scalars(rows), DEFAULT).frame.filter(pl.col("kind") == "event")
    assert events.get_column("total_norm").to_list() == [2.0]


def test_weights_and_runs_and_cadence() -> None:
    rows = []
    for run in ("x", "y"):
        for s in (10, 20, 30):
            rows += [
                (run, s, None, "grad_norm/b", 1.0, 5.0),
                (run, s, None, "grad_norm/a", 2.0, None),
            ]
            rows += [(run, s, None, "weight/a", 0.5, None), (run, s, None, "weight/b", 2.0, None)]
    frame = to_log(scalars(rows), DEFAULT).frame
    runs = frame.filter(pl.col("kind") == "run")
    assert runs.get_column("run").to_list() == ["x", "y"]
    meta = runs.row(0, named=True)["meta"]
    assert meta["tasks"] == ["b", "a"]
    assert meta["weights"] == [{"name": "b", "weight": 2.0}, {"name": "a", "weight": 0.5}]
    assert meta["balance_every_steps"] == 10
    assert frame.get_column("kind").to_list() == ["run", *["event"] * 3, "run", *["event"] * 3]


# -- only global norms: the statistics part ------------------------------------------------------


def test_only_global_norms_give_the_statistics_part(tmp_path: Path) -> None:
    path = write_history(
        tmp_path / "h.csv", {"train/grad_norm": [0.3] * STEPS, "train/loss": [1.0] * STEPS}
    )
    run = report_json(path)
    assert run["n_stats"] == STEPS and run["n_balance"] == 0
    assert run["mean_norm"] == pytest.approx(0.3)
    assert run["tags"]["gradlog.read.mean_norm"].startswith("grad_norm (the total norm")
    text = run_gradlog("report", str(path)).stdout.decode()
    assert "Mean gradient norm: 0.3000" in text
    assert "Read from a W&B history export: total_norm from grad_norm;" in text


def test_direct_mean_and_max_norms_with_map(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", {"gn/mean": [0.2] * STEPS, "gn/max": [0.9] * STEPS})
    run = report_json(path, "--map", "gn/mean=mean_norm", "--map", "gn/max=max_norm")
    assert run["mean_norm"] == pytest.approx(0.2) and run["max_norm_peak"] == pytest.approx(0.9)


# -- --map, --map-file and what is said when nothing maps ----------------------------------------


def test_nothing_maps_lists_the_tags_found(tmp_path: Path) -> None:
    columns = {f"metric_{i:02d}": [1.0] * STEPS for i in range(25)}
    path = write_history(tmp_path / "h.csv", columns)
    err = one_error_line(run_gradlog("report", str(path)))
    assert f"{path}: no tag maps to a gradlog field; found 25 tags: metric_00, metric_01" in err
    assert "metric_19 and 5 more" in err and "metric_20" not in err
    assert "--map 'TEMPLATE=FIELD'" in err


def test_map_reads_a_teams_own_keys(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", collapsing("gnorm.{}"))
    one_error_line(run_gradlog("report", str(path)))
    run = report_json(path, "--map", "gnorm.{task}=grad_norm")
    assert run["status"] == "collapse" and run["tags"]["gradlog.read.grad_norm"] == "gnorm.{task}"


def test_map_file(tmp_path: Path) -> None:
    path = write_history(
        tmp_path / "h.csv", {**collapsing("gn_{}"), "sim:pointer|type": [0.1] * STEPS}
    )
    rules = tmp_path / "gradlog-map.toml"
    rules.write_text('[map]\n"gn_{task}" = "grad_norm"\n"sim:{a}|{b}" = "cosine"\n')
    run = report_json(path, "--map-file", str(rules))
    assert run["status"] == "collapse"
    assert run["tags"]["gradlog.read.cosine"] == "sim:{a}|{b}"


def test_map_comes_before_the_built_in_templates(tmp_path: Path) -> None:
    """A team whose grad_norm/{task} is something else says so, and is believed."""
    path = write_history(tmp_path / "h.csv", {**collapsing(), **collapsing("real/{}")})
    rules = ["--map", "grad_norm/{task}=loss", "--map", "real/{task}=grad_norm"]
    run = report_json(path, *rules)
    assert run["tags"]["gradlog.read.loss"] == "grad_norm/{task}"
    assert run["tags"]["gradlog.read.grad_norm"] == "real/{task}"


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        ("gnorm/{task}", "expected TEMPLATE=FIELD"),
        ("gnorm/{task}=gradnorm", "unknown field 'gradnorm'"),
        ("gnorm/{name}=grad_norm", "unknown placeholder '{name}'"),
        ("gnorm=grad_norm", "field 'grad_norm' needs {task}"),
        ("cos/{a}=cosine", "field 'cosine' needs {a} and {b}"),
        ("total/{task}=total_norm", "field 'total_norm' needs no placeholder"),
    ],
)
def test_bad_map_is_one_clear_line(tmp_path: Path, rule: str, said: str) -> None:
    path = write_history(tmp_path / "h.csv", collapsing())
    err = one_error_line(run_gradlog("report", str(path), "--map", rule))
    assert f"--map '{rule}" in err and said in err


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[map\n", "not valid TOML"),
        ('[other]\n"a" = "b"\n', "no [map] table"),
        ('[map]\n"gn/{task}" = 3\n', "expected a field name"),
        ('[map]\n"gn/{task}" = "norm"\n', "unknown field 'norm'"),
    ],
)
def test_bad_map_file_is_one_clear_line(tmp_path: Path, text: str, said: str) -> None:
    path = write_history(tmp_path / "h.csv", collapsing())
    rules = tmp_path / "map.toml"
    rules.write_text(text)
    err = one_error_line(run_gradlog("batch", str(path), "--map-file", str(rules)))
    assert str(rules) in err and said in err


def test_map_on_every_command(tmp_path: Path) -> None:
    base = write_history(tmp_path / "base.csv", collapsing("g.{}"))
    head = write_history(tmp_path / "head.csv", collapsing("g.{}"))
    rule = ["--map", "g.{task}=grad_norm"]
    assert run_gradlog("batch", str(tmp_path), *rule).returncode == 0
    assert run_gradlog("compare", str(base), str(head), *rule).returncode == 0
    out = tmp_path / "out.parquet"
    assert run_gradlog("convert", str(base), "-o", str(out), *rule).returncode == 0
    assert report_json(out)["status"] == "collapse"
    pytest.importorskip("matplotlib")
    picture = tmp_path / "plot.png"
    result = run_gradlog("plot", str(base), "-o", str(picture), *rule)
    assert result.returncode == 0, result.stderr.decode()


# -- the API --------------------------------------------------------------------------------------


def test_the_api_takes_the_mapping_and_leaves_it(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", collapsing("g.{}"))
    with pytest.raises(LogFormatError, match="no tag maps"):
        gradlog.read(path)
    frame = gradlog.read(path, mapping=["g.{task}=grad_norm"])
    assert frame.filter(pl.col("kind") == "event").height == STEPS
    assert gradlog.analyse(path, mapping=["g.{task}=grad_norm"]).runs[0].summary.status.value == (
        "collapse"
    )
    assert current_mapping() is DEFAULT


def test_parse_map_and_map_file(tmp_path: Path) -> None:
    (rule,) = parse_map(["cos/{a}~{b}=cosine"])
    assert rule.pattern.fullmatch("cos/x~y").groupdict() == {"a": "x", "b": "y"}
    path = tmp_path / "map.toml"
    path.write_text('[map]\n"x/{param}" = "param_norm"\n')
    assert [r.template for r in load_map_file(path)] == ["x/{param}"]
    mapping = make_mapping(["a/{task}=loss"], path)
    assert [r.template for r in mapping.rules[:2]] == ["a/{task}", "x/{param}"]
    with pytest.raises(GradlogError, match="expected TEMPLATE=FIELD"):
        parse_map(["nothing"])


# -- detection by content -------------------------------------------------------------------------


def test_detection_by_content(tmp_path: Path) -> None:
    lightning = tmp_path / "a.txt"
    lightning.write_text("epoch,step,train_loss\n0,0,1.0\n")
    wandb = tmp_path / "b.txt"
    wandb.write_text('{"_step": 1, "grad_norm": 0.5}\n')
    own = tmp_path / "c.csv"
    own.write_text('{"v":1,"run":"r","kind":"run","meta":{"tasks":["a","b"]}}\n')
    assert (sniff(lightning), sniff(wandb), sniff(own)) == ("lightning-csv", "wandb", None)
    folder = tmp_path / "tb"
    folder.mkdir()
    event = folder / "renamed.bin"  # a TFRecord of an Event: a length, its CRC, then wall_time
    event.write_bytes((24).to_bytes(8, "little") + b"\0" * 4 + b"\x09" + b"\0" * 20)
    assert sniff(event) == "tensorboard"
    (folder / "events.out.tfevents.1.host").write_bytes(event.read_bytes())
    assert sniff(folder) == "tensorboard"


def test_a_reader_not_there_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradlog.analysis.foreign.lightning_csv", None)
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,0,1.0\n")
    with pytest.raises(LogFormatError, match="looks like a Lightning CSV log, which this gradlog"):
        read_scalars(str(path), "lightning-csv")


def test_an_unknown_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("what,when\nlunch,noon\n")
    err = one_error_line(run_gradlog("report", str(path)))
    assert "not a log gradlog can read" in err and "docs/import.md" in err


def test_non_finite_values_survive(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", {"grad_norm": [0.3, math.nan, math.inf, 0.2]})
    events = gradlog.read(path).filter(pl.col("kind") == "event")
    values = events.get_column("total_norm").to_list()
    assert values[0] == 0.3 and math.isnan(values[1]) and values[2] == math.inf


def test_real_tensorboard_and_lightning_files_are_told_apart(tmp_path: Path) -> None:
    """Event files from TensorBoard's own writer, metrics.csv from Lightning's CSVLogger."""
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    loggers = pytest.importorskip("lightning.pytorch.loggers")
    writer = tensorboard.SummaryWriter(str(tmp_path / "tb"))
    writer.add_scalar("grad_norm/pointer", 1.0, 1)
    writer.close()
    (event,) = (tmp_path / "tb").iterdir()
    renamed = tmp_path / "renamed"
    renamed.write_bytes(event.read_bytes())
    logger = loggers.CSVLogger(str(tmp_path / "lightning"))
    logger.log_metrics({"grad_2.0_norm/layer.weight": 1.0, "train_loss": 0.5, "epoch": 0}, step=0)
    logger.save()
    (metrics,) = (tmp_path / "lightning").rglob("metrics.csv")
    assert [sniff(p) for p in (tmp_path / "tb", event, renamed)] == ["tensorboard"] * 3
    assert sniff(metrics) == "lightning-csv"


def test_batch_finds_other_tools_logs_in_folders(tmp_path: Path) -> None:
    from gradlog.analysis.sources import CAREFUL, find_sources

    run = tmp_path / "tb" / "run1"
    run.mkdir(parents=True)
    header = (24).to_bytes(8, "little") + b"\0" * 4 + b"\x09" + b"\0" * 20
    (run / "events.out.tfevents.1.host").write_bytes(header)
    (run / "events.out.tfevents.2.host").write_bytes(header)  # resumed: still one run
    (tmp_path / "metrics.csv").write_text("epoch,step,train_loss\n0,0,1.0\n")
    write_history(tmp_path / "history.csv", collapsing())
    (tmp_path / "history.jsonl").write_text('{"_step": 1, "grad_norm": 0.5}\n')
    (tmp_path / "trainer_state.json").write_text('{"log_history": []}')
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "other.json").write_text("[]")
    found = {Path(s.path).name: s.how for s in find_sources([str(tmp_path)], note=print)}
    assert found == {
        "run1": CAREFUL,
        "metrics.csv": CAREFUL,
        "history.csv": CAREFUL,
        "history.jsonl": CAREFUL,
        "trainer_state.json": CAREFUL,
    }


def test_ignore_leaves_out_a_tag_a_built_in_template_would_misread(tmp_path: Path) -> None:
    columns = {**collapsing("{}_grad_norm"), "pre_clip_grad_norm": [3.0] * STEPS}
    path = write_history(tmp_path / "h.csv", columns)
    assert report_json(path)["tasks"] == ["pointer", "type", "pre_clip"]
    run = report_json(path, "--map", "pre_clip_grad_norm=ignore")
    assert run["tasks"] == ["pointer", "type"] and run["status"] == "collapse"
