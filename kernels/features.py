"""Cell features: sRGB -> Oklab and block means fused in one pass over the pixels."""

from __future__ import annotations

import torch

from kernels._launch import check_channels, check_tensor
from kernels.dispatch import use_triton
from kernels.grid import grid_reduce_reference, normalize_block
from kernels.oklab import srgb_to_oklab_reference

__all__ = ["cell_features", "cell_features_reference"]


def cell_features_reference(rgb: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Pure-torch ``cell_features``: ``grid_reduce(srgb_to_oklab(rgb), block)``, unfused."""
    return grid_reduce_reference(srgb_to_oklab_reference(rgb), block)


def cell_features(rgb: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Mean Oklab colour of every ``bh x bw`` block, in one pass over the pixels.

    Args:
        rgb: ``(N, 3, H, W)`` uint8 sRGB; any strides (an HWC frame seen as CHW works).
        block: ``bh`` (square) or ``(bh, bw)``.

    Returns:
        float32 ``(N, 3, H // bh, W // bw)``, equal to ``grid_reduce(srgb_to_oklab(rgb), block)``.
    """
    check_tensor(rgb, "rgb", dtypes=(torch.uint8,), ndim=4)
    check_channels(rgb, "rgb")
    normalize_block(block, rgb.shape[-2], rgb.shape[-1])
    if use_triton(rgb):
        return _cell_features_triton(rgb, block)
    return cell_features_reference(rgb, block)


def _cell_features_triton(rgb: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    raise NotImplementedError("Triton cell_features is being written")
