"""gradlog: record per-task gradient norms while training, find task collapse afterwards.

``GradientRecorder`` needs torch (``pip install 'gradlog[torch]'``) and is imported on first
use, so that the analyser (``gradlog report``) never loads a training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["GradientRecorder", "__version__"]

if TYPE_CHECKING:
    from gradlog.recorder import GradientRecorder


def __getattr__(name: str) -> Any:
    if name == "GradientRecorder":
        try:
            from gradlog.recorder import GradientRecorder
        except ModuleNotFoundError as exc:
            if exc.name == "torch":
                raise ModuleNotFoundError(
                    "gradlog's recorder needs torch: pip install 'gradlog[torch]'", name="torch"
                ) from exc
            raise
        return GradientRecorder
    raise AttributeError(f"module 'gradlog' has no attribute {name!r}")
