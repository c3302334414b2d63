"""Block means over a grid: Triton kernel, launcher and pure-torch reference.

The tiling here is shared with the Oklab cell kernel (``cell_analysis.py``). A tile row is one
row of blocks (``bh`` pixel rows) of one image plane; a program covers ``TILE_R`` tile rows by
``TILE_OW`` consecutive blocks and walks their ``bh`` pixel rows, adding each to per-column sums
in registers; only after the last row are the columns summed into blocks.

How a pixel row is loaded depends on the layout and the block width:

- a contiguous row, power-of-two blocks (up to the step): the ``TILE_OW * bw`` columns are one
  run, loaded as a ``(TILE_R, TILE_OW * bw)`` block and reshaped into blocks at the end. Each
  thread loads 16 bytes at once, a warp 512: four whole cache lines.
- a contiguous memory row otherwise, other block widths and HWC frames (channels interleaved,
  channel stride 1, pixel stride C): ``_grid_reduce_span_kernel`` loads a run of the memory row
  the same way, one tile row per program, and only after the last pixel row gathers each
  block's columns (per channel) from the column sums, through shared memory (``tl.gather``).
- any other strides (or blocks wider than the step): ``(TILE_R, TILE_OW, BW_CHUNK)``, each
  block's columns padded to a power of two (masked) and, if wider than the step, chunked; a
  warp's load still covers one contiguous run of elements, in narrower pieces.

Sums stay in registers, in int32 for uint8 (exact) or float32, with one division per block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from kernels._launch import IMAGE_DTYPES, check_tensor, empty_output
from kernels._triton import tl, triton
from kernels.dispatch import runs_compiled, use_triton

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


# --------------------------------------------------------------------------- tiling

# Lanes (pixels of a tile row's span, block padding included) a program holds per pixel row in
# the interpreter, whose time grows with the number of programs rather than their size.
INTERPRETER_STEP = 4096
# On a GPU a program has up to GPU_WARPS warps and ``lanes_per_thread`` lanes per thread (16
# bytes of uint8, 4 float32 values); tiles shrink until a launch has PROGRAMS_PER_SM programs per
# SM, so that each SM holds several and hides the memory latency of the others.
GPU_WARPS = 4
VECTOR_BYTES = 16
PROGRAMS_PER_SM = 4
# Cell rows and columns are int32 inside the kernels (pixel offsets are int64).
MAX_CELL_INDEX = 2**30
# Pixel rows whose loads a thread issues before it needs the first: blocks up to 16 rows are
# unrolled whole by the compiler anyway, taller ones four rows at a time.
ROW_UNROLL = tl.constexpr(4)


def cell_tiling(
    lanes_per_cell: int, out_w: int, num_rows: int, step: int, min_programs: int = 1
) -> tuple[int, int]:
    """``(TILE_R, TILE_OW)`` of one program, powers of two, for cells of ``lanes_per_cell``
    lanes (a power of two) in rows of ``out_w`` cells, ``num_rows`` tile rows in all.

    ``TILE_OW`` cells fill the step along W, no more than the row needs; ``TILE_R`` rows fill the
    rest. Rows, then cells, halve while the launch has fewer than ``min_programs`` programs.
    """
    tile_ow = min(triton.next_power_of_2(out_w), max(1, step // lanes_per_cell))
    tile_r = min(triton.next_power_of_2(num_rows), max(1, step // (tile_ow * lanes_per_cell)))

    def programs() -> int:
        return triton.cdiv(num_rows, tile_r) * triton.cdiv(out_w, tile_ow)

    while programs() < min_programs and tile_r * tile_ow > 1:
        if tile_r > 1:
            tile_r //= 2
        else:
            tile_ow //= 2
    return tile_r, tile_ow


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def launch_step(tensor: torch.Tensor, lanes_per_thread: int) -> tuple[int, int]:
    """``(step, min_programs)`` of ``cell_tiling`` for a launch on ``tensor``'s device.

    Compiled: ``GPU_WARPS`` warps of ``lanes_per_thread`` lanes per thread, ``PROGRAMS_PER_SM``
    programs per SM. Interpreter: ``INTERPRETER_STEP`` lanes, one program enough.
    """
    if not runs_compiled(tensor):
        return INTERPRETER_STEP, 1
    return GPU_WARPS * 32 * lanes_per_thread, PROGRAMS_PER_SM * _sm_count(tensor.device)


def lanes_per_thread_for(x: torch.Tensor) -> int:
    """Lanes a thread of ``grid_reduce`` holds: a 16-byte vector where the memory rows are
    contiguous (planes of stride 1, HWC frames), else 4 (element loads: more lanes would only
    hold more addresses in registers)."""
    contiguous_rows = x.stride(3) == 1 or (interleaved_channels(x) and x.stride(3) == x.shape[1])
    return VECTOR_BYTES // x.element_size() if contiguous_rows else 4


def warps_for(lanes: int, lanes_per_thread: int) -> int:
    """Warps of a program holding ``lanes`` lanes: one thread per ``lanes_per_thread``, at most
    ``GPU_WARPS`` (a smaller tile would otherwise be replicated across idle threads)."""
    return max(1, min(GPU_WARPS, lanes // lanes_per_thread // 32))


def check_cell_counts(num_rows: int, out_w: int) -> None:
    """Raise ValueError past ``MAX_CELL_INDEX`` tile rows or cells a row: launchers call it
    before they allocate anything."""
    if max(num_rows, out_w) > MAX_CELL_INDEX:
        raise ValueError(
            f"too many cells for one launch: {num_rows} rows of {out_w} (at most {MAX_CELL_INDEX})"
        )


def tile_grid(num_rows: int, out_w: int, tile_r: int, tile_ow: int) -> tuple[int]:
    """Launch grid of a tiled kernel: one program per tile, 1-D, a row's tiles adjacent."""
    return (triton.cdiv(num_rows, tile_r) * triton.cdiv(out_w, tile_ow),)


