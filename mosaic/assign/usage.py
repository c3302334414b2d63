"""Tile usage over a render: how many distinct tiles it used, which one the most, and what the
spacing rule could not fix. Counted on the device frame by frame (fixed shapes, no host sync);
``read`` turns the counts into numbers once, at the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class UsageReport:
    """What ``TileUsage.read`` returns.

    Attributes:
        tiles_used: distinct tiles used at least once.
        pool_size: tiles in the pool.
        most_used: index of the tile used most over every frame (the lowest on a tie).
        most_used_cells: its uses, summed over the frames.
        most_in_a_frame: the most uses of any one tile in a single frame.
        frames: frames counted.
        clashes: cells left beside a copy of their tile by the ``min_distance`` repair, summed
            over the frames (0 without the rule, or when it always held).
    """

    tiles_used: int
    pool_size: int
    most_used: int
    most_used_cells: int
    most_in_a_frame: int
    frames: int
    clashes: int

    def summary(self, most_used_name: str | None = None) -> str:
        """``"412 of 919 tiles used, the most used beach.jpg (4 cells)"``: the most used tile by
        its name (its ``TilePool.sources`` entry) when given, else its index."""
        name = most_used_name or f"tile {self.most_used}"
        per_frame = "" if self.frames <= 1 else f", at most {self.most_in_a_frame} a frame"
        cells = f"{self.most_used_cells} cell{'' if self.most_used_cells == 1 else 's'}"
        text = (
            f"{self.tiles_used} of {self.pool_size} tiles used, the most used {name} "
            f"({cells}{per_frame})"
        )
        if self.clashes:
            text += f"; {self.clashes} cells beside a copy of their tile (pool too small)"
        return text


class TileUsage:
    """Per-tile use counts of a render's frames, kept on ``device``."""

    def __init__(self, pool_size: int, device: torch.device) -> None:
        self._counts = torch.zeros(pool_size, dtype=torch.int64, device=device)
        self._most_in_a_frame = torch.zeros((), dtype=torch.int64, device=device)
        self._clashes = torch.zeros((), dtype=torch.int64, device=device)
        self.frames = 0

    def add(self, tiles: torch.Tensor, clashes: torch.Tensor | None = None) -> None:
        """One frame: int64 tile per cell (any shape), and the spacing clashes its assignment
        left (a ``()`` tensor, or ``None``)."""
        counts = torch.zeros_like(self._counts).scatter_add_(
            0, tiles.reshape(-1), torch.ones_like(tiles.reshape(-1))
        )
        self._counts += counts
        torch.maximum(self._most_in_a_frame, counts.max(), out=self._most_in_a_frame)
        if clashes is not None:
            self._clashes += clashes
        self.frames += 1

    def read(self) -> UsageReport:
        """The counts as Python numbers (reads the device once)."""
        counts = self._counts.cpu()
        most_used = int(counts.argmax()) if counts.numel() else 0
        return UsageReport(
            tiles_used=int((counts > 0).sum()),
            pool_size=counts.numel(),
            most_used=most_used,
            most_used_cells=int(counts[most_used]) if counts.numel() else 0,
            most_in_a_frame=int(self._most_in_a_frame),
            frames=self.frames,
            clashes=int(self._clashes),
        )
