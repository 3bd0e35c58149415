"""Where a rendered report goes besides standard output: a file, or GitHub's job summary.

``--output FILE`` writes the report atomically (a private temporary file renamed over FILE,
gradlog.files.replacing), so a reader never sees half a report. ``--github`` appends the Markdown to the file named by
``GITHUB_STEP_SUMMARY``, which GitHub Actions shows on the run's summary page.
"""

from __future__ import annotations

import os
from pathlib import Path

from gradlog.errors import GradlogError
from gradlog.files import replacing

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def write_output(text: str, path: str | os.PathLike[str]) -> None:
    """Write ``text`` to ``path``, replacing it whole (never through a planted temporary name)."""
    out = Path(path)
    if out.is_dir():
        raise GradlogError(f"{out}: is a directory, expected an output file")
    with replacing(out) as fh:
        fh.write(text.encode("utf-8"))


def step_summary_room(environ: dict | None = None) -> int | None:
    """Bytes still free in ``$GITHUB_STEP_SUMMARY`` under GitHub's 1 MiB (what earlier commands
    of the step wrote counts, as does the blank line appended after a document); None when
    the variable is not set."""
    from gradlog.analysis.render.fit import SUMMARY_LIMIT

    env = os.environ if environ is None else environ
    target = env.get(STEP_SUMMARY)
    if not target:
        return None
    try:
        used = os.path.getsize(target)
    except OSError:
        used = 0
    return max(0, SUMMARY_LIMIT - used - 2)


def append_step_summary(markdown: str, environ: dict | None = None) -> str | None:
    """Append to ``$GITHUB_STEP_SUMMARY``; the file's path, or None when it is not set."""
    env = os.environ if environ is None else environ
    target = env.get(STEP_SUMMARY)
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
            fh.write("\n")
    except OSError as exc:
        raise GradlogError(f"{target} ({STEP_SUMMARY}): cannot append ({exc.strerror})") from exc
    return target
