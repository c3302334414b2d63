"""Property tests for ``kernels/features.py``: ``cell_features``, sRGB -> Oklab block means fused
(the kernel of ``kernels/cell_analysis.py`` without statistics).

The Triton kernel (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
(``grid_reduce(srgb_to_oklab(rgb))``, unfused) and an independent oracle: numpy float64 block
means of the reference Oklab of every pixel. Outputs start NaN-poisoned.
"""

from __future__ import annotations

import pytest
import torch
import triton
from hypothesis import given
from hypothesis import strategies as st

from kernels import cell_features, grid_reduce, srgb_to_oklab
from kernels.features import cell_features_reference
from kernels.grid import INTERPRETER_STEP, cell_tiling
from kernels.oklab import srgb_to_oklab_reference
from tests.kernels.compare import (
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
# Per pixel, kernel and reference Oklab differ by float32 rounding (exp2/log2 cube roots, one of
# them through exp2_fma, vs exp(log / 3); approximate MUFU ops on GPUs, within 2 ulp): <= 5e-7
# measured in the interpreter.
PIXEL_ATOL = 5e-6


def assert_cell_features(rgb: torch.Tensor, block: int | tuple[int, int], name: str) -> None:
    """``cell_features(rgb, block)`` against the reference on ``rgb``'s device and the numpy
    oracle. Oklab values are at most 1 in magnitude."""
    block_h, block_w = (block, block) if isinstance(block, int) else block
    features = cell_features(rgb, block)
    assert features.dtype == torch.float32
    assert features.device == rgb.device
    assert features.is_contiguous()
    atol = PIXEL_ATOL + block_mean_atol(1.0, block_h, block_w)
    expected = cell_features_reference(rgb, block)
    assert_close(features, expected, atol=atol, name=f"{name} vs reference")
    oracle = block_means_numpy(srgb_to_oklab_reference(rgb), block_h, block_w)
    assert_close(features, oracle, atol=atol, name=f"{name} vs numpy")


@shares_device_fixture
@given(spec=grid_specs(channels=3), seed=SEEDS, extremes=st.booleans())
def test_matches_reference_and_numpy(device, spec, seed, extremes):
    shape, (block_h, block_w), layout = spec
    rgb = random_pixels(shape, torch.uint8, seed, extremes=extremes).to(device)
    rgb = with_grid_layout(rgb, layout)
    block = block_h if block_h == block_w else (block_h, block_w)
    assert_cell_features(rgb, block, name=f"cell_features {layout} {shape} {block}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block", [(4, 4), (3, 1)])
def test_several_programs_with_partial_tiles(device, block, layout):
    """Three tiles of the interpreter's config along W, the last one of a single cell, and
    remainder pixels on both sides, in two images."""
    block_h, block_w = block
    _, tile_ow = cell_tiling(triton.next_power_of_2(block_w), 2**20, 1, INTERPRETER_STEP)
    out_h, out_w = 1, 2 * tile_ow + 1
    shape = (2, 3, out_h * block_h + block_h - 1, out_w * block_w + block_w - 1)
    rgb = with_grid_layout(random_pixels(shape, torch.uint8, seed=sum(block)).to(device), layout)
    assert_cell_features(rgb, block, name=f"cell_features {layout} {shape} {block}")


@pytest.mark.parametrize(
    ("shape", "block"),
    [
        ((3, 3, 32, 32), 32),  # pool tiles, one cell each
        ((5, 3, 32, 32), 8),  # pool tiles, 4 x 4 descriptor grid
        ((1, 3, 121, 245), 120),  # big cells: the chunk overhangs the block
        ((2, 3, 37, 53), (37, 53)),  # block == image
        ((1, 3, 3, 5003), (2, 5000)),  # wider than a step: two chunks per cell
        ((1, 3, 5, 40), (5, 1)),  # one pixel wide
    ],
)
def test_large_and_whole_image_blocks(device, shape, block):
    rgb = random_pixels(shape, torch.uint8, seed=11).to(device)
    assert_cell_features(rgb, block, name=f"cell_features {shape} {block}")


def test_equals_grid_reduce_of_srgb_to_oklab(device):
    """The contract, with every op on its own dispatch path (Triton in the interpreter)."""
    rgb = with_grid_layout(random_pixels((2, 3, 19, 23), torch.uint8, seed=1), "channels_last")
    rgb = rgb.to(device)
    unfused = grid_reduce(srgb_to_oklab(rgb), (3, 4))
    assert_close(cell_features(rgb, (3, 4)), unfused, atol=PIXEL_ATOL, name="fused vs unfused")


def test_empty_batch_gives_empty_output(device):
    features = cell_features(torch.ones((0, 3, 8, 8), dtype=torch.uint8, device=device), 4)
    assert features.shape == (0, 3, 2, 2)
    assert features.dtype == torch.float32


@pytest.mark.parametrize(
    ("rgb", "block", "error", "message"),
    [
        (torch.zeros(1, 3, 8, 8), 2, TypeError, "has dtype torch.float32"),
        (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), 2, ValueError, "must have 3 channels"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), 2, ValueError, "must have 4 dimensions"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0, ValueError, "block sizes must be >= 1"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (4, 9), ValueError, "larger than"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 2.5, TypeError, "block must be an int"),
    ],
)
def test_invalid_arguments_raise_one_clear_error(rgb, block, error, message):
    with pytest.raises(error, match=message):
        cell_features(rgb, block)


# --------------------------------------------------------------------------- real sizes


@pytest.mark.parametrize("block", [16, (8, 4)])
def test_reference_at_1080p_matches_numpy(reference_path, block):
    rgb = with_grid_layout(random_pixels((1, 3, 1080, 1920), torch.uint8, seed=3), "channels_last")
    assert_cell_features(rgb, block, name=f"cell_features reference 1080p {block}")


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block", [2, 12, 32])
def test_cuda_frames_1080p(block, layout):
    rgb = random_pixels((2, 3, 1080, 1920), torch.uint8, seed=5).cuda()
    rgb = with_grid_layout(rgb, layout)
    assert_cell_features(rgb, block, name=f"cell_features cuda 2x1080p {layout} {block}")
