"""Property tests for ``kernels/block_energy.py``: ``block_energy``, the mean squared luma
gradient of every block, differences taken inside the blocks only.

The Triton kernel (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
(``torch.diff`` of a block view) and an independent float64 numpy oracle (differences over the
whole image, those that cross a block edge zeroed, then block sums), over blocks with tails,
square and not, every input dtype and strided layouts (HWC frames, an RGBA view, every other
pixel, planes stored channel-major). Closed forms pin the definition itself: a ramp's energy is
its slope squared, blocks that are each flat have none whatever their edges. Outputs start
NaN-poisoned, so an unwritten block fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import triton
from hypothesis import given
from hypothesis import strategies as st

from kernels import block_energy
from kernels._launch import IMAGE_DTYPES
from kernels.block_energy import LUMA_WEIGHTS, block_energy_reference
from kernels.dispatch import use_triton
from kernels.grid import INTERPRETER_STEP, MAX_CELL_INDEX, cell_tiling
from tests.kernels.compare import (
    assert_close,
    grid_specs,
    needs_compiled_cuda,
    random_pixels,
    shares_device_fixture,
    with_grid_layout,
)

SEEDS = st.integers(0, 2**31 - 1)


def energy_numpy(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Independent oracle: float64 ``(N, OH, OW)`` block energies of ``x`` ``(N, 3, H, W)``.

    The differences of the whole cropped image, the ones across a block edge set to 0, summed
    per block and divided by the count a block has of each direction. On the CPU.
    """
    values = x.detach().to("cpu", torch.float64).numpy()
    if x.dtype == torch.uint8:
        values = values / 255.0
    n, _, height, width = values.shape
    out_h, out_w = height // block_h, width // block_w
    luma = np.einsum("c,nchw->nhw", np.array(LUMA_WEIGHTS), values)
    luma = luma[:, : out_h * block_h, : out_w * block_w]
    energy = np.zeros((n, out_h, out_w))
    for axis, side, other in ((2, block_w, block_h), (1, block_h, block_w)):
        if side == 1:
            continue
        steps = np.diff(luma, axis=axis, append=0.0)  # the last row/column: always an edge
        position = np.arange(steps.shape[axis]) % side
        inside = (position < side - 1).reshape((-1, 1) if axis == 1 else (1, -1))
        squares = np.where(inside, steps**2, 0.0)
        sums = squares.reshape(n, out_h, block_h, out_w, block_w).sum(axis=(2, 4))
        energy += sums / (other * (side - 1))
    return torch.from_numpy(energy)


def energy_atol(block_h: int, block_w: int) -> float:
    """Tolerance of a float32 energy of values in [0, 1] against float64.

    Each difference is at most 1 and off by a few units of 2**-24 (the luma's three products
    and two sums, the subtraction); a float32 sum of ``n <= bh * bw`` squares at most 1 adds
    ``n`` units to their mean at worst. Twice that for the two directions, and again for two
    float32 results compared with each other.
    """
    return 4 * (block_h * block_w + 16) * 2.0**-24


def assert_energy(x: torch.Tensor, block: int | tuple[int, int], name: str) -> torch.Tensor:
    """``block_energy(x, block)`` against the reference on ``x``'s device and the numpy oracle;
    returns it."""
    block_h, block_w = (block, block) if isinstance(block, int) else block
    energy = block_energy(x, block)
    assert energy.dtype == torch.float32
    assert energy.device == x.device
    assert energy.is_contiguous()
    atol = energy_atol(block_h, block_w)
    reference = block_energy_reference(x, block)
    assert_close(energy, reference, atol=atol, name=f"{name} vs reference")
    assert_close(energy, energy_numpy(x, block_h, block_w), atol=atol, name=f"{name} vs numpy")
    return energy


