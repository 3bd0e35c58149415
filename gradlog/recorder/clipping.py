"""Gradient clipping: done by the recorder, or done elsewhere and told to it; and what the log says.

A log's statistics are read at one moment of the step, and clipping changes them: the original
monitor read them after ``clip_grad_norm_``, so it could never show a layer above the clip
norm, while gradlog's plain ``rec.backward`` reads them right after the backward. A run record
therefore says which (``meta.stats_at``), and an event whose statistics are taken where
clipping is known carries the total norm before clipping and the factor clipping applied
(``pre_clip_norm``, ``clip_coef``: docs/format.md, "Clipping"), so a report can show an
explosion that clipping hid.

Clipping is ``torch.nn.utils.clip_grad_norm_`` itself (L2, its ``1e-6``), over the parameters the
recorder measures: training is bit-identical to a loop that calls it on ``model.parameters()``.
Like everything the recorder measures, the norm and the factor stay on the device until the
writer flushes (pending.py): clipping adds no transfer to a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from gradlog.errors import RecorderConfigError
from gradlog.format import STATS_AFTER_CLIPPING, STATS_BEFORE_CLIPPING
from gradlog.recorder.config import CLIP_EXTERNAL

# clip_grad_norm_'s guard against a zero norm: the factor logged is the factor it applies.
EPS = 1e-6


class ClipStep(NamedTuple):
    """One step's clipping: the total norm before it (None: the statistics' own) and the max norm."""

    norm: torch.Tensor | None
    max_norm: float


class Clipping:
    """The recorder's clipping state: what ``clip=`` asked for, and this step's clipping so far.

    ``clip``: None (the recorder neither clips nor hears of clipping: statistics before it), a
    max norm (the recorder clips every step once, at :meth:`clip` or else when the step is
    recorded), or :data:`~gradlog.recorder.config.CLIP_EXTERNAL` (something else clips before
    the step is recorded, and may say how with :meth:`clipped`).
    """

    def __init__(self, clip: float | str | None, params: Sequence[torch.nn.Parameter]) -> None:
        self.max_norm = clip if isinstance(clip, float) else None
        self.external = clip == CLIP_EXTERNAL
        self._params = params
        self._step: ClipStep | None = None
        self._ahead: float | None = None

    @property
    def stats_at(self) -> str:
        """``meta.stats_at``: whenever the recorder clips or is told of clipping, it records
        after it."""
        clips = self.max_norm is not None or self.external
        return STATS_AFTER_CLIPPING if clips else STATS_BEFORE_CLIPPING

    def _resolve_max_norm(self, max_norm: float | None, what: str) -> float:
        if self.max_norm is None and not self.external:
            raise RecorderConfigError(
                f"{what} needs clip= at construction (GradientRecorder(..., clip=max_norm), or "
                f"clip={CLIP_EXTERNAL!r}), so that the log says its statistics are after clipping"
            )
        if max_norm is None:
            if self.max_norm is None:
                raise RecorderConfigError(
                    f"{what}: pass max_norm= (the recorder has clip=external)"
                )
            return self.max_norm
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
            raise RecorderConfigError(f"{what}: max_norm must be positive, got {max_norm!r}")
        return float(max_norm)

    def clip(self, max_norm: float | None = None) -> torch.Tensor:
        """Clip the gradients now; the total norm before clipping (a tensor, not fetched)."""
        max_norm = self._resolve_max_norm(max_norm, "clip_grad_norm_")
        norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)
        self._step = ClipStep(norm, max_norm)
        return norm

    def clipped(self, total_norm: torch.Tensor | float, max_norm: float | None = None) -> None:
        """The step was clipped elsewhere, with ``clip_grad_norm_`` semantics, to ``max_norm``;
        ``total_norm``: what that clipping returned (the norm before it)."""
        max_norm = self._resolve_max_norm(max_norm, "clipped")
        if not isinstance(total_norm, torch.Tensor):
            if isinstance(total_norm, bool) or not isinstance(total_norm, (int, float)):
                raise TypeError(
                    "clipped(total_norm): the norm your clipping returned, a tensor or a "
                    f"number, got {type(total_norm).__name__}"
                )
            total_norm = torch.tensor(float(total_norm), dtype=torch.float64)
        self._step = ClipStep(total_norm.detach().reshape(()), max_norm)

    def ahead(self, max_norm: float) -> None:
        """Clipping to ``max_norm`` follows the statistics of this step (a framework's, after
        the recorder reads them): the event gets the norm of the gradients recorded and the
        factor that clipping will apply."""
        self._ahead = max_norm

    def finish(self) -> ClipStep | None:
        """At the end of a recorded step: clip if ``clip=`` asks and nothing clipped yet; the
        step's clipping, forgotten here so that the next step starts afresh."""
        step, self._step = self._step, None
        ahead, self._ahead = self._ahead, None
        if step is None and self.max_norm is not None:
            step = ClipStep(
                torch.nn.utils.clip_grad_norm_(self._params, self.max_norm), self.max_norm
            )
        if step is None and ahead is not None:
            step = ClipStep(None, ahead)
        return step


