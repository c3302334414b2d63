"""Property tests for ``kernels/grid.py``: ``grid_reduce`` and the cell tiling it shares with
the Oklab cell kernel.

The Triton kernels (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
and an independent numpy oracle (float64 reshape and mean), over blocks with tails, square and
not, dtypes and strided layouts, so that each way of loading a row runs: reshaped runs of
columns (power-of-two blocks), spans gathered into blocks (other blocks, HWC frames), padded
lanes (other strides). Outputs start NaN-poisoned, so an unwritten cell fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import triton
from hypothesis import given
from hypothesis import strategies as st

from kernels import grid_reduce
from kernels._launch import IMAGE_DTYPES
from kernels.dispatch import use_triton
from kernels.grid import (
    INTERPRETER_STEP,
    MAX_CELL_INDEX,
    cell_tiling,
    grid_reduce_reference,
    interleaved_channels,
    span_tiling,
)
from tests.kernels.compare import (
    FEW_SHAPES,
    assert_close,
    block_mean_atol,
    block_means_numpy,
    grid_specs,
    needs_compiled_cuda,
    random_pixels,
    shares_device_fixture,
    with_grid_layout,
)

SEEDS = st.integers(0, 2**31 - 1)


def assert_block_means(x: torch.Tensor, block: int | tuple[int, int], name: str) -> None:
    """``grid_reduce(x, block)`` against the reference on ``x``'s device and the numpy oracle."""
    block_h, block_w = (block, block) if isinstance(block, int) else block
    means = grid_reduce(x, block)
    assert means.dtype == torch.float32
    assert means.device == x.device
    assert means.is_contiguous()
    atol = block_mean_atol(float(x.abs().max()), block_h, block_w)
    # The reference rounds in its own order: twice the bound between the two float32 results.
    assert_close(means, grid_reduce_reference(x, block), atol=2 * atol, name=f"{name} vs reference")
    assert_close(means, block_means_numpy(x, block_h, block_w), atol=atol, name=f"{name} vs numpy")


@shares_device_fixture
@given(spec=grid_specs(), dtype=st.sampled_from(IMAGE_DTYPES), seed=SEEDS)
def test_matches_reference_and_numpy(device, spec, dtype, seed):
    shape, (block_h, block_w), layout = spec
    x = with_grid_layout(random_pixels(shape, dtype, seed).to(device), layout)
    block = block_h if block_h == block_w else (block_h, block_w)
    assert_block_means(x, block, name=f"grid_reduce {dtype} {layout} {shape} {block}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block", [(4, 4), (3, 1), (2, 5)])
def test_several_programs_with_partial_tiles(device, block, layout):
    """Three tiles of the interpreter's config along W, the last one of a single cell, and
    remainder pixels on both sides. (Small images test tiles of rows that straddle planes.)"""
    block_h, block_w = block
    _, tile_ow = cell_tiling(triton.next_power_of_2(block_w), 2**20, 2**20, INTERPRETER_STEP)
    out_h, out_w = 2, 2 * tile_ow + 1
    shape = (1, 3, out_h * block_h + block_h - 1, out_w * block_w + block_w - 1)
    x = with_grid_layout(random_pixels(shape, torch.uint8, seed=sum(block)).to(device), layout)
    assert_block_means(x, block, name=f"grid_reduce {layout} {shape} {block}")


# On a GPU test_cuda_frames_1080p covers the powers of two and 12, one compile each.
FRAME_BLOCKS = [3, (5, 7)] if FEW_SHAPES else [2, 4, 8, 16, 32, 3, 6, 12, (5, 7)]


@pytest.mark.parametrize("block", FRAME_BLOCKS)
def test_engine_block_sizes_on_a_frame(device, block):
    """Blocks of 2 to 32, powers of two or not, on a small frame in each frame layout: planar,
    and HWC (channels interleaved in memory, taken by one program) and its RGBA view."""
    frames = random_pixels((2, 4, 37, 70), torch.uint8, seed=9).to(device)
    for layout, x in {
        "CHW": frames[:, :3],
        "HWC": with_grid_layout(frames[:, :3], "channels_last"),
        "RGBA view": with_grid_layout(frames, "channels_last")[:, :3],
    }.items():
        assert interleaved_channels(x) == (layout != "CHW")
        assert_block_means(x, block, name=f"grid_reduce {layout} {block}")


@pytest.mark.parametrize(
    ("shape", "block", "dtype"),
    [
        ((3, 3, 32, 32), 32, torch.uint8),  # pool tiles, one cell each
        ((5, 3, 32, 32), 8, torch.uint8),  # pool tiles, 4 x 4 descriptor grid
        ((1, 3, 121, 245), 120, torch.float32),  # big cells: the chunk overhangs the block
        ((2, 3, 37, 53), (37, 53), torch.float16),  # block == image
        ((1, 2, 3, 5003), (2, 5000), torch.uint8),  # wider than a step: two chunks per cell
        ((2, 1, 70, 9), (64, 9), torch.float32),  # tall and narrow
    ],
)
def test_large_and_whole_image_blocks(device, shape, block, dtype):
    x = random_pixels(shape, dtype, seed=7).to(device)
    assert_block_means(x, block, name=f"grid_reduce {dtype} {shape} {block}")


