"""Cell features: sRGB -> Oklab and block means fused in one pass over the pixels.

The kernel shares the tiling of ``grid_reduce`` (``kernels/grid.py``), with the three channels of a
pixel handled by one program: each pixel is loaded once, decoded and converted to Oklab in
registers, and summed per cell in float32; one division per cell at the end. Like the uint8 path
of ``srgb_to_oklab``, the sRGB decode is a gather from ``srgb_decode_table`` (1 KiB, stays in L1),
so the two results agree and only the three cube roots are computed per pixel. Those still cost
far more arithmetic than the 3 bytes a pixel reads, so on GPU this kernel is compute-bound.
"""

from __future__ import annotations

import torch

from kernels._launch import check_channels, check_tensor, empty_output
from kernels._math import linear_srgb_to_oklab
from kernels._triton import tl, triton
from kernels.dispatch import use_triton
from kernels.grid import (
    block_chunk_columns,
    cell_tile_grid,
    cell_tiled,
    grid_reduce_reference,
    normalize_block,
    tile_cells,
)
from kernels.oklab import srgb_decode_table, srgb_to_oklab_reference

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
    block_h, block_w = normalize_block(block, rgb.shape[-2], rgb.shape[-1])
    if use_triton(rgb):
        return _cell_features_triton(rgb, block_h, block_w)
    return cell_features_reference(rgb, block)


@triton.jit
def _load_linear(ptrs, mask, decode_table_ptr):
    """Linear float32 values of the uint8 sRGB codes at ``ptrs``, through the decode table."""
    codes = tl.load(ptrs, mask=mask, other=0).to(tl.int32)
    return tl.load(decode_table_ptr + codes)


# Register pressure grows with three channels of colour math per pixel, hence smaller steps than
# grid_reduce's.
@cell_tiled(gpu_step_pixels=(1024, 2048, 4096))
@triton.jit(do_not_specialize=["num_rows", "out_h", "out_w"])
def _cell_features_kernel(
    rgb_ptr,
    out_ptr,
    num_rows,
    out_h,
    out_w,
    rgb_stride_n,
    rgb_stride_c,
    rgb_stride_h,
    rgb_stride_w,
    out_stride_n,
    out_stride_c,
    out_stride_h,
    decode_table_ptr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    STEP_PIXELS: tl.constexpr,
    TILE_R: tl.constexpr,
    TILE_OW: tl.constexpr,
    BW_CHUNK: tl.constexpr,
):
    """Mean Oklab of every block of uint8 sRGB ``(N, 3, H, W)`` into float32 ``(N, 3, OH, OW)``.

    ``num_rows = N * OH``; one program per tile of cells (see ``kernels.grid.cell_tiling``).
    """
    tl.static_assert(TILE_R * TILE_OW * BW_CHUNK <= STEP_PIXELS)
    rows, cols, cell_mask = tile_cells(num_rows, out_w, TILE_R, TILE_OW)
    image = (rows // out_h).to(tl.int64)
    cell_row = (rows % out_h).to(tl.int64)
    first_rows = rgb_ptr + image * rgb_stride_n + cell_row * BLOCK_H * rgb_stride_h

    sum_l = tl.zeros((TILE_R, TILE_OW), tl.float32)
    sum_a = tl.zeros((TILE_R, TILE_OW), tl.float32)
    sum_b = tl.zeros((TILE_R, TILE_OW), tl.float32)
    for chunk_start in tl.static_range(0, BLOCK_W, BW_CHUNK):
        columns, mask = block_chunk_columns(
            cols, cell_mask, chunk_start, rgb_stride_w, BLOCK_W, BW_CHUNK
        )
        row_ptrs = first_rows
        for _ in range(BLOCK_H):
            red_ptrs = row_ptrs[:, None, None] + columns
            lab_l, lab_a, lab_b = linear_srgb_to_oklab(
                _load_linear(red_ptrs, mask, decode_table_ptr),
                _load_linear(red_ptrs + rgb_stride_c, mask, decode_table_ptr),
                _load_linear(red_ptrs + 2 * rgb_stride_c, mask, decode_table_ptr),
            )
            # Masked pixels are left out explicitly rather than trusting the colour math to map
            # black to exactly zero.
            sum_l += tl.sum(tl.where(mask, lab_l, 0.0), axis=2)
            sum_a += tl.sum(tl.where(mask, lab_a, 0.0), axis=2)
            sum_b += tl.sum(tl.where(mask, lab_b, 0.0), axis=2)
            row_ptrs += rgb_stride_h

    out_ptrs = (out_ptr + image * out_stride_n + cell_row * out_stride_h)[:, None] + cols[None, :]
    cell_pixels = BLOCK_H * BLOCK_W
    tl.store(out_ptrs, sum_l / cell_pixels, mask=cell_mask)
    tl.store(out_ptrs + out_stride_c, sum_a / cell_pixels, mask=cell_mask)
    tl.store(out_ptrs + 2 * out_stride_c, sum_b / cell_pixels, mask=cell_mask)


def _cell_features_triton(rgb: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Launch ``_cell_features_kernel`` on a checked ``rgb`` and a normalised block; any strides."""
    n, channels, height, width = rgb.shape
    out_h, out_w = height // block_h, width // block_w
    num_rows = n * out_h
    grid = cell_tile_grid(num_rows, out_w)
    out = empty_output((n, channels, out_h, out_w), torch.float32, rgb.device)
    if num_rows == 0:
        return out
    _cell_features_kernel[grid](
        rgb,
        out,
        num_rows,
        out_h,
        out_w,
        *rgb.stride(),
        *out.stride()[:3],
        srgb_decode_table(rgb.device),
        BLOCK_H=block_h,
        BLOCK_W=block_w,
    )
    return out