@shares_device_fixture
@given(
    spec=grid_specs(channels=3),
    dtype=st.sampled_from(IMAGE_DTYPES),
    extremes=st.booleans(),
    seed=SEEDS,
)
def test_matches_reference_and_numpy(device, spec, dtype, extremes, seed):
    shape, (block_h, block_w), layout = spec
    pixels = random_pixels(shape, dtype, seed, extremes=extremes).to(device)
    x = with_grid_layout(pixels, layout)
    block = block_h if block_h == block_w else (block_h, block_w)
    assert_energy(x, block, name=f"block_energy {dtype} {layout} {shape} {block}")


@pytest.mark.parametrize("block", [3, (4, 4), (5, 2), (1, 6), (6, 1)])
def test_frame_layouts_read_in_place(device, block):
    """Planar frames, HWC frames seen as CHW and the RGB of RGBA frames give the same energies,
    with remainder rows and columns on both sides."""
    frames = random_pixels((2, 4, 23, 37), torch.uint8, seed=5).to(device)
    layouts = {
        "CHW": frames[:, :3].contiguous(),
        "HWC": with_grid_layout(frames[:, :3], "channels_last"),
        "RGBA view": with_grid_layout(frames, "channels_last")[:, :3],
    }
    energies = [
        assert_energy(x, block, f"block_energy {name} {block}") for name, x in layouts.items()
    ]
    for energy in energies[1:]:
        torch.testing.assert_close(energy, energies[0], rtol=0, atol=0)


@pytest.mark.parametrize("block", [(2, 4), (3, 5)])
def test_several_programs_with_partial_tiles(device, block):
    """Three tiles of the interpreter's config along W, the last one of a single block."""
    block_h, block_w = block
    _, tile_ow = cell_tiling(triton.next_power_of_2(block_w), 2**20, 1, INTERPRETER_STEP)
    out_w = 2 * tile_ow + 1
    shape = (1, 3, 2 * block_h + 1, out_w * block_w + block_w - 1)
    x = random_pixels(shape, torch.uint8, seed=sum(block)).to(device)
    assert_energy(x, block, name=f"block_energy {shape} {block}")


def test_blocks_wider_than_a_step_go_in_chunks(device):
    """A block row wider than the interpreter's step: its columns in two chunks, the horizontal
    difference across the chunk boundary still counted."""
    width = INTERPRETER_STEP + 5
    x = random_pixels((1, 3, 3, width + 2), torch.float32, seed=11).to(device)
    assert_energy(x, (3, width), name=f"block_energy (3, {width})")


@shares_device_fixture
@given(
    block_h=st.integers(1, 6),
    block_w=st.integers(1, 6),
    slope=st.integers(0, 21),  # the ramp stays within 0-255
    horizontal=st.booleans(),
)
def test_a_ramp_has_its_slope_squared_in_every_block(device, block_h, block_w, slope, horizontal):
    """Grey levels rising by ``slope`` codes a pixel: energy ``(slope / 255)**2`` in every
    block that has differences along the ramp (whatever its size, so sizes compare), 0 in the
    others. Each code is exact in float32, so the only error is the luma's rounding."""
    rows, cols = 2 * block_h + 1, 2 * block_w + 1
    codes = (torch.arange(cols if horizontal else rows) * slope).to(torch.uint8)
    ramp = codes[None, :].expand(rows, cols) if horizontal else codes[:, None].expand(rows, cols)
    x = ramp[None, None].expand(1, 3, rows, cols).to(device)
    along = block_w if horizontal else block_h
    expected = (slope / 255.0) ** 2 if along > 1 else 0.0
    energy = block_energy(x, (block_h, block_w))
    assert_close(energy, torch.full_like(energy, expected), atol=1e-6, rtol=1e-5, name="ramp")


@shares_device_fixture
@given(block_h=st.integers(1, 5), block_w=st.integers(1, 5), seed=SEEDS)
def test_blocks_flat_inside_have_no_energy_whatever_their_edges(device, block_h, block_w, seed):
    """Every block one random colour: no difference crosses a block edge, so every energy is 0
    (a kernel that reads past its block's last column or row would see the jumps)."""
    colours = random_pixels((1, 3, 3, 4), torch.uint8, seed)
    x = colours.repeat_interleave(block_h, dim=2).repeat_interleave(block_w, dim=3).to(device)
    energy = block_energy(x, (block_h, block_w))
    assert_close(energy, torch.zeros_like(energy), atol=0.0, name="flat blocks")


