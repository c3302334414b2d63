"""Colour statistics and the colour hold: what colour transfer matches, and what a video keeps.

Colour transfer is Reinhard et al.'s (2001) mean-and-spread match, per Oklab channel, blended by
the strength ``s`` in [0, 1]. For a cell whose source has mean ``mu_c`` and standard deviation
``sigma_c`` and whose tile has ``mu_t`` and ``sigma_t``::

    gain  = min(sigma_c / max(sigma_t, SPREAD_EPS), MAX_SPREAD_GAIN)
    scale = 1 - s + s * gain
    out   = (tile - mu_t) * scale + mu_t + s * (mu_c - mu_t)

then back to sRGB (clamped to the gamut, rounded). ``s = 0`` returns the composited tiles
untouched (bit-exact, no colour round trip); ``s = 1`` gives every cell the source cell's mean
and spread, except that a tile's spread is at most multiplied by ``MAX_SPREAD_GAIN``: a near-flat
tile would otherwise have its JPEG noise and banding amplified into visible grain. Spread may
shrink without limit, so at ``s = 1`` a flat source cell gets a flat tile.

This module computes the statistics (``cell_stats`` for a frame's cells, ``tile_stats`` once per
pool) and holds them for a video (``ColourHold``): a cell that keeps its tile and whose source
statistics stay within a tolerance of those it was last coloured with is coloured with those same
statistics again, so its pixels do not change and noise in the source does not make the tiles
shimmer. The hold is a few fixed-shape tensors on the device: a GPU frame reads nothing back.
``mosaic.render`` draws the frame with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import analyse_cells, block_mean_std, grid_reduce, srgb_to_oklab
from mosaic.checks import check_cell, check_image, check_tile_lab, check_tiles

__all__ = ["MAX_SPREAD_GAIN", "SPREAD_EPS", "CellStats", "ColourHold", "cell_stats", "tile_stats"]

MAX_SPREAD_GAIN = 2.0
"""Largest factor colour transfer may multiply a tile's Oklab spread by."""

SPREAD_EPS = 1e-4
"""Floor on a tile's Oklab standard deviation in the gain's denominator (flat tiles)."""

# Pixels converted to Oklab per batch in ``tile_stats`` (12 bytes each in float32): bounds the
# float32 copy of large pools and large tiles.
_TILE_STATS_PIXELS = 2**24


