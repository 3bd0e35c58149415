"""One status per run, for tables that sort, filter and count runs (standard library only).

A run has two findings (:mod:`gradlog.classify`): the worst band its window ratio reached, and
the worst band of any logged mean norm. A list of runs needs one word for both, ordered so that
"worst first" means something, plus a badge for Markdown. Files that could not be read get
their own status, the worst of all.
"""

from __future__ import annotations

import enum

from gradlog.classify import NORM_SEVERITY, NormBand, RatioBand


class Status(enum.Enum):
    """A run's overall status; :attr:`rank` orders them, worst first."""

    ERROR = "error"  # the file could not be read
    NONFINITE = "non-finite"  # the run diverged: NaN or infinite gradient norms
    EXPLODING = "exploding"
    COLLAPSE = "collapse"
    UNDEFINED = "undefined"  # a balance sample had no defined ratio (collapse-level)
    SIGNIFICANT = "significant"
    VANISHING = "vanishing"
    LARGE = "large"
    MINOR = "minor"
    HEALTHY = "healthy"
    NO_DATA = "no data"  # too few samples and no statistics: nothing to judge

    @property
    def rank(self) -> int:
        """0 for the worst status; sort ascending to list the worst first."""
        return _ORDER.index(self)

    @property
    def badge(self) -> str:
        """An emoji for Markdown: red for collapse-level findings, amber for warnings."""
        return _BADGES[self]

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def style(self) -> str:
        """The Rich style of this status on a terminal: red, amber, green or dim."""
        return _STYLES[self]


_ORDER = list(Status)
_BADGES = {
    Status.ERROR: "\N{NO ENTRY}",
    Status.COLLAPSE: "\N{CROSS MARK}",
    Status.UNDEFINED: "\N{CROSS MARK}",
    Status.NONFINITE: "\N{CROSS MARK}",
    Status.EXPLODING: "\N{CROSS MARK}",
    Status.SIGNIFICANT: "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
    Status.VANISHING: "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
    Status.LARGE: "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
    Status.MINOR: "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
    Status.HEALTHY: "\N{WHITE HEAVY CHECK MARK}",
    Status.NO_DATA: "\N{WHITE QUESTION MARK ORNAMENT}",
}
_LABELS = {
    Status.ERROR: "Unreadable",
    Status.COLLAPSE: "Task collapse",
    Status.UNDEFINED: "Undefined ratio",
    Status.NONFINITE: "Non-finite gradients",
    Status.EXPLODING: "Exploding gradients",
    Status.SIGNIFICANT: "Significant imbalance",
    Status.VANISHING: "Vanishing gradients",
    Status.LARGE: "Large gradients",
    Status.MINOR: "Minor imbalance",
    Status.HEALTHY: "Healthy",
    Status.NO_DATA: "No data",
}

_RED, _AMBER = "bold red", "yellow"
_STYLES = {
    Status.ERROR: _RED,
    Status.COLLAPSE: _RED,
    Status.UNDEFINED: _RED,
    Status.NONFINITE: _RED,
    Status.EXPLODING: _RED,
    Status.SIGNIFICANT: _AMBER,
    Status.VANISHING: _AMBER,
    Status.LARGE: _AMBER,
    Status.MINOR: _AMBER,
    Status.HEALTHY: "green",
    Status.NO_DATA: "dim",
}
EMPHASIS = "bold"  # headings and the flags to use: not a finding, just what to read first

_FROM_RATIO = {
    RatioBand.HEALTHY: Status.HEALTHY,
    RatioBand.MINOR: Status.MINOR,
    RatioBand.SIGNIFICANT: Status.SIGNIFICANT,
    RatioBand.COLLAPSE: Status.COLLAPSE,
    RatioBand.UNDEFINED: Status.UNDEFINED,
}
_FROM_NORM = {
    NormBand.HEALTHY: Status.HEALTHY,
    NormBand.LOW: Status.HEALTHY,  # no warning (decision in docs/report.md)
    NormBand.ELEVATED: Status.HEALTHY,  # no warning
    NormBand.LARGE: Status.LARGE,
    NormBand.VANISHING: Status.VANISHING,
    NormBand.EXPLODING: Status.EXPLODING,
    NormBand.NONFINITE: Status.NONFINITE,
}
assert set(_FROM_NORM) == set(NORM_SEVERITY)


def run_status(worst_ratio: RatioBand | None, worst_norm: NormBand | None) -> Status:
    """The worse of a run's two findings; NO_DATA when neither could be judged."""
    found = [s for s in (_FROM_RATIO.get(worst_ratio), _FROM_NORM.get(worst_norm)) if s]
    return min(found, key=lambda s: s.rank) if found else Status.NO_DATA


def ratio_status(band: RatioBand | None) -> Status | None:
    return _FROM_RATIO.get(band)


def norm_status(band: NormBand | None) -> Status | None:
    return _FROM_NORM.get(band)
