"""The recorder: per-task gradient norms measured during training (torch), written in the log
format of :mod:`gradlog.format` by :mod:`.writers`.

``GradientRecorder`` is imported on first use: the writers, which the analyser's ``convert``
shares the format with, must not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GradientRecorder"]


def __getattr__(name: str) -> Any:
    if name == "GradientRecorder":
        from gradlog.recorder.core import GradientRecorder

        return GradientRecorder
    raise AttributeError(f"module 'gradlog.recorder' has no attribute {name!r}")
