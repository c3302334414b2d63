"""Property tests for ``kernels/cell_analysis.py``: ``analyse_cells``, a frame's Oklab block means
and cell statistics in one pass, the frame read as if padded by repeating its edges.

The Triton kernel (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
(the frame path as it was: pad, ``srgb_to_oklab``, ``grid_reduce``, two-pass spread), against
the same steps through the dispatched kernels, and against an independent float64 oracle (numpy:
edge padding, the sRGB curve and Ottosson's matrices, means and population standard deviations
of each block and cell); the per-pixel conversion is checked against colour-science once.
Outputs start NaN-poisoned.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernels import analyse_cells, cell_features
from kernels._math import LMS_FROM_LINEAR_SRGB, OKLAB_FROM_LMS_CBRT
from kernels.cell_analysis import (
    MAX_STATISTICS_CELL,
    CellAnalysis,
    analyse_cells_reference,
    repeat_edges,
)
from kernels.dispatch import use_triton
from kernels.grid import MAX_CELL_INDEX
from tests.kernels.compare import (
    FEW_SHAPES,
    GRID_LAYOUTS,
    assert_close,
    block_mean_atol,
    needs_compiled_cuda,
    random_pixels,
    shares_device_fixture,
    sizes_around,
    with_grid_layout,
)
from tests.kernels.frame_path import unfused_frame_analysis

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns on import that matplotlib is missing
    import colour

SEEDS = st.integers(0, 2**31 - 1)
# Per pixel, float32 Oklab (decode table, lg2/ex2 cube roots; approximate MUFU ops on GPUs)
# against float64: <= 5e-7 measured in the interpreter.
PIXEL_ATOL = 5e-6
# A standard deviation moves by at most the largest per-pixel error (the deviations' L2 norm is
# 1-Lipschitz); the per-column shifted sums add at most eps * CELL**2 relative (module docstring).
STD_RTOL = 2e-5
# colour-science goes through XYZ with its own sRGB matrices: up to 1.1e-4 from Ottosson's.
COLOUR_SCIENCE_ATOL = 2e-4
# (cell, grid): the engine's default, a cell width that is not a power of two, odd cells,
# non-square cells ((height, width): 4:3 and 3:2 photos, and a tall one).
CELLS_AND_GRIDS = [(1, 1), (2, 2), (3, 1), (4, 2), (5, 1), (6, 2), (6, 3), (8, 2), (9, 3)]
CELLS_AND_GRIDS += [((6, 8), 2), ((4, 6), 2), ((5, 3), 1)]
if FEW_SHAPES:
    CELLS_AND_GRIDS = [(4, 2), (6, 3), ((6, 8), 2)]


def sides(cell: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of a cell given as a side or a pair."""
    return cell if isinstance(cell, tuple) else (cell, cell)


def oklab_float64(rgb: np.ndarray) -> np.ndarray:
    """float64 Oklab of uint8 sRGB ``(N, 3, H, W)``: the sRGB curve, then Ottosson's matrices."""
    encoded = rgb / 255.0
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    lms = np.einsum("ij,njhw->nihw", np.array(LMS_FROM_LINEAR_SRGB), linear)
    return np.einsum("ij,njhw->nihw", np.array(OKLAB_FROM_LMS_CBRT), np.cbrt(lms))


def analysis_float64(rgb: torch.Tensor, cell: int | tuple[int, int], grid: int) -> CellAnalysis:
    """Independent oracle: ``analyse_cells`` in float64 numpy, on the CPU."""
    values = rgb.detach().cpu().numpy()
    n, _, height, width = values.shape
    cell_h, cell_w = sides(cell)
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    padding = ((0, 0), (0, 0), (0, rows * cell_h - height), (0, cols * cell_w - width))
    lab = oklab_float64(np.pad(values, padding, mode="edge"))
    block_h, block_w = cell_h // grid, cell_w // grid
    blocks = lab.reshape(n, 3, rows * grid, block_h, cols * grid, block_w).mean(axis=(3, 5))
    cells = lab.reshape(n, 3, rows, cell_h, cols, cell_w)
    mean = cells.mean(axis=(3, 5)).transpose(0, 2, 3, 1)
    std = cells.std(axis=(3, 5)).transpose(0, 2, 3, 1)
    return CellAnalysis(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (blocks, mean, std)))


