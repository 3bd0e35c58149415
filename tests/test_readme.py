"""The README is part of the interface: its commands exist, and every command is in it."""

from __future__ import annotations

import re

from conftest import ROOT, run_gradlog

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    from typer.main import get_command

    from gradlog.cli import app

    return sorted(get_command(app).commands)


def test_every_command_has_help_and_is_in_the_readme():
    commands = _commands()
    assert "report" in commands and "convert" in commands
    for name in commands:
        result = run_gradlog(name, "--help")
        assert result.returncode == 0, result.stderr.decode()
        assert len(result.stdout.decode().strip()) > 100
        assert f"gradlog {name}" in README, f"README does not mention `gradlog {name}`"


def test_quick_start_is_the_first_section_and_has_the_two_commands():
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert sections[0] == "Quick start"
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", quick, flags=re.DOTALL)
    assert len(blocks) == 2
    assert all("\n" not in b for b in blocks), "each is one command, one line to paste"
    # nothing beyond the package registry: no other index (CI machines reach only the registry)
    assert all("--index-url" not in b and "--extra-index-url" not in b for b in blocks)
    assert "gradlog report sample_logs/" in blocks[0]
    assert "pytest" in blocks[1]
    sample = re.search(r"gradlog report (sample_logs/\S+)", blocks[0]).group(1)
    assert (ROOT / sample).exists()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci
    assert "-m pytest" in ci