def clip_values(step: ClipStep, norms: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[pre_clip_norm, clip_coef]`` as tensors; ``norms``: the statistics' per-parameter norms
    (as :func:`~gradlog.recorder.norms.parameter_grad_norms` gives them), whose total is the norm
    before clipping when the step was not clipped yet."""
    norm = step.norm
    if norm is None:
        norm = _total(norms)
    with torch.no_grad():
        # clip_grad_norm_'s own operations on its own total: the factor it multiplied by, bit
        # for bit (in the norm's dtype), never a rounding of it.
        coef = torch.clamp(step.max_norm / (norm + EPS), max=1.0)
    return [norm, coef]


def _total(norms: list[torch.Tensor]) -> torch.Tensor:
    """The total L2 norm from per-parameter norms, as ``clip_grad_norm_`` takes it (one stacked
    tensor, or one per device)."""
    if not norms:
        return torch.zeros(())
    with torch.no_grad():
        if len(norms) == 1:
            return torch.linalg.vector_norm(norms[0])
        first = norms[0].device
        return torch.linalg.vector_norm(torch.stack([n.reshape(()).to(first) for n in norms]))


class ClipMethods:
    """The recorder's clipping methods (mixed into :class:`~gradlog.GradientRecorder`, which
    keeps a :class:`Clipping` as ``_clipping``)."""

    _clipping: Clipping

    def clip_grad_norm_(self, max_norm: float | None = None) -> torch.Tensor:
        """Clip the gradients now, as ``torch.nn.utils.clip_grad_norm_(model.parameters(),
        max_norm)`` does, and log the norm before clipping and the factor with this step's
        statistics (taken after it). Call it where your clipping goes: after
        ``scaler.unscale_(optimizer)``, after the last micro-batch of an accumulated step;
        then :meth:`record`. Without it, ``clip=`` clips when the step is recorded.

        ``max_norm``: default ``clip=``. Returns the total norm before clipping (a tensor on
        the gradients' device; reading it is yours to decide).
        """
        return self._clipping.clip(max_norm)

    def clipped(self, total_norm: torch.Tensor | float, max_norm: float | None = None) -> None:
        """Say that you clipped this step yourself (``accelerator.clip_grad_norm_``, ...), with
        ``clip_grad_norm_`` semantics: ``total_norm``
        is what your clipping returned, ``max_norm`` the norm it clipped to (default: ``clip=``;
        required with ``clip="external"``). The recorder then does not clip this step. Wraps
        the call: ``rec.clipped(torch.nn.utils.clip_grad_norm_(params, 1.0), 1.0)``.
        """
        self._clipping.clipped(total_norm, max_norm)
