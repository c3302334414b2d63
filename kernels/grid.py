"""Block means over a grid: Triton kernel, launcher and pure-torch reference.

The tiling here is shared with the fused ``cell_features`` kernel (``features.py``). The output
``(N, C, OH, OW)`` is seen as ``num_rows`` rows of ``OW`` cells (a row: one cell row of one
plane). A program covers a tile of ``TILE_R`` rows by ``TILE_OW`` cells and walks the ``bh`` pixel
rows of its cells; each step loads ``TILE_R x TILE_OW x BW_CHUNK`` pixels, where ``BW_CHUNK`` is
the block width rounded up to a power of two (chunked when it is very wide). Along W a step reads
whole runs of contiguous pixels, so loads coalesce; rows of a tile may belong to different
planes, so many small planes (tiles of the pool) share one program. Sums stay in registers, in
int32 for uint8 (exact) or float32, with one division per cell at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from kernels._launch import IMAGE_DTYPES, check_tensor, empty_output
from kernels._triton import tl, triton
from kernels.dispatch import interpreting, use_triton

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


# --------------------------------------------------------------------------- tiling heuristic

# Pixels a program loads per step. On GPU the step and the warp count are autotuned; the
# interpreter runs one config, since its cost grows with the number of programs.
INTERPRETER_STEP_PIXELS = 4096
# A step spans at most step_pixels / ROW_SPAN_DIVISOR pixels along W (512 for a 4096 step: four
# 128-byte lines of uint8); the rest of its budget goes to more cell rows.
ROW_SPAN_DIVISOR = 8
# On GPU, tiles shrink (fewer cell rows) until a launch has this many programs per SM.
PROGRAMS_PER_SM = 2


def cell_tiling(
    block_w: int, out_w: int, num_rows: int, step_pixels: int, min_programs: int = 1
) -> tuple[int, int, int]:
    """Tile shape ``(TILE_R, TILE_OW, BW_CHUNK)`` of one program, all powers of two.

    ``BW_CHUNK`` is the block width rounded up to a power of two, at most ``step_pixels``.
    ``TILE_OW`` cells span about ``step_pixels / ROW_SPAN_DIVISOR`` pixels along W, ``TILE_R`` rows
    fill the rest of the step, both clamped to the output so small inputs launch few, mostly
    unmasked programs. ``TILE_R`` then halves while the launch has fewer than ``min_programs``.
    """
    bw_chunk = min(triton.next_power_of_2(block_w), step_pixels)
    row_span = max(1, step_pixels // ROW_SPAN_DIVISOR // bw_chunk)
    tile_ow = min(triton.next_power_of_2(out_w), row_span)
    tile_r = min(triton.next_power_of_2(num_rows), max(1, step_pixels // (tile_ow * bw_chunk)))
    while tile_r > 1 and triton.cdiv(num_rows, tile_r) * triton.cdiv(out_w, tile_ow) < min_programs:
        tile_r //= 2
    return tile_r, tile_ow, bw_chunk


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _min_programs(tensor: torch.Tensor) -> int:
    """Programs a launch needs to fill the device: ``PROGRAMS_PER_SM`` per SM; 1 on CPU."""
    if tensor.device.type != "cuda":
        return 1
    return PROGRAMS_PER_SM * _sm_count(tensor.device)


def _tile_shape_from_args(args: dict) -> tuple[int, int, int]:
    return cell_tiling(
        args["BLOCK_W"],
        args["out_w"],
        args["num_rows"],
        args["STEP_PIXELS"],
        _min_programs(args["out_ptr"]),
    )


_TILE_SHAPE_HEURISTICS = {
    "TILE_R": lambda args: _tile_shape_from_args(args)[0],
    "TILE_OW": lambda args: _tile_shape_from_args(args)[1],
    "BW_CHUNK": lambda args: _tile_shape_from_args(args)[2],
}


def cell_tiled(gpu_step_pixels: tuple[int, ...]) -> Callable:
    """Decorator for a ``@triton.jit`` kernel over cell tiles.

    The kernel takes ``num_rows``, ``out_w``, ``out_ptr``, ``BLOCK_H``, ``BLOCK_W`` and the
    constexprs ``STEP_PIXELS``, ``TILE_R``, ``TILE_OW``, ``BW_CHUNK``; the last three come from
    ``cell_tiling``. On GPU, ``STEP_PIXELS`` (``gpu_step_pixels``) and 4 or 8 warps are autotuned
    per block size, output width and dtypes; the interpreter runs one config.
    """
    if interpreting():
        configs = [triton.Config({"STEP_PIXELS": INTERPRETER_STEP_PIXELS}, num_warps=4)]
    else:
        configs = [
            triton.Config({"STEP_PIXELS": step}, num_warps=warps)
            for step in gpu_step_pixels
            for warps in (4, 8)
        ]

    def decorate(kernel: Callable) -> Callable:
        tuned = triton.heuristics(_TILE_SHAPE_HEURISTICS)(kernel)
        return triton.autotune(configs, key=["BLOCK_H", "BLOCK_W", "out_w"])(tuned)

    return decorate


# Cell rows and columns are int32 inside the kernels (pixel offsets are int64).
MAX_CELL_INDEX = 2**30


def cell_tile_grid(num_rows: int, out_w: int) -> Callable[[dict], tuple[int]]:
    """Launch grid of a ``cell_tiled`` kernel: one program per tile, 1-D.

    Raises ValueError (before anything is allocated or launched) past ``MAX_CELL_INDEX``.
    """
    if max(num_rows, out_w) > MAX_CELL_INDEX:
        raise ValueError(
            f"too many cells for one launch: {num_rows} rows of {out_w} (at most {MAX_CELL_INDEX})"
        )
    return lambda meta: (
        triton.cdiv(num_rows, meta["TILE_R"]) * triton.cdiv(out_w, meta["TILE_OW"]),
    )


@triton.jit
def tile_cells(num_rows, out_w, TILE_R: tl.constexpr, TILE_OW: tl.constexpr):
    """This program's cells: rows ``(TILE_R,)``, columns ``(TILE_OW,)``, mask ``(TILE_R, TILE_OW)``.

    Consecutive programs walk along W first, so they read neighbouring memory.
    """
    pid = tl.program_id(0)
    tiles_per_row = tl.cdiv(out_w, TILE_OW)
    rows = (pid // tiles_per_row) * TILE_R + tl.arange(0, TILE_R)
    cols = (pid % tiles_per_row) * TILE_OW + tl.arange(0, TILE_OW)
    cell_mask = (rows < num_rows)[:, None] & (cols < out_w)[None, :]
    return rows, cols, cell_mask


@triton.jit
def block_chunk_columns(
    cols, cell_mask, chunk_start, stride_w, BLOCK_W: tl.constexpr, BW_CHUNK: tl.constexpr
):
    """Pixel offsets along W ``(1, TILE_OW, BW_CHUNK)`` of one chunk of each cell, int64, and
    the mask of the pixels to load ``(TILE_R, TILE_OW, BW_CHUNK)``."""
    within = chunk_start + tl.arange(0, BW_CHUNK)
    offsets = ((cols.to(tl.int64) * BLOCK_W)[:, None] + within[None, :]) * stride_w
    mask = cell_mask[:, :, None]
    # Only a chunk that overhangs its cell needs a mask along it; leaving the mask constant along
    # W otherwise keeps the loads vectorised.
    if BLOCK_W % BW_CHUNK != 0:
        mask = mask & (within < BLOCK_W)[None, None, :]
    return offsets[None, :, :], mask


# --------------------------------------------------------------------------- kernel


@cell_tiled(gpu_step_pixels=(2048, 4096, 8192))
@triton.jit(do_not_specialize=["num_rows", "channels", "out_h", "out_w"])
def _grid_reduce_kernel(
    x_ptr,
    out_ptr,
    num_rows,
    channels,
    out_h,
    out_w,
    x_stride_n,
    x_stride_c,
    x_stride_h,
    x_stride_w,
    out_stride_n,
    out_stride_c,
    out_stride_h,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    SUM_DTYPE: tl.constexpr,
    STEP_PIXELS: tl.constexpr,
    TILE_R: tl.constexpr,
    TILE_OW: tl.constexpr,
    BW_CHUNK: tl.constexpr,
):
    """Block means of ``x`` ``(N, C, H, W)`` into float32 ``out`` ``(N, C, OH, OW)``.

    ``num_rows = N * C * OH``; one program per tile of cells (see ``cell_tiling``).
    """
    tl.static_assert(TILE_R * TILE_OW * BW_CHUNK <= STEP_PIXELS)
    rows, cols, cell_mask = tile_cells(num_rows, out_w, TILE_R, TILE_OW)
    plane = rows // out_h
    cell_row = (rows % out_h).to(tl.int64)
    image = (plane // channels).to(tl.int64)
    channel = (plane % channels).to(tl.int64)
    first_rows = x_ptr + image * x_stride_n + channel * x_stride_c + cell_row * BLOCK_H * x_stride_h

    total = tl.zeros((TILE_R, TILE_OW), SUM_DTYPE)
    for chunk_start in tl.static_range(0, BLOCK_W, BW_CHUNK):
        columns, mask = block_chunk_columns(
            cols, cell_mask, chunk_start, x_stride_w, BLOCK_W, BW_CHUNK
        )
        row_ptrs = first_rows
        for _ in range(BLOCK_H):
            pixels = tl.load(row_ptrs[:, None, None] + columns, mask=mask, other=0)
            total += tl.sum(pixels.to(SUM_DTYPE), axis=2)
            row_ptrs += x_stride_h

    mean = total.to(tl.float32) / (BLOCK_H * BLOCK_W)
    out_rows = out_ptr + image * out_stride_n + channel * out_stride_c + cell_row * out_stride_h
    tl.store(out_rows[:, None] + cols[None, :], mean, mask=cell_mask)


def _sum_dtype(dtype: torch.dtype, block_pixels: int) -> tl.dtype:
    """int32 for uint8 blocks whose sum fits (exact, and cheaper than converting every pixel)."""
    if dtype == torch.uint8 and 255 * block_pixels < 2**31:
        return tl.int32
    return tl.float32


def _grid_reduce_triton(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Launch ``_grid_reduce_kernel`` on a checked ``x`` and a normalised block; any strides."""
    n, channels, height, width = x.shape
    out_h, out_w = height // block_h, width // block_w
    num_rows = n * channels * out_h
    grid = cell_tile_grid(num_rows, out_w)
    out = empty_output((n, channels, out_h, out_w), torch.float32, x.device)
    if num_rows == 0:
        return out
    _grid_reduce_kernel[grid](
        x,
        out,
        num_rows,
        channels,
        out_h,
        out_w,
        *x.stride(),
        *out.stride()[:3],
        BLOCK_H=block_h,
        BLOCK_W=block_w,
        SUM_DTYPE=_sum_dtype(x.dtype, block_h * block_w),
    )
    return out


