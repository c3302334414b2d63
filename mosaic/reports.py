"""What a render tells its caller besides the picture: progress (``ProgressCallback``), a
still's ``ImageStats``, and the one-line warnings about the pool and the spacing that stills and
videos give alike."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from mosaic.assign import Assignment, UsageReport
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer

# ``on_progress(done, total)``: work done so far and the whole, ``total`` None when unknown.
ProgressCallback = Callable[[int, int | None], None]
# "auto" reuse above this (each tile allowed on more than ten cells of a frame) warns that the
# pool is small for the grid.
REPETITIVE_REUSE = 10


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
