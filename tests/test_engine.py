"""``FrameRenderer``'s shared work: one Oklab conversion per frame, tiles kept in Oklab, edge
padding; each against the straightforward computation it replaces."""

from __future__ import annotations

import math

import pytest
import torch

import mosaic.engine as engine
from kernels import srgb_to_oklab
from kernels.cell_analysis import repeat_edges
from mosaic import MosaicConfig
from mosaic.colour import cell_stats, tile_stats
from mosaic.descriptors import descriptors
from mosaic.engine import FrameRenderer
from mosaic.render import render_mosaic
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


def padded_by_gather(frame: torch.Tensor, cell: int) -> torch.Tensor:
    """The edge padding as a per-pixel gather: row and column indices clamped to the image."""
    height, width = frame.shape[-2:]
    rows = torch.arange(math.ceil(height / cell) * cell).clamp_max(height - 1)
    cols = torch.arange(math.ceil(width / cell) * cell).clamp_max(width - 1)
    return frame.index_select(-2, rows).index_select(-1, cols)


@pytest.mark.parametrize("size", [(36, 36), (37, 40), (30, 71), (1, 1)])
@pytest.mark.parametrize("layout", ["chw", "hwc", "batch"])
def test_padding_repeats_the_last_row_and_column(size: tuple[int, int], layout: str):
    frame = landscape(*size, seed=1)
    if layout == "hwc":
        frame = frame.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    elif layout == "batch":
        frame = torch.stack([frame, frame.flip(-1)])
    assert torch.equal(repeat_edges(frame, 12), padded_by_gather(frame, 12))


@pytest.mark.parametrize("grid", [1, 2])
def test_features_do_not_depend_on_colour_transfer(grid: int):
    """With colour transfer the descriptors come from the frame's one Oklab conversion; without,
    from the fused cell_features: the same numbers, and the same as ``descriptors``."""
    frame = add_noise(landscape(50, 70, seed=2), sigma=5, seed=2)
    pool = photo_pool(300)
    features = {}
    for color in (0.0, 0.5):
        config = MosaicConfig(cell=8, grid=grid, color=color, lightness_weight=1.5, device="cpu")
        features[color] = FrameRenderer(pool, config).analyse(frame).features
    expected = descriptors(repeat_edges(frame, 8)[None], 8, grid, 1.5).reshape(-1, 3 * grid**2)
    assert torch.equal(features[0.0], expected)
    torch.testing.assert_close(features[0.5], expected, atol=1e-6, rtol=0)


def test_cell_stats_come_from_the_same_conversion():
    frame = add_noise(landscape(48, 64, seed=4), sigma=6, seed=4)
    config = MosaicConfig(cell=8, color=0.7, saturation=1.3, device="cpu")
    stats = FrameRenderer(photo_pool(200), config).analyse(frame).cell_stats
    expected = cell_stats(frame, 8).saturated(1.3)
    # The renderer averages the cell means from the descriptors' block means: same values up to
    # the order of the float32 sums.
    torch.testing.assert_close(stats.mean, expected.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(stats.std, expected.std, atol=1e-6, rtol=0)


def test_tiles_in_oklab_give_the_same_mosaic():
    generator = torch.Generator().manual_seed(5)
    tiles = photo_pool(40, tile_size=8).images
    frame = add_noise(landscape(32, 48, seed=5), sigma=4, seed=5)
    choice = torch.randint(0, 40, (4, 6), generator=generator)
    options = {"color_strength": 0.8, "cell_stats": cell_stats(frame, 8)}
    converted = render_mosaic(tiles, choice, **options)
    kept = render_mosaic(
        tiles, choice, **options, tile_lab=srgb_to_oklab(tiles), tile_stats=tile_stats(tiles)
    )
    difference = (converted.int() - kept.int()).abs()
    assert difference.max() <= 1 and (difference > 0).float().mean() < 1e-3


def test_a_pool_too_large_for_oklab_tiles_converts_each_frame(monkeypatch: pytest.MonkeyPatch):
    pool, frame = photo_pool(100), landscape(40, 56, seed=6)
    config = MosaicConfig(cell=8, color=0.6, device="cpu")
    kept = FrameRenderer(pool, config)
    monkeypatch.setattr(engine, "TILE_LAB_MAX_BYTES", 0)
    converted = FrameRenderer(pool, config)
    assert kept.tile_lab is not None and converted.tile_lab is None
    difference = kept.render(frame).image.int() - converted.render(frame).image.int()
    assert difference.abs().max() <= 1
