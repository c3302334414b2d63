"""``FrameRenderer``: one frame in, one mosaic out, with everything frames share held once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mosaic.assign import Assignment, assign_tiles, resolve_reuse
from mosaic.config import ConfigError, MosaicConfig
from mosaic.descriptors import descriptors
from mosaic.imageops import pad_to_multiple, resize
from mosaic.pool import TilePool
from mosaic.render import cell_stats, render_mosaic, tile_stats
from mosaic.temporal import TemporalCoherence


@dataclass(frozen=True)
class FrameResult:
    """One rendered frame.

    Attributes:
        image: uint8 ``(3, H_out, W_out)`` mosaic on the processing device.
        choice: int64 ``(rows, cols)`` tile index per cell.
        cell_features: float32 ``(rows * cols, D)`` descriptors of the source cells.
        assignment: what the solver returned (total cost, method).
        scene_cut: whether temporal coherence saw a scene cut before this frame.
    """

    image: torch.Tensor
    choice: torch.Tensor
    cell_features: torch.Tensor
    assignment: Assignment
    scene_cut: bool = False


class FrameRenderer:
    """Renders frames of one size family with one pool and one config.

    Built once per run: moves the pool's tiles to the processing device at their output size and
    computes their descriptors and colour statistics, so each frame only pays for its own work.
    """

    def __init__(self, pool: TilePool, config: MosaicConfig) -> None:
        if pool.tile_size % config.grid:
            raise ConfigError(
                f"the pool's tile size ({pool.tile_size}) must be a multiple of grid "
                f"({config.grid})"
            )
        self.config = config
        self.device = config.torch_device()
        self.pool_size = len(pool)
        self.tile_features = pool.descriptors(config.grid, config.lightness_weight).to(self.device)
        output_tile = config.tile_size or config.cell
        self.tiles = resize(pool.images.to(self.device), output_tile).contiguous()
        self.tile_stats = tile_stats(self.tiles) if config.color > 0 else None

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, cols)`` of the cell grid for an ``H x W`` frame."""
        cell = self.config.cell
        return math.ceil(height / cell), math.ceil(width / cell)

    def reuse_for(self, height: int, width: int) -> int:
        """The reuse cap for frames of this size (raises ``PoolTooSmallError`` if none fits)."""
        rows, cols = self.grid_shape(height, width)
        return resolve_reuse(self.config.reuse, rows * cols, self.pool_size)

    def render(self, frame: torch.Tensor, temporal: TemporalCoherence | None = None) -> FrameResult:
        """Render one uint8 ``(3, H, W)`` frame (moved to the processing device if needed).

        A video passes its ``temporal`` state, which gives each cell's incumbent tile its
        switching bonus and records this frame's choice; a still image passes none.
        """
        config = self.config
        frame = frame.to(self.device)
        height, width = frame.shape[-2:]
        rows, cols = self.grid_shape(height, width)
        padded = pad_to_multiple(frame, config.cell)
        features = descriptors(padded[None], config.cell, config.grid, config.lightness_weight)
        features = features.reshape(rows * cols, -1)
        plan = temporal.plan(features) if temporal is not None else None
        assignment = assign_tiles(
            features,
            self.tile_features,
            (rows, cols),
            reuse=self.reuse_for(height, width),
            method=config.method,
            min_distance=config.min_distance,
            incumbent=plan.incumbent if plan else None,
            switch_bonus=plan.bonus if plan else 0.0,
        )
        if temporal is not None:
            temporal.update(features, assignment.tiles, assignment.cost)
        choice = assignment.tiles.reshape(rows, cols)
        stats = None
        if config.color > 0:
            stats = cell_stats(padded, config.cell).saturated(config.saturation)
        image = render_mosaic(
            self.tiles,
            choice,
            color_strength=config.color,
            cell_stats=stats,
            tile_stats=self.tile_stats,
        )
        tile = self.tiles.shape[-1]
        out_h, out_w = height * tile // config.cell, width * tile // config.cell
        return FrameResult(
            image[:, :out_h, :out_w],
            choice,
            features,
            assignment,
            plan.scene_cut if plan else False,
        )
