"""Cell descriptors: the ``s x s`` Oklab block means of a cell, flattened (``D = 3 * s * s``).

Tiles and frame cells go through the same function, so their descriptors always share one
layout: channel-major, then block rows, then block columns.
"""

from __future__ import annotations

import torch

from kernels import cell_features


def descriptors(
    images: torch.Tensor, cell: int | tuple[int, int], grid: int, lightness_weight: float = 1.0
) -> torch.Tensor:
    """Descriptors of every cell of every image.

    Args:
        images: ``(N, 3, H, W)`` uint8 sRGB, ``H`` and ``W`` multiples of the cell's sides; any
            strides.
        cell: cell side in pixels, or ``(height, width)``; multiples of ``grid``.
        grid: ``s``, the descriptor grid per cell (1 = the plain mean colour).
        lightness_weight: factor on the L channel; a/b keep weight 1 (distances are Euclidean,
            so this weighs lightness against chroma).

    Returns:
        float32 ``(N, rows, cols, 3 * grid * grid)``, ``rows = H // height``,
        ``cols = W // width``.
    """
    cell_h, cell_w = (cell, cell) if isinstance(cell, int) else cell
    if cell_h % grid or cell_w % grid:
        raise ValueError(f"cell size {cell} must be a multiple of the descriptor grid {grid}")
    blocks = cell_features(images, (cell_h // grid, cell_w // grid))
    return block_descriptors(blocks, grid, lightness_weight)


def block_descriptors(
    block_means: torch.Tensor, grid: int, lightness_weight: float = 1.0
) -> torch.Tensor:
    """Descriptors from Oklab block means already computed (the last step of ``descriptors``).

    Args:
        block_means: float32 ``(N, 3, rows * grid, cols * grid)``, the mean Oklab colour of every
            ``cell / grid`` block (``cell_features``); scaled in place by ``lightness_weight``.
        grid: ``s``, blocks per cell side.
        lightness_weight: factor on the L channel.

    Returns:
        float32 ``(N, rows, cols, 3 * grid * grid)``.
    """
    n, _, height, width = block_means.shape
    rows, cols = height // grid, width // grid
    if lightness_weight != 1.0:
        block_means[:, 0] *= lightness_weight
    means = block_means.reshape(n, 3, rows, grid, cols, grid).permute(0, 2, 4, 1, 3, 5)
    return means.reshape(n, rows, cols, 3 * grid * grid)
