"""``render_image``: one still image in, one mosaic out."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from adapters import read_image
from mosaic.adaptive import render_adaptive
from mosaic.config import MosaicConfig, as_config
from mosaic.engine import FrameRenderer
from mosaic.metrics import fidelity
from mosaic.pool import TilePool
from mosaic.reports import ImageStats, ProgressCallback, finished_stats, warn_if_repetitive

# render_image's steps, as on_progress counts them: descriptors, assignment, pixels.
IMAGE_STEPS = 3


def render_image(
    image: str | Path | torch.Tensor,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Turn one image into a photo mosaic.

    Args:
        image: a path to an image file, or a uint8 ``(3, H, W)`` tensor on any device.
        pool: the tiles.
        config: a ``MosaicConfig``, a preset's name (``"vivid"``), or ``None`` for the defaults.
        on_progress: called as ``on_progress(done, 3)`` after each of the three steps
            (descriptors, assignment, pixels).

    Returns:
        uint8 ``(3, H_out, W_out)``: the input's size when ``config.tile_size`` is ``None``, else
        ``H * tile_size / cell`` by ``W * tile_size / cell``. On the input tensor's device, or on
        the CPU for a path. ``adapters.write_image(path, mosaic)`` saves it. With
        ``config.adaptive`` the cells are a quadtree (``mosaic.adaptive``), the size the same.
    """
    return render_image_with_stats(image, pool, config, on_progress=on_progress)[0]


def render_image_with_stats(
    image: str | Path | torch.Tensor,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> tuple[torch.Tensor, ImageStats]:
    """``render_image``, and what it did (``ImageStats``, whose ``summary()`` the command line
    prints)."""
    config = as_config(config)
    frame, out_device = input_frame(image)
    steps = iter(range(1, IMAGE_STEPS + 1))

    def step_done() -> None:
        if on_progress is not None:
            on_progress(next(steps), IMAGE_STEPS)

    if config.adaptive:
        mosaic, stats = render_adaptive(frame, pool, config, step_done)
        return mosaic.to(out_device), stats
    started = time.perf_counter()
    renderer = FrameRenderer(pool, config)
    height, width = frame.shape[-2:]
    rows, cols = renderer.grid_shape(height, width)
    reuse = renderer.reuse_for(height, width)
    warn_if_repetitive(config, reuse, rows * cols, renderer.pool_size)

    analysis = renderer.analyse(frame)
    step_done()
    assignment, _ = renderer.choose(analysis)
    step_done()
    choice = assignment.tiles.reshape(analysis.grid)
    mosaic = renderer.compose(analysis, choice)
    step_done()
    score = fidelity(analysis.frame, mosaic, analysis.grid)["mean"]
    stats = finished_stats(renderer, assignment, (height, width), started, score)
    return mosaic.to(out_device), stats


def input_frame(image: str | Path | torch.Tensor) -> tuple[torch.Tensor, torch.device]:
    """The uint8 ``(3, H, W)`` frame of ``image`` and the device its mosaic goes back to."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}"
            )
        return image, image.device
    return read_image(image), torch.device("cpu")
