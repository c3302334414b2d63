"""Rendering: tiles composited into the output frame, with optional colour transfer per cell and
the source optionally blended over the result.

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

The frame is drawn by one fused operation, ``kernels.composite_tiles``: on a GPU one kernel
gathers every cell's tile, applies the transfer and writes sRGB (or YUV 4:2:0 for an encoder)
straight into the frame; on a CPU its pure-torch reference does the same with whole-frame tensor
operations. A renderer that draws many frames with one pool converts the tiles to Oklab once
(``tile_lab``). A video also passes a ``ColourHold``: a cell that keeps its tile and whose source
statistics stay within a tolerance of those it was last coloured with is coloured with those same
statistics again, so its pixels do not change and noise in the source does not make the tiles
shimmer. The hold is a few fixed-shape tensors on the device: a GPU frame reads nothing back.
On a CPU only the cells that changed are converted, the others copied from the previous frame
(not with a blend, which changes every cell with its source).

A ``Blend`` lays the source over the mosaic at an opacity in [0, 1], in the same pass
(``kernels.composite``): an image editor's layer opacity, on sRGB codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import torch

from kernels import (
    Blend,
    ColourTransfer,
    analyse_cells,
    block_mean_std,
    composite_tiles,
    grid_reduce,
    srgb_to_oklab,
)
from mosaic.stages import NO_TIMER, StageTimer

__all__ = [
    "MAX_SPREAD_GAIN",
    "SPREAD_EPS",
    "CellStats",
    "ColourHold",
    "cell_stats",
    "render_mosaic",
    "render_mosaic_unchecked",
    "tile_stats",
]

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
        scale = torch.tensor([1.0, factor, factor], device=self.mean.device)
        return CellStats(self.mean * scale, self.std * scale)


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
    _check_image(frame, "frame", ndim=3)
    _check_cell(frame, cell)
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
    _check_tiles(tiles)
    if lab is not None:
        _check_tile_lab(lab, tiles)
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


_pool_stats = tile_stats  # what render_mosaic calls, its parameter of that name shadowing it


def render_mosaic(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    *,
    color_strength: float = 0.0,
    cell_stats: CellStats | None = None,
    tile_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    tile_lab: torch.Tensor | None = None,
    hold: ColourHold | None = None,
    size: tuple[int, int] | None = None,
    pixel_format: str = "rgb",
    blend: Blend | None = None,
    timer: StageTimer = NO_TIMER,
) -> torch.Tensor:
    """Composite the chosen tiles into one frame, optionally colour-matched to the source cells
    and blended with the source.

    Args:
        tiles: uint8 ``(M, 3, t, t)`` tile pixels; any strides.
        choice: int64 ``(rows, cols)`` tile index per cell, each in ``[0, M)``; any strides.
            Checking the range reads two numbers back from the device (one sync; a caller whose
            indices are right by construction calls ``render_mosaic_unchecked``).
        color_strength: ``s`` in [0, 1], how far each tile moves toward its cell's colour
            statistics (see the module docstring).
        cell_stats: the source frame's ``cell_stats`` on the same ``rows x cols`` grid; required
            when ``color_strength > 0``.
        tile_stats: ``tile_stats(tiles)``, precomputed once per pool; computed here (for the
            whole pool) when omitted.
        tile_lab: float32 ``(M, 3, t, t)``, ``srgb_to_oklab(tiles)`` precomputed once per pool;
            when omitted, the chosen tiles are converted.
        hold: a video's ``ColourHold``, which keeps the colour of cells that did not change
            since the previous frame it was given (updated here).
        size: ``(H, W)`` to crop the mosaic to (at the bottom and right); default the whole.
        pixel_format: ``"rgb"``, or ``"yuv420p"`` for the I420 bytes a video encoder takes
            (``kernels.composite_tiles``).
        blend: the source picture laid over the mosaic at an opacity (``kernels.Blend``).
        timer: records the cells' colour statistics (the hold) as stage ``"colour"`` and
            drawing the frame (tiles, colour transfer, sRGB) as ``"render"``.

    Returns:
        uint8 ``(3, H, W)`` on the tiles' device, ``(rows * t, cols * t)`` uncropped: tile
        ``choice[r, c]`` at block ``(r, c)``; with ``"yuv420p"`` uint8 ``(H' * 3 // 2, W')``,
        the sizes rounded up to even.
    """
    _check_tiles(tiles)
    _check_choice(choice, tiles)
    if isinstance(color_strength, bool) or not isinstance(color_strength, Real):
        raise TypeError(f"color_strength must be a number, got {type(color_strength).__name__}")
    if not 0.0 <= color_strength <= 1.0:
        raise ValueError(f"color_strength must be in [0, 1], got {color_strength}")
    if color_strength > 0:
        _check_cell_stats(cell_stats, tiles, choice.shape)
        if tile_stats is None:
            tile_stats = _pool_stats(tiles, tile_lab)
        _check_tile_stats(tile_stats, tiles)
    return render_mosaic_unchecked(
        tiles,
        choice,
        color_strength=color_strength,
        cell_stats=cell_stats,
        tile_stats=tile_stats,
        tile_lab=tile_lab,
        hold=hold,
        size=size,
        pixel_format=pixel_format,
        blend=blend,
        timer=timer,
    )


def render_mosaic_unchecked(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    *,
    color_strength: float,
    cell_stats: CellStats | None,
    tile_stats: tuple[torch.Tensor, torch.Tensor] | None,
    tile_lab: torch.Tensor | None = None,
    hold: ColourHold | None = None,
    size: tuple[int, int] | None = None,
    pixel_format: str = "rgb",
    blend: Blend | None = None,
    timer: StageTimer = NO_TIMER,
) -> torch.Tensor:
    """``render_mosaic`` without the checks only it makes (the index range, the strength, the
    statistics' presence), for a caller whose arguments are right by construction: nothing is
    read back from the device. ``tile_stats`` is required when ``color_strength > 0``."""
    if color_strength == 0:
        with timer.stage("render"):
            return composite_tiles(tiles, choice, size=size, pixel_format=pixel_format, blend=blend)
    side = tiles.shape[-2:]
    mean, std = cell_stats.mean, cell_stats.std
    previous = changed = None
    with timer.stage("colour"):
        if hold is not None:
            mean, std, changed = hold.statistics(choice, mean, std, side)
            # The CPU path copies the unchanged cells from the last frame, if it is one like this.
            rows, cols = choice.shape
            shape = (3, *(size or (rows * side[0], cols * side[1])))
            if pixel_format == "rgb" and hold.frame is not None and hold.frame.shape == shape:
                previous = hold.frame
            hold.frame = None  # matches the hold's statistics only once this frame is drawn
        transfer = ColourTransfer(
            color_strength, *tile_stats, mean, std, MAX_SPREAD_GAIN, SPREAD_EPS
        )
    with timer.stage("render"):
        image = composite_tiles(
            tiles,
            choice,
            transfer,
            tile_lab=tile_lab,
            size=size,
            pixel_format=pixel_format,
            previous=previous,
            changed=changed if previous is not None else None,
            blend=blend,
        )
    if hold is not None and pixel_format == "rgb" and blend is None:
        hold.frame = image
    return image


# --------------------------------------------------------------------------- argument checks


def _check_image(x: object, name: str, *, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {x.dtype}")
    if x.ndim != ndim or x.shape[-3] != 3:
        layout = "(3, H, W)" if ndim == 3 else "(M, 3, t, t)"
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")


def _check_cell(frame: torch.Tensor, cell: object) -> None:
    height, width = frame.shape[-2:]
    if isinstance(cell, bool) or not isinstance(cell, int) or cell < 1:
        raise ValueError(f"cell must be a positive int, got {cell!r}")
    if height % cell or width % cell:
        raise ValueError(f"frame size {height}x{width} is not a multiple of the cell size {cell}")


def _check_tiles(tiles: object) -> None:
    _check_image(tiles, "tiles", ndim=4)
    m, _, height, width = tiles.shape
    if m < 1 or height < 1 or width < 1:
        raise ValueError(
            f"tiles must be a non-empty (M, 3, th, tw) batch, got shape {tuple(tiles.shape)}"
        )


def _check_choice(choice: object, tiles: torch.Tensor) -> None:
    if not isinstance(choice, torch.Tensor):
        raise TypeError(f"choice must be a torch.Tensor, got {type(choice).__name__}")
    if choice.dtype != torch.int64:
        raise TypeError(f"choice must be int64, got {choice.dtype}")
    if choice.ndim != 2 or choice.numel() == 0:
        raise ValueError(f"choice must be a non-empty (rows, cols) grid, got {tuple(choice.shape)}")
    if choice.device != tiles.device:
        raise ValueError(f"choice is on {choice.device} but tiles are on {tiles.device}")
    lowest, highest = torch.stack(torch.aminmax(choice)).tolist()
    if lowest < 0 or highest >= len(tiles):
        bad = lowest if lowest < 0 else highest
        raise ValueError(
            f"choice holds tile index {bad}, outside the pool's range [0, {len(tiles) - 1}]"
        )


def _check_cell_stats(stats: object, tiles: torch.Tensor, grid: tuple[int, int]) -> None:
    if stats is None:
        raise ValueError("color_strength > 0 needs cell_stats (from cell_stats(frame, cell))")
    if not isinstance(stats, CellStats):
        raise TypeError(f"cell_stats must be a CellStats, got {type(stats).__name__}")
    for name, x in (("mean", stats.mean), ("std", stats.std)):
        if x.shape != (*grid, 3):
            raise ValueError(
                f"cell_stats.{name} has shape {tuple(x.shape)}, expected {(*grid, 3)} "
                f"to match choice"
            )
        if x.device != tiles.device:
            raise ValueError(f"cell_stats.{name} is on {x.device} but tiles are on {tiles.device}")


def _check_tile_stats(stats: object, tiles: torch.Tensor) -> None:
    if not (isinstance(stats, tuple) and len(stats) == 2):
        raise TypeError("tile_stats must be the (mean, std) pair returned by tile_stats(tiles)")
    for name, x in zip(("mean", "std"), stats, strict=True):
        if not isinstance(x, torch.Tensor) or x.shape != (len(tiles), 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"tile_stats {name} must be ({len(tiles)}, 3), got {shape}")
        if x.device != tiles.device:
            raise ValueError(f"tile_stats {name} is on {x.device} but tiles are on {tiles.device}")


def _check_tile_lab(lab: object, tiles: torch.Tensor) -> None:
    if not isinstance(lab, torch.Tensor) or lab.dtype != torch.float32:
        raise TypeError("tile_lab must be the float32 tensor srgb_to_oklab(tiles)")
    if lab.shape != tiles.shape or lab.device != tiles.device:
        raise ValueError(
            f"tile_lab must match tiles: {tuple(tiles.shape)} on {tiles.device}, got "
            f"{tuple(lab.shape)} on {lab.device}"
        )
