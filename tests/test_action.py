"""The GitHub Action (action.yml, action/run.sh): its structure, and its step run for real.

The step runs as Actions would run it: the variables a runner sets, a pull-request event, real
logs, the checkout's gradlog, and a fake GitHub API on loopback (tests/fake_github.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_github import PR, REPO, TOKEN, FakeGitHub, serving
from runlogs import write_run

from gradlog.cli.comment import MARKER

yaml = pytest.importorskip("yaml")  # PyYAML: the test extra pins it

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
STEP = ROOT / "action" / "run.sh"


@pytest.fixture(scope="module")
def action() -> dict:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))


def test_the_action_is_a_composite_whose_inputs_are_all_declared_and_used(action) -> None:
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {
        "paths",
        "command",
        "args",
        "python-version",
        "comment",
        "token",
        "marker",
    }
    text = ACTION.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{\{\s*inputs\.([\w-]+)", text))
    assert used == set(action["inputs"])  # each used, none undeclared
    assert action["inputs"]["marker"]["default"] == MARKER
    assert action["inputs"]["token"]["default"] == "${{ github.token }}"
    for name, spec in action["outputs"].items():
        step_id, key = re.fullmatch(
            r"\$\{\{ steps\.(\w+)\.outputs\.([\w-]+) \}\}", spec["value"]
        ).groups()
        assert any(s.get("id") == step_id for s in action["runs"]["steps"]), name
        assert f'echo "{key}=' in STEP.read_text(encoding="utf-8")


def test_every_step_is_safe_and_its_files_exist(action) -> None:
    for step in action["runs"]["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"actions/setup-python@v\d+", step["uses"])
            continue
        assert step["shell"] == "bash"
        # an input pasted into a script is a script injection: they come in as variables
        assert "${{" not in step["run"], step["run"]
        for ref in re.findall(r'"\$GITHUB_ACTION_PATH/([^"]+)"', step["run"]):
            assert (ROOT / ref).is_file(), ref
    install, run = (s["run"] for s in action["runs"]["steps"] if "run" in s)
    assert install.startswith("python -m pip install") and "$GITHUB_ACTION_PATH" in install
    assert (ROOT / "pyproject.toml").is_file()  # what that install builds
    assert run == 'bash "$GITHUB_ACTION_PATH/action/run.sh"'
    assert os.access(STEP, os.X_OK)
    check = subprocess.run(["bash", "-n", str(STEP)], capture_output=True)
    assert check.returncode == 0, check.stderr


# -- the step, run ------------------------------------------------------------------------------


def step(api: FakeGitHub, tmp: Path, event: str, **inputs: str) -> tuple:
    """Run action/run.sh as the runner would; (process, summary text, outputs)."""
    tmp.mkdir(exist_ok=True)
    (tmp / "event.json").write_text(json.dumps({"pull_request": {"number": PR}}))
    summary, outputs = tmp / "summary.md", tmp / "output.txt"
    summary.write_text("")
    outputs.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GRADLOG"))}
    env.update(
        {
            "GRADLOG": f"{sys.executable} -m gradlog",
            "NO_COLOR": "1",
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_API_URL": api.base,
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(tmp / "event.json"),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_RUN_ID": "4242",
            "RUNNER_TEMP": str(tmp),
            **{f"GRADLOG_{k.upper()}": v for k, v in inputs.items()},
        }
    )
    proc = subprocess.run(["bash", str(STEP)], capture_output=True, env=env, cwd=ROOT, timeout=120)
    found = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return proc, summary.read_text(encoding="utf-8"), found


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir()
    write_run(folder / "ok.jsonl", [1.0, 1.1, 0.9, 1.0], run="ok")
    write_run(folder / "bad.jsonl", [1.0, 8.0, 9.0, 12.0], run="bad")
    return folder


def test_on_a_pull_request_one_comment_is_made_then_updated(tmp_path, logs) -> None:
    with serving(FakeGitHub()) as api:
        proc, summary, out = step(api, tmp_path / "a", "pull_request", paths=str(logs))
        assert proc.returncode == 0, proc.stderr.decode()
        assert "gradlog batch: 1 of 2 runs need attention" in summary
        (made,) = api.comments
        assert made["body"].startswith(f"{MARKER}\n## ❌ gradlog batch")
        assert made["body"][len(MARKER) + 1 :] == Path(out["report"]).read_text(encoding="utf-8")
        assert out["exit-code"] == "0"

        proc, _, out = step(
            api,
            tmp_path / "b",
            "pull_request",
            paths=f"{logs}/bad.jsonl",
            command="report",
            args="--fail-on collapse  --window 3",
        )
        assert proc.returncode == 1, proc.stderr.decode()  # after commenting
        assert out["exit-code"] == "1"
        (updated,) = api.comments  # the same comment, edited
        assert updated["id"] == made["id"] and "run ` bad `" in updated["body"]
        assert [m for m, _, _ in api.writes()] == ["POST", "PATCH"]


def test_on_a_push_nothing_is_posted_and_bad_inputs_are_one_error(tmp_path, logs) -> None:
    with serving(FakeGitHub()) as api:
        proc, summary, _ = step(api, tmp_path / "push", "push", paths=f"{logs}/*.jsonl")
        assert proc.returncode == 0, proc.stderr.decode()
        assert "2 runs" in summary or "of 2 runs" in summary
        proc, _, _ = step(api, tmp_path / "bad", "pull_request", paths=str(logs), command="plot")
        assert proc.returncode == 2
        assert proc.stdout.decode().startswith("::error title=gradlog action::command: expected")
        proc, _, out = step(
            api, tmp_path / "missing", "pull_request", paths="/nonexistent.jsonl", command="report"
        )
        assert proc.returncode == 2 and out["exit-code"] == "2"
        assert "Error: /nonexistent.jsonl" in proc.stderr.decode()
        assert api.requests == []  # no report: nothing to post
