"""The analysis results: frozen plain objects, the only thing renderers see."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlog.classify import Collapse, NormBand, RatioBand


@dataclass(frozen=True)
class StatsView:
    """Global gradient statistics of one logged event."""

    mean_norm: float
    max_norm: float
    total_norm: float | None
    n_vanishing: int | None
    n_exploding: int | None
    band: NormBand


@dataclass(frozen=True)
class BalanceView:
    """One task balance sample and the collapse check that followed it."""

    norms: dict[str, float | None]  # weighted-loss gradient norm per task
    ratio: float | None  # numerator / denominator; None where undefined
    band: RatioBand
    imbalance: bool  # outside the healthy range [0.5, 2.0]
    window_mean: float | None  # mean ratio of the collapse window after this sample
    verdict: Collapse
    shares: dict[str, float] | None  # each task's share of the summed norms (3+ tasks)


@dataclass(frozen=True)
class EventView:
    epoch: int | None
    step: int | None
    label: str  # "Epoch 10" or "Step 200"
    stats: StatsView | None
    balance: BalanceView | None

    @property
    def when(self) -> str:
        return self.label[:1].lower() + self.label[1:]


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
    events: tuple[EventView, ...]
    summary: Summary
    recommendation: Recommendation


@dataclass(frozen=True)
class Report:
    path: str
    runs: tuple[RunReport, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
