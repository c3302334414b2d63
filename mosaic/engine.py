"""``FrameRenderer``: one frame in, one mosaic out, with everything frames share held once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels import analyse_cells, srgb_to_oklab
from mosaic.assign import Assignment, make_problem, resolve_reuse, resolved_method, solve
from mosaic.config import ConfigError, MosaicConfig
from mosaic.descriptors import block_descriptors
from mosaic.imageops import resize
from mosaic.pool import TilePool
from mosaic.render import CellStats, ColourHold, render_mosaic_unchecked, tile_stats
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

    Built once per run: moves the pool's tiles to the processing device at their output size and
    computes their descriptors, colour statistics and (pool size permitting) Oklab pixels, so each
    frame only pays for its own work.

    A frame goes through three steps, which a pipeline may run in different threads: ``analyse``
    (descriptors and colour statistics; independent per frame), ``choose`` (the assignment, in
    frame order: it carries temporal coherence) and ``compose`` (the mosaic pixels; independent
    per frame). ``render`` runs the three in turn. Each step takes a ``StageTimer`` that records
    its stages: ``"features"``, ``"assignment"``, ``"render"`` and ``"colour"``.
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
        self.tile_lab = None
        if config.color > 0 and 4 * self.tiles.numel() <= TILE_LAB_MAX_BYTES:
            self.tile_lab = srgb_to_oklab(self.tiles)
        self.tile_stats = tile_stats(self.tiles, self.tile_lab) if config.color > 0 else None

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, cols)`` of the cell grid for an ``H x W`` frame."""
        cell = self.config.cell
        return math.ceil(height / cell), math.ceil(width / cell)

    def reuse_for(self, height: int, width: int) -> int:
        """The reuse cap for frames of this size (raises ``PoolTooSmallError`` if none fits)."""
        rows, cols = self.grid_shape(height, width)
        return resolve_reuse(self.config.reuse, rows * cols, self.pool_size)

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
                frame[None], config.cell, config.grid, statistics=config.color > 0
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
                incumbent, bonus = plan.incumbent, torch.as_tensor(plan.bonus)
            problem = make_problem(features, self.tile_features, incumbent, bonus)
            reuse = self.reuse_for(height, width)
            method = resolved_method(config.method, reuse, n, self.pool_size)
            warm_start = None
            if method == "auction" and temporal is not None:
                warm_start = temporal.auction_state(problem, min(reuse, n))
            assignment = solve(
                problem, analysis.grid, reuse, method, config.min_distance, warm_start
            )
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
        cropped to the frame's size at the output tile size: uint8 ``(3, H_out, W_out)``, or
        with ``pixel_format="yuv420p"`` the I420 bytes ``(H_out' * 3 // 2, W_out')`` a video
        encoder takes (sizes rounded up to even; ``kernels.composite_tiles``). A video passes
        its ``colour_hold()``, frame after frame in order. Reads nothing back from the device.
        """
        config = self.config
        height, width = analysis.frame.shape[-2:]
        tile = self.tiles.shape[-1]
        size = (max(1, height * tile // config.cell), max(1, width * tile // config.cell))
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
