"""``gradlog report``: the engine on one log, every event kept for the renderers."""

from __future__ import annotations

import polars as pl

from gradlog.analysis import engine
from gradlog.analysis.engine import Options
from gradlog.analysis.model import EventParts, Report, RunReport, summaries
from gradlog.analysis.readers import LoadedLog
from gradlog.analysis.scan import from_frame
from gradlog.errors import GradlogError, LogFormatError

__all__ = ["MAX_RUNS", "AnalysedReport", "Options", "analyse"]

MAX_RUNS = 10_000  # runs in one report (gradlog batch summarises any number)


class AnalysedReport(Report):
    """A :class:`~gradlog.analysis.model.Report` with the conveniences of the Python API."""

    def to_dict(self) -> dict:
        """The report as plain data: exactly ``gradlog report --format json``."""
        from gradlog.analysis.render.json import report_data

        return report_data(self)

    def to_polars(self) -> pl.DataFrame:
        """One row per run, the columns of ``gradlog batch --format csv``."""
        from gradlog.analysis.render.batch import rows_frame

        return rows_frame([r.summary for r in self.runs])

    def _repr_markdown_(self) -> str:
        from gradlog.analysis.render.markdown import format_markdown

        return format_markdown(self)


def analyse(
    log: LoadedLog, options: Options = Options(), *, run: str | None = None, strict: bool = False
) -> AnalysedReport:
    """Analyse every run of ``log`` (or only ``run``), in order of first appearance.

    ``strict`` refuses what would be reported with a note (events out of order).
    """
    frame = log.frame
    if run is not None:
        frame = frame.with_row_index("_row").filter(pl.col("run") == run)
        if frame.height == 0:
            run_ids = log.frame.get_column("run").unique(maintain_order=True).to_list()
            shown = ", ".join(run_ids[:20]) + (
                f" and {len(run_ids) - 20} more" if len(run_ids) > 20 else ""
            )
            raise GradlogError(f"{log.path}: no run '{run}' (runs: {shown})")
        rows = frame.get_column("_row").to_list()
        where = lambda i: log.where(rows[i])  # noqa: E731 - the row in the whole file
        frame = frame.drop("_row")
    else:
        n_runs = frame.get_column("run").n_unique()
        if n_runs > MAX_RUNS:  # a bound on the work and the output: a report per run
            raise GradlogError(
                f"{log.path}: {n_runs:,} runs in one file (a report covers at most "
                f"{MAX_RUNS:,}; pick one with --run, or summarise them with gradlog batch)"
            )
        where = log.where
    judged = engine.judge(from_frame(frame, log.path, 0), options, events=True)
    found = summaries(judged.runs, where=where)
    for summary in found:
        if summary.error is not None:
            raise GradlogError(summary.error)
    notes = list(log.notes) + _skipped_notes(frame, log.path)
    for summary in found:
        if summary.notes and strict:
            raise LogFormatError(f"{summary.notes[0]}; refused with --strict", log.path)
        notes += summary.notes
    parts = EventParts(judged.events)
    meta = judged.runs.select(
        "rid", "log_every", "log_every_steps", "started_at", "stats_at", "tags", "by_steps"
    ).iter_rows(named=True)
    runs = tuple(
        RunReport(
            summary=s,
            rid=m["rid"],
            log_every=m["log_every"],
            log_every_steps=m["log_every_steps"],
            started_at=m["started_at"],
            stats_at=m["stats_at"],
            tags={t["key"]: t["value"] for t in m["tags"] or [] if t and t["key"] is not None},
            window=options.window,
            min_samples=options.min_samples,
            by_steps=m["by_steps"],
            parts=parts,
            original=options.original,
            unweighted=options.unweighted,
        )
        for s, m in zip(found, meta)
    )
    return AnalysedReport(log.path, runs, tuple(notes), judged.events)


def _skipped_notes(frame: pl.DataFrame, path: str) -> list[str]:
    """A note per run whose recorder skipped balance samples it could not take (the log's
    ``skipped``, docs/format.md): they are no samples, and a run that skipped many would
    otherwise look merely short of data."""
    if "skipped" not in frame.columns:
        return []
    skipped = frame.filter(pl.col("skipped").is_not_null())
    if skipped.height == 0:
        return []
    notes = []
    for run in (
        skipped.group_by("run", maintain_order=True)
        .agg(pl.len(), pl.col("epoch", "step", "skipped").first())
        .iter_rows(named=True)
    ):
        n = run["len"]
        when = ", ".join(f"{k} {run[k]}" for k in ("epoch", "step") if run[k] is not None)
        at = f" at {when}" if when else ""
        notes.append(
            f"{path}: run {run['run']}: {n} balance sample{'s' * (n != 1)} skipped by the "
            f"recorder (the first{at}: {run['skipped']})"
        )
    return notes