@dataclass(frozen=True)
class CellStats:
    """Per-cell Oklab statistics of a source frame.

    Attributes:
        mean: float32 ``(rows, cols, 3)``, each cell's mean Oklab colour.
        std: float32 ``(rows, cols, 3)``, each cell's standard deviation per Oklab channel
            (population, over the cell's pixels).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def saturated(self, factor: float) -> CellStats:
        """These statistics with chroma (Oklab a and b, mean and spread) scaled by ``factor``."""
        if factor == 1.0:
            return self

        # No scale tensor made from host data: a GPU frame step copies nothing from the host.
        def scaled(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x[..., :1], x[..., 1:] * factor], -1)

        return CellStats(scaled(self.mean), scaled(self.std))


class ColourHold:
    """Colour transfer held from frame to frame, for a video's cells (``render_mosaic``).

    A cell is coloured afresh when its tile changed, or when its source mean or spread moved by
    more than ``tolerance`` in some Oklab channel from the values it was last coloured with;
    otherwise it is coloured with those values again, and its pixels stay exactly as they were.
    A just-noticeable Oklab difference is about 0.02, and the rendered colour moves by at most
    ``strength`` times the source's, so a tolerance well below that is invisible as lag, while
    sensor noise no longer makes the tiles shimmer. With ``tolerance=0`` only cells whose tile
    and statistics are exactly unchanged are held.

    The state is fixed-shape tensors on the frames' device, updated by elementwise operations:
    nothing is read back to the host. It also keeps the last RGB frame drawn with it, from which
    the CPU path copies the cells that did not change. Frames must come in order, from one
    renderer (the same tiles and strength); a frame of another grid or tile size starts afresh.
    """

    def __init__(self, tolerance: float) -> None:
        if not tolerance >= 0:  # also refuses NaN
            raise ValueError(f"the colour hold tolerance must be >= 0, got {tolerance}")
        self.tolerance = tolerance
        self._side: object = None  # tile shape in pixels of the frames held
        self._tiles: torch.Tensor | None = None  # (rows, cols) int64 tile of each cell
        self._mean: torch.Tensor | None = None  # (rows, cols, 3) statistics it was coloured with
        self._std: torch.Tensor | None = None
        self.frame: torch.Tensor | None = None  # uint8 (3, H, W), the last RGB frame drawn

    def statistics(
        self, choice: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, side: object
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The statistics to colour this frame's cells with, and which cells changed.

        Args:
            choice: int64 ``(rows, cols)``, this frame's tiles.
            mean: float32 ``(rows, cols, 3)``, its cells' source Oklab means.
            std: float32 ``(rows, cols, 3)``, their standard deviations.
            side: the tile size in pixels (a side, or ``(height, width)``).

        Returns:
            ``(mean, std, changed)``: the given statistics where ``changed`` (bool
            ``(rows, cols)``), the held ones elsewhere; recorded for the next frame.
        """
        if self._tiles is None or self._tiles.shape != choice.shape or self._side != side:
            changed = torch.ones(choice.shape, dtype=torch.bool, device=choice.device)
            mean, std, self.frame = mean.clone(), std.clone(), None
        else:
            drift = torch.maximum((mean - self._mean).abs(), (std - self._std).abs()).amax(-1)
            changed = (choice != self._tiles) | (drift > self.tolerance)
            mean = torch.where(changed[..., None], mean, self._mean)
            std = torch.where(changed[..., None], std, self._std)
        self._side, self._tiles, self._mean, self._std = side, choice.clone(), mean, std
        return mean, std, changed


def cell_stats(frame: torch.Tensor, cell: int) -> CellStats:
    """Oklab mean and standard deviation of every ``cell x cell`` cell of a frame.

    Args:
        frame: uint8 ``(3, H, W)`` sRGB, ``H`` and ``W`` multiples of ``cell``; any strides.
        cell: cell side in pixels.

    Returns:
        ``CellStats`` with ``(H // cell, W // cell, 3)`` float32 tensors on ``frame``'s device.
    """
    check_image(frame, "frame", ndim=3)
    check_cell(frame, cell)
    analysis = analyse_cells(frame[None], cell)
    return CellStats(analysis.mean[0], analysis.std[0])


def tile_stats(
    tiles: torch.Tensor, lab: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Oklab mean and standard deviation of every tile of a pool (computed once per pool).

    Args:
        tiles: uint8 ``(M, 3, th, tw)`` sRGB tiles; any strides.
        lab: ``srgb_to_oklab(tiles)`` when the caller already has it (read, not modified);
            otherwise the tiles are converted here, a batch at a time.

    Returns:
        ``(mean, std)``, each float32 ``(M, 3)`` on ``tiles``' device.
    """
    check_tiles(tiles)
    if lab is not None:
        check_tile_lab(lab, tiles)
    side = tuple(tiles.shape[-2:])
    batch = max(1, _TILE_STATS_PIXELS // (side[0] * side[1]))
    batches = [
        block_mean_std(srgb_to_oklab(b), side, overwrite=True, reduce=grid_reduce)
        if lab is None
        else block_mean_std(lab[start : start + batch], side, reduce=grid_reduce)
        for start, b in zip(range(0, len(tiles), batch), tiles.split(batch), strict=True)
    ]
    mean = torch.cat([m for m, _ in batches]).reshape(len(tiles), 3)
    std = torch.cat([s for _, s in batches]).reshape(len(tiles), 3)
    return mean, std
