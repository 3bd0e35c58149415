"""The Gram matrix of the task gradients, from what a step measured.

What the capture and the parameter mode leave on the device (:class:`DeviceGram`: tensors, and
how to make the matrix of their values), the host arithmetic applied once the values are
fetched (the same as when each step fetched its own), and its device twin for a reduction over
ranks, which has to happen at the step. Torch only; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch


class DeviceGram(NamedTuple):
    """A Gram matrix still on the device: the tensors to fetch, and the function that makes
    the (n, n) matrix of floats from their values (flattened, in order)."""

    tensors: list[torch.Tensor]
    matrix: Callable[[list[float]], list[list[float]]]


def square_matrix(n: int) -> Callable[[list[float]], list[list[float]]]:
    """The ``matrix`` of a :class:`DeviceGram` that is one (n, n) tensor."""
    return lambda values: [values[i * n : (i + 1) * n] for i in range(n)]


def pair_matrix(
    values: list[float], factors: list[float | None], n_first: int, n_second: int, total: bool
) -> list[list[float]]:
    """The two tasks' Gram matrix from their squared norms (``value * factor``, or ``value``
    squared for a norm) and that of their sum, in float64 on the host (float32 values convert
    exactly)."""
    values = [v * v if f is None else v * f for v, f in zip(values, factors)]
    first = math.fsum(values[:n_first])
    second = math.fsum(values[n_first : n_first + n_second])
    whole = values[-1] if total else first + second
    cross = (whole - first - second) / 2
    return [[first, cross], [cross, second]]


def pair_matrix_on(
    tensors: list[torch.Tensor],
    factors: list[float | None],
    n_first: int,
    n_second: int,
    total: bool,
    *,
    device: torch.device,
) -> torch.Tensor:
    """:func:`pair_matrix` on the device, for a reduction over ranks. The sums of several
    terms are float64 sums, not exactly rounded ones: they can differ in the last bit where a
    task reads the representation through several operations."""
    if not tensors:
        return torch.zeros((2, 2), dtype=torch.float64, device=device)
    v = torch.stack(tensors).to(torch.float64)
    terms = [v[k] * v[k] if f is None else v[k] * f for k, f in enumerate(factors)]
    zero = torch.zeros((), dtype=torch.float64, device=device)
    first = sum(terms[:n_first], zero)
    second = sum(terms[n_first : n_first + n_second], zero)
    whole = terms[-1] if total else first + second
    cross = (whole - first - second) / 2
    return torch.stack([torch.stack([first, cross]), torch.stack([cross, second])])


def dots_matrix(
    values: list[float], n: int, keys: list[tuple[int, int]], scaled: bool
) -> list[list[float]]:
    """The matrix of the inner products ``keys``, the last value being the loss scale."""
    scale = values[-1] if scaled else 1.0
    matrix = [[0.0] * n for _ in range(n)]
    for (i, j), value in zip(keys, values):
        matrix[i][j] = matrix[j][i] = value / (scale * scale)
    return matrix


def index_on(cache: dict[tuple, torch.Tensor], present: list[int], device: torch.device):
    """``present`` as an index tensor on ``device``, made once: making it copies from the host,
    which on a GPU waits for the device."""
    key = (tuple(present), device)
    index = cache.get(key)
    if index is None:
        index = cache[key] = torch.tensor(present, device=device)
    return index
