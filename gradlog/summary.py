"""The analysis results: frozen plain objects, the only thing renderers see."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlog.classify import Collapse, NormBand, RatioBand


@dataclass(frozen=True)
class Events:
    """The logged events of a run, in file order, as parallel columns (one entry per event).

    Columns rather than one object per event: a million-event log stays cheap to analyse and
    render. ``mean_norm`` is None for an event without statistics, ``has_balance`` False for
    one without a balance sample.
    """

    epoch: list[int | None]
    step: list[int | None]
    label: list[str]  # "Epoch 10" or "Step 200"
    mean_norm: list[float | None]
    max_norm: list[float | None]
    total_norm: list[float | None]
    n_vanishing: list[int | None]
    n_exploding: list[int | None]
    norm_band: list[NormBand | None]
    has_balance: list[bool]
    norms: dict[str, list[float | None]]  # weighted-loss gradient norm per task
    ratio: list[float | None]  # numerator / denominator; None where undefined or no sample
    ratio_band: list[RatioBand | None]
    imbalance: list[bool]  # the sample is outside the healthy range [0.5, 2.0]
    window_mean: list[float | None]  # mean ratio of the collapse window after this sample
    verdict: list[Collapse | None]  # collapse check after this sample
    shares: dict[str, list[float | None]] | None  # each task's share of the summed norms (3+ tasks)

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class PairConflict:
    """Gradient conflict of two tasks over the last window of samples with a cosine."""

    a: str
    b: str
    mean_cosine: float | None  # None before min_samples
    negative_fraction: float | None  # share of the window's cosines below zero
    n_samples: int  # samples in the window
    last_cosine: float | None
    sustained: bool  # classify.sustained_conflict


@dataclass(frozen=True)
class TaskBalance:
    """Three or more tasks: each task's mean norm over the last window, and how they compare."""

    mean_norms: dict[str, float]
    shares: dict[str, float]  # of the summed mean norms
    ratios: dict[str, float | None]  # "a/b" for every pair, in task order
    dominant: str
    starved: str
    spread: float | None  # dominant / starved mean norm
    n_samples: int


@dataclass(frozen=True)
class Summary:
    n_events: int
    n_stats: int
    n_balance: int
    mean_norm_mean: float | None  # over the finite logged mean norms
    mean_norm_std: float | None  # population std of the same
    max_norm_mean: float | None
    max_norm_peak: float | None
    n_nonfinite: int  # stats events with a NaN or infinite norm
    n_undefined: int  # balance samples whose ratio is undefined
    final_ratio: float | None  # the last window mean
    final_verdict: Collapse
    final_band: RatioBand | None  # band of the last window mean
    worst_ratio: float | None  # the window mean in the worst band over the run
    worst_band: RatioBand | None
    worst_norm_band: NormBand | None  # worst band of any logged mean norm
    first_imbalance: str | None  # label of the first sample outside [0.5, 2.0]
    first_collapse: str | None  # label of the first collapse verdict
    final_shares: dict[str, float] | None
    conflicts: tuple[PairConflict, ...] = ()  # every pair with cosines logged, in task order
    task_balance: TaskBalance | None = None  # three or more tasks


@dataclass(frozen=True)
class Recommendation:
    ratio_band: RatioBand | None
    norm_band: NormBand | None
    dominant: str | None
    starved: str | None
    current_weights: dict[str, float] | None
    weights: dict[str, float] | None  # loss weights that would have balanced the last window
    weights_assumed: bool  # the log carried no weights; 1.0 was assumed
    flags: str | None  # the weights as command-line flags
    withheld: str | None = None  # why no weights are suggested for an imbalanced run


@dataclass(frozen=True)
class RunReport:
    run_id: str
    tasks: tuple[str, ...]
    pair: tuple[str, str] | None
    log_every: int | None
    log_every_steps: int | None
    started_at: str | None
    tags: dict[str, str]
    window: int
    min_samples: int
    events: Events
    summary: Summary
    recommendation: Recommendation


@dataclass(frozen=True)
class Report:
    path: str
    runs: tuple[RunReport, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