def test_empty_batch_gives_empty_output(device):
    means = grid_reduce(torch.ones((0, 3, 8, 8), dtype=torch.uint8, device=device), (4, 2))
    assert means.shape == (0, 3, 2, 4)
    assert means.dtype == torch.float32


@pytest.mark.parametrize(
    ("x", "block", "error", "message"),
    [
        (torch.zeros(1, 3, 8, 8), 0, ValueError, "block sizes must be >= 1"),
        (torch.zeros(1, 3, 8, 8), (2, -1), ValueError, "block sizes must be >= 1"),
        (torch.zeros(1, 3, 8, 8), 9, ValueError, "larger than the 8x8 image"),
        (torch.zeros(1, 3, 8, 4), (2, 5), ValueError, "larger than the 8x4 image"),
        (torch.zeros(3, 8, 8), 2, ValueError, "must have 4 dimensions"),
        (torch.zeros(1, 1, 3, 8, 8), 2, ValueError, "must have 4 dimensions"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), 2, TypeError, "has dtype torch.int32"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.bool), 2, TypeError, "has dtype torch.bool"),
        (np.zeros((1, 3, 8, 8)), 2, TypeError, "must be a torch.Tensor"),
        (torch.zeros(1, 3, 8, 8), 2.0, TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), True, TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), "4", TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), (2,), TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), (2, 2, 2), TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), [2, 2], TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), (2, 2.0), TypeError, "block must be an int"),
    ],
)
def test_invalid_arguments_raise_one_clear_error(x, block, error, message):
    with pytest.raises(error, match=message):
        grid_reduce(x, block)


def test_too_many_cells_for_int32_indices_raise_before_allocating(device):
    pixel = torch.zeros((1, 1, 1, 1), dtype=torch.uint8, device=device)
    if not use_triton(pixel):
        pytest.skip("the pure-torch reference has no such limit")
    x = pixel.expand(MAX_CELL_INDEX + 1, 1, 1, 1)  # 2**30 + 1 rows of one pixel, no memory
    with pytest.raises(ValueError, match="too many cells"):
        grid_reduce(x, 1)


@given(
    lanes_per_cell=st.sampled_from([1, 2, 4, 16, 64, 1024, 8192]),
    out_w=st.integers(1, 5_000),
    num_rows=st.integers(1, 10**7),
    step=st.sampled_from([512, 1024, 2048, 4096]),
    min_programs=st.sampled_from([1, 528]),
)
def test_tiling_is_powers_of_two_within_the_step(
    lanes_per_cell, out_w, num_rows, step, min_programs
):
    tile_r, tile_ow = cell_tiling(lanes_per_cell, out_w, num_rows, step, min_programs)
    for size in (tile_r, tile_ow):
        assert size == triton.next_power_of_2(size)
    assert tile_r * tile_ow * lanes_per_cell <= max(step, lanes_per_cell)
    assert tile_ow <= triton.next_power_of_2(out_w)
    assert tile_r <= triton.next_power_of_2(num_rows)
    programs = triton.cdiv(num_rows, tile_r) * triton.cdiv(out_w, tile_ow)
    assert programs >= min_programs or tile_r == tile_ow == 1


@given(
    block_w=st.integers(1, 40),
    pixel_elements=st.sampled_from([1, 3, 4]),
    out_w=st.integers(1, 3_000),
    num_rows=st.integers(1, 10**5),
    step=st.sampled_from([512, 2048, 4096]),
    min_programs=st.sampled_from([1, 528]),
)
def test_span_tiling_keeps_spans_aligned_within_the_step(
    block_w, pixel_elements, out_w, num_rows, step, min_programs
):
    tiling = span_tiling(block_w, pixel_elements, out_w, num_rows, step, min_programs)
    elements = block_w * pixel_elements
    if tiling is None:  # one aligned group of blocks is wider than the step
        assert 16 // math.gcd(16, elements) * elements > step or elements > step
        return
    span, tile_ow = tiling
    assert span == triton.next_power_of_2(tile_ow * elements) <= max(step, 16 * elements)
    assert 1 <= tile_ow <= out_w
    # Every span starts 16-element aligned, unless a single span covers the row.
    assert tile_ow * elements % 16 == 0 or tile_ow == out_w


# --------------------------------------------------------------------------- real sizes


@pytest.mark.parametrize("block", [8, (16, 12)])
def test_reference_at_1080p_matches_numpy(reference_path, block):
    x = random_pixels((2, 3, 1080, 1920), torch.uint8, seed=3)
    x = with_grid_layout(x, "channels_last")
    assert_block_means(x, block, name=f"grid_reduce reference 1080p {block}")


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block", [2, 4, 12, 16, 32])
def test_cuda_frames_1080p(block, layout):
    x = with_grid_layout(random_pixels((2, 3, 1080, 1920), torch.uint8, seed=5).cuda(), layout)
    assert_block_means(x, block, name=f"grid_reduce cuda 2x1080p {layout} {block}")
