"""Squared Euclidean cost matrix and its fused top-k: Triton kernels, launchers, references."""

from __future__ import annotations

import torch

from kernels._launch import FLOAT_DTYPES, check_same_device, check_tensor
from kernels.dispatch import use_triton

__all__ = ["cost_matrix", "cost_matrix_reference", "cost_topk", "cost_topk_reference"]

# Rows per chunk in the references, so that a million tiles never need an N x M matrix at once.
_REFERENCE_ROWS_PER_CHUNK = 1024


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor(a, "a", dtypes=FLOAT_DTYPES, ndim=2)
    check_tensor(b, "b", dtypes=FLOAT_DTYPES, ndim=2)
    check_same_device(a=a, b=b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same feature size D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def cost_matrix_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``cost_matrix``: float32 ``(N, M)`` squared distances (exact differences)."""
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    return torch.cdist(a32, b32).square_() if a.shape[0] and b.shape[0] else a32.new_empty(
        (a.shape[0], b.shape[0])
    )


def cost_topk_reference(
    a: torch.Tensor, b: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch ``cost_topk``, chunked over rows so memory stays ``O(chunk x M)``."""
    values, indices = [], []
    for start in range(0, a.shape[0], _REFERENCE_ROWS_PER_CHUNK):
        cost = cost_matrix_reference(a[start : start + _REFERENCE_ROWS_PER_CHUNK], b)
        v, i = torch.topk(cost, k, dim=1, largest=False, sorted=True)
        values.append(v)
        indices.append(i)
    if not values:
        return a.new_empty((0, k), dtype=torch.float32), a.new_empty((0, k), dtype=torch.int64)
    return torch.cat(values), torch.cat(indices)


def cost_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` and ``b``.

    Args:
        a: ``(N, D)`` float. b: ``(M, D)`` float, same device.

    Returns:
        float32 ``(N, M)``.
    """
    _check_pair(a, b)
    if use_triton(a):
        return _cost_matrix_triton(a, b)
    return cost_matrix_reference(a, b)


def cost_topk(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest squared distances of each row of ``a`` to the rows of ``b``.

    The ``N x M`` matrix is never stored.

    Args:
        a: ``(N, D)`` float. b: ``(M, D)`` float, same device. k: ``1 <= k <= M``.

    Returns:
        ``(values, indices)``: float32 ``(N, k)`` ascending, int64 ``(N, k)`` rows of ``b``.
    """
    _check_pair(a, b)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= b.shape[0]:
        raise ValueError(f"k must be an int in [1, M={b.shape[0]}], got {k!r}")
    if use_triton(a):
        return _cost_topk_triton(a, b, k)
    return cost_topk_reference(a, b, k)


def _cost_matrix_triton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError("Triton cost_matrix is being written")


def _cost_topk_triton(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    raise NotImplementedError("Triton cost_topk is being written")
