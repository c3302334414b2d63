"""Rendering: tiles composited into the output frame, with optional colour transfer per cell
(``mosaic.colour``) and the source optionally blended over the result.

The frame is drawn by one fused operation, ``kernels.composite_tiles``: on a GPU one kernel
gathers every cell's tile, applies the transfer and writes sRGB (or YUV 4:2:0 for an encoder)
straight into the frame; on a CPU its pure-torch reference does the same with whole-frame tensor
operations. A renderer that draws many frames with one pool converts the tiles to Oklab once
(``tile_lab``). A video also passes a ``ColourHold`` (``mosaic.colour``); on a CPU only the cells
it marks as changed are converted, the others copied from the previous frame (not with a blend,
which changes every cell with its source).

A ``Blend`` lays the source over the mosaic at an opacity in [0, 1], in the same pass
(``kernels.composite``): an image editor's layer opacity, on sRGB codes.
"""

from __future__ import annotations

from numbers import Real

import torch

from kernels import Blend, ColourTransfer, composite_tiles
from mosaic.checks import check_choice, check_tile_stats, check_tiles
from mosaic.colour import MAX_SPREAD_GAIN, SPREAD_EPS, CellStats, ColourHold
from mosaic.colour import tile_stats as pool_stats  # render_mosaic's parameter shadows the name
from mosaic.stages import NO_TIMER, StageTimer

__all__ = ["render_mosaic", "render_mosaic_unchecked"]


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
    check_tiles(tiles)
    check_choice(choice, tiles)
    if isinstance(color_strength, bool) or not isinstance(color_strength, Real):
        raise TypeError(f"color_strength must be a number, got {type(color_strength).__name__}")
    if not 0.0 <= color_strength <= 1.0:
        raise ValueError(f"color_strength must be in [0, 1], got {color_strength}")
    if color_strength > 0:
        check_cell_stats(cell_stats, tiles, choice.shape)
        if tile_stats is None:
            tile_stats = pool_stats(tiles, tile_lab)
        check_tile_stats(tile_stats, tiles)
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


def check_cell_stats(stats: object, tiles: torch.Tensor, grid: tuple[int, int]) -> None:
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
