"""The recorder's live echo: the report's lines, printed as each record is logged.

Standard library only. It judges with :mod:`gradlog.classify` and words with
:mod:`gradlog.messages`, exactly as the offline report does, so that the echo of a run is the
report of its log up to the "Recommended action" section (tested).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import IO, TYPE_CHECKING

from gradlog import classify, messages
from gradlog.format import Record

if TYPE_CHECKING:
    from gradlog.recorder.config import RecorderConfig


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
        original: bool = False,
    ) -> None:
        self._stream = stream
        self._tasks = tasks
        self._by_steps = by_steps
        self._window = window
        self._min_samples = min_samples
        self._original = original  # the original's rules, as ``gradlog report --original``
        self._pair = classify.default_pair(tasks, any_count=original)
        self._samples: deque[dict[str, float]] = deque(maxlen=window)  # the collapse window
        self._ratios: deque[float] = deque(maxlen=window)  # the original's window of the pair
        self._means: list[float] = []  # finite logged mean norms, for the summary
        self._maxes: list[float] = []
        self._n_stats = 0
        self._after_clipping = False

    @classmethod
    def of(cls, config: RecorderConfig) -> LiveEcho | None:
        """The echo ``config`` asks for, or None."""
        stream = config.echo_stream()
        if stream is None:
            return None
        return cls(
            stream,
            list(config.tasks),
            by_steps=config.by_steps,
            window=config.window,
            min_samples=config.min_samples,
            original=config.original,
        )

    def print(self, lines: list[str]) -> None:
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()

    def start(
        self, log_every: int | None, log_every_steps: int | None, *, after_clipping: bool = False
    ) -> None:
        self._after_clipping = after_clipping  # the run record's stats_at
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
                # --original prints the original's lines alone
                None if self._original else record.get("clip_coef"),
                None if self._original else record.get("pre_clip_norm"),
                self._after_clipping,
            )
            lines.append("")
        if balance is not None and len(self._tasks) >= 2:
            norms = dict(zip(self._tasks, balance))
            when = label[:1].lower() + label[1:]
            if self._original:
                weights = {t["name"]: t.get("weight") for t in record["tasks"]}
                lines += self._original_balance(norms, weights, when, record["epoch"])
            else:
                lines += self._balance(norms, when)
        if lines:
            self.print(lines)

    def _balance(self, norms: dict[str, float], when: str) -> list[str]:
        """One balance sample's lines, judged as the report judges it (second edition)."""
        lines: list[str] = []
        if not classify.defined_sample(norms):
            order = self._order()
            shown = {t: norms[t] for t in order}
            lines += [messages.undefined_line(when, shown), ""]
        else:
            self._samples.append(norms)
            top = max(self._tasks, key=norms.__getitem__)
            low = min(self._tasks, key=norms.__getitem__)
            spread = norms[top] / norms[low]
            if classify.outside_healthy_range(spread):
                num, den = self._pair or (top, low)
                lines += [*messages.imbalance_lines(when, num, den, norms[num] / norms[den]), ""]
        lines += self._window_lines(summary=False)
        if len(self._tasks) > 2 and classify.defined_sample(norms):
            lines.append(messages.shares_line(classify.shares(norms)))
        lines.append("")
        return lines

    def _original_balance(
        self,
        norms: dict[str, float],
        weights: dict[str, float | None],
        when: str,
        epoch: int | None,
    ) -> list[str]:
        """One balance sample's lines by the original's rules (raw norms, the pair alone)."""
        num, den = self._pair
        raw = {t: _raw(norms[t], weights.get(t)) for t in (num, den)}
        if not classify.defined_sample(raw):
            return [messages.undefined_line(when, raw), ""]
        ratio = raw[num] / raw[den]
        self._ratios.append(ratio)
        lines: list[str] = []
        if classify.outside_healthy_range(ratio):
            lines += [*messages.imbalance_lines(when, num, den, ratio), ""]
        line, verdict = self._original_window(summary=False)
        if classify.original_line_shown(verdict, epoch):
            lines += [line, ""]
        return lines

    def _original_window(self, *, summary: bool) -> tuple[str, classify.Collapse]:
        num, den = self._pair
        mean = classify.original_window(list(self._ratios), self._window)
        verdict = classify.collapse_check_log(None if mean is None else _log(mean))
        templates = messages.SUMMARY if summary else messages.LINE
        return messages.render(templates[verdict], num=num, den=den, r=mean), verdict

    def _order(self) -> list[str]:
        pair = list(self._pair or ())
        return pair + [t for t in self._tasks if t not in pair]

    def _window_lines(self, *, summary: bool) -> list[str]:
        """The collapse check of the window: the documented sentence for the pair (two tasks),
        else for the window's dominant and starved task."""
        logs = classify.window_logs(list(self._samples), self._window, self._min_samples)
        templates = messages.SUMMARY if summary else messages.LINE
        if logs is None:
            return [messages.render(templates[classify.Collapse.NOT_ENOUGH_DATA])]
        top = max(self._tasks, key=logs.__getitem__)
        low = min(self._tasks, key=logs.__getitem__)
        num, den = self._pair or (top, low)
        log_ratio = logs[num] - logs[den]
        verdict = classify.collapse_check_log(log_ratio)
        return [messages.render(templates[verdict], num=num, den=den, r=math.exp(log_ratio))]

    def summary(self) -> None:
        """The ``Gradient Monitoring Summary`` block, as the original printed it at the end."""
        means, maxes = self._means, self._maxes
        lines = messages.summary_lines(
            statistics.fmean(means) if means else None,
            statistics.pstdev(means) if means else None,
            statistics.fmean(maxes) if maxes else None,
            max(maxes) if maxes else None,
            classify.Collapse.NOT_ENOUGH_DATA,
            "",
            "",
            None,
        )[:-1]
        if self._original:
            lines.append(self._original_window(summary=True)[0])
        else:
            lines += self._window_lines(summary=True)
        if self._n_stats > len(means):
            lines.append(messages.nonfinite_summary_line(self._n_stats - len(means), self._n_stats))
        logs = classify.window_logs(list(self._samples), self._window, self._min_samples)
        if logs is not None and len(self._tasks) > 2 and not self._original:
            lines.append(
                "  "
                + messages.shares_line(classify.shares({t: math.exp(v) for t, v in logs.items()}))
            )
        self.print(lines)


def _raw(norm: float, weight: float | None) -> float:
    """A weighted norm as the raw one the original measured; no raw norm for a weight of 0."""
    weight = 1.0 if weight is None else weight
    return norm / weight if weight != 0 else math.nan


def _log(value: float) -> float:
    return math.log(value) if value > 0 else math.nan
