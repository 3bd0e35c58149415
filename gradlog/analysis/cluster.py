"""``gradlog batch --scheduler ADDRESS``: the chunks of a batch analysed on a Dask cluster.

Each chunk of sources (as :func:`gradlog.analysis.batch.run_batch` groups them) is one Dask task,
which runs :func:`gradlog.analysis.batch.analyse_chunk` on a worker: the worker reads the chunk's
files itself (local paths as that worker sees them, object-store URLs through Polars with the
batch's storage options). Only the sources go out and only their rows come back, and each
chunk's rows take the chunk's place, so the result is the local run's, row for row, in whatever
order the tasks finish.

What a command sets for its whole process goes with every task (:class:`Settings`): the mapping
of other tools' tags (``--map``) and the reading limits (``--max-events``), which a worker,
a process of its own, would otherwise not know.

A worker can die (killed for memory, its machine lost): the scheduler runs a task whose worker
died on another, up to ``distributed.scheduler.allowed-failures`` times (Dask's setting, 3 by
default), and an exception in a task is retried :data:`RETRIES` times. A chunk that fails even
so becomes one error row per source, saying why, and the batch exits 2 as for an unreadable
file: a row is never missing without a word.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from gradlog.analysis import engine
from gradlog.analysis.batch import BatchOptions, analyse_chunk
from gradlog.analysis.foreign.mapping import Mapping, current_mapping, set_mapping
from gradlog.analysis.model import RunSummary, error_row
from gradlog.analysis.sources import Source
from gradlog.errors import GradlogError
from gradlog.format import MAX_EVENTS_ENV, MAX_STREAM_BYTES_ENV

INSTALL = "pip install 'gradlog-mtl[dask]'"
RETRIES = 2  # an exception is retried on the cluster this many times before it is reported
_LIMITS = (MAX_EVENTS_ENV, MAX_STREAM_BYTES_ENV)


@dataclass(frozen=True)
class Settings:
    """This process's mapping and reading limits, for a worker to read the same way."""

    mapping: Mapping
    limits: tuple[tuple[str, str | None], ...]

    @classmethod
    def here(cls) -> Settings:
        return cls(current_mapping(), tuple((name, os.environ.get(name)) for name in _LIMITS))

    def apply(self) -> None:
        # Process-wide, as the command sets them: every task of a batch carries the same values,
        # so a worker's threads running tasks of one batch agree.
        set_mapping(self.mapping)
        for name, value in self.limits:
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def analyse_on_worker(
    chunk: list[Source], judging: engine.Options, options: BatchOptions, settings: Settings
) -> list[RunSummary]:
    """One Dask task: the rows of one chunk, read and analysed by the worker."""
    settings.apply()
    return analyse_chunk(chunk, judging, options)


def on_cluster(
    address: str, chunks: list[list[Source]], judging: engine.Options, options: BatchOptions
) -> Iterator[tuple[int, list[RunSummary]]]:
    """Each chunk's index and rows, analysed by the Dask cluster whose scheduler is at
    ``address``, as the tasks finish (``run_batch``'s ``analyse``, with ``address`` bound)."""
    client = connect(address)
    from distributed import as_completed

    handlers = [] if os.environ.get("GRADLOG_DEBUG") else _dask_handlers()
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL)
    try:
        if not client.nthreads():  # the tasks wait for one; an autoscaled cluster may start some
            from gradlog.analysis.output import note

            note(f"the Dask scheduler at {address} has no workers yet: waiting for one")
        settings = Settings.here()
        batch = uuid.uuid4().hex[:8]  # names the tasks on the dashboard; unique per batch
        futures = {
            client.submit(
                analyse_on_worker,
                chunk,
                judging,
                options,
                settings,
                key=f"gradlog-chunk-{batch}-{i}",
                retries=RETRIES,
                pure=False,
            ): i
            for i, chunk in enumerate(chunks)
        }
        for future in as_completed(futures, loop=client.loop):
            i = futures.pop(future)
            if future.status == "finished":
                rows = future.result()
            else:
                reason = _failure(future)
                rows = [error_row(source.path, reason) for source in chunks[i]]
            future.release()  # the worker may forget the rows now
            yield i, rows
    finally:
        client.close()
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)


def _dask_handlers() -> list[logging.Handler]:
    """The stderr handlers of Dask's loggers ("distributed", "distributed.client", ...), through
    which it logs what it recovers from ("Couldn't gather 1 keys, rescheduling"); what it does not
    recover from, the rows say."""
    loggers = logging.root.manager.loggerDict
    return [
        handler
        for name, logger in loggers.items()
        if name.split(".")[0] == "distributed" and isinstance(logger, logging.Logger)
        for handler in logger.handlers
    ]


def connect(address: str):
    """A client of the Dask scheduler at ``address``, or one line saying why there is none."""
    try:
        from distributed import Client
    except ImportError:
        raise GradlogError(f"--scheduler needs Dask's distributed package: {INSTALL}") from None
    try:
        # Dask's connect timeout (distributed.comm.timeouts.connect, 30s by default) bounds the
        # wait for a scheduler that does not answer.
        return Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = _first_line(exc)
    # raised outside the handler, so that no traceback keeps the half-made client (and its
    # event loop) alive until the interpreter's exit, which it would hold up
    raise GradlogError(f"--scheduler {address}: no Dask scheduler answered ({why})")


def _failure(future) -> str:
    """Why a chunk's task failed, as its sources' error rows say it."""
    from distributed import KilledWorker

    if future.status == "cancelled":
        return "not analysed: its task was cancelled (the Dask scheduler restarted or was lost)"
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        return (
            "not analysed: each Dask worker that ran it died "
            f"(last {exc.last_worker.address}; see that worker's log)"
        )
    if isinstance(exc, ImportError) and "gradlog" in str(exc):
        return f"not analysed: a Dask worker cannot import gradlog ({INSTALL} on every worker)"
    return (
        f"not analysed on the Dask cluster after {RETRIES + 1} tries "
        f"({type(exc).__name__}: {_first_line(exc)})"
    )


def _first_line(exc: BaseException) -> str:
    """The first paragraph of an exception's message, on one line (Dask's wrap theirs)."""
    paragraph = str(exc).strip().split("\n\n")[0]
    return " ".join(paragraph.split()) or type(exc).__name__
