"""What the mosaic engine needs of a frame's cells, in one pass over its pixels: Triton kernel,
launcher and pure-torch reference.

``analyse_cells`` reads a uint8 sRGB frame once and gives, for every cell (``cell x cell``, or
``ch x cw`` pixels for non-square cells), the
Oklab means of its ``grid x grid`` blocks (the descriptors) and, optionally, its Oklab mean and
population standard deviation per channel (the colour transfer's statistics). A frame whose
sides are not multiples of the cell is read as if padded by repeating its last row and column.
``cell_features`` (``features.py``) is the same kernel without statistics and without padding.

The kernel shares ``grid_reduce``'s tiling (``kernels/grid.py``): a program covers ``TILE_OW``
cells of one cell row and walks their pixel rows. Each row is ``TILE_OW * CW_CHUNK`` lanes, a
lane per pixel column (cells padded to a power of two), three channels loaded per lane (an HWC
frame: bytes 3 apart, so a warp's load covers 96 contiguous bytes; CHW: vectors of up to 16
bytes). A lane decodes its pixel through ``srgb_decode_table`` held in shared memory
(``tl.gather``: a bank-conflicted but cheap read, where a gather from global memory costs one L1
pass per 128-byte line the warp touches, up to 8 for noise), converts it to Oklab in registers
and adds it to per-lane sums; blocks and cells are summed from the lanes once per block row.

Statistics without cancellation: a lane keeps its column's first pixel ``K`` and the sums of
``x - K`` and ``(x - K)**2``; the column's mean and squared deviations follow with a relative
error of ``O(eps * CELL**2)`` at worst (any sample is within ``sqrt(n - 1)`` standard deviations
of the mean), and the columns combine into the cell exactly as two-pass statistics of groups
do: ``M2 = sum(M2_column) + CELL * sum((mean_column - mean) ** 2)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from kernels._launch import check_channels, check_tensor, empty_output
from kernels._math import linear_srgb_to_lms_cbrt, lms_cbrt_to_oklab
from kernels._triton import tl, triton
from kernels.dispatch import use_triton
from kernels.grid import (
    LaunchPlan,
    cell_tiling,
    check_cell_counts,
    grid_reduce_reference,
    launch_step,
    tile_grid,
    tile_start,
    warps_for,
)
from kernels.oklab import srgb_decode_table, srgb_to_oklab_reference

__all__ = [
    "MAX_STATISTICS_CELL",
    "CellAnalysis",
    "analyse_cells",
    "analyse_cells_reference",
    "block_mean_std",
    "oklab_block_means_reference",
    "repeat_edges",
]

MAX_STATISTICS_CELL = 1024
"""Largest cell side with statistics: a program holds a whole cell row in registers."""


class CellAnalysis(NamedTuple):
    """``analyse_cells``'s results for ``N`` frames of ``rows x cols`` cells, ``g`` the grid.

    Attributes:
        block_means: float32 ``(N, 3, rows * g, cols * g)``, the Oklab mean of every block.
        mean: float32 ``(N, rows, cols, 3)``, each cell's Oklab mean, or ``None``.
        std: float32 ``(N, rows, cols, 3)``, each cell's standard deviation per Oklab channel
            (population, over its pixels), or ``None``.
    """

    block_means: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None


# --------------------------------------------------------------------------- references


def repeat_edges(x: torch.Tensor, cell: int | tuple[int, int]) -> torch.Tensor:
    """``(..., H, W)`` padded bottom and right to multiples of ``cell`` (a side, or ``(ch, cw)``)
    by repeating the last row and column; ``x`` itself when no padding is needed. Concatenates
    whole rows (not a per-pixel gather: several times faster on a CPU)."""
    height, width = x.shape[-2:]
    cell_h, cell_w = (cell, cell) if isinstance(cell, int) else cell
    padded_h, padded_w = -(-height // cell_h) * cell_h, -(-width // cell_w) * cell_w
    if padded_w > width:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], padded_w - width)], dim=-1)
    if padded_h > height:
        x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], padded_h - height, padded_w)], -2)
    return x


def oklab_block_means_reference(rgb: torch.Tensor, block: int | tuple[int, int]) -> torch.Tensor:
    """Pure-torch Oklab block means, remainder ignored: ``grid_reduce(srgb_to_oklab(rgb))``."""
    return grid_reduce_reference(srgb_to_oklab_reference(rgb), block)


def block_mean_std(
    lab: torch.Tensor,
    block: tuple[int, int],
    *,
    overwrite: bool = False,
    mean: torch.Tensor | None = None,
    reduce: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] = grid_reduce_reference,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population standard deviation of every ``bh x bw`` block.

    Two passes (mean, then mean squared deviation), which stays accurate in float32 for the
    near-flat blocks whose spread matters most, unlike ``E[x^2] - E[x]^2``. For blocks too
    wide for ``analyse_cells``' statistics (a pool's tiles), and inside its reference.

    Args:
        lab: contiguous float32 ``(N, C, H, W)``, ``H`` and ``W`` multiples of ``block``.
        overwrite: work in ``lab`` itself (its values are lost) instead of a copy.
        mean: the block means when the caller already has them.
        reduce: the block mean: pure torch by default, ``kernels.grid_reduce`` for speed.

    Returns:
        ``(mean, std)``, each float32 ``(N, C, H // block, W // block)``.
    """
    n, channels, height, width = lab.shape
    if mean is None:
        mean = reduce(lab, block)
    rows, cols = mean.shape[-2:]
    blocks = lab.view(n, channels, rows, block[0], cols, block[1])
    block_mean = mean[:, :, :, None, :, None]
    deviation = blocks.sub_(block_mean) if overwrite else blocks - block_mean
    variance = reduce(deviation.square_().view(n, channels, height, width), block)
    return mean, variance.sqrt_()