def assert_analysis(
    actual: CellAnalysis,
    expected: CellAnalysis,
    cell: int | tuple[int, int],
    grid: int,
    *,
    atol: float,
    statistics: bool,
    name: str,
) -> None:
    """Block means, and with ``statistics`` cell means and spreads, within float32 tolerance."""
    cell_h, cell_w = sides(cell)
    mean_atol = atol + block_mean_atol(1.0, cell_h, cell_w)
    assert_close(
        actual.block_means,
        expected.block_means,
        atol=atol + block_mean_atol(1.0, cell_h // grid, cell_w // grid),
        name=f"{name} block means",
    )
    if not statistics:
        assert actual.mean is None and actual.std is None
        return
    assert_close(actual.mean, expected.mean, atol=mean_atol, name=f"{name} mean")
    assert_close(actual.std, expected.std, atol=mean_atol, rtol=STD_RTOL, name=f"{name} std")


def check_analysis(
    rgb: torch.Tensor, cell: int | tuple[int, int], grid: int, statistics: bool, name: str
) -> None:
    """``analyse_cells`` against the reference on ``rgb``'s device and the float64 oracle;
    shapes, dtypes, layouts, and ``rgb`` left as it was."""
    before = rgb.clone()
    result = analyse_cells(rgb, cell, grid, statistics=statistics)
    n, _, height, width = rgb.shape
    cell_h, cell_w = sides(cell)
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    assert result.block_means.shape == (n, 3, rows * grid, cols * grid)
    assert result.block_means.is_contiguous() and result.block_means.device == rgb.device
    if statistics:
        for stat in (result.mean, result.std):
            assert stat.shape == (n, rows, cols, 3) and stat.dtype == torch.float32
            assert stat.is_contiguous() and stat.device == rgb.device
    assert torch.equal(rgb, before)
    reference = analyse_cells_reference(rgb, cell, grid, statistics=statistics)
    # The reference rounds in its own order: twice the tolerance between the two float32 results.
    assert_analysis(
        result, reference, cell, grid, atol=2 * PIXEL_ATOL, statistics=statistics,
        name=f"{name} vs reference",
    )  # fmt: skip
    oracle = analysis_float64(rgb, cell, grid)
    assert_analysis(
        result, oracle, cell, grid, atol=PIXEL_ATOL, statistics=statistics,
        name=f"{name} vs float64",
    )  # fmt: skip


@st.composite
def frame_specs(draw: st.DrawFn) -> tuple[tuple[int, int, int, int], int, int, str]:
    """``(shape, cell, grid, layout)``: sides with tails around the cell (padded or not)."""
    cell, grid = draw(st.sampled_from(CELLS_AND_GRIDS))
    cell_h, cell_w = sides(cell)
    height, width = draw(sizes_around(cell_h)), draw(sizes_around(cell_w))
    shape = (draw(st.integers(1, 2)), 3, height, width)
    return shape, cell, grid, draw(st.sampled_from(GRID_LAYOUTS))


@shares_device_fixture
@given(spec=frame_specs(), statistics=st.booleans(), extremes=st.booleans(), seed=SEEDS)
def test_matches_reference_and_float64(device, spec, statistics, extremes, seed):
    shape, cell, grid, layout = spec
    rgb = with_grid_layout(random_pixels(shape, torch.uint8, seed, extremes=extremes), layout)
    check_analysis(rgb.to(device), cell, grid, statistics, f"{layout} {shape} {cell}/{grid}")


@pytest.mark.parametrize(("cell", "grid"), [(16, 2), (12, 2), (7, 1)])
def test_decoder_frames_with_several_programs_per_row(device, cell, grid):
    """HWC frames (a decoder's ``(N, H, W, 3)`` batch seen as CHW) wide enough for several
    programs per cell row, and padded at the right and bottom edges."""
    hwc = random_pixels((2, 2 * cell + 3, 40 * cell + 5, 3), torch.uint8, seed=cell)
    check_analysis(hwc.permute(0, 3, 1, 2).to(device), cell, grid, True, f"HWC {cell}/{grid}")


@pytest.mark.parametrize("cell", [4, 6, 16])
def test_near_flat_cells_keep_their_spread(device, cell):
    """Flat cells have no spread; cells with one pixel a code away keep theirs to float32
    precision, where E[x^2] - E[x]^2 in float32 would lose it to cancellation."""
    rgb = torch.full((1, 3, 2 * cell, 3 * cell), 137, dtype=torch.uint8)
    rgb[0, :, 1, cell + 2] = 138  # one pixel of the second cell
    rgb[0, 1, cell, 2 * cell + 1] = 136  # one channel of one pixel of the last cell
    result = analyse_cells(rgb.to(device), cell, 2)
    oracle = analysis_float64(rgb, cell, 2)
    assert_close(result.std, oracle.std, atol=1e-6, rtol=1e-3, name="near-flat std")
    assert float(result.std[0, 0, 0].abs().max()) <= 1e-6  # a flat cell
    assert float(oracle.std[0, 0, 1, 0]) > 1e-4  # a lightness spread to keep


def test_equals_the_frame_path_it_replaces(device):
    """The steps the engine ran before, each on its dispatch path (Triton in the interpreter):
    padding, ``srgb_to_oklab``, ``grid_reduce`` for the block means and the cell means, and the
    two-pass spread."""
    rgb = with_grid_layout(random_pixels((1, 3, 21, 38), torch.uint8, seed=4), "channels_last")
    rgb = rgb.to(device)
    assert_analysis(
        analyse_cells(rgb, 8, 2), unfused_frame_analysis(rgb, 8, 2), 8, 2,
        atol=2 * PIXEL_ATOL, statistics=True, name="fused vs unfused",
    )  # fmt: skip


def test_without_statistics_equals_cell_features_of_the_padded_frame(device):
    rgb = random_pixels((2, 3, 13, 30), torch.uint8, seed=6).to(device)
    result = analyse_cells(rgb, 6, 3, statistics=False)
    assert result.mean is None and result.std is None
    expected = cell_features(repeat_edges(rgb, 6), 2)
    assert_close(result.block_means, expected, atol=2 * PIXEL_ATOL, name="without statistics")


def test_per_pixel_oklab_matches_colour_science():
    """The float64 oracle's conversion against an independent colour library (through XYZ)."""
    rgb = random_pixels((1, 3, 16, 16), torch.uint8, seed=8)
    ours = oklab_float64(rgb.numpy())[0].transpose(1, 2, 0)
    srgb = rgb[0].permute(1, 2, 0).numpy() / 255.0
    theirs = colour.XYZ_to_Oklab(colour.sRGB_to_XYZ(srgb))
    np.testing.assert_allclose(ours, theirs, atol=COLOUR_SCIENCE_ATOL, rtol=0)


def test_too_many_cells_raise_before_allocating(device):
    pixel = torch.zeros((1, 3, 1, 1), dtype=torch.uint8, device=device)
    if not use_triton(pixel):
        pytest.skip("the pure-torch reference has no such limit")
    rgb = pixel.expand(MAX_CELL_INDEX + 1, 3, 1, 1)  # 2**30 + 1 frames of one pixel, no memory
    with pytest.raises(ValueError, match="too many cells"):
        analyse_cells(rgb, 1)


def test_empty_batch_gives_empty_outputs(device):
    result = analyse_cells(torch.ones((0, 3, 9, 9), dtype=torch.uint8, device=device), 4, 2)
    assert result.block_means.shape == (0, 3, 6, 6)
    assert result.mean.shape == result.std.shape == (0, 3, 3, 3)


@pytest.mark.parametrize(
    ("rgb", "cell", "grid", "error", "message"),
    [
        (torch.zeros(1, 3, 8, 8), 4, 1, TypeError, "has dtype torch.float32"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), 4, 1, ValueError, "must have 4 dimensions"),
        (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), 4, 1, ValueError, "must have 3 channels"),
        (torch.zeros(1, 3, 0, 8, dtype=torch.uint8), 4, 1, ValueError, "at least one row"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0, 1, ValueError, "cell must be a positive"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 4.0, 1, ValueError, "cell must be"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), True, 1, ValueError, "cell must be"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 4, 0, ValueError, "grid must be a positive"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 6, 4, ValueError, "multiple of the grid"),
        (
            torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
            MAX_STATISTICS_CELL + 1,
            1,
            ValueError,
            "larger than",
        ),
    ],
)
def test_invalid_arguments_raise_one_clear_error(rgb, cell, grid, error, message):
    with pytest.raises(error, match=message):
        analyse_cells(rgb, cell, grid)


