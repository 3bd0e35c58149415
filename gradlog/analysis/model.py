"""The analysis results: frozen, typed objects, the only thing renderers read.

:func:`summaries` turns the engine's per-run frame (:mod:`gradlog.analysis.engine`) into
:class:`RunSummary` objects, the same for ``gradlog report`` (inside :class:`RunReport`),
``gradlog batch`` (one per row) and ``gradlog compare`` (paired). The per-event columns stay a
Polars frame (:attr:`RunReport.events`), read by renderers as columns and never re-parsed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from gradlog import classify, conflict
from gradlog.analysis.status import Status, run_status
from gradlog.classify import Collapse, FailOn, NormBand, RatioBand
from gradlog.format import MAX_TASKS


@dataclass(frozen=True)
class PairConflict:
    """Gradient conflict of two tasks over the last window of samples with a cosine."""

    a: str
    b: str
    mean_cosine: float | None  # None before min_samples
    negative_fraction: float | None  # share of the window's cosines below zero
    n_samples: int  # samples in the window
    last_cosine: float | None
    sustained: bool  # conflict.sustained_conflict


@dataclass(frozen=True)
class Advice:
    """What to change: the bands' actions and the loss weights that balance the last window."""

    ratio_band: RatioBand | None  # of the final window's spread
    norm_band: NormBand | None  # of the mean of the logged mean norms (non-finite: any)
    current_weights: dict[str, float] | None = None
    weights: dict[str, float] | None = None  # every task's window norm equal to the largest
    weights_assumed: bool = False  # the log carried no weights; 1.0 was assumed
    flags: str | None = None  # the weights as command-line flags
    withheld: str | None = None  # why no weights are advised for an imbalanced run


@dataclass(frozen=True)
class RunSummary:
    """One run judged (or one unreadable source, with ``error`` set): a batch row, the
    summary of a report, one side of a comparison."""

    source: str
    run: str | None
    status: Status
    tasks: tuple[str, ...] = ()
    pair: tuple[str, str] | None = None  # the pair messages print (two tasks, or --pair)
    n_events: int = 0
    last_epoch: int | None = None
    n_stats: int = 0
    n_balance: int = 0
    n_undefined: int = 0  # balance samples with a zero, missing or non-finite task norm
    n_nonfinite: int = 0  # stats events with a NaN or infinite norm
    mean_norm: float | None = None  # mean of the finite logged mean norms
    mean_norm_std: float | None = None  # population std of the same
    max_norm_mean: float | None = None
    max_norm_peak: float | None = None
    worst_norm_band: NormBand | None = None
    window_ratio: float | None = None  # final window: window_num's norm over window_den's
    window_num: str | None = None
    window_den: str | None = None
    spread: float | None = None  # final window: largest task norm over the smallest
    dominant: str | None = None  # final window's largest and smallest task norms
    starved: str | None = None
    final_band: RatioBand | None = None  # band of the final spread
    verdict: Collapse = Collapse.NOT_ENOUGH_DATA  # final collapse check (of the spread)
    pair_verdict: Collapse | None = None  # the named pair's own check
    worst_band: RatioBand | None = None  # worst band over the run (undefined: collapse-level)
    worst_spread: float | None = None
    first_imbalance: str | None = None  # label of the first sample with spread above 2
    first_collapse: str | None = None  # label of the first collapse verdict
    window_norms: dict[str, float] | None = None  # final window's geometric mean per task
    shares: dict[str, float] | None = None  # of the window norms (three or more tasks)
    advice: Advice = field(default_factory=lambda: Advice(None, None))
    conflicts: tuple[PairConflict, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None

    def reaches(self, level: FailOn) -> bool:
        """Whether this run's findings reach a ``--fail-on`` level (never an error row)."""
        return self.error is None and classify.reaches(level, self.worst_band, self.worst_norm_band)

    @property
    def name(self) -> str:
        """The run's id, else the file's stem: what tables and legends call it."""
        if self.run:
            return self.run
        stem = self.source.rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet"):
            stem = stem.removesuffix(suffix)
        return stem


def error_row(source: str, message: str, run: str | None = None) -> RunSummary:
    return RunSummary(source=source, run=run, status=Status.ERROR, error=message)


class EventParts:
    """Every run's events, split by run once (on first use) and shared by a report's runs:
    ten thousand runs must not each filter the whole frame."""

    def __init__(self, events: pl.DataFrame) -> None:
        self.all = events
        self._parts: dict[int, pl.DataFrame] | None = None

    def of(self, rid: int) -> pl.DataFrame:
        if self._parts is None:
            if self.all.height == 0:
                self._parts = {}
            elif self.all.get_column("rid").n_unique() == 1:  # one run: no copy of its events
                self._parts = {self.all.get_column("rid")[0]: self.all}
            else:
                split = self.all.partition_by("rid", maintain_order=True, as_dict=True)
                self._parts = {key[0]: frame for key, frame in split.items()}
        return self._parts.get(rid, self.all.clear())


@dataclass(frozen=True)
class RunReport:
    """One run of a report: its summary, the run record's fields and its events."""

    summary: RunSummary
    rid: int
    log_every: int | None
    log_every_steps: int | None
    started_at: str | None
    stats_at: str | None  # "before_clipping" or "after_clipping" (docs/format.md); None: unknown
    tags: dict[str, str]
    window: int
    min_samples: int
    by_steps: bool  # events are labelled "Step N"
    parts: EventParts = field(repr=False, compare=False)
    original: bool = False  # judged by the original monitor's rules (--original)
    unweighted: bool = False  # task norms divided by their weights (--unweighted, --original)

    @property
    def run_id(self) -> str:
        return self.summary.run or ""

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.summary.tasks

    @property
    def pair(self) -> tuple[str, str] | None:
        return self.summary.pair

    @cached_property
    def events(self) -> pl.DataFrame:
        """This run's events, in file order (:data:`gradlog.analysis.engine` columns)."""
        return self.parts.of(self.rid)

    def norms(self, task: str) -> pl.Series:
        """One task's norm per event (null where the event has no sample of it)."""
        ev = self.events.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "names", "norms"
        )
        found = (
            ev.explode("names", "norms")
            .filter(pl.col("names") == task)
            .unique("_i", keep="first", maintain_order=True)
        )
        return (
            ev.select("_i")
            .join(found, on="_i", how="left", maintain_order="left")
            .get_column("norms")
            .cast(pl.Float64)
            .alias(task)
        )


