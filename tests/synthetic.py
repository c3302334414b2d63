"""Seeded synthetic descriptors that behave like real frames and tile pools.

Assignment is hard when many cells share a few colours (a sky, a wall): random descriptors hide
that by two orders of magnitude (see ALGORITHMS.md). ``image_like_instance`` builds a frame with a
sky gradient over 40 % of the rows, a grey building band with lit windows, a few coloured objects
and textured ground, plus a pool of tiles whose colours and textures spread like photographs.
The assignment tests and benchmarks use it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["image_like_instance", "image_like_pan"]

# Objects over the scene: centre y, centre x, radius (fractions of the frame), Oklab L, a, b.
_OBJECTS = (
    (0.55, 0.2, 0.08, 0.5, 0.18, 0.08),
    (0.75, 0.6, 0.1, 0.25, 0.0, -0.02),
    (0.3, 0.8, 0.06, 0.95, 0.0, 0.12),
    (0.85, 0.3, 0.07, 0.65, -0.05, 0.15),
)


def _blocks(
    mean: torch.Tensor, texture: torch.Tensor, side: int, generator: torch.Generator
) -> torch.Tensor:
    """``(n, 3 * side * side)`` float32 descriptors: Oklab ``mean (n, 3)`` plus block noise of
    standard deviation ``texture (n,)`` (halved on a and b: photos vary most in lightness)."""
    noise = torch.randn(mean.shape[0], 3, side * side, generator=generator)
    noise *= texture[:, None, None] * torch.tensor([1.0, 0.5, 0.5])[:, None]
    return (mean[:, :, None] + noise).reshape(mean.shape[0], -1)


def image_like_instance(
    rows: int, cols: int, tiles: int, dim: int = 48, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell and tile descriptors of a synthetic outdoor frame and a photo pool.

    Args:
        rows, cols: the cell grid. tiles: pool size ``M``. dim: ``3 * s * s`` (3, 12, 48, ...).
        seed: everything is drawn from one ``torch.Generator`` seeded with it.

    Returns:
        ``(cells, pool)``: float32 ``(rows * cols, dim)`` row-major and ``(tiles, dim)``, on CPU.
    """
    side = math.isqrt(dim // 3)
    if dim < 3 or 3 * side * side != dim:
        raise ValueError(f"dim must be 3 * s * s, got {dim}")
    generator = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, rows)[:, None].expand(rows, cols)
    x = torch.linspace(0, 1, cols)[None, :].expand(rows, cols)
    zero = torch.zeros(rows, cols)
    # Sky: lighter at the top, warmer toward the horizon; building band; ground darkening.
    sky = torch.stack([0.9 - 0.6 * y, zero - 0.02, -0.09 + 0.15 * y], -1)
    ground = torch.stack([0.45 - 0.15 * y, zero - 0.06, zero + 0.07], -1)
    mean = torch.where((y < 0.4)[..., None], sky, ground)
    texture = torch.where(y < 0.4, 0.004, 0.05)
    building = (y >= 0.4) & (y < 0.65)
    mean[building] = torch.tensor([0.55, 0.0, 0.01])
    texture[building] = 0.03
    lit = building & ((x * cols).floor() % 3 == 1) & ((y * rows).floor() % 2 == 0)
    mean[lit] = torch.tensor([0.85, 0.01, 0.08])
    for cy, cx, radius, *lab in _OBJECTS:
        inside = (y - cy).square() + (x - cx).square() < radius * radius
        mean[inside] = torch.tensor(lab)
        texture[inside] = 0.02
    cells = _blocks(mean.reshape(-1, 3), texture.reshape(-1), side, generator)

    lightness = torch.rand(tiles, generator=generator) * 0.8 + 0.15
    chroma = torch.randn(tiles, 2, generator=generator) * 0.06
    pool_texture = torch.rand(tiles, generator=generator) * 0.08
    pool = _blocks(torch.cat([lightness[:, None], chroma], 1), pool_texture, side, generator)
    return cells, pool


def image_like_pan(
    rows: int, cols: int, tiles: int, frames: int, step: float = 0.25, dim: int = 12, seed: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A camera panning right over a wider ``image_like_instance`` by ``step`` cells a frame:
    each frame's cells mix each cell with its right neighbour in proportion to the fractional
    offset (the content slides across the grid, half a cell off it every other frame at 0.25).

    Returns ``(frames, pool)``: ``frames`` float32 ``(rows * cols, dim)`` each, and ``(tiles,
    dim)``, on CPU.
    """
    width = cols + int(frames * step) + 2
    cells, pool = image_like_instance(rows, width, tiles, dim=dim, seed=seed)
    grid = cells.reshape(rows, width, dim)
    views = []
    for index in range(frames):
        offset = index * step
        left, fraction = int(offset), offset - int(offset)
        view = (1 - fraction) * grid[:, left : left + cols] + fraction * grid[
            :, left + 1 : left + 1 + cols
        ]
        views.append(view.reshape(-1, dim))
    return views, pool


def image_like_fade(
    rows: int, cols: int, tiles: int, frames: int, dim: int = 12, seed: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A cross-fade over ``frames`` frames from one ``image_like_instance`` to another of the
    same pool: frame ``t`` is ``(1 - t / (frames - 1)) * first + t / (frames - 1) * second``
    (every cell moves a little each frame, in a direction that persists).

    Returns ``(frames, pool)`` as ``image_like_pan``.
    """
    first, pool = image_like_instance(rows, cols, tiles, dim=dim, seed=seed)
    second, _ = image_like_instance(rows, cols, tiles, dim=dim, seed=seed + 1)
    weights = torch.linspace(0.0, 1.0, frames).tolist()
    return [(1 - weight) * first + weight * second for weight in weights], pool
