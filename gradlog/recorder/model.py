"""What the recorder takes from the user's model, resolved once at construction.

The parameters it measures, the losses it is given (checked at every call), and in
representation mode the module whose output the task heads read (``shared=``), resolved here
and watched by :class:`~gradlog.recorder.outputs.SharedOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gradlog.errors import RecorderConfigError


def first_tensor(output: Any) -> torch.Tensor | None:
    """The representation in a module's output: the tensor itself, or the first tensor of a
    tuple, list or mapping (an LSTM's ``(output, (h, c))``, a Hugging Face ``ModelOutput``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


def check_module(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise RecorderConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_losses(losses: Mapping[str, Any], tasks: list[str]) -> None:
    """``losses`` holds exactly the tasks, each a tensor (with its graph)."""
    missing = [t for t in tasks if t not in losses]
    extra = [t for t in losses if t not in tasks]
    if missing or extra:
        raise KeyError(
            f"losses must hold exactly the tasks {tasks}: missing {missing}, unknown {extra}"
        )
    for task in tasks:
        loss = losses[task]
        if not isinstance(loss, torch.Tensor):
            # A float has no graph to differentiate: the usual slip is loss.item()
            raise TypeError(
                f"losses[{task!r}] must be the task's loss as a torch.Tensor (with its "
                f"graph, as returned by the loss function), got {type(loss).__name__} "
                f"{loss!r:.40}"
            )


def weighted_sum(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum(weights[t] * losses[t])`` over the tasks (the keys of ``weights``, in order), bit
    for bit, without the operations that change nothing (a weight of 1, a start from 0): each
    would be a node the backward runs through too."""
    total = None
    for name, weight in weights.items():
        term = losses[name] if weight == 1.0 else weight * losses[name]
        total = term if total is None else total + term
    return total


def trainable_parameters(model: torch.nn.Module) -> tuple[list[str], list[torch.nn.Parameter]]:
    """The names and parameters that get gradients: the ones gradlog measures."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise RecorderConfigError("the model has no trainable parameters")
    return [name for name, _ in named], [p for _, p in named]


def resolve_shared(
    model: torch.nn.Module, shared: torch.nn.Module | str | None
) -> tuple[str | None, torch.nn.Module | None]:
    """``shared`` (a submodule of ``model`` or its dotted name) as ``(name, module)``."""
    if shared is None:
        return None, None
    if isinstance(shared, str):
        try:
            return shared, model.get_submodule(shared)
        except AttributeError as exc:
            raise RecorderConfigError(
                f"shared={shared!r}: the model has no submodule of that name"
            ) from exc
    if isinstance(shared, torch.nn.Module):
        for name, module in model.named_modules():
            if module is shared:
                return name or type(model).__name__, module
        raise RecorderConfigError(
            f"shared= must be a submodule of the model, got a {type(shared).__name__} "
            "that is not part of it"
        )
    raise RecorderConfigError(
        f"shared= must be a module of the model or its name, got {type(shared).__name__}"
    )
