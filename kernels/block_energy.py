"""Detail energy of image blocks: Triton kernel, launcher and pure-torch reference.

``block_energy(x, block)`` measures how much detail each ``bh x bw`` block of an RGB image holds:
the mean squared gradient of its luma. Per pixel the luma is

    Y = 0.2126 R + 0.7152 G + 0.0722 B

on the values scaled to [0, 1] (uint8 codes divided by 255, floats taken as they are) with no
transfer decode: the gradient of what the eye sees, not of linear light. Forward differences are
taken inside each block only, horizontally ``Y[i, j + 1] - Y[i, j]`` and vertically
``Y[i + 1, j] - Y[i, j]``; none crosses a block edge, so a block's energy depends on its own
pixels alone. The energy is the mean of the horizontal squared differences plus the mean of the
vertical ones, each over the differences the block has (``bh * (bw - 1)`` and ``(bh - 1) * bw``;
a direction with none adds 0). Averaged per direction, it is the mean of ``|grad Y|**2`` whatever
the block size: a texture has about the same energy in blocks of 4 and of 64, so blocks of
different sizes compare (a horizontal ramp rising by ``s`` a pixel has energy ``s**2`` in every
block at least two pixels wide). A flat block has energy 0; a 1 x 1 block has 0.

Rows and columns past the last whole block are ignored, as in ``grid_reduce``: the output has
``H // bh`` by ``W // bw`` blocks.

The kernel: a program takes ``TILE_OW`` blocks of one block row, ``BW_CHUNK`` lanes a block (a
lane per pixel column, the block padded to a power of two; blocks wider than the step in
chunks). It walks the ``bh`` pixel rows, computing each row's luma in registers (three channel
loads a lane), its horizontal differences from a second load shifted one column (served from
cache: the row was just read) and its vertical differences from the previous row's luma, kept in
registers; per lane sums of squares in float32, reduced per block at the end. Any strides: a
decoder's HWC frame seen as CHW is read in place.
"""

from __future__ import annotations

import torch

from kernels._launch import IMAGE_DTYPES, check_channels, check_tensor, empty_output
from kernels._triton import tl, triton
from kernels.dispatch import use_triton
from kernels.grid import (
    LaunchPlan,
    cell_tiling,
    check_cell_counts,
    chunk_columns,
    launch_step,
    normalize_block,
    tile_grid,
    tile_start,
    warps_for,
)

__all__ = ["LUMA_WEIGHTS", "block_energy", "block_energy_plan", "block_energy_reference"]

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
"""Weights of R, G and B in the luma (BT.709's, applied to the values as stored)."""
_LUMA = tl.constexpr(LUMA_WEIGHTS)

# Lanes a GPU thread holds: each keeps six loaded values, the luma of the row above and two sums.
LANES_PER_THREAD = 4


# --------------------------------------------------------------------------- reference


def luma_reference(x: torch.Tensor) -> torch.Tensor:
    """float32 ``(N, H, W)`` luma of ``x`` ``(N, 3, H, W)``, values scaled to [0, 1].

    One contraction over the channels (``einsum``): on a CPU several times faster than adding
    the three weighted planes, which are strided views of one tensor.
    """
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32, device=x.device)
    luma = torch.einsum("c,nchw->nhw", weights, x.to(torch.float32))
    return luma.mul_(1.0 / 255.0) if x.dtype == torch.uint8 else luma


