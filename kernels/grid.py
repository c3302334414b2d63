"""Block means over a grid: Triton kernel, launcher and pure-torch reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._launch import IMAGE_DTYPES, check_tensor
from kernels.dispatch import use_triton

__all__ = ["grid_reduce", "grid_reduce_reference", "normalize_block"]


def normalize_block(block: int | tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """``block`` as ``(bh, bw)``, checked against an ``H x W`` image (one clear line if bad)."""
    if isinstance(block, int):
        block = (block, block)
    if (
        not isinstance(block, tuple)
        or len(block) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in block)
    ):
        raise TypeError(f"block must be an int or a (bh, bw) tuple of ints, got {block!r}")
    bh, bw = block
    if bh < 1 or bw < 1:
        raise ValueError(f"block sizes must be >= 1, got {block}")
    if bh > height or bw > width:
        raise ValueError(f"block {block} is larger than the {height}x{width} image")
    return bh, bw


def grid_reduce_reference(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Pure-torch ``grid_reduce``: float32 means of every ``bh x bw`` block, remainder ignored."""
    bh, bw = normalize_block(block, x.shape[-2], x.shape[-1])
    return F.avg_pool2d(x.to(torch.float32), (bh, bw))


def grid_reduce(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Mean of every ``bh x bw`` block; the remainder rows and columns are ignored.

    Args:
        x: ``(N, C, H, W)`` uint8 or float; any strides.
        block: ``bh`` (square) or ``(bh, bw)``, each at least 1 and at most the image side.

    Returns:
        float32 ``(N, C, H // bh, W // bw)`` on ``x``'s device.
    """
    check_tensor(x, "x", dtypes=IMAGE_DTYPES, ndim=4)
    normalize_block(block, x.shape[-2], x.shape[-1])
    if use_triton(x):
        return _grid_reduce_triton(x, block)
    return grid_reduce_reference(x, block)


def _grid_reduce_triton(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    raise NotImplementedError("Triton grid_reduce is being written")
