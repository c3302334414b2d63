"""``render_image``: one still image in, one mosaic out."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters import read_image
from mosaic.assign import Assignment, UsageReport
from mosaic.config import MosaicConfig, as_config
from mosaic.engine import FrameRenderer
from mosaic.metrics import fidelity
from mosaic.pool import TilePool

# ``on_progress(done, total)``: work done so far and the whole, ``total`` None when unknown.
ProgressCallback = Callable[[int, int | None], None]
# "auto" reuse above this (each tile allowed on more than ten cells of a frame) warns that the
# pool is small for the grid.
REPETITIVE_REUSE = 10
# render_image's steps, as on_progress counts them: descriptors, assignment, pixels.
IMAGE_STEPS = 3


@dataclass(frozen=True)
class ImageStats:
    """What ``render_image_with_stats`` did: sizes, time, device, the assignment (``method``,
    the ``reuse`` cap, ``grid`` of cells), how many distinct tiles of the pool it used and the
    most used (``usage``, with ``most_used`` its source), ``fidelity``, the mean Oklab distance
    between each cell of the source and of the mosaic, and ``settings``: the look with its
    ``"auto"`` settings resolved (``FrameRenderer.settings_summary``). With adaptive cells,
    ``grid`` is the smallest cells' and ``cells`` counts the cells of each size,
    ``(("16x16", 912), ("32x32", 140), ...)``; fidelity is measured on the smallest cells."""

    input_size: tuple[int, int]
    output_size: tuple[int, int]
    seconds: float
    device: str
    method: str
    reuse: int
    grid: tuple[int, int]
    tiles_used: int
    pool_size: int
    fidelity: float
    usage: UsageReport | None = None
    most_used: str = ""
    settings: str = ""
    cells: tuple[tuple[str, int], ...] = ()

    def summary(self) -> str:
        (w, h), (ow, oh) = self.input_size, self.output_size
        used = f"{self.tiles_used} of {self.pool_size} tiles used"
        if self.usage is not None:
            used = self.usage.summary(self.most_used)
        cells = assignment_summary(self.grid, self.method, self.reuse)
        if self.cells:
            sizes = ", ".join(f"{count} of {size}" for size, count in self.cells)
            count = sum(count for _, count in self.cells)
            cells = f"{count} adaptive cells ({sizes} px), {cells.partition(', ')[2]}"
        return (
            f"{w}x{h} -> {ow}x{oh} in {self.seconds:.1f} s ({self.device}); {cells}, "
            f"{used}; fidelity {self.fidelity:.4f}"
        )


def assignment_summary(grid: tuple[int, int], method: str, reuse: int) -> str:
    """``"20x36 cells, windows assignment, reuse 1"``: the part of a summary on the tiles."""
    rows, cols = grid
    return f"{rows}x{cols} cells, {method} assignment, reuse {reuse or 'unlimited'}"


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
        from mosaic.adaptive import render_adaptive

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


def finished_stats(
    renderer: FrameRenderer,
    assignment: Assignment,
    size: tuple[int, int],
    started: float,
    score: float,
) -> ImageStats:
    """The ``ImageStats`` of a still of ``size`` ``(H, W)`` that ``renderer`` assigned and drew
    since ``started`` (``time.perf_counter()``), its fidelity ``score``; warns when an explicit
    ``min_distance`` could not hold."""
    usage = renderer.usage.read()
    warn_if_spacing_failed(renderer.config, usage)
    height, width = size
    out_h, out_w = renderer.output_size(height, width)
    return ImageStats(
        input_size=(width, height),
        output_size=(out_w, out_h),
        seconds=time.perf_counter() - started,
        device=str(renderer.device),
        method=assignment.method,
        reuse=renderer.reuse_for(height, width),
        grid=renderer.grid_shape(height, width),
        tiles_used=usage.tiles_used,
        pool_size=renderer.pool_size,
        fidelity=score,
        usage=usage,
        most_used=renderer.sources[usage.most_used],
        settings=renderer.settings_summary(height, width),
    )


def input_frame(image: str | Path | torch.Tensor) -> tuple[torch.Tensor, torch.device]:
    """The uint8 ``(3, H, W)`` frame of ``image`` and the device its mosaic goes back to."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}"
            )
        return image, image.device
    return read_image(image), torch.device("cpu")


def warn_if_spacing_failed(config: MosaicConfig, usage: UsageReport) -> None:
    """Warn in one line when an explicit ``min_distance`` left cells beside a copy of their tile
    (``"auto"`` spacing is best effort: the summary counts them)."""
    if config.min_distance != "auto" and usage.clashes:
        warnings.warn(
            f"min_distance {config.min_distance}: {usage.clashes} cells still have a copy of their "
            "tile within that distance; lower it, raise --reuse or add tiles",
            RuntimeWarning,
            stacklevel=4,
        )


def warn_if_repetitive(config: MosaicConfig, reuse: int, cells: int, tiles: int) -> None:
    """Warn in one line when ``reuse="auto"`` had to let each of the pool's ``tiles`` fill more
    than ``REPETITIVE_REUSE`` of a frame's ``cells`` (an explicit cap is the user's choice)."""
    if config.reuse == "auto" and reuse > REPETITIVE_REUSE:
        warnings.warn(
            f"{tiles} tiles for {cells} cells: each tile may fill up to {reuse} cells of a "
            "frame; add photos, or augment the pool (--augment), for a less repetitive mosaic",
            RuntimeWarning,
            stacklevel=3,
        )