def block_energy_reference(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Pure-torch ``block_energy``: the luma of the whole blocks, then per block the means of
    the squared differences along each axis (``torch.diff`` of the block view)."""
    bh, bw = normalize_block(block, x.shape[-2], x.shape[-1])
    n, _, height, width = x.shape
    out_h, out_w = height // bh, width // bw
    luma = luma_reference(x[..., : out_h * bh, : out_w * bw])
    blocks = luma.view(n, out_h, bh, out_w, bw)
    energy = torch.zeros((n, out_h, out_w), dtype=torch.float32, device=x.device)
    if bw > 1:
        energy += blocks.diff(dim=4).square_().mean(dim=(2, 4))
    if bh > 1:
        energy += blocks.diff(dim=2).square_().mean(dim=(2, 4))
    return energy


# --------------------------------------------------------------------------- Triton kernel


@triton.jit
def _row_luma(pointers, mask, x_stride_c, SCALE: tl.constexpr):
    """float32 luma at ``pointers`` (to the red values) where ``mask``, 0 elsewhere."""
    red = tl.load(pointers, mask=mask, other=0).to(tl.float32)
    green = tl.load(pointers + x_stride_c, mask=mask, other=0).to(tl.float32)
    blue = tl.load(pointers + 2 * x_stride_c, mask=mask, other=0).to(tl.float32)
    return (_LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue) * SCALE


@triton.jit(do_not_specialize=["out_h", "out_w"])
def _block_energy_kernel(
    x_ptr,
    out_ptr,
    out_h,
    out_w,
    x_stride_n,
    x_stride_c,
    x_stride_h,
    x_stride_w,
    out_stride_n,
    out_stride_h,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    TILE_OW: tl.constexpr,
    BW_CHUNK: tl.constexpr,
    SCALE: tl.constexpr,
):
    """Detail energy of ``BLOCK_H x BLOCK_W`` blocks of ``x`` ``(N, 3, H, W)`` into ``out``.

    ``x_ptr``: any dtype of ``IMAGE_DTYPES``, strides ``x_stride_*``, values times ``SCALE``
    in [0, 1]; ``out_ptr``: float32 ``(N, OH, OW)``, strides ``out_stride_n``, ``out_stride_h``
    and 1. A program takes ``TILE_OW`` blocks of one block row, ``BW_CHUNK`` lanes a block (a
    power of two; ``BLOCK_W`` in chunks of it when wider). Launch grid: ``(N * OH *
    ceil(OW / TILE_OW),)``.
    """
    row, first_cell = tile_start(out_w, 1, TILE_OW)
    image = (row // out_h).to(tl.int64)
    block_row = (row % out_h).to(tl.int64)
    cells = first_cell + tl.arange(0, TILE_OW)
    cell_valid = cells < out_w
    first_row = x_ptr + image * x_stride_n + block_row * BLOCK_H * x_stride_h
    horizontal = tl.zeros((TILE_OW,), tl.float32)
    vertical = tl.zeros((TILE_OW,), tl.float32)
    for chunk_start in tl.static_range(0, BLOCK_W, BW_CHUNK):
        columns, inside = chunk_columns(cells, chunk_start, BLOCK_W, BW_CHUNK)
        within = chunk_start + tl.arange(0, BW_CHUNK)
        mask = cell_valid[:, None] & inside
        # Lanes whose right-hand neighbour is in the same block.
        right_mask = cell_valid[:, None] & (within + 1 < BLOCK_W)[None, :]
        pointers = first_row + columns.to(tl.int64) * x_stride_w
        squares_x = tl.zeros((TILE_OW, BW_CHUNK), tl.float32)
        squares_y = tl.zeros((TILE_OW, BW_CHUNK), tl.float32)
        above = tl.zeros((TILE_OW, BW_CHUNK), tl.float32)
        for i in range(BLOCK_H):
            luma = _row_luma(pointers, mask, x_stride_c, SCALE)
            right = _row_luma(pointers + x_stride_w, right_mask, x_stride_c, SCALE)
            step_x = tl.where(right_mask, right - luma, 0.0)
            squares_x += step_x * step_x
            if i > 0:
                step_y = luma - above
                squares_y += step_y * step_y
            above = luma
            pointers += x_stride_h
        horizontal += tl.sum(squares_x, axis=1)
        vertical += tl.sum(squares_y, axis=1)
    energy = tl.zeros((TILE_OW,), tl.float32)
    if BLOCK_W > 1:
        energy += horizontal * (1.0 / (BLOCK_H * (BLOCK_W - 1)))
    if BLOCK_H > 1:
        energy += vertical * (1.0 / ((BLOCK_H - 1) * BLOCK_W))
    out = out_ptr + image * out_stride_n + block_row * out_stride_h + cells
    tl.store(out, energy, mask=cell_valid)


# --------------------------------------------------------------------------- launcher


def block_energy_plan(
    x: torch.Tensor, out: torch.Tensor, block: tuple[int, int], step: int, min_programs: int
) -> LaunchPlan:
    """How ``_block_energy_kernel`` measures ``x`` ``(N, 3, H, W)`` into ``out`` ``(N, OH, OW)``
    in ``block = (bh, bw)`` blocks, with the tiling step and programs of
    ``kernels.grid.launch_step``."""
    block_h, block_w = block
    n, out_h, out_w = out.shape
    bw_chunk = min(triton.next_power_of_2(block_w), step)
    num_rows = n * out_h
    # One block row per program, as many programs per row as the launch needs to fill the device.
    _, tile_ow = cell_tiling(bw_chunk, out_w, 1, step, -(-min_programs // num_rows))
    args = (x, out, out_h, out_w, *x.stride(), out.stride(0), out.stride(1))
    keywords = {
        "BLOCK_H": block_h,
        "BLOCK_W": block_w,
        "TILE_OW": tile_ow,
        "BW_CHUNK": bw_chunk,
        "SCALE": 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0,
        "num_warps": warps_for(tile_ow * bw_chunk, LANES_PER_THREAD),
    }
    return LaunchPlan(_block_energy_kernel, tile_grid(num_rows, out_w, 1, tile_ow), args, keywords)


def _block_energy_triton(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Launch ``block_energy_plan`` on a checked ``x`` and a normalised block."""
    n, _, height, width = x.shape
    out_h, out_w = height // block_h, width // block_w
    check_cell_counts(n * out_h, out_w)
    out = empty_output((n, out_h, out_w), torch.float32, x.device)
    if out.numel() == 0:
        return out
    step, min_programs = launch_step(x, LANES_PER_THREAD)
    plan = block_energy_plan(x, out, (block_h, block_w), step, min_programs)
    plan.kernel[plan.grid](*plan.args, **plan.keywords)
    return out


# --------------------------------------------------------------------------- public


def block_energy(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Detail energy of every ``bh x bw`` block: the mean squared forward difference of the
    luma, horizontal plus vertical, inside the block (the module docstring defines it).

    Args:
        x: ``(N, 3, H, W)`` RGB, uint8 (codes 0-255) or float (values in [0, 1], not clamped);
            any strides (a decoder's HWC frames seen as CHW are read in place).
        block: ``bh`` (square) or ``(bh, bw)``, each at least 1 and at most the image side.

    Returns:
        float32 ``(N, H // bh, W // bw)`` on ``x``'s device; the rows and columns past the last
        whole block are ignored.
    """
    check_tensor(x, "x", dtypes=IMAGE_DTYPES, ndim=4)
    check_channels(x, "x")
    block_h, block_w = normalize_block(block, x.shape[-2], x.shape[-1])
    if use_triton(x):
        return _block_energy_triton(x, block_h, block_w)
    return block_energy_reference(x, (block_h, block_w))
