"""Cell features: the Oklab mean of every block of an sRGB image, in one pass over its pixels.

The op runs the kernel of ``cell_analysis.py`` without statistics and without padding: each pixel
is loaded once, decoded and converted to Oklab in registers and summed per block in float32; the
remainder rows and columns are ignored.
"""

from __future__ import annotations

import torch

from kernels._launch import check_channels, check_tensor
from kernels.cell_analysis import oklab_block_means_reference, oklab_block_means_triton
from kernels.dispatch import use_triton
from kernels.grid import normalize_block

__all__ = ["cell_features", "cell_features_reference"]

cell_features_reference = oklab_block_means_reference
"""Pure-torch ``cell_features``: ``grid_reduce(srgb_to_oklab(rgb), block)``, unfused."""


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
    block_h, block_w = normalize_block(block, rgb.shape[-2], rgb.shape[-1])
    if use_triton(rgb):
        out_size = (rgb.shape[-2] // block_h, rgb.shape[-1] // block_w)
        return oklab_block_means_triton(rgb, (block_h, block_w), out_size)
    return cell_features_reference(rgb, block)
