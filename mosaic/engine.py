"""``FrameRenderer``: one frame in, one mosaic out, with everything frames share held once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels import Blend, analyse_cells, srgb_to_oklab
from mosaic.assign import (
    Assignment,
    TileUsage,
    fair_capacities,
    make_problem,
    resolve_min_distance,
    resolve_reuse,
    resolved_method,
    solve,
)
from mosaic.colour import CellStats, ColourHold, tile_stats
from mosaic.config import ConfigError, MosaicConfig
from mosaic.descriptors import block_descriptors
from mosaic.imageops import resize
from mosaic.pool import TilePool
from mosaic.render import render_mosaic_unchecked
from mosaic.stages import NO_TIMER, StageTimer
from mosaic.temporal import TemporalCoherence

# The renderer keeps its tiles in Oklab (float32, 4x the uint8 pixels) up to this size, so colour
# transfer never converts them again; a larger pool converts the chosen tiles of each frame.
TILE_LAB_MAX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class FrameAnalysis:
    """What a source frame gives before any tile is chosen (``FrameRenderer.analyse``).

    Attributes:
        frame: uint8 ``(3, H, W)`` source frame on the processing device.
        grid: ``(rows, cols)`` of its cells.
        features: float32 ``(rows * cols, D)`` descriptors of its cells, row-major.
        cell_stats: Oklab mean and spread of its cells (saturation applied), or ``None`` without
            colour transfer.
    """

    frame: torch.Tensor
    grid: tuple[int, int]
    features: torch.Tensor
    cell_stats: CellStats | None


@dataclass(frozen=True)
class FrameResult:
    """One rendered frame.

    Attributes:
        image: uint8 ``(3, H_out, W_out)`` mosaic on the processing device.
        choice: int64 ``(rows, cols)`` tile index per cell.
        cell_features: float32 ``(rows * cols, D)`` descriptors of the source cells.
        assignment: what the solver returned (total cost, method).
        scene_cut: whether temporal coherence saw a scene cut before this frame (a ``()`` bool
            tensor on the processing device, or ``False`` when there was nothing to compare).
    """

    image: torch.Tensor
    choice: torch.Tensor
    cell_features: torch.Tensor
    assignment: Assignment
    scene_cut: torch.Tensor | bool = False


class FrameRenderer:
    """Renders frames of one size family with one pool and one config.

    Built once per run: crops the pool's tiles to the cells' aspect, moves them to the
    processing device at their output size and computes their descriptors, colour statistics
    and (pool size permitting) Oklab pixels, so each frame only pays for its own work. ``usage``
    counts the tiles its frames used (``TileUsage``). With ``draw=False`` it only analyses and
    chooses (a print draws its own tiles, strip by strip: ``mosaic.print_size``).

    A frame goes through three steps, which a pipeline may run in different threads: ``analyse``
    (descriptors and colour statistics; independent per frame), ``choose`` (the assignment, in
    frame order: it carries temporal coherence) and ``compose`` (the mosaic pixels; independent
    per frame). ``render`` runs the three in turn. Each step takes a ``StageTimer`` that records
    its stages: ``"features"``, ``"assignment"``, ``"render"`` and ``"colour"``.
    """

    def __init__(self, pool: TilePool, config: MosaicConfig, *, draw: bool = True) -> None:
        pool = pool.cropped(config.cell_shape)
        if pool.tile_shape[0] % config.grid or pool.tile_shape[1] % config.grid:
            height, width = pool.tile_shape
            raise ConfigError(
                f"the pool's tiles ({width}x{height} px at the aspect of the cells) must have "
                f"sides that are multiples of grid ({config.grid})"
            )
        self.config = config
        self.device = config.torch_device()
        self.pool_size = len(pool)
        self.sources = pool.sources
        self.tile_features = pool.descriptors(config.grid, config.lightness_weight).to(self.device)
        self.usage = TileUsage(self.pool_size, self.device)
        self.tiles = self.tile_lab = self.tile_stats = None
        if not draw:
            return
        self.tiles = resize(pool.images.to(self.device), config.tile_shape).contiguous()
        if config.color > 0 and 4 * self.tiles.numel() <= TILE_LAB_MAX_BYTES:
            self.tile_lab = srgb_to_oklab(self.tiles)
        self.tile_stats = tile_stats(self.tiles, self.tile_lab) if config.color > 0 else None

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, cols)`` of the cell grid for an ``H x W`` frame."""
        cell_h, cell_w = self.config.cell_shape
        return math.ceil(height / cell_h), math.ceil(width / cell_w)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` of the mosaic of an ``H x W`` frame."""
        return self.config.output_size(height, width)

    def capacities_for(self, height: int, width: int) -> tuple[int, int]:
        """``(lower, upper)`` uses of each tile in frames of this size: fair use's
        (``fair_capacities``), else ``(0, reuse cap)``. Raises ``PoolTooSmallError`` if the
        pool cannot fill the grid."""
        rows, cols = self.grid_shape(height, width)
        if self.config.fair:
            return fair_capacities(rows * cols, self.pool_size)
        return 0, resolve_reuse(self.config.reuse, rows * cols, self.pool_size)

    def reuse_for(self, height: int, width: int) -> int:
        """The reuse cap for frames of this size (raises ``PoolTooSmallError`` if none fits)."""
        return self.capacities_for(height, width)[1]

    def min_distance_for(self, height: int, width: int) -> int:
        """The spacing enforced in frames of this size (``min_distance`` resolved)."""
        reuse = self.reuse_for(height, width)
        return resolve_min_distance(self.config.min_distance, self.pool_size, reuse)

    def settings_summary(self, height: int, width: int) -> str:
        """What this renderer does to an ``H x W`` frame, its ``"auto"`` settings resolved, in
        one line: ``"cells 16x16 px, tiles 32x32 px (output 2560x1440), grid 2, colour 0.6,
        reuse 4 (auto), min distance 1 (auto)"``."""
        config = self.config
        (cell_h, cell_w), (tile_h, tile_w) = config.cell_shape, config.tile_shape
        out_h, out_w = self.output_size(height, width)
        lower, upper = self.capacities_for(height, width)
        parts = [
            f"cells {cell_w}x{cell_h} px, tiles {tile_w}x{tile_h} px (output {out_w}x{out_h})",
            f"grid {config.grid}",
            f"colour {config.color:g}",
        ]
        if config.fair:
            uses = f"{lower}-{upper} times" if lower < upper else f"{upper} times"
            parts.append(f"fair use: each tile {'at most once' if upper == 1 else uses}")
        else:
            auto = " (auto)" if config.reuse == "auto" else ""
            parts.append(f"reuse {upper or 'unlimited'}{auto}")
        auto = " (auto)" if config.min_distance == "auto" else ""
        parts.append(f"min distance {self.min_distance_for(height, width)}{auto}")
        if config.blend:
            parts.append(f"blend {config.blend:g}")
        return ", ".join(parts)

    def analyse(self, frame: torch.Tensor, timer: StageTimer = NO_TIMER) -> FrameAnalysis:
        """Descriptors and colour statistics of a uint8 ``(3, H, W)`` frame (moved to the
        processing device if needed; any strides).

        One pass over the pixels (``kernels.analyse_cells``), the frame read as if padded to a
        multiple of the cell by repeating its last row and column; the cell statistics only with
        colour transfer.
        """
        config = self.config
        frame = frame.to(self.device)
        with timer.stage("features"):
            analysis = analyse_cells(
                frame[None], config.cell_shape, config.grid, statistics=config.color > 0
            )
            stats = None
            if config.color > 0:
                stats = CellStats(analysis.mean[0], analysis.std[0]).saturated(config.saturation)
            features = block_descriptors(analysis.block_means, config.grid, config.lightness_weight)
            grid = self.grid_shape(*frame.shape[-2:])
            return FrameAnalysis(frame, grid, features.reshape(-1, features.shape[-1]), stats)

    def choose(
        self,
        analysis: FrameAnalysis,
        temporal: TemporalCoherence | None = None,
        timer: StageTimer = NO_TIMER,
    ) -> tuple[Assignment, torch.Tensor | bool]:
        """The tile of every cell, and whether temporal coherence saw a scene cut (a bool tensor
        on the device, or ``False`` when there was nothing to compare).

        A video passes its ``temporal`` state, which gives each cell's incumbent tile its
        switching bonus, carries the auction's prices and records this frame's choice; a still
        image passes none. The features come from this renderer, so nothing is checked again
        (checks read values back from the device).
        """
        config = self.config
        height, width = analysis.frame.shape[-2:]
        features = analysis.features
        with timer.stage("assignment"):
            plan = temporal.plan(features, analysis.grid) if temporal is not None else None
            n = features.shape[0]
            incumbent = torch.full((n,), -1, dtype=torch.int64, device=features.device)
            bonus = torch.zeros((), device=features.device)
            if plan is not None and plan.incumbent is not None:
                incumbent, bonus = plan.incumbent, plan.bonus
            problem = make_problem(features, self.tile_features, incumbent, bonus)
            lower, reuse = self.capacities_for(height, width)
            method = resolved_method(
                config.method, reuse, n, self.pool_size, lower,
                device=features.device, video=temporal is not None,
            )  # fmt: skip
            warm_start = None
            if method == "auction" and temporal is not None:
                warm_start = temporal.auction_state(problem, min(reuse, n))
            spacing = self.min_distance_for(height, width)
            assignment = solve(
                problem,
                analysis.grid,
                reuse,
                method,
                spacing,
                warm_start,
                lower=lower,
                still=temporal is None,
            )
            self.usage.add(assignment.tiles, assignment.clashes)
            if temporal is not None:
                temporal.update(features, assignment.tiles, assignment.total)
        return assignment, plan.scene_cut if plan else False

    def colour_hold(self) -> ColourHold | None:
        """A video's colour state for ``compose`` (``TemporalSettings.colour_hold``), or ``None``
        without colour transfer."""
        if self.config.color == 0:
            return None
        return ColourHold(self.config.temporal.colour_hold)

    def compose(
        self,
        analysis: FrameAnalysis,
        choice: torch.Tensor,
        timer: StageTimer = NO_TIMER,
        hold: ColourHold | None = None,
        pixel_format: str = "rgb",
    ) -> torch.Tensor:
        """The mosaic of the analysed frame with tiles ``choice`` (int64 ``(rows, cols)``),
        cropped to the frame's size at the output tile size, the source blended over it by
        ``config.blend``: uint8 ``(3, H_out, W_out)``, or
        with ``pixel_format="yuv420p"`` the I420 bytes ``(H_out' * 3 // 2, W_out')`` a video
        encoder takes (sizes rounded up to even; ``kernels.composite_tiles``). A video passes
        its ``colour_hold()``, frame after frame in order. Reads nothing back from the device.
        """
        config = self.config
        size = self.output_size(*analysis.frame.shape[-2:])
        return render_mosaic_unchecked(
            self.tiles,
            choice,
            color_strength=config.color,
            cell_stats=analysis.cell_stats,
            tile_stats=self.tile_stats,
            tile_lab=self.tile_lab,
            hold=hold,
            size=size,
            pixel_format=pixel_format,
            blend=Blend(analysis.frame, config.blend) if config.blend else None,
            timer=timer,
        )

    def render(
        self,
        frame: torch.Tensor,
        temporal: TemporalCoherence | None = None,
        timer: StageTimer = NO_TIMER,
        hold: ColourHold | None = None,
    ) -> FrameResult:
        """Render one uint8 ``(3, H, W)`` frame: ``analyse``, ``choose`` and ``compose``.

        Frames of a video pass their ``temporal`` state and ``colour_hold()``, in order."""
        analysis = self.analyse(frame, timer)
        assignment, scene_cut = self.choose(analysis, temporal, timer)
        choice = assignment.tiles.reshape(analysis.grid)
        image = self.compose(analysis, choice, timer, hold)
        return FrameResult(image, choice, analysis.features, assignment, scene_cut)
