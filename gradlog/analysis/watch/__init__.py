"""``gradlog watch``: a log (or a folder of logs) followed while the recorder writes it.

Each refresh looks at the paths (:mod:`.follow`), then reads every log whole through the one
reader and judges it with the one engine, exactly as ``gradlog report`` does: the numbers shown
at any moment are the report of the log as it was then, never an estimate of their own.
Looking before reading matters: a log seen finished (nobody writes it) and then read is read
with its last record. The watcher holds no file open between refreshes and takes no lock a
writer waits for; a refresh that costs more than half the interval stretches the interval, so
that a large log never keeps a core busy beside the training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from gradlog.analysis.watch.follow import Followed, Look, change, logs_in, look
from gradlog.errors import GradlogError

__all__ = ["Followed", "follow"]

Analyse = Callable[[str], object]  # a path -> gradlog.analysis.report.AnalysedReport


def follow(
    target: str,
    analyse: Analyse,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[Followed]]:
    """Each refresh of ``target`` (a log, or a folder of logs), until every log it names has
    ended; the last is of every log read after it was seen finished. A log that cannot be read
    once it has ended raises its :class:`~gradlog.errors.GradlogError`."""
    folder = os.path.isdir(target)
    before: dict[str, Look] = {}
    news: dict[str, str] = {}
    last: dict[str, object] = {}
    while True:
        started = time.monotonic()
        paths = logs_in(target) if folder else [target]
        looks = {p: look(p) for p in paths}  # before reading (module docstring)
        now: list[Followed] = []
        for path in paths:
            seen = looks[path]
            happened = change(before.get(path), seen)
            if happened:
                news[path] = happened
            before[path] = seen
            if not seen.exists:
                now.append(Followed(seen, None, None, news.get(path)))
                continue
            try:
                last[path] = analyse(path)
                problem = None
            except GradlogError as exc:
                if seen.ended:
                    raise
                problem = str(exc)
            now.append(Followed(seen, last.get(path), problem, news.get(path)))
        yield now
        if now and all(f.look.ended and f.problem is None for f in now):
            return
        elapsed = time.monotonic() - started
        sleep(max(interval, 2 * elapsed))
