"""render_image at 1080p: one still image, cell 16 (8160 cells), from a generated pool.

Pinned settings: tiles at the cell size, no spacing rule (the figures stay comparable whatever
the defaults become).

On CUDA this is the GPU pipeline for one frame (features, assignment, colour transfer, render);
on CPU the same work through the torch references. The pool is built once and its descriptors
are computed before timing, as a session that renders several images from one pool would.
``extra_info`` records the device, the median seconds, the grid, the pool size and the
assignment method.
"""

from __future__ import annotations

import pytest
import torch
from conftest import device_name, synchronize

from mosaic import MosaicConfig
from mosaic.engine import FrameRenderer
from tests.scenes import landscape, photo_pool

HEIGHT, WIDTH, CELL = 1080, 1920, 16


@pytest.mark.parametrize("tiles", [10_000])
def test_render_image_1080p(benchmark, device: torch.device, tiles: int):
    image = landscape(HEIGHT, WIDTH).to(device)
    config = MosaicConfig.from_preset(
        "faithful", cell=CELL, tile_size=None, min_distance=0, device=device.type
    )
    renderer = FrameRenderer(photo_pool(tiles, tile_size=32), config)

    def render():
        result = renderer.render(image)
        synchronize(device)
        return result

    rounds = 5 if device.type == "cuda" else 2
    result = benchmark.pedantic(render, rounds=rounds, iterations=1, warmup_rounds=1)
    rows, cols = result.choice.shape
    benchmark.extra_info.update(
        device=device_name(device),
        median_s=benchmark.stats.stats.median,
        grid=f"{rows}x{cols}",
        tiles=tiles,
        method=result.assignment.method,
    )
