"""The recorder's live echo: the report's lines, printed as each record is logged.

Standard library only. It judges with :mod:`gradlog.classify` and words with
:mod:`gradlog.messages`, exactly as the offline report does, so that the echo of a run is the
report of its log up to the "Recommended action" section (tested).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import IO

from gradlog import classify, messages
from gradlog.schema import Record


class LiveEcho:
    """Prints the documented report lines of a run while it is recorded."""

    def __init__(
        self,
        stream: IO[str],
        tasks: list[str],
        *,
        by_steps: bool,
        window: int,
        min_samples: int,
    ) -> None:
        self._stream = stream
        self._tasks = tasks
        self._by_steps = by_steps
        self._window = window
        self._min_samples = min_samples
        self._pair = classify.default_pair(tasks)
        self._ratios: deque[float] = deque(maxlen=window)  # the collapse window
        self._means: list[float] = []  # finite logged mean norms, for the summary
        self._maxes: list[float] = []
        self._n_stats = 0
        self._shares: deque[dict[str, float]] = deque(maxlen=window)

    def print(self, lines: list[str]) -> None:
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()

    def start(self, log_every: int | None, log_every_steps: int | None) -> None:
        self.print([messages.enabled_line(log_every, log_every_steps), ""])

    def record(self, record: Record, balance: list[float] | None) -> None:
        """The lines of one logged event; ``balance`` holds the task norms, in task order."""
        lines: list[str] = []
        label = (
            f"Step {record['step']}"
            if self._by_steps or record["epoch"] is None
            else f"Epoch {record['epoch']}"
        )
        if "mean_norm" in record:
            self._n_stats += 1
            if math.isfinite(record["mean_norm"]) and math.isfinite(record["max_norm"]):
                self._means.append(record["mean_norm"])
                self._maxes.append(record["max_norm"])
            lines += messages.stats_block(
                label,
                record["mean_norm"],
                record["max_norm"],
                record["n_vanishing"],
                record["n_exploding"],
            )
            lines.append("")
        if balance is not None and self._pair is not None:
            num, den = self._pair
            norms = dict(zip(self._tasks, balance))
            r = classify.ratio(norms[num], norms[den])
            when = label.lower()
            if r is None:
                lines += [messages.undefined_ratio_line(when, num, den, norms[num], norms[den]), ""]
            else:
                self._ratios.append(r)
                if classify.outside_healthy_range(r):
                    lines += [*messages.imbalance_lines(when, num, den, r), ""]
            mean = classify.window_mean(list(self._ratios), self._window, self._min_samples)
            lines.append(messages.collapse_line(classify.collapse_check(mean), num, den, mean))
            shares = classify.shares(norms) if len(self._tasks) > 2 else None
            if shares is not None:
                lines.append(messages.shares_line(shares))
                if r is not None:
                    self._shares.append(shares)
            lines.append("")
        if lines:
            self.print(lines)

    def summary(self) -> None:
        """The ``Gradient Monitoring Summary`` block, as the original printed it at the end."""
        means, maxes = self._means, self._maxes
        num, den = self._pair or ("", "")
        mean = classify.window_mean(list(self._ratios), self._window, self._min_samples)
        lines = messages.summary_lines(
            statistics.fmean(means) if means else None,
            statistics.pstdev(means) if means else None,
            statistics.fmean(maxes) if maxes else None,
            max(maxes) if maxes else None,
            classify.collapse_check(mean),
            num,
            den,
            mean,
        )
        if self._n_stats > len(means):
            lines.append(messages.nonfinite_summary_line(self._n_stats - len(means), self._n_stats))
        if self._shares:
            n = len(self._shares)
            final = {t: math.fsum(s[t] for s in self._shares) / n for t in self._tasks}
            lines.append("  " + messages.shares_line(final))
        self.print(lines)
