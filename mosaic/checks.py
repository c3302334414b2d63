"""Argument checks of the public image entry points (``render_mosaic``, ``cell_stats``,
``tile_stats``): one clear line per mistake. The frame path calls the unchecked functions, whose
arguments are right by construction (some checks read values back from the device)."""

from __future__ import annotations

import torch


def check_image(x: object, name: str, *, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {x.dtype}")
    if x.ndim != ndim or x.shape[-3] != 3:
        layout = "(3, H, W)" if ndim == 3 else "(M, 3, t, t)"
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")


def check_cell(frame: torch.Tensor, cell: object) -> None:
    height, width = frame.shape[-2:]
    if isinstance(cell, bool) or not isinstance(cell, int) or cell < 1:
        raise ValueError(f"cell must be a positive int, got {cell!r}")
    if height % cell or width % cell:
        raise ValueError(f"frame size {height}x{width} is not a multiple of the cell size {cell}")


def check_tiles(tiles: object) -> None:
    check_image(tiles, "tiles", ndim=4)
    m, _, height, width = tiles.shape
    if m < 1 or height < 1 or width < 1:
        raise ValueError(
            f"tiles must be a non-empty (M, 3, th, tw) batch, got shape {tuple(tiles.shape)}"
        )


def check_choice(choice: object, tiles: torch.Tensor) -> None:
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


def check_tile_stats(stats: object, tiles: torch.Tensor) -> None:
    if not (isinstance(stats, tuple) and len(stats) == 2):
        raise TypeError("tile_stats must be the (mean, std) pair returned by tile_stats(tiles)")
    for name, x in zip(("mean", "std"), stats, strict=True):
        if not isinstance(x, torch.Tensor) or x.shape != (len(tiles), 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"tile_stats {name} must be ({len(tiles)}, 3), got {shape}")
        if x.device != tiles.device:
            raise ValueError(f"tile_stats {name} is on {x.device} but tiles are on {tiles.device}")


def check_tile_lab(lab: object, tiles: torch.Tensor) -> None:
    if not isinstance(lab, torch.Tensor) or lab.dtype != torch.float32:
        raise TypeError("tile_lab must be the float32 tensor srgb_to_oklab(tiles)")
    if lab.shape != tiles.shape or lab.device != tiles.device:
        raise ValueError(
            f"tile_lab must match tiles: {tuple(tiles.shape)} on {tiles.device}, got "
            f"{tuple(lab.shape)} on {lab.device}"
        )