# --------------------------------------------------------------------------- public


def grid_reduce_reference(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Pure-torch ``grid_reduce``: contiguous float32 means of every ``bh x bw`` block, remainder
    ignored.

    The ``bh`` rows of each block are added first, whole pixel rows at a time (vectorised along
    W), then the ``bw`` columns: on a CPU about 3x faster than ``avg_pool2d``.
    """
    bh, bw = normalize_block(block, x.shape[-2], x.shape[-1])
    n, channels, height, width = x.shape
    out_h, out_w = height // bh, width // bw
    cropped = x[..., : out_h * bh, : out_w * bw].to(torch.float32)
    block_rows = cropped.reshape(n * channels * out_h, bh, out_w, bw).sum(1)
    return block_rows.sum(2).div_(bh * bw).view(n, channels, out_h, out_w)


def grid_reduce(x: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Mean of every ``bh x bw`` block; the remainder rows and columns are ignored.

    Args:
        x: ``(N, C, H, W)`` uint8 or float; any strides.
        block: ``bh`` (square) or ``(bh, bw)``, each at least 1 and at most the image side.

    Returns:
        float32 ``(N, C, H // bh, W // bw)`` on ``x``'s device.
    """
    check_tensor(x, "x", dtypes=IMAGE_DTYPES, ndim=4)
    block_h, block_w = normalize_block(block, x.shape[-2], x.shape[-1])
    if use_triton(x):
        return _grid_reduce_triton(x, block_h, block_w)
    return grid_reduce_reference(x, block)
