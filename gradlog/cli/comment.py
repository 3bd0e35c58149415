"""``gradlog comment``."""

from __future__ import annotations

from typing import Annotated

import typer

from gradlog.cli.app import app

MARKER = "<!-- gradlog-report -->"  # action.yml's default too


@app.command()
def comment(
    report: Annotated[
        str,
        typer.Argument(
            metavar="REPORT", help="A Markdown report (--format markdown -o FILE), or - (stdin)."
        ),
    ],
    pr: Annotated[
        int | None,
        typer.Option(
            "--pr", metavar="N", min=1, help="The pull request (default: GITHUB_EVENT_PATH's)."
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(metavar="OWNER/NAME", help="The repository (default: GITHUB_REPOSITORY)."),
    ] = None,
    marker: Annotated[
        str,
        typer.Option(
            metavar="TEXT", help="The hidden first line that finds the comment to update."
        ),
    ] = MARKER,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the comment's body; send nothing."),
    ] = False,
) -> None:
    """Post a report as one pull-request comment, updated in place on every run (GITHUB_TOKEN)."""
    import os
    import sys
    from pathlib import Path

    from gradlog.analysis import github_comment, output
    from gradlog.errors import GradlogError

    try:
        raw = sys.stdin.buffer.read() if report == "-" else Path(report).read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise GradlogError(f"{report}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise GradlogError(f"{report}: not UTF-8 text (byte {exc.start})") from None
    body = github_comment.sticky_body(output.for_document(text), marker)
    if dry_run:
        output.Output().document(body)
        return
    target = github_comment.target(dict(os.environ), number=pr, repo=repo)
    posted = github_comment.upsert(target, body, marker)
    output.say(f"gradlog: comment {posted.action}: {target.repo}#{target.number} {posted.url}")
