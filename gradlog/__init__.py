"""gradlog: record per-task gradient norms while training, find task collapse afterwards.

Analysis (Polars, never torch): ``gradlog.read`` (every record of some logs, as one
DataFrame), ``gradlog.analyse`` (the report of one log), ``gradlog.analysis.batch`` (one row per run of
many logs); see docs/api.md. Recording (torch): ``gradlog.GradientRecorder``. Each is imported
on first use, so that ``gradlog --help`` loads neither Polars nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["GradientRecorder", "__version__", "analyse", "batch", "read"]

if TYPE_CHECKING:
    from gradlog.analysis.api import analyse, batch, read
    from gradlog.recorder import GradientRecorder

_ANALYSIS = ("analyse", "batch", "read")


def __getattr__(name: str) -> Any:
    if name in _ANALYSIS:
        from gradlog.analysis import api

        return getattr(api, name)
    if name == "GradientRecorder":
        try:
            from gradlog.recorder.core import GradientRecorder
        except ModuleNotFoundError as exc:
            if exc.name == "torch":
                raise ModuleNotFoundError(
                    "gradlog's recorder needs torch: pip install 'gradlog-mtl[torch]' (or "
                    "pip install torch; README.md says which build)",
                    name="torch",
                ) from exc
            raise
        return GradientRecorder
    raise AttributeError(f"module 'gradlog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