def span_tiling(
    block_w: int, pixel_elements: int, out_w: int, num_rows: int, step: int, min_programs: int
) -> tuple[int, int] | None:
    """``(SPAN, TILE_OW)`` of ``_grid_reduce_span_kernel``: ``TILE_OW`` blocks of ``block_w``
    pixels of ``pixel_elements`` elements in a span of ``SPAN`` elements (a power of two), one
    tile row of ``out_w`` blocks per program, ``num_rows`` of them. Spans start 16-element
    aligned (``TILE_OW`` a multiple of the blocks that fill 16 elements), so the loads stay
    vectorised; they hold at most ``step`` elements, fewer (whole aligned groups) while the launch
    has fewer than ``min_programs`` programs. None when one aligned group is wider than the step.
    """
    elements = block_w * pixel_elements
    group = min(16 // math.gcd(16, elements), out_w)
    cells = min(step // elements // group * group, out_w)
    if cells == 0:
        return None
    while cells > group and num_rows * triton.cdiv(out_w, cells) < min_programs:
        cells = max(group, cells // 2 // group * group)
    return triton.next_power_of_2(cells * elements), cells


def _is_power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


@triton.jit
def tile_start(out_w, TILE_R: tl.constexpr, TILE_OW: tl.constexpr):
    """This program's first tile row and first cell (int32 scalars). Consecutive programs take
    consecutive tiles of a row, so they read neighbouring memory."""
    pid = tl.program_id(0)
    tiles_per_row = tl.cdiv(out_w, TILE_OW)
    return (pid // tiles_per_row) * TILE_R, (pid % tiles_per_row) * TILE_OW


@triton.jit
def chunk_columns(cells, chunk_start, BLOCK_W: tl.constexpr, BW_CHUNK: tl.constexpr):
    """Columns ``(TILE_OW, BW_CHUNK)`` (int32) of one chunk of each cell, and whether each lies
    inside its cell ``(1, BW_CHUNK)``. A chunk that does not overhang its cell gets a mask that
    is constant along it, which keeps the loads vectorised."""
    within = chunk_start + tl.arange(0, BW_CHUNK)
    columns = cells[:, None] * BLOCK_W + within[None, :]
    if BLOCK_W % BW_CHUNK == 0:
        inside = tl.full((1, BW_CHUNK), True, tl.int1)
    else:
        inside = (within < BLOCK_W)[None, :]
    return columns, inside


# --------------------------------------------------------------------------- kernel


@triton.jit(do_not_specialize=["num_rows", "planes", "out_h", "out_w"])
def _grid_reduce_kernel(
    x_ptr,
    out_ptr,
    num_rows,
    planes,
    out_h,
    out_w,
    used_width,
    x_stride_n,
    x_stride_c,
    x_stride_h,
    x_stride_w,
    out_stride_n,
    out_stride_c,
    out_stride_h,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    CHANNELS_PER_ROW: tl.constexpr,
    BY_RESHAPE: tl.constexpr,
    TILE_R: tl.constexpr,
    TILE_OW: tl.constexpr,
    BW_CHUNK: tl.constexpr,
    SUM_DTYPE: tl.constexpr,
):
    """Block means of ``x`` ``(N, C, H, W)`` into float32 ``out`` ``(N, C, OH, OW)``.

    ``x_ptr``: any dtype of ``IMAGE_DTYPES``, strides ``x_stride_*``; ``out_ptr``: float32,
    strides ``out_stride_n``, ``out_stride_c``, ``out_stride_h`` and 1. Tile rows (``num_rows =
    N * planes * OH``) run over images, then ``planes`` plane rows, then block rows: planar
    layouts have ``planes = C`` and ``CHANNELS_PER_ROW = 1``; HWC frames (channels interleaved)
    ``planes = 1`` and ``CHANNELS_PER_ROW = C``, the channels taken one after another.
    ``used_width = OW * BLOCK_W``: the columns the blocks cover.

    ``BLOCK_H x BLOCK_W`` blocks. ``BY_RESHAPE`` (a power-of-two ``BLOCK_W``): a pixel row of a
    tile is ``(TILE_R, TILE_OW * BLOCK_W)`` contiguous columns, reshaped into blocks at the end;
    else ``(TILE_R, TILE_OW, BW_CHUNK)``, blocks padded to ``BW_CHUNK`` columns (a power of two,
    chunked when smaller than ``BLOCK_W``). Sums in ``SUM_DTYPE``: int32 (uint8) or float32.
    Launch grid: ``(ceil(num_rows / TILE_R) * ceil(OW / TILE_OW),)``.
    """
    first_row, first_cell = tile_start(out_w, TILE_R, TILE_OW)
    rows = first_row + tl.arange(0, TILE_R)
    cells = first_cell + tl.arange(0, TILE_OW)
    row_valid = rows < num_rows
    cell_valid = cells < out_w
    plane_row = rows // out_h
    cell_row = (rows % out_h).to(tl.int64)
    image = (plane_row // planes).to(tl.int64)
    plane = (plane_row % planes).to(tl.int64)
    first_rows = x_ptr + image * x_stride_n + plane * x_stride_c + cell_row * BLOCK_H * x_stride_h
    out_rows = out_ptr + image * out_stride_n + plane * out_stride_c + cell_row * out_stride_h
    out_mask = row_valid[:, None] & cell_valid[None, :]
    for channel in range(CHANNELS_PER_ROW):
        channel_rows = first_rows + channel * x_stride_c
        if BY_RESHAPE:
            columns = first_cell * BLOCK_W + tl.arange(0, TILE_OW * BLOCK_W)
            pointers = channel_rows[:, None] + (columns.to(tl.int64) * x_stride_w)[None, :]
            mask = row_valid[:, None] & (columns < used_width)[None, :]
            column_sums = tl.zeros((TILE_R, TILE_OW * BLOCK_W), SUM_DTYPE)
            for _ in tl.range(BLOCK_H, loop_unroll_factor=ROW_UNROLL):
                column_sums += tl.load(pointers, mask=mask, other=0).to(SUM_DTYPE)
                pointers += x_stride_h
            sums = tl.sum(tl.reshape(column_sums, (TILE_R, TILE_OW, BLOCK_W)), axis=2)
        else:
            sums = tl.zeros((TILE_R, TILE_OW), SUM_DTYPE)
            for chunk_start in tl.static_range(0, BLOCK_W, BW_CHUNK):
                columns, inside = chunk_columns(cells, chunk_start, BLOCK_W, BW_CHUNK)
                offsets = columns.to(tl.int64) * x_stride_w
                pointers = channel_rows[:, None, None] + offsets[None, :, :]
                mask = out_mask[:, :, None] & inside[None, :, :]
                column_sums = tl.zeros((TILE_R, TILE_OW, BW_CHUNK), SUM_DTYPE)
                for _ in tl.range(BLOCK_H, loop_unroll_factor=ROW_UNROLL):
                    column_sums += tl.load(pointers, mask=mask, other=0).to(SUM_DTYPE)
                    pointers += x_stride_h
                sums += tl.sum(column_sums, axis=2)
        means = sums.to(tl.float32) / (BLOCK_H * BLOCK_W)
        out_pointers = out_rows[:, None] + channel * out_stride_c + cells[None, :]
        tl.store(out_pointers, means, mask=out_mask)


@triton.jit(do_not_specialize=["planes", "out_h", "out_w"])
def _grid_reduce_span_kernel(
    x_ptr,
    out_ptr,
    planes,
    out_h,
    out_w,
    used_elements,
    x_stride_n,
    x_stride_c,
    x_stride_h,
    out_stride_n,
    out_stride_c,
    out_stride_h,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    PIXEL_ELEMENTS: tl.constexpr,
    SPAN: tl.constexpr,
    TILE_OW: tl.constexpr,
    TILE_OW_PAD: tl.constexpr,
    BW_PAD: tl.constexpr,
    SUM_DTYPE: tl.constexpr,
):
    """Block means of ``x`` ``(N, C, H, W)`` into float32 ``out`` ``(N, C, OH, OW)``, for memory
    rows that are contiguous: planar (``W`` stride 1, ``planes = C``, ``PIXEL_ELEMENTS = 1``) or
    HWC (channel stride 1, pixel stride ``PIXEL_ELEMENTS = C``, ``planes = 1``).

    ``x_ptr``: any dtype of ``IMAGE_DTYPES``, strides ``x_stride_n``, ``x_stride_c``,
    ``x_stride_h``; ``out_ptr``: float32, strides ``out_stride_n``, ``out_stride_c``,
    ``out_stride_h`` and 1. ``used_elements = OW * BLOCK_W * PIXEL_ELEMENTS``: the elements of a
    memory row the blocks cover.

    A program takes one tile row (image, plane, block row) and ``TILE_OW`` blocks, ``SPAN``
    elements of its memory rows (``span_tiling``), adding ``BLOCK_H`` rows of them in
    ``SUM_DTYPE`` (int32 for uint8, else float32); then for each channel it gathers every block's
    columns from these sums, ``BW_PAD`` lanes a block (``BLOCK_W`` padded to a power of two),
    ``TILE_OW_PAD`` blocks (a power of two), and sums them. Launch grid: ``(N * planes * OH *
    ceil(OW / TILE_OW),)``, at least two warps (``tl.gather`` through shared memory).
    """
    row, first_cell = tile_start(out_w, 1, TILE_OW)
    plane_row = row // out_h
    cell_row = (row % out_h).to(tl.int64)
    image = (plane_row // planes).to(tl.int64)
    plane = (plane_row % planes).to(tl.int64)
    span_start = first_cell * BLOCK_W * PIXEL_ELEMENTS
    first_row = x_ptr + image * x_stride_n + cell_row * BLOCK_H * x_stride_h
    if PIXEL_ELEMENTS == 1:
        # Planes are memory rows of their own. (Interleaved, the plane is 0: leaving its channel
        # stride of 1 out keeps the row's 16-byte alignment visible to the compiler.)
        first_row += plane * x_stride_c
    elements = span_start + tl.arange(0, SPAN)
    pointers = first_row + elements
    mask = elements < used_elements
    column_sums = tl.zeros((SPAN,), SUM_DTYPE)
    for _ in tl.range(BLOCK_H, loop_unroll_factor=ROW_UNROLL):
        column_sums += tl.load(pointers, mask=mask, other=0).to(SUM_DTYPE)
        pointers += x_stride_h

    lane = tl.arange(0, TILE_OW_PAD * BW_PAD)
    lane_pixel = (lane // BW_PAD) * BLOCK_W + lane % BW_PAD
    in_block = lane % BW_PAD < BLOCK_W
    cells = tl.arange(0, TILE_OW_PAD)
    out_mask = (cells < TILE_OW) & (first_cell + cells < out_w)
    out_row = out_ptr + image * out_stride_n + plane * out_stride_c + cell_row * out_stride_h
    out_row += first_cell + cells
    for channel in tl.static_range(PIXEL_ELEMENTS):
        index = tl.minimum(lane_pixel * PIXEL_ELEMENTS + channel, SPAN - 1)
        values = tl.where(in_block, tl.gather(column_sums, index, axis=0), 0)
        sums = tl.sum(tl.reshape(values, (TILE_OW_PAD, BW_PAD)), axis=1)
        means = sums.to(tl.float32) / (BLOCK_H * BLOCK_W)
        tl.store(out_row + channel * out_stride_c, means, mask=out_mask)


def interleaved_channels(x: torch.Tensor) -> bool:
    """Whether the channels of ``x`` ``(N, C, H, W)`` are interleaved in memory: an HWC frame
    seen as CHW (channel stride 1, pixel stride C up to 4)."""
    _, channels, _, width = x.shape
    _, stride_c, _, stride_w = x.stride()
    return channels > 1 and width > 1 and stride_c == 1 and channels <= stride_w <= 4


def _sum_dtype(dtype: torch.dtype, block_pixels: int) -> tl.dtype:
    """int32 for uint8 blocks whose sum fits (exact, and cheaper than converting every pixel)."""
    if dtype == torch.uint8 and 255 * block_pixels < 2**31:
        return tl.int32
    return tl.float32


class LaunchPlan(NamedTuple):
    """A kernel launch decided by a launcher's heuristics: ``kernel[grid](*args, **keywords)``
    (``keywords``: its constexprs and ``num_warps``)."""

    kernel: Callable
    grid: tuple[int]
    args: tuple
    keywords: dict[str, object]


def grid_reduce_plan(
    x: torch.Tensor, out: torch.Tensor, block: tuple[int, int], step: int, min_programs: int
) -> LaunchPlan:
    """How ``grid_reduce`` reduces ``x`` ``(N, C, H, W)`` into ``out`` ``(N, C, OH, OW)`` in
    ``block = (bh, bw)`` blocks, with the tiling step and programs of ``launch_step``."""
    block_h, block_w = block
    n, channels, out_h, out_w = out.shape
    channels_per_row = channels if interleaved_channels(x) else 1
    planes = channels // channels_per_row
    num_rows = n * planes * out_h
    lanes_per_thread = lanes_per_thread_for(x)
    sum_dtype = _sum_dtype(x.dtype, block_h * block_w)
    # Memory rows without gaps: one run of elements per tile row.
    pixel_elements = x.stride(3) if channels_per_row > 1 or x.stride(3) == 1 else 0
    by_reshape = pixel_elements == 1 and _is_power_of_two(block_w) and block_w <= step
    span = None
    if pixel_elements == channels_per_row and not by_reshape:
        span = span_tiling(block_w, pixel_elements, out_w, num_rows, step, min_programs)
    if span is not None:
        span_elements, tile_ow = span
        args = (
            x, out, planes, out_h, out_w, out_w * block_w * pixel_elements,
            *x.stride()[:3], *out.stride()[:3],
        )  # fmt: skip
        keywords = {
            "BLOCK_H": block_h,
            "BLOCK_W": block_w,
            "PIXEL_ELEMENTS": pixel_elements,
            "SPAN": span_elements,
            "TILE_OW": tile_ow,
            "TILE_OW_PAD": triton.next_power_of_2(tile_ow),
            "BW_PAD": triton.next_power_of_2(block_w),
            "SUM_DTYPE": sum_dtype,
            "num_warps": max(2, warps_for(span_elements, lanes_per_thread)),
        }
        grid = tile_grid(num_rows, out_w, 1, tile_ow)
        return LaunchPlan(_grid_reduce_span_kernel, grid, args, keywords)
    bw_chunk = min(triton.next_power_of_2(block_w), step)
    tile_r, tile_ow = cell_tiling(bw_chunk, out_w, num_rows, step, min_programs)
    args = (x, out, num_rows, planes, out_h, out_w, out_w * block_w, *x.stride(), *out.stride()[:3])
    keywords = {
        "BLOCK_H": block_h,
        "BLOCK_W": block_w,
        "CHANNELS_PER_ROW": channels_per_row,
        "BY_RESHAPE": by_reshape,
        "TILE_R": tile_r,
        "TILE_OW": tile_ow,
        "BW_CHUNK": bw_chunk,
        "SUM_DTYPE": sum_dtype,
        "num_warps": warps_for(tile_r * tile_ow * bw_chunk, lanes_per_thread),
    }
    return LaunchPlan(
        _grid_reduce_kernel, tile_grid(num_rows, out_w, tile_r, tile_ow), args, keywords
    )


def _grid_reduce_triton(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Launch ``grid_reduce_plan`` on a checked ``x`` and a normalised block; any strides."""
    n, channels, height, width = x.shape
    out_h, out_w = height // block_h, width // block_w
    planes = 1 if interleaved_channels(x) else channels
    check_cell_counts(n * planes * out_h, out_w)
    out = empty_output((n, channels, out_h, out_w), torch.float32, x.device)
    if out.numel() == 0:
        return out
    step, min_programs = launch_step(x, lanes_per_thread_for(x))
    plan = grid_reduce_plan(x, out, (block_h, block_w), step, min_programs)
    plan.kernel[plan.grid](*plan.args, **plan.keywords)
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
