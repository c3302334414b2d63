"""Print-size stills: a mosaic too large to hold in memory, rendered and written in strips.

A 1280-pixel photo with 16-pixel cells and 256-pixel tiles is 20,480 pixels across: 850 MB of
pixels, and several times that as the float32 colour work of a whole frame. ``render_print``
never holds it: the cells are analysed and assigned on the whole grid (small: the pool's
descriptors come from tiles of ``READABLE_TILE`` pixels or so), then the mosaic is drawn a strip
of cell rows at a time (``STRIP_BYTES`` of output at most) and each strip handed to
``adapters.write_image_strips``, which encodes JPEG, PNG or tiled TIFF as the rows arrive.

The tiles at print size are decoded again from their photos when a strip first needs them
(``TilePool.load_tiles``: as sharp as the photo allows, not the pool's small tiles enlarged) and
kept in a least-recently-used cache of ``TILE_CACHE_BYTES``: a pool of about a thousand photos
at 256 pixels fits it whole (each photo decoded once), a larger one re-decodes what falls out.
Measured peak memory (bench/README.md): 824-908 MiB for the 20,480-pixel print of 1000 photos.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import torch

from adapters.strips import write_image_strips
from kernels import Blend, ColourTransfer, analyse_cells, composite_tiles
from mosaic.colour import MAX_SPREAD_GAIN, SPREAD_EPS, tile_stats
from mosaic.config import ConfigError, MosaicConfig, as_config
from mosaic.engine import FrameAnalysis, FrameRenderer
from mosaic.image import input_frame
from mosaic.pool import TilePool
from mosaic.reports import ImageStats, ProgressCallback, finished_stats, warn_if_repetitive

__all__ = ["STRIPS_ABOVE_BYTES", "STRIP_BYTES", "TILE_CACHE_BYTES", "PrintTiles", "render_print"]

STRIP_BYTES = 8 * 2**20
"""Output bytes a strip holds at most (whole cell rows, at least one)."""

STRIPS_ABOVE_BYTES = 128 * 2**20
"""Stills whose mosaic is larger than this (about 6600 x 6600 pixels) are drawn in strips by the
command line."""

TILE_CACHE_BYTES = 256 * 2**20
"""Print-size tiles kept decoded between strips."""


class PrintTiles:
    """A pool's tiles at print size, decoded on demand and kept in a least-recently-used cache
    of at most ``budget`` bytes (module docstring)."""

    def __init__(self, pool: TilePool, shape: tuple[int, int], budget: int = TILE_CACHE_BYTES):
        self.pool, self.shape = pool, shape
        self._capacity = max(1, budget // (3 * shape[0] * shape[1]))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.decoded = 0  # tiles decoded so far, repeats included

    def get(self, indices: list[int]) -> torch.Tensor:
        """uint8 ``(len(indices), 3, h, w)`` on the CPU, the tiles ``indices`` (distinct)."""
        missing = [index for index in indices if index not in self._cache]
        if missing:
            for index, tile in zip(missing, self.pool.load_tiles(missing, self.shape), strict=True):
                self._cache[index] = tile
            self.decoded += len(missing)
        tiles = torch.stack([self._cache[index] for index in indices])
        for index in indices:
            self._cache.move_to_end(index)
        while len(self._cache) > max(self._capacity, len(indices)):
            self._cache.popitem(last=False)
        return tiles


def render_print(
    image: str | Path | torch.Tensor,
    output: str | Path,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> ImageStats:
    """Render a still's mosaic into ``output`` (``.jpg``, ``.png``, ``.tif``) in strips, never
    holding it whole (module docstring); the file is written atomically.

    Args:
        image: a path, or a uint8 ``(3, H, W)`` tensor.
        pool: the tiles, at any size (descriptors come from them; the drawn tiles are decoded
            again at ``config.tile_shape`` from the photos of a ``TilePool.from_dir`` pool).
        config: as for ``render_image``; ``tile_size`` is the print's tile.
        on_progress: called as ``on_progress(strips done, strips)``.

    Returns:
        ``ImageStats``; its ``fidelity`` is measured strip by strip, on each cell's mean colour.
    """
    config = as_config(config)
    if config.adaptive:
        raise ConfigError("adaptive cells are not drawn in strips yet: use render_image")
    frame, _ = input_frame(image)
    started = time.perf_counter()
    renderer = FrameRenderer(pool, config, draw=False)
    height, width = frame.shape[-2:]
    out_h, out_w = renderer.output_size(height, width)
    rows, cols = renderer.grid_shape(height, width)
    reuse = renderer.reuse_for(height, width)
    warn_if_repetitive(config, reuse, rows * cols, renderer.pool_size)
    analysis = renderer.analyse(frame.to(renderer.device))
    assignment, _ = renderer.choose(analysis)
    choice = assignment.tiles.view(rows, cols)
    cells_per_strip = max(1, STRIP_BYTES // (3 * config.tile_shape[0] * out_w))
    strips = -(-rows // cells_per_strip)
    distances: list[torch.Tensor] = []

    def drawn() -> Iterator[torch.Tensor]:
        tiles = PrintTiles(pool, config.tile_shape)
        for index, first in enumerate(range(0, rows, cells_per_strip)):
            cells = slice(first, first + cells_per_strip)
            strip = _strip(renderer, analysis, choice, tiles, cells, (out_h, out_w))
            distances.append(_cell_distances(renderer, analysis, strip, first).cpu())
            yield strip
            if on_progress is not None:
                on_progress(index + 1, strips)

    write_image_strips(output, out_w, out_h, drawn())
    score = float(torch.cat(distances).mean())
    return finished_stats(renderer, assignment, (height, width), started, score)


def _strip(
    renderer: FrameRenderer,
    analysis: FrameAnalysis,
    choice: torch.Tensor,
    tiles: PrintTiles,
    cells: slice,
    picture: tuple[int, int],
) -> torch.Tensor:
    """uint8 ``(3, h, W_out)`` on the processing device: the cell rows ``cells`` of the mosaic
    of size ``picture``, cropped to it, drawn with only the tiles they show."""
    config = renderer.config
    tile_h = config.tile_shape[0]
    block = choice[cells]
    used, local = torch.unique(block, return_inverse=True)
    drawn = tiles.get(used.tolist()).to(renderer.device)
    transfer = None
    if analysis.cell_stats is not None:
        stats = analysis.cell_stats
        transfer = ColourTransfer(
            config.color, *tile_stats(drawn), stats.mean[cells], stats.std[cells],
            MAX_SPREAD_GAIN, SPREAD_EPS,
        )  # fmt: skip
    first_row = cells.start * tile_h
    size = (min(picture[0], (cells.start + len(block)) * tile_h) - first_row, picture[1])
    blend = None
    if config.blend:
        # The source rows the strip's first and last rows sample (Blend), and the next one.
        source = analysis.frame
        scale = (source.shape[1] / picture[0], source.shape[2] / picture[1])
        top = int(max((first_row + 0.5) * scale[0] - 0.5, 0))
        bottom = min(source.shape[1], int((first_row + size[0] - 0.5) * scale[0] - 0.5) + 2)
        blend = Blend(source[:, top:bottom], config.blend, scale, (first_row, top))
    return composite_tiles(drawn, local, transfer, size=size, blend=blend)


def _cell_distances(
    renderer: FrameRenderer, analysis: FrameAnalysis, strip: torch.Tensor, first: int
) -> torch.Tensor:
    """float32 ``(n,)``: the Oklab distance between each whole cell's mean colour in the source
    and in the strip (``ImageStats.fidelity``)."""
    (cell_h, cell_w), (tile_h, tile_w) = renderer.config.cell_shape, renderer.config.tile_shape
    rows, cols = strip.shape[1] // tile_h, strip.shape[2] // tile_w
    if rows == 0 or cols == 0:  # a last strip of cropped cells: none whole
        return strip.new_zeros(0, dtype=torch.float32)
    drawn = analyse_cells(strip[None], (tile_h, tile_w), statistics=False).block_means[0]
    source = analysis.frame[:, first * cell_h : (first + rows) * cell_h, : cols * cell_w]
    wanted = analyse_cells(source[None], (cell_h, cell_w), statistics=False).block_means[0]
    return (drawn[:, :rows, :cols] - wanted).norm(dim=0).flatten()
