"""render_image: the mosaic and what it reports, configs by name, progress, the repetition
warning."""

from __future__ import annotations

import warnings

import pytest
import torch

from mosaic import MosaicConfig, render_image, render_image_with_stats
from mosaic.config import ConfigError, as_config
from mosaic.engine import FrameRenderer
from tests.scenes import landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


def test_stats_describe_the_mosaic():
    frame, pool = landscape(40, 56), photo_pool(60)
    config = MosaicConfig(cell=8, tile_size=None, device="cpu", reuse=2)
    image, stats = render_image_with_stats(frame, pool, config)

    expected = FrameRenderer(pool, config).render(frame)
    assert torch.equal(image, expected.image)  # the three steps run as render() runs them
    assert stats.grid == (5, 7) and stats.reuse == 2 and stats.pool_size == 60
    assert stats.tiles_used == expected.choice.unique().numel() <= 5 * 7
    assert stats.method == expected.assignment.method
    assert stats.input_size == stats.output_size == (56, 40)
    assert 0 < stats.fidelity < 1
    assert f"{stats.tiles_used} of 60 tiles used" in stats.summary()
    assert "reuse 2" in stats.summary() and stats.method in stats.summary()


def test_a_preset_by_name_is_the_preset():
    frame, pool = landscape(32, 32), photo_pool(40)
    by_name = render_image(frame, pool, "photo")  # fair use, no colour transfer
    assert torch.equal(by_name, render_image(frame, pool, MosaicConfig.from_preset("photo")))
    assert as_config("vivid") == MosaicConfig.from_preset("vivid")
    assert as_config(None) == MosaicConfig()
    with pytest.raises(ConfigError, match="unknown preset 'vivd'; choose from"):
        as_config("vivd")
    with pytest.raises(TypeError, match="preset name"):
        as_config({"cell": 8})


def test_progress_counts_the_three_steps():
    calls = []
    render_image(
        landscape(24, 24),
        photo_pool(20),
        MosaicConfig(cell=8),
        on_progress=lambda *a: calls.append(a),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_a_tiny_pool_warns_that_tiles_repeat():
    frame = landscape(160, 272)  # 20 x 34 = 680 cells
    with pytest.warns(RuntimeWarning, match="3 tiles for 680 cells: each tile may fill up to 227"):
        render_image(frame, photo_pool(3), MosaicConfig(cell=8, color=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit cap is the user's choice: no warning
        render_image(frame, photo_pool(3), MosaicConfig(cell=8, color=0, reuse=0))
        render_image(frame, photo_pool(68), MosaicConfig(cell=8, color=0))  # reuse 10
