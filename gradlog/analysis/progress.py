"""The progress bar of ``gradlog batch``: Rich, on standard error, only on a terminal."""

from __future__ import annotations

import sys


class Progress:
    """A Rich progress bar on stderr for a terminal (silent when stderr is piped); the
    callback it gives counts the files found, then the files read."""

    def __enter__(self):
        if not sys.stderr.isatty():
            self.bar = None
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "reading logs",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        task = self.bar.add_task("logs", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
