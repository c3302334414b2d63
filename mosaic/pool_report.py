"""What a tile pool holds and lacks: ``mosaic pool DIR``.

``colour_coverage`` compares the pool with the pictures it should rebuild: every cell of the
pictures (their mean Oklab colour) is *covered* when some tile's mean colour lies within
``COVERAGE_DISTANCE``; the cells that are not are grouped by colour name (lightness and hue in
Oklab's polar form) into the colours the pool lacks, largest first, each with the average colour
of its cells. ``contact_sheet`` lays every tile out in one picture, ordered by hue then
lightness, so a glance shows what the pool is made of.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from kernels import analyse_cells, cost_topk, oklab_to_srgb
from mosaic.imageops import resize
from mosaic.pool import TilePool

__all__ = ["COVERAGE_DISTANCE", "ColourGap", "Coverage", "colour_coverage", "contact_sheet"]

COVERAGE_DISTANCE = 0.08
"""Oklab distance between a cell's mean colour and the nearest tile's under which the cell counts
as covered: four just-noticeable differences, about what colour transfer at 0.6 hides."""

# Below this chroma a colour is a grey (black, grey, white by lightness).
_GREY_CHROMA = 0.03
# Hue names by the Oklab hue angle where each begins, in degrees (a, b) -> atan2(b, a).
_HUES = (
    (-180.0, "teal"),
    (-130.0, "blue"),
    (-80.0, "purple"),
    (-20.0, "pink"),
    (10.0, "red"),
    (45.0, "orange"),
    (80.0, "yellow"),
    (120.0, "green"),
    (165.0, "teal"),
)


@dataclass(frozen=True)
class ColourGap:
    """A colour the pool lacks: its ``name`` ("dark blue"), the average sRGB colour of the cells
    that lack it (``hex``, ``"#1f3a6b"``) and their ``share`` of all the cells."""

    name: str
    hex: str
    share: float


@dataclass(frozen=True)
class Coverage:
    """How well a pool covers some pictures' colours (``colour_coverage``)."""

    cells: int
    covered: float
    lacking: tuple[ColourGap, ...]

    def summary(self) -> str:
        """``"87 % of 3600 cells have a tile within 0.08; lacks dark blue (#1f3a6b, 9 %)"``."""
        text = (
            f"{100 * self.covered:.0f} % of {self.cells} cells have a tile within "
            f"{COVERAGE_DISTANCE} (Oklab)"
        )
        if self.lacking:
            gaps = ", ".join(f"{g.name} ({g.hex}, {_percent(g.share)})" for g in self.lacking)
            text += f"; lacks {gaps}"
        return text


def colour_name(lab: torch.Tensor) -> list[str]:
    """A plain name for each Oklab colour of ``lab`` ``(n, 3)``: "dark blue", "orange",
    "light grey", "black"."""
    names = []
    for lightness, a, b in lab.tolist():
        chroma = math.hypot(a, b)
        if chroma < _GREY_CHROMA:
            grey = "black" if lightness < 0.25 else "white" if lightness > 0.92 else "grey"
            tone = "dark " if grey == "grey" and lightness < 0.5 else ""
            tone = "light " if grey == "grey" and lightness > 0.75 else tone
            names.append(tone + grey)
            continue
        angle = math.degrees(math.atan2(b, a))
        hue = [name for start, name in _HUES if angle >= start][-1]
        tone = "dark " if lightness < 0.45 else "light " if lightness > 0.8 else ""
        names.append(tone + hue)
    return names


def colour_coverage(
    pool: TilePool, pictures: Iterable[torch.Tensor], cell: int = 16, limit: int = 5
) -> Coverage:
    """How many of the pictures' cells the pool's tiles cover, and the ``limit`` colours it
    lacks most (module docstring).

    Args:
        pool: the tiles (their mean Oklab colours are compared).
        pictures: uint8 ``(3, H, W)`` images or video frames, on the pool's device.
        cell: cell side in the pictures' pixels.
    """
    tiles = pool.mean_lab
    means = [
        analyse_cells(picture[None], cell, statistics=False).block_means[0].flatten(1).T
        for picture in pictures
    ]
    cells = torch.cat(means)
    distance, _ = cost_topk(cells, tiles, 1)
    lacking = cells[distance[:, 0].sqrt() > COVERAGE_DISTANCE]
    gaps: dict[str, list[torch.Tensor]] = {}
    for name, colour in zip(colour_name(lacking), lacking, strict=True):
        gaps.setdefault(name, []).append(colour)
    ranked = sorted(gaps.items(), key=lambda item: -len(item[1]))[:limit]
    return Coverage(
        cells=len(cells),
        covered=1.0 - len(lacking) / max(len(cells), 1),
        lacking=tuple(
            ColourGap(name, _hex(torch.stack(group).mean(0)), len(group) / len(cells))
            for name, group in ranked
        ),
    )


def contact_sheet(pool: TilePool, thumbnail: int = 32, max_tiles: int = 4096) -> torch.Tensor:
    """Every tile of the pool (at most ``max_tiles``, spread evenly over it) as a
    ``thumbnail``-high picture in one uint8 ``(3, H, W)`` sheet, nearly square, ordered by hue
    then lightness (greys first, dark to light)."""
    count = len(pool)
    picked = torch.linspace(0, count - 1, min(count, max_tiles)).round().long().unique()
    lab = pool.mean_lab[picked].cpu()
    chroma = lab[:, 1:].norm(dim=1)
    hue = torch.atan2(lab[:, 2], lab[:, 1])
    hue_band = torch.where(chroma < _GREY_CHROMA, -4.0, (hue * 6 / math.pi).round())
    order = picked[sorted(range(len(picked)), key=lambda i: (hue_band[i], lab[i, 0]))]
    height, width = pool.tile_shape
    size = (thumbnail, max(1, round(thumbnail * width / height)))
    images = resize(pool.images[order.to(pool.images.device)], size)
    columns = math.ceil(math.sqrt(len(order) * size[0] / size[1]))
    rows = math.ceil(len(order) / columns)
    sheet = torch.full((rows * columns, 3, *size), 255, dtype=torch.uint8, device=images.device)
    sheet[: len(order)] = images
    sheet = sheet.view(rows, columns, 3, *size).permute(2, 0, 3, 1, 4)
    return sheet.reshape(3, rows * size[0], columns * size[1])


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %" if share >= 0.01 else "<1 %"


def _hex(lab: torch.Tensor) -> str:
    """``"#rrggbb"`` of one Oklab colour ``(3,)``."""
    red, green, blue = oklab_to_srgb(lab.float().view(3, 1, 1).cpu()).view(3).tolist()
    return f"#{red:02x}{green:02x}{blue:02x}"