def test_a_checkerboard_has_the_largest_energy(device):
    """Black and white pixels alternating: every difference is 1, energy 2 (1 with one row)."""
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(12), indexing="ij")
    board = ((rows + cols) % 2 * 255).to(torch.uint8)
    x = board[None, None].expand(2, 3, 8, 12).to(device)
    assert_close(block_energy(x, (4, 3)), torch.full((2, 2, 4), 2.0), atol=1e-6, name="board")
    assert_close(block_energy(x, (1, 4)), torch.full((2, 8, 3), 1.0), atol=1e-6, name="rows")


def test_uint8_codes_are_scaled_to_floats_in_unit_range(device):
    codes = random_pixels((1, 3, 9, 10), torch.uint8, seed=2).to(device)
    scaled = codes.to(torch.float32) / 255.0
    assert_close(block_energy(codes, 3), block_energy(scaled, 3), atol=1e-6, name="uint8 vs float")


def test_empty_batch_gives_empty_output(device):
    energy = block_energy(torch.ones((0, 3, 8, 8), dtype=torch.uint8, device=device), (4, 2))
    assert energy.shape == (0, 2, 4)
    assert energy.dtype == torch.float32


@pytest.mark.parametrize(
    ("x", "block", "error", "message"),
    [
        (torch.zeros(1, 3, 8, 8), 0, ValueError, "block sizes must be >= 1"),
        (torch.zeros(1, 3, 8, 8), 9, ValueError, "larger than the 8x8 image"),
        (torch.zeros(1, 3, 8, 4), (2, 5), ValueError, "larger than the 8x4 image"),
        (torch.zeros(3, 8, 8), 2, ValueError, "must have 4 dimensions"),
        (torch.zeros(1, 4, 8, 8), 2, ValueError, "must have 3 channels"),
        (torch.zeros(1, 1, 8, 8), 2, ValueError, "must have 3 channels"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), 2, TypeError, "has dtype torch.int32"),
        (np.zeros((1, 3, 8, 8)), 2, TypeError, "must be a torch.Tensor"),
        (torch.zeros(1, 3, 8, 8), 2.0, TypeError, "block must be an int"),
        (torch.zeros(1, 3, 8, 8), (2, 2, 2), TypeError, "block must be an int"),
    ],
)
def test_invalid_arguments_raise_one_clear_error(x, block, error, message):
    with pytest.raises(error, match=message) as raised:
        block_energy(x, block)
    assert "\n" not in str(raised.value)


def test_too_many_blocks_for_int32_indices_raise_before_allocating(device):
    pixel = torch.zeros((1, 3, 1, 1), dtype=torch.uint8, device=device)
    if not use_triton(pixel):
        pytest.skip("the pure-torch reference has no such limit")
    x = pixel.expand(MAX_CELL_INDEX + 1, 3, 1, 1)  # 2**30 + 1 rows of one pixel, no memory
    with pytest.raises(ValueError, match="too many cells"):
        block_energy(x, 1)


# --------------------------------------------------------------------------- real sizes


@pytest.mark.parametrize("block", [14, (16, 12)])
def test_reference_at_720p_matches_numpy(reference_path, block):
    x = with_grid_layout(random_pixels((2, 3, 720, 1280), torch.uint8, seed=3), "channels_last")
    assert_energy(x, block, name=f"block_energy reference 720p {block}")


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block", [4, 14, 16, 32, (1080, 1920)])
def test_cuda_frames_1080p(block, layout):
    x = with_grid_layout(random_pixels((2, 3, 1080, 1920), torch.uint8, seed=5).cuda(), layout)
    assert_energy(x, block, name=f"block_energy cuda 2x1080p {layout} {block}")
