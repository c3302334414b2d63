"""What mosaic makers ask for, end to end on the engine: readable default tiles, no tile beside
itself, fair use, the source blended over the mosaic, non-square cells and tiles, settings that
say what ``"auto"`` chose; each against the computation it stands for."""

from __future__ import annotations

import pytest
import torch

from kernels import Blend
from kernels.composite import blended_reference
from mosaic import MosaicConfig, render_image, render_image_with_stats
from mosaic.assign.spacing import spacing_conflicts
from mosaic.config import READABLE_TILE, ConfigError, parse_size
from mosaic.engine import FrameRenderer
from mosaic.imageops import resize
from mosaic.pool import TilePool
from mosaic.temporal import TemporalCoherence
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


@pytest.mark.parametrize(
    ("cell", "tile"),
    [(16, (32, 32)), (12, (36, 36)), (8, (32, 32)), (40, (40, 40)), ((16, 12), (36, 48))],
)
def test_auto_tiles_are_readable_whole_multiples_of_the_cell(cell, tile):
    config = MosaicConfig(cell=cell)
    assert config.tile_shape == tile  # (height, width)
    assert min(tile) >= READABLE_TILE
    (cell_h, cell_w), (tile_h, tile_w) = config.cell_shape, config.tile_shape
    assert tile_h % cell_h == 0 and tile_h // cell_h == tile_w // cell_w
    assert MosaicConfig(cell=cell, tile_size=None).tile_shape == config.cell_shape


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cell": (16, 11)}, "cell 16x11 is not a multiple of grid 2"),
        ({"cell": (16, 0)}, "cell must be a \\(width, height\\) pair"),
        ({"cell": (16, 12), "tile_size": 50}, "does not have the aspect of the cells"),
        ({"cell": (16, 12), "tile_size": (40, 40)}, "does not have the aspect of the cells"),
        ({"blend": 1.5}, "blend must be between 0 and 1"),
        ({"blend": True}, "blend must be between 0 and 1"),
        ({"min_distance": "far"}, 'min_distance must be an integer >= 0 \\(or "auto"\\)'),
        ({"tile_size": "big"}, "tile_size must be an integer"),
        ({"fair": "yes"}, "fair must be True or False"),
    ],
)
def test_bad_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as error:
        MosaicConfig(**settings)
    assert "\n" not in str(error.value)


def test_sizes_parse_as_the_command_line_writes_them():
    assert parse_size("16") == 16 and parse_size("16x12") == (16, 12)
    with pytest.raises(ValueError, match="N or WIDTHxHEIGHT"):
        parse_size("16x")


def test_defaults_give_readable_tiles_and_keep_copies_apart():
    """The default config on a 64 x 96 frame (cell 16): tiles of 32 px, the output twice the
    size; with 30 tiles for 24 cells nothing repeats, with 10 (reuse 3) no tile sits beside
    itself."""
    frame = landscape(64, 96, seed=3)
    for pool_size in (30, 10):
        pool = photo_pool(pool_size, tile_size=32)
        if pool_size == 10:
            pool = TilePool.from_tensor(torch.cat([pool.images, pool.images]))  # 20 tiles
        renderer = FrameRenderer(pool, MosaicConfig(device="cpu"))
        result = renderer.render(frame)
        assert result.image.shape == (3, 128, 192)
        assert not bool(spacing_conflicts(result.choice.reshape(-1), (4, 6), 1).any())
        assert renderer.min_distance_for(64, 96) == (0 if pool_size == 30 else 1)


def test_photo_preset_works_with_fewer_tiles_than_cells_and_uses_them_fairly():
    frame = landscape(64, 96, seed=4)  # 8 x 12 = 96 cells at cell 8
    pool = photo_pool(40)
    _, stats = render_image_with_stats(frame, pool, MosaicConfig.from_preset("photo", cell=8))
    renderer = FrameRenderer(pool, MosaicConfig.from_preset("photo", cell=8, device="cpu"))
    choice = renderer.render(frame).choice
    uses = torch.bincount(choice.reshape(-1), minlength=40)
    assert int(uses.min()) == 2 and int(uses.max()) == 3  # floor and ceil of 96 / 40
    assert stats.tiles_used == 40 and "fair use: each tile 2-3 times" in stats.settings


