"""When the recorder measures: the cadences of :class:`~gradlog.recorder.config.RecorderConfig`.

Epoch cadences fire on the first call of an epoch number divisible by N (a training loop calls
the recorder once per batch, so "once" has to be remembered), or, for the statistics with
``stats_every_batch``, on every call of such an epoch (the original monitor's moments); step
cadences on steps divisible by N, ``step`` counting calls from 1 unless the caller passes it.
Both may be set.
"""

from __future__ import annotations

from gradlog.errors import RecorderConfigError
from gradlog.recorder.config import RecorderConfig

STATS = "stats"
BALANCE = "balance"


class Schedule:
    """The calls made so far and the epochs already measured, per kind of measurement."""

    def __init__(self, config: RecorderConfig) -> None:
        self._cadences = {
            STATS: (config.log_every, config.log_every_steps),
            BALANCE: (config.balance_every, config.balance_every_steps),
        }
        self._by_steps = config.by_steps
        self._every_batch = {STATS: config.stats_every_batch, BALANCE: False}
        self._calls = 0
        self.last_step: int | None = None  # the number of the last call finished
        self._done_epochs: dict[str, int] = {}

    def check_epoch(self, epoch: int | None) -> None:
        if epoch is None and not self._by_steps:
            raise RecorderConfigError(
                "pass epoch= to backward()/record(), or set log_every_steps/balance_every_steps"
            )

    def next_step(self, step: int | None) -> int:
        """The number of the call about to be finished: ``step`` if given, else the count."""
        return self._calls + 1 if step is None else step

    def advance(self, step: int | None) -> int:
        """Count a finished call; returns its step number."""
        self._calls += 1
        self.last_step = self._calls if step is None else step
        return self.last_step

    def due(self, kind: str, epoch: int | None, step: int) -> bool:
        every, every_steps = self._cadences[kind]
        if every_steps and step % every_steps == 0:
            return True
        if every and epoch is not None and epoch % every == 0:
            return self._every_batch[kind] or self._done_epochs.get(kind) != epoch
        return False

    def done(self, kind: str, epoch: int | None) -> None:
        """``kind`` was measured in ``epoch``: its epoch cadence does not fire again there."""
        if epoch is not None:
            self._done_epochs[kind] = epoch