def analyse_cells_reference(
    rgb: torch.Tensor, cell: int | tuple[int, int], grid: int = 1, *, statistics: bool = True
) -> CellAnalysis:
    """Pure-torch ``analyse_cells``: the frame padded, converted to Oklab once, then its block
    means, the cell means averaged from them and the spreads in a second pass."""
    cell = (cell, cell) if isinstance(cell, int) else cell
    padded = repeat_edges(rgb, cell)
    block = (cell[0] // grid, cell[1] // grid)
    if not statistics:
        return CellAnalysis(oklab_block_means_reference(padded, block), None, None)
    lab = srgb_to_oklab_reference(padded)
    block_means = grid_reduce_reference(lab, block)
    mean, std = block_mean_std(
        lab, cell, overwrite=True, mean=grid_reduce_reference(block_means, grid)
    )
    return CellAnalysis(
        block_means, mean.permute(0, 2, 3, 1).contiguous(), std.permute(0, 2, 3, 1).contiguous()
    )


# --------------------------------------------------------------------------- public


def _cell_shape(cell: object, grid: object) -> tuple[int, int]:
    """``cell`` (a side or ``(ch, cw)``) as ``(ch, cw)``, checked with ``grid`` (one line)."""
    sides = cell if isinstance(cell, tuple) and len(cell) == 2 else (cell, cell)
    for name, value in (("cell", sides[0]), ("cell", sides[1]), ("grid", grid)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int (cell: or a pair), got {value!r}")
    if sides[0] % grid or sides[1] % grid:
        raise ValueError(f"cell size {cell} must be a multiple of the grid {grid}")
    return sides


def analyse_cells(
    rgb: torch.Tensor, cell: int | tuple[int, int], grid: int = 1, *, statistics: bool = True
) -> CellAnalysis:
    """Oklab block means and, with ``statistics``, Oklab mean and spread of every cell.

    One pass over the pixels, no host synchronisation, output shapes fixed by the input's.

    Args:
        rgb: ``(N, 3, H, W)`` uint8 sRGB, ``H, W >= 1``; any strides (a decoder's HWC frames
            seen as CHW are read in place). Read as if padded to multiples of ``cell`` by
            repeating the last row and column.
        cell: cell side in pixels, or ``(ch, cw)`` (at most ``MAX_STATISTICS_CELL`` wide with
            ``statistics``).
        grid: blocks per cell side; the cell's sides must be multiples of it.
        statistics: also compute each cell's mean and standard deviation.

    Returns:
        ``CellAnalysis`` on ``rgb``'s device; ``rows, cols = ceil(H / ch), ceil(W / cw)``.
    """
    check_tensor(rgb, "rgb", dtypes=(torch.uint8,), ndim=4)
    check_channels(rgb, "rgb")
    cell_h, cell_w = _cell_shape(cell, grid)
    if rgb.shape[-2] == 0 or rgb.shape[-1] == 0:
        raise ValueError(f"rgb must have at least one row and column, got {tuple(rgb.shape)}")
    if statistics and cell_w > MAX_STATISTICS_CELL:
        raise ValueError(
            f"cell {cell} is larger than {MAX_STATISTICS_CELL} pixels wide, the most with "
            "statistics"
        )
    if not use_triton(rgb):
        return analyse_cells_reference(rgb, (cell_h, cell_w), grid, statistics=statistics)
    height, width = rgb.shape[-2:]
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    block = (cell_h // grid, cell_w // grid)
    if not statistics:
        block_means = oklab_block_means_triton(rgb, block, (rows * grid, cols * grid))
        return CellAnalysis(block_means, None, None)
    return _analyse_cells_triton(rgb, (cell_h, cell_w), grid, rows, cols)


# --------------------------------------------------------------------------- Triton kernel


@triton.jit
def _lane_pointers(image_start, columns, width, rgb_stride_w, PAD: tl.constexpr):
    """Pointers ``(LANES,)`` to the red codes of the lanes' columns in the image's row 0; with
    ``PAD``, columns past the image read its last one."""
    if PAD:
        columns = tl.minimum(columns, width - 1)
    return image_start + columns.to(tl.int64) * rgb_stride_w


@triton.jit
def _linear_srgb(
    columns, pixel_row, mask, decode_table, height, rgb_stride_h, rgb_stride_c, PAD: tl.constexpr
):
    """Linear float32 r, g, b ``(LANES,)`` of pixel row ``pixel_row`` (past the image, its last
    row with ``PAD``) at ``columns``, the red pointers of the lanes in row 0: uint8 codes decoded
    through ``decode_table`` ``(256,)``. With at least two warps ``tl.gather`` reads from shared
    memory: one ``LDS`` a value."""
    if PAD:
        pixel_row = tl.minimum(pixel_row, height - 1)
    pointers = columns + pixel_row.to(tl.int64) * rgb_stride_h
    red = tl.load(pointers, mask=mask, other=0).to(tl.int32)
    green = tl.load(pointers + rgb_stride_c, mask=mask, other=0).to(tl.int32)
    blue = tl.load(pointers + 2 * rgb_stride_c, mask=mask, other=0).to(tl.int32)
    return (
        tl.gather(decode_table, red, axis=0),
        tl.gather(decode_table, green, axis=0),
        tl.gather(decode_table, blue, axis=0),
    )


@triton.jit
def _cell_sums(values, lanes_kept, TILE_OW: tl.constexpr, CW: tl.constexpr):
    """Per-cell sums ``(TILE_OW,)`` of the kept lanes of ``values`` ``(TILE_OW * CW,)``."""
    return tl.sum(tl.reshape(tl.where(lanes_kept, values, 0.0), (TILE_OW, CW)), axis=1)


@triton.jit
def _per_lane(cell_values, TILE_OW: tl.constexpr, CW: tl.constexpr):
    """Per-cell values ``(TILE_OW,)`` repeated over the ``CW`` lanes of each cell."""
    return tl.reshape(tl.broadcast_to(cell_values[:, None], (TILE_OW, CW)), (TILE_OW * CW,))


@triton.jit(do_not_specialize=["out_h", "out_w", "height", "width"])
def _cell_oklab_kernel(
    rgb_ptr,
    decode_table_ptr,
    blocks_ptr,
    mean_ptr,
    std_ptr,
    out_h,
    out_w,
    height,
    width,
    rgb_stride_n,
    rgb_stride_c,
    rgb_stride_h,
    rgb_stride_w,
    blocks_stride_n,
    blocks_stride_c,
    blocks_stride_h,
    stats_stride_n,
    stats_stride_h,
    stats_stride_w,
    CELL_H: tl.constexpr,
    CELL_W: tl.constexpr,
    GRID: tl.constexpr,
    STATISTICS: tl.constexpr,
    PAD: tl.constexpr,
    TILE_OW: tl.constexpr,
    CW_CHUNK: tl.constexpr,
    FMA_CUBE_ROOTS: tl.constexpr,
):
    """Oklab block means, and cell means and spreads, of uint8 sRGB ``(N, 3, H, W)``.

    Pointers: ``rgb_ptr`` uint8 ``(N, 3, H, W)``, strides ``rgb_stride_*``; ``decode_table_ptr``
    float32 ``(256,)`` (``srgb_decode_table``); ``blocks_ptr`` float32 ``(N, 3, OH * GRID,
    OW * GRID)``, strides ``blocks_stride_n``, ``_c``, ``_h`` and 1; ``mean_ptr`` and
    ``std_ptr`` float32 ``(N, OH, OW, 3)``, strides ``stats_stride_n``, ``_h``, ``_w`` and 1
    (written only with ``STATISTICS``).

    Cells are ``CELL_H x CELL_W`` pixels, ``OH x OW`` of them per image, each of ``GRID x GRID``
    blocks. ``PAD``: pixel rows and columns past the image read its last row and column;
    otherwise every cell lies inside the image. ``STATISTICS`` needs one chunk (``CW_CHUNK >=
    CELL_W``); without it a cell's columns go in chunks of ``CW_CHUNK`` lanes. ``FMA_CUBE_ROOTS``:
    see ``linear_srgb_to_lms_cbrt``.

    A program takes ``TILE_OW`` cells of one cell row, ``CW_CHUNK`` lanes (pixel columns, the
    cell padded to a power of two) each: launch grid ``(N * OH * ceil(OW / TILE_OW),)``, at least
    two warps (``tl.gather`` from shared memory). Its loads per pixel row and channel are one
    run of ``TILE_OW * CELL_W`` pixels when ``CELL_W == CW_CHUNK``.
    """
    BLOCK_H: tl.constexpr = CELL_H // GRID
    BLOCK_W: tl.constexpr = CELL_W // GRID
    LANES: tl.constexpr = TILE_OW * CW_CHUNK
    row, first_cell = tile_start(out_w, 1, TILE_OW)
    image = (row // out_h).to(tl.int64)
    cell_row = row % out_h
    image_start = rgb_ptr + image * rgb_stride_n
    decode_table = tl.load(decode_table_ptr + tl.arange(0, 256))

    cells = first_cell + tl.arange(0, TILE_OW)
    cell_valid = cells < out_w
    lane = tl.arange(0, LANES)
    within = lane % CW_CHUNK
    lane_cell = first_cell + lane // CW_CHUNK
    if CELL_W == CW_CHUNK:
        # One run of pixels, its mask constant over 16 lanes when the used width is a multiple
        # of 16: the loads of a CHW frame stay vectorised.
        columns = first_cell * CELL_W + lane
        lane_valid = columns < out_w * CELL_W
    else:
        columns = lane_cell * CELL_W + within
        lane_valid = (within < CELL_W) & (lane_cell < out_w)

    if STATISTICS:
        row_start = _lane_pointers(image_start, columns, width, rgb_stride_w, PAD)

        # Per lane: a reference value K (its pixel in the cell's first row), the sums of x - K
        # and of (x - K)**2 over the rows so far, and the sums of x - K when the current block
        # row started.
        ref_l = tl.zeros((LANES,), tl.float32)
        ref_a = tl.zeros((LANES,), tl.float32)
        ref_b = tl.zeros((LANES,), tl.float32)
        sum_l = tl.zeros((LANES,), tl.float32)
        sum_a = tl.zeros((LANES,), tl.float32)
        sum_b = tl.zeros((LANES,), tl.float32)
        squares_l = tl.zeros((LANES,), tl.float32)
        squares_a = tl.zeros((LANES,), tl.float32)
        squares_b = tl.zeros((LANES,), tl.float32)
        start_l = tl.zeros((LANES,), tl.float32)
        start_a = tl.zeros((LANES,), tl.float32)
        start_b = tl.zeros((LANES,), tl.float32)
        block_start = image * blocks_stride_n + (cell_row * GRID).to(tl.int64) * blocks_stride_h
        for block_row in tl.static_range(GRID):
            for i in range(block_row * BLOCK_H, (block_row + 1) * BLOCK_H):
                red, green, blue = _linear_srgb(
                    row_start, cell_row * CELL_H + i, lane_valid, decode_table, height,
                    rgb_stride_h, rgb_stride_c, PAD,
                )  # fmt: skip
                lab_l, lab_a, lab_b = lms_cbrt_to_oklab(
                    *linear_srgb_to_lms_cbrt(red, green, blue, 0)
                )
                if i == 0:
                    ref_l, ref_a, ref_b = lab_l, lab_a, lab_b
                lab_l -= ref_l
                lab_a -= ref_a
                lab_b -= ref_b
                sum_l += lab_l
                sum_a += lab_a
                sum_b += lab_b
                squares_l += lab_l * lab_l
                squares_a += lab_a * lab_a
                squares_b += lab_b * lab_b
            # The block row's lane sums: BLOCK_H * K plus the deviations added since it began.
            block_l = (sum_l - start_l) + BLOCK_H * ref_l
            block_a = (sum_a - start_a) + BLOCK_H * ref_a
            block_b = (sum_b - start_b) + BLOCK_H * ref_b
            start_l, start_a, start_b = sum_l, sum_a, sum_b
            out_row = blocks_ptr + block_start + block_row * blocks_stride_h
            for block_col in tl.static_range(GRID):
                in_block = lane_valid & (within // BLOCK_W == block_col)
                out = out_row + cells * GRID + block_col
                scale = 1.0 / (BLOCK_H * BLOCK_W)
                mean_l = _cell_sums(block_l, in_block, TILE_OW, CW_CHUNK) * scale
                mean_a = _cell_sums(block_a, in_block, TILE_OW, CW_CHUNK) * scale
                mean_b = _cell_sums(block_b, in_block, TILE_OW, CW_CHUNK) * scale
                tl.store(out, mean_l, mask=cell_valid)
                tl.store(out + blocks_stride_c, mean_a, mask=cell_valid)
                tl.store(out + 2 * blocks_stride_c, mean_b, mask=cell_valid)
        # Each column: mean K + sum / CELL_H, squared deviations sum2 - sum**2 / CELL_H; the
        # cell: the mean of its columns, and their squared deviations plus CELL_H times the
        # squared deviations of the column means from it.
        stats_out = image * stats_stride_n + cell_row.to(tl.int64) * stats_stride_h
        stats_out += cells.to(tl.int64) * stats_stride_w
        for channel in tl.static_range(3):
            if channel == 0:
                reference, deviations, squares = ref_l, sum_l, squares_l
            elif channel == 1:
                reference, deviations, squares = ref_a, sum_a, squares_a
            else:
                reference, deviations, squares = ref_b, sum_b, squares_b
            column_mean = reference + deviations * (1.0 / CELL_H)
            column_m2 = tl.maximum(squares - deviations * deviations * (1.0 / CELL_H), 0.0)
            mean = _cell_sums(column_mean, lane_valid, TILE_OW, CW_CHUNK) * (1.0 / CELL_W)
            spread = column_mean - _per_lane(mean, TILE_OW, CW_CHUNK)
            m2 = _cell_sums(column_m2, lane_valid, TILE_OW, CW_CHUNK)
            m2 += CELL_H * _cell_sums(spread * spread, lane_valid, TILE_OW, CW_CHUNK)
            std = tl.sqrt(m2 * (1.0 / (CELL_H * CELL_W)))
            tl.store(mean_ptr + stats_out + channel, mean, mask=cell_valid)
            tl.store(std_ptr + stats_out + channel, std, mask=cell_valid)
    else:
        cell_l = tl.zeros((TILE_OW,), tl.float32)
        cell_m = tl.zeros((TILE_OW,), tl.float32)
        cell_s = tl.zeros((TILE_OW,), tl.float32)
        for chunk_start in tl.static_range(0, CELL_W, CW_CHUNK):
            if CELL_W % CW_CHUNK == 0:
                chunk_valid = lane_valid
            else:
                chunk_valid = lane_valid & (chunk_start + within < CELL_W)
            chunk_start_pointers = _lane_pointers(
                image_start, columns + chunk_start, width, rgb_stride_w, PAD
            )
            lane_l = tl.zeros((LANES,), tl.float32)
            lane_m = tl.zeros((LANES,), tl.float32)
            lane_s = tl.zeros((LANES,), tl.float32)
            for i in range(CELL_H):
                red, green, blue = _linear_srgb(
                    chunk_start_pointers, cell_row * CELL_H + i, chunk_valid, decode_table,
                    height, rgb_stride_h, rgb_stride_c, PAD,
                )  # fmt: skip
                lms_l, lms_m, lms_s = linear_srgb_to_lms_cbrt(red, green, blue, FMA_CUBE_ROOTS)
                lane_l += lms_l
                lane_m += lms_m
                lane_s += lms_s
            cell_l += _cell_sums(lane_l, chunk_valid, TILE_OW, CW_CHUNK)
            cell_m += _cell_sums(lane_m, chunk_valid, TILE_OW, CW_CHUNK)
            cell_s += _cell_sums(lane_s, chunk_valid, TILE_OW, CW_CHUNK)
        # The Oklab mix is linear: applied once per cell to the sums of cube-rooted LMS.
        scale = 1.0 / (CELL_H * CELL_W)
        mean_l, mean_a, mean_b = lms_cbrt_to_oklab(cell_l * scale, cell_m * scale, cell_s * scale)
        out = blocks_ptr + image * blocks_stride_n + cell_row.to(tl.int64) * blocks_stride_h
        out += cells
        tl.store(out, mean_l, mask=cell_valid)
        tl.store(out + blocks_stride_c, mean_a, mask=cell_valid)
        tl.store(out + 2 * blocks_stride_c, mean_b, mask=cell_valid)


# --------------------------------------------------------------------------- launchers


def lanes_per_thread(statistics: bool) -> int:
    """Lanes a GPU thread holds: statistics keep 12 float32 sums a lane, block means 3."""
    return 4 if statistics else 8


def cell_oklab_plan(
    rgb: torch.Tensor,
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    decode_table: torch.Tensor,
    cell: tuple[int, int],
    grid: int,
    step: int,
    min_programs: int,
    *,
    statistics: bool,
) -> LaunchPlan:
    """How ``_cell_oklab_kernel`` analyses ``rgb`` ``(N, 3, H, W)`` in cells of ``cell = (h, w)``
    pixels, ``grid`` blocks a side, into ``outputs = (blocks, mean, std)`` (their shapes give the
    cell counts; the frame is padded when they reach past it), with the tiling step and programs
    of ``kernels.grid.launch_step``."""
    blocks, mean, std = outputs
    n, _, height, width = rgb.shape
    out_h, out_w = blocks.shape[-2] // grid, blocks.shape[-1] // grid
    cw_chunk = triton.next_power_of_2(cell[1])
    if not statistics:
        cw_chunk = min(cw_chunk, step)
    num_rows = n * out_h
    # One cell row per program: the tiling of a single row, as many programs per row as the
    # launch needs to fill the device.
    _, tile_ow = cell_tiling(cw_chunk, out_w, 1, step, -(-min_programs // num_rows))
    args = (
        rgb, decode_table, blocks, mean, std, out_h, out_w, height, width,
        *rgb.stride(), *blocks.stride()[:3], *mean.stride()[:3],
    )  # fmt: skip
    keywords = {
        "CELL_H": cell[0],
        "CELL_W": cell[1],
        "GRID": grid,
        "STATISTICS": statistics,
        "PAD": out_h * cell[0] > height or out_w * cell[1] > width,
        "TILE_OW": tile_ow,
        "CW_CHUNK": cw_chunk,
        # Block means alone are bound by MUFU throughput: one cube root on the FMA pipe. With
        # statistics the kernel is bound by instruction issue, where that would cost more.
        "FMA_CUBE_ROOTS": 0 if statistics else 1,
        "num_warps": max(2, warps_for(tile_ow * cw_chunk, lanes_per_thread(statistics))),
    }
    return LaunchPlan(_cell_oklab_kernel, tile_grid(num_rows, out_w, 1, tile_ow), args, keywords)


def _launch(
    rgb: torch.Tensor,
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cell: tuple[int, int],
    grid: int,
    *,
    statistics: bool,
) -> None:
    """Run ``cell_oklab_plan`` on ``rgb``'s device."""
    step, min_programs = launch_step(rgb, lanes_per_thread(statistics))
    decode_table = srgb_decode_table(rgb.device)
    plan = cell_oklab_plan(
        rgb, outputs, decode_table, cell, grid, step, min_programs, statistics=statistics
    )
    plan.kernel[plan.grid](*plan.args, **plan.keywords)


def oklab_block_means_triton(
    rgb: torch.Tensor, block: tuple[int, int], out_size: tuple[int, int]
) -> torch.Tensor:
    """float32 ``(N, 3, OH, OW)`` Oklab means of ``block = (bh, bw)`` blocks of a checked uint8
    ``rgb`` ``(N, 3, H, W)``, ``out_size = (OH, OW)``: padded by repeating the edges when the
    blocks reach past the image, else the remainder ignored."""
    n = rgb.shape[0]
    check_cell_counts(n * out_size[0], out_size[1])
    blocks = empty_output((n, 3, *out_size), torch.float32, rgb.device)
    if blocks.numel() == 0:
        return blocks
    unused = blocks[:, :1].permute(0, 2, 3, 1)  # no statistics: any float32 (N, OH, OW, 1)
    _launch(rgb, (blocks, unused, unused), block, 1, statistics=False)
    return blocks


def _analyse_cells_triton(
    rgb: torch.Tensor, cell: tuple[int, int], grid: int, rows: int, cols: int
) -> CellAnalysis:
    """Launch ``_cell_oklab_kernel`` with statistics on a checked ``rgb``."""
    n = rgb.shape[0]
    device = rgb.device
    check_cell_counts(n * rows, cols)
    blocks = empty_output((n, 3, rows * grid, cols * grid), torch.float32, device)
    mean = empty_output((n, rows, cols, 3), torch.float32, device)
    std = empty_output((n, rows, cols, 3), torch.float32, device)
    if n == 0:
        return CellAnalysis(blocks, mean, std)
    _launch(rgb, (blocks, mean, std), cell, grid, statistics=True)
    return CellAnalysis(blocks, mean, std)