def test_non_square_cells_show_cropped_tiles_at_their_aspect():
    """Cells 8 wide by 6 high, tiles drawn 16 x 12: each cell shows the centre 4:3 crop of its
    square tile, resized; the output is the input scaled by 2."""
    frame = landscape(30, 40, seed=5)
    pool = photo_pool(50, tile_size=16)
    config = MosaicConfig(cell=(8, 6), tile_size=(16, 12), grid=2, color=0, device="cpu")
    renderer = FrameRenderer(pool, config)
    result = renderer.render(frame)
    assert result.choice.shape == (5, 5) and result.image.shape == (3, 60, 80)
    expected_tiles = resize(pool.images[:, :, 2:14, :], (12, 16))
    for row in range(5):
        for col in range(5):
            cell = result.image[:, row * 12 : (row + 1) * 12, col * 16 : (col + 1) * 16]
            assert torch.equal(cell, expected_tiles[result.choice[row, col]])


def test_non_square_descriptors_match_the_cells_they_describe():
    """A pool of tiles that are exactly the frame's cells: every cell finds its own tile."""
    frame = landscape(36, 48, seed=6)
    cells = frame.reshape(3, 6, 6, 6, 8).permute(1, 3, 0, 2, 4).reshape(36, 3, 6, 8)
    pool = TilePool.from_tensor(cells.contiguous())
    config = MosaicConfig(cell=(8, 6), tile_size=None, reuse=0, min_distance=0, color=0)
    result = FrameRenderer(pool, config.replace(device="cpu")).render(frame)
    assert torch.equal(result.image, frame)


@pytest.mark.parametrize("color", [0.0, 0.6])
def test_blend_lays_the_source_over_the_mosaic(color):
    frame = landscape(40, 56, seed=7)
    pool = photo_pool(60, tile_size=16)
    plain = MosaicConfig(cell=8, tile_size=16, color=color, device="cpu")
    mosaic = render_image(frame, pool, plain)
    assert torch.equal(render_image(frame, pool, plain.replace(blend=0.0)), mosaic)
    for opacity in (0.3, 1.0):
        blended = render_image(frame, pool, plain.replace(blend=opacity))
        expected = blended_reference(mosaic, Blend(frame, opacity))
        assert torch.equal(blended, expected)
    stretched = torch.nn.functional.interpolate(
        frame[None].float(), size=(80, 112), mode="bilinear", align_corners=False
    )[0]
    assert (
        render_image(frame, pool, plain.replace(blend=1.0)).float() - stretched
    ).abs().max() <= 0.5


def test_blend_in_a_video_is_the_held_mosaic_with_the_source_over_it():
    """A video with a blend: each frame is the frame the same video gives without one (whose
    CPU path copies held cells from the previous frame) with that frame's source laid over it."""
    frames = [add_noise(landscape(32, 40, seed=8), 4.0, seed=i) for i in range(4)]
    config = MosaicConfig(cell=8, tile_size=8, color=0.6, device="cpu")
    runs = []
    for opacity in (0.0, 0.4):
        renderer = FrameRenderer(photo_pool(60), config.replace(blend=opacity))
        temporal, hold = TemporalCoherence(config.temporal), renderer.colour_hold()
        runs.append([renderer.render(frame, temporal, hold=hold).image for frame in frames])
    for frame, plain, blended in zip(frames, *runs, strict=True):
        assert torch.equal(blended, blended_reference(plain, Blend(frame, 0.4)))


def test_image_stats_report_usage_and_settings():
    frame = landscape(32, 48, seed=9)
    pool = photo_pool(30)
    pool.sources[:] = [f"photo{i}.jpg" for i in range(30)]
    _, stats = render_image_with_stats(frame, pool, MosaicConfig(cell=8, device="cpu"))
    assert stats.usage.tiles_used == stats.tiles_used and stats.usage.frames == 1
    assert stats.most_used == f"photo{stats.usage.most_used}.jpg"
    assert f"the most used {stats.most_used} (" in stats.summary()
    assert stats.settings == (
        "cells 8x8 px, tiles 32x32 px (output 192x128), grid 2, colour 0.6, reuse 1 (auto), "
        "min distance 0 (auto)"
    )
