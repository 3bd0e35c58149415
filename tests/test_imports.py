"""Heavy imports stay fenced: the analyser never loads torch, the recorder never loads the
analyser's stack. Each check runs in a fresh interpreter, since this one has imported all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from gradlog.recorder.writers import JsonlWriter


def loaded_after(code: str) -> set[str]:
    """Top-level names of the modules a fresh interpreter holds after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json as _json, sys as _sys
        print(_json.dumps(sorted({m.split(".")[0] for m in _sys.modules})))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.decode()
    return set(json.loads(result.stdout.decode().splitlines()[-1]))


def test_importing_gradlog_loads_nothing_heavy() -> None:
    loaded = loaded_after("import gradlog")
    assert not loaded & {"torch", "polars", "rich", "typer"}


def test_cli_report_does_not_import_torch(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path)
    writer.write({"v": 1, "run": "r", "kind": "run", "meta": {"tasks": ["pointer", "type"]}})
    for epoch in (5, 10, 15):
        writer.write(
            {
                "v": 1,
                "run": "r",
                "kind": "event",
                "epoch": epoch,
                "mean_norm": 0.2,
                "max_norm": 0.9,
                "tasks": [
                    {"name": "pointer", "grad_norm": 0.3},
                    {"name": "type", "grad_norm": 0.2},
                ],
            }
        )
    writer.close()
    loaded = loaded_after(
        f"""
        import sys
        import gradlog.cli
        assert "torch" not in sys.modules, "import gradlog.cli loaded torch"
        sys.argv = ["gradlog", "report", {str(path)!r}, "--format", "json"]
        try:
            gradlog.cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """
    )
    assert "polars" in loaded  # the report really ran
    assert "torch" not in loaded


def test_recorder_does_not_import_the_analyser_stack(tmp_path: Path) -> None:
    """Neither importing the recorder nor recording a run to JSON Lines loads Polars, Rich or
    Typer (only a Parquet log needs Polars, and imports it then)."""
    loaded = loaded_after(
        f"""
        import sys
        import gradlog.recorder
        heavy = {{"polars", "rich", "typer"}} & set(sys.modules)
        assert not heavy, f"import gradlog.recorder loaded {{heavy}}"

        import torch
        from gradlog import GradientRecorder
        assert GradientRecorder is gradlog.recorder.GradientRecorder
        model = torch.nn.Linear(2, 2)
        with GradientRecorder(model, ["a", "b"], {str(tmp_path / "run.jsonl")!r},
                              log_every=1, balance_every=1, echo=False) as rec:
            out = model(torch.ones(1, 2))
            rec.backward({{"a": out[0, 0], "b": out[0, 1]}}, epoch=1)
        """
    )
    assert "torch" in loaded
    assert not loaded & {"polars", "rich", "typer"}
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == 2


def test_unknown_package_attribute() -> None:
    import gradlog

    try:
        gradlog.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("gradlog.NoSuchThing did not raise AttributeError")
    assert "GradientRecorder" in gradlog.__all__


def test_the_program_sweeps_for_cycles_rarely_and_not_at_exit(tmp_path: Path) -> None:
    """``gradlog.cli.run`` (the console script, ``python -m gradlog``) keeps its exit code and
    output, and leaves Python's collector as its comment says; ``main`` (the library's entry,
    used in-process) leaves the collector alone."""
    script = textwrap.dedent(
        """
        import gc, sys
        import gradlog.cli
        entry = gradlog.cli.run if sys.argv[1].endswith(".jsonl") else gradlog.cli.main
        sys.argv = ["gradlog", "report", sys.argv[1]]
        try:
            entry()
        except SystemExit as exc:
            print(exc.code, gc.get_threshold()[0], gc.get_freeze_count() > 0)
        """
    )
    log = str(Path(__file__).parent.parent / "sample_logs" / "pointer_collapse.jsonl")
    missing = str(tmp_path / "missing.parquet")
    for path, expected in ((log, "0 100000 True"), (missing, "2 700 False")):
        result = subprocess.run(
            [sys.executable, "-c", script, path], capture_output=True, text=True, timeout=120
        )
        assert result.stdout.splitlines()[-1] == expected, result
        assert ("Task balance" in result.stdout) == (path == log), result
