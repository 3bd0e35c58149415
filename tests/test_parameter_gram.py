"""The parameter mode's float64 Gram matrix, taken a cache-sized piece of each parameter at a
time on the CPU: exact to float64 rounding, and a parameter of one piece as before, bit for bit."""

from __future__ import annotations

import math
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from gradlog.recorder.norms import CPU_PIECE, parameter_gram  # noqa: E402


def exact_dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """<a, b> of float32 tensors, every product exact in float64 and the sum correctly rounded."""
    return math.fsum((a.double().reshape(-1) * b.double().reshape(-1)).tolist())


def test_pieces_sum_to_the_gram_matrix_to_float64_rounding() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = [(3, CPU_PIECE + 7), (CPU_PIECE // 2,), (5,)]  # several pieces, one piece, tiny
    per_task = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    per_task[2][0] = None  # a parameter this task's loss never reaches counts as zero
    (gram,) = parameter_gram(per_task)
    for i in range(3):
        for j in range(3):
            want = sum(
                exact_dot(a, b)
                for a, b in zip(per_task[i], per_task[j])
                if a is not None and b is not None
            )
            assert gram[i, j].item() == gram[j, i].item()
            assert math.isclose(gram[i, j].item(), want, rel_tol=1e-13, abs_tol=1e-9), (i, j)


def test_a_parameter_of_one_piece_is_multiplied_whole() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 128, generator=g), torch.randn(64, 128, generator=g)
    (gram,) = parameter_gram([[a], [b]])
    rows = torch.stack([a.reshape(-1), b.reshape(-1)]).double()
    assert torch.equal(gram, rows @ rows.t())
