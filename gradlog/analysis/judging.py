"""How to judge (the options every analysing command and the API share), apart from the engine
that applies them, so that what only passes them on (the API, a batch whose logs are unchanged)
need not import the engine."""

from __future__ import annotations

from dataclasses import dataclass

from gradlog import classify
from gradlog.errors import GradlogError


@dataclass(frozen=True)
class Options:
    """How to judge: the collapse window, the pair a message names, raw or weighted norms."""

    window: int = classify.DEFAULT_WINDOW
    min_samples: int = classify.DEFAULT_MIN_SAMPLES
    pair: tuple[str, str] | None = None  # the ratio to print; default: see module docstring
    unweighted: bool = False  # judge each norm divided by its loss weight
    # The original monitor's rules (docs/report.md, "--original"): unweighted norms, the
    # arithmetic mean of one pair's ratio over a full window, and the original's gating.
    original: bool = False

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_samples < 1:
            raise GradlogError("--window and --min-samples must be at least 1")
        if self.original:
            # frozen: the implied values set the way dataclasses document for __post_init__
            object.__setattr__(self, "unweighted", True)
            object.__setattr__(self, "min_samples", self.window)
        if self.pair is not None and (len(self.pair) != 2 or self.pair[0] == self.pair[1]):
            raise GradlogError(f"--pair: expected two different tasks, got {'/'.join(self.pair)}")