# --------------------------------------------------------------------------- real sizes


def test_reference_at_720p_matches_float64(reference_path):
    hwc = random_pixels((1, 721, 1283, 3), torch.uint8, seed=3).permute(0, 3, 1, 2)
    oracle = analysis_float64(hwc, 36, 2)
    assert_analysis(
        analyse_cells(hwc, 36, 2), oracle, 36, 2, atol=PIXEL_ATOL, statistics=True,
        name="reference 720p",
    )  # fmt: skip


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize(
    ("cell", "grid", "layout"),
    [
        (16, 2, "channels_last"),  # the engine's default on a decoder's frame
        (16, 2, "contiguous"),
        (12, 2, "channels_last"),  # cells padded to 16 lanes
        (36, 3, "channels_last"),  # the CPU workload's cell
    ],
)
def test_cuda_1080p_frame(cell, grid, layout):
    rgb = with_grid_layout(random_pixels((1, 3, 1080, 1920), torch.uint8, seed=5), layout)
    check_analysis(rgb.cuda(), cell, grid, True, f"cuda 1080p {layout} {cell}/{grid}")


@needs_compiled_cuda
@pytest.mark.cuda
def test_cuda_analysis_does_not_synchronise_with_the_host():
    """The frame path's step: no ``.item()``, ``nonzero`` or data-dependent shape (torch raises
    on any synchronising operation in this mode), once the first call has compiled the kernels
    and moved the decode table."""
    rgb = random_pixels((1, 1080, 1920, 3), torch.uint8, seed=7).cuda().permute(0, 3, 1, 2)
    for statistics in (True, False):
        analyse_cells(rgb, 16, 2, statistics=statistics)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for statistics in (True, False):
            analyse_cells(rgb, 16, 2, statistics=statistics)
    finally:
        torch.cuda.set_sync_debug_mode("default")