@dataclass(frozen=True)
class Report:
    """Every run of one log, analysed: what every renderer reads (``gradlog.analyse`` returns
    :class:`gradlog.analysis.report.AnalysedReport`, this with its conveniences)."""

    path: str
    runs: tuple[RunReport, ...]
    notes: tuple[str, ...] = ()
    events: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    def events_in_order(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Every run's events (only ``columns``, with ``rid`` and ``row``, when given), run
        after run in the order of :attr:`runs`, each run's in file order, with its run's place
        ``pos``. Sorted only where runs interleave in the file: a sort copies every column."""
        position = {run.rid: pos for pos, run in enumerate(self.runs)}
        events = self.events if columns is None else self.events.select("rid", "row", *columns)
        events = events.with_columns(
            pos=pl.col("rid").replace_strict(position, default=None, return_dtype=pl.Int64)
        )
        if events.get_column("pos").is_sorted() and events.get_column("row").is_sorted():
            return events
        return events.sort("pos", "row")


# -- from the engine's frame --------------------------------------------------------------------


def summaries(
    runs: pl.DataFrame,
    *,
    where: Callable[[int], str | None] | None = None,
    notes: tuple[str, ...] = (),
) -> list[RunSummary]:
    """A :class:`RunSummary` per row of the engine's run frame, in its order."""
    return [_summary(r, where, notes) for r in runs.iter_rows(named=True)]


def _band(value: str | None, kind: type) -> object:
    return kind(value) if value is not None else None


def _summary(r: dict, where, notes: tuple[str, ...]) -> RunSummary:
    tasks = tuple(r["tasks"] or ())
    if len(tasks) > MAX_TASKS:  # each record keeps the limit, but a run's records may not together
        return error_row(
            r["source"],
            f"run {r['run']} of {r['source']}: more than {MAX_TASKS:,} distinct task names "
            f"({len(tasks):,})",
            r["run"],
        )
    if r.get("missing_task") is not None:
        return error_row(
            r["source"],
            f"--pair: no task '{r['missing_task']}' in run {r['run']} of {r['source']} "
            f"(tasks: {', '.join(tasks) or 'none'})",
            r["run"],
        )
    pair = (r["pair_a"], r["pair_b"]) if r["pair_a"] is not None else None
    worst_band = _band(r["worst_band"], RatioBand)
    worst_norm = _band(r["worst_norm_band"], NormBand)
    final_band = _band(r["final_band"], RatioBand)
    window_norms = (
        {n: math.exp(v) for n, v in zip(r["window_names"], r["window_logs"])}
        if r["window_names"]
        else None
    )
    norm_band = None
    if r["n_nonfinite"]:
        norm_band = NormBand.NONFINITE
    elif r["mean_norm"] is not None:
        norm_band = classify.norm_band(r["mean_norm"])
    return RunSummary(
        source=r["source"],
        run=r["run"],
        status=run_status(worst_band, worst_norm),
        tasks=tasks,
        pair=pair,
        n_events=r["n_events"],
        last_epoch=r["last_epoch"],
        n_stats=r["n_stats"],
        n_balance=r["n_balance"],
        n_undefined=r["n_undefined"],
        n_nonfinite=r["n_nonfinite"],
        mean_norm=r["mean_norm"],
        mean_norm_std=r["mean_norm_std"],
        max_norm_mean=r["max_norm_mean"],
        max_norm_peak=r["max_norm_peak"],
        worst_norm_band=worst_norm,
        window_ratio=r["window_ratio"],
        window_num=r["window_num"],
        window_den=r["window_den"],
        spread=r["window_spread"],
        dominant=r["dominant"],
        starved=r["starved"],
        final_band=final_band,
        verdict=Collapse(r["verdict"]) if r["verdict"] else Collapse.NOT_ENOUGH_DATA,
        pair_verdict=(
            Collapse(r["pair_verdict"] or Collapse.NOT_ENOUGH_DATA.value) if pair else None
        ),
        worst_band=worst_band,
        worst_spread=r["worst_spread"],
        first_imbalance=r["first_imbalance"],
        first_collapse=r["first_collapse"],
        # under --original the window holds the pair's mean ratio, not norms (original.py)
        window_norms=None if r["original"] else window_norms,
        shares=(
            classify.shares(window_norms)
            if window_norms and len(tasks) > 2 and not r["original"]
            else None
        ),
        advice=_advice(r, tasks, final_band, norm_band, window_norms),
        conflicts=_conflicts(r.get("conflicts")),
        notes=notes + tuple(_order_notes(r, where)),
    )


def _advice(
    r: dict,
    tasks: tuple[str, ...],
    band: RatioBand | None,
    norm_band: NormBand | None,
    window_norms: dict[str, float] | None,
) -> Advice:
    """The recommendation's weights, by the rules of docs/report.md."""
    if band is None or band is RatioBand.HEALTHY or not window_norms:
        return Advice(band, norm_band)
    withheld = classify.weights_withheld(
        norm_band is NormBand.NONFINITE, not r["last_sample_defined"]
    )
    if withheld is not None:
        return Advice(band, norm_band, withheld=withheld)
    logged = dict(zip(r["window_weight_names"] or [], r["window_weights"] or []))
    current, assumed = classify.current_weights(logged, r["meta_weights"], tasks)
    if r["unweighted"]:
        # raw norms: the weighted norm each task trained with is the raw norm times its weight
        window_norms = {t: n * current[t] for t, n in window_norms.items() if t in current}
    weights = classify.balancing_weights(window_norms, current)
    return Advice(
        band,
        norm_band,
        current,
        weights,
        assumed,
        classify.weight_flags(weights, tasks),
    )


def _conflicts(found: list[dict] | None) -> tuple[PairConflict, ...]:
    return tuple(
        PairConflict(
            a=c["a"],
            b=c["b"],
            mean_cosine=c["mean"],
            negative_fraction=c["negative"],
            n_samples=c["n"],
            last_cosine=c["last"],
            sustained=conflict.sustained_conflict(c["mean"], c["negative"]),
        )
        for c in found or ()
    )


_ORDER_NOTES = (
    ("back", "earlier than the event before (epoch or step going back)"),
    ("repeat", "repeating an epoch and step already logged"),
)


def _order_notes(r: dict, where) -> list[str]:
    """Events that go back in time, or repeat an epoch/step (a run resumed from a checkpoint
    under the same id, two trainings writing one run id): reported in file order, noted."""
    out = []
    for kind, what in _ORDER_NOTES:
        n = r.get(f"n_{kind}")
        if not n:
            continue
        when = ", ".join(
            f"{k} {r[f'{kind}_{k}']}" for k in ("epoch", "step") if r[f"{kind}_{k}"] is not None
        )
        place = where(r[f"{kind}_row"]) if where is not None else None
        at = f", at {place}" if place else ""
        out.append(
            f"{r['source']}: run {r['run']}: {n} event{'s' if n > 1 else ''} {what} "
            f"(the first: {when}{at}); all are reported in file order"
        )
    return out
