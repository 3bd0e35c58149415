"""The progress bar of ``gradlog batch``: Rich, on standard error, only on a terminal."""

from __future__ import annotations

import sys


class Progress:
    """A Rich progress bar on stderr for a terminal (silent when stderr is piped); the
    callback it gives counts the files as they are found (``done, None``: "finding logs
    1234"), then the files read (``done, total``: "reading logs 1234/4000")."""

    def __enter__(self):
        if not sys.stderr.isatty():
            self.bar = None
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        task = self.bar.add_task("finding logs", total=None)

        def update(done: int, total: int | None) -> None:
            what = "finding logs" if total is None else "reading logs"
            self.bar.update(task, completed=done, total=total, description=what)

        return update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
