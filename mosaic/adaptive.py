"""Adaptive cells for still images: a quadtree of cells, small where the picture has detail and
large where it is flat (sky, walls), each drawn with a tile of its own size.

The picture is first cut into the grid of the smallest cells, ``config.cell`` (padded at the
bottom and right by repeating the edge, as for equal cells). Cells of ``2**k`` smallest cells a
side, ``k = config.adaptive``, are laid over it from the top-left corner wherever they fit
whole; each is kept if its detail energy is at most ``config.split_threshold``, and otherwise
split into four, which are judged the same way, down to the smallest cells, which are always
kept. Where a large cell does not fit (the last rows and columns of the grid), the cells of the
next size down are tried. So the cells cover the grid exactly, without overlap; a cell of level
``l`` is ``2**l`` smallest cells a side and starts on a multiple of ``2**l``.

The detail energy is ``kernels.block_energy``: the mean squared step of luma (0 to 1) between
neighbouring pixels inside the cell, horizontal plus vertical. It does not grow with the cell's
size, so one threshold serves every level: a soft gradient is about 1e-4, a textured wall 1e-3,
foliage or text 1e-2 and more.

Every cell is matched like an equal cell: its ``grid x grid`` Oklab block means against the
tiles' (``mosaic.descriptors``), one assignment over all the cells together, so the reuse cap,
fair use and the colour transfer count and treat every cell alike, whatever its size.

Spacing (``min_distance = d``) is measured in smallest cells: the same tile never appears in two
cells that come within ``d`` smallest cells of each other (Chebyshev; ``d = 1``: no tile in two
cells that touch, corners included). On equal cells that is the usual rule. The repair is a
single greedy pass on the host over the cells in order (a still is assigned once): a cell that
shares its tile with an earlier neighbour moves to its nearest tile that no neighbour shows and
that has a use left (under fair use, only if its own tile stays at or above its lower count).
It does not swap tiles, so when every candidate is at its cap the clash stays and is counted.

The tiles of the smallest cells are the renderer's own; a larger cell's tile is drawn at its
size, ``2**l`` times the smallest, from the pool's tiles when they are that large, else decoded
again from its photo (``TilePool.load_tiles``; a pool made from a tensor, or from photos at
another aspect than the cells', enlarges its own tiles, cropped to the cells' aspect). Only the
tiles a size's cells show are made, a size at a time, so the tiles held never exceed the
mosaic's own pixels. Each size's cells are
drawn by ``kernels.composite_tiles`` as one row of cells and copied into place; a blend is laid
over the whole picture afterwards by the same kernel.

Print-size output in strips is not implemented for adaptive cells (``render_print`` refuses).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kernels import Blend, ColourTransfer, analyse_cells, block_energy, composite_tiles, cost_topk
from kernels.cell_analysis import MAX_STATISTICS_CELL, repeat_edges
from mosaic.assign import (
    Assignment,
    Problem,
    fair_capacities,
    make_problem,
    resolve_reuse,
    resolved_method,
    solve,
)
from mosaic.colour import MAX_SPREAD_GAIN, SPREAD_EPS, CellStats, tile_stats
from mosaic.config import ConfigError, MosaicConfig
from mosaic.descriptors import block_descriptors
from mosaic.engine import FrameRenderer
from mosaic.imageops import resize
from mosaic.metrics import fidelity
from mosaic.pool import TilePool
from mosaic.reports import ImageStats, finished_stats, warn_if_repetitive

__all__ = ["AdaptiveRenderer", "QuadtreeCells", "quadtree_cells", "render_adaptive", "split_cells"]

# Candidate tiles a clashing cell looks at beyond its neighbours' count.
EXTRA_CANDIDATES = 8


@dataclass(frozen=True)
class QuadtreeCells:
    """The cells of a quadtree over a ``rows x cols`` grid of smallest cells.

    Attributes:
        top: int64 ``(N,)``, each cell's first row, in smallest cells.
        left: int64 ``(N,)``, its first column.
        level: int64 ``(N,)``: the cell is ``2**level`` smallest cells a side.
        grid: ``(rows, cols)`` of the smallest cells.

    Cells are in row-major order of their top-left corners.
    """

    top: torch.Tensor
    left: torch.Tensor
    level: torch.Tensor
    grid: tuple[int, int]

    def __len__(self) -> int:
        return self.level.numel()

    def owners(self) -> torch.Tensor:
        """int64 ``(rows, cols)``: the cell covering each smallest cell."""
        rows, cols = self.grid
        owner = torch.empty(rows, cols, dtype=torch.int64, device=self.level.device)
        for level in self.level.unique().tolist():
            size = 1 << level
            index = (self.level == level).nonzero().squeeze(1)
            blocks = owner[: rows // size * size, : cols // size * size]
            blocks = blocks.view(rows // size, size, cols // size, size)
            blocks[self.top[index] // size, :, self.left[index] // size, :] = index[:, None, None]
        return owner

    def counts(self) -> dict[int, int]:
        """Cells of each level present, ``{level: count}``, smallest first."""
        levels, counts = self.level.unique(return_counts=True)
        return dict(zip(levels.tolist(), counts.tolist(), strict=True))


def split_cells(
    energies: dict[int, torch.Tensor], grid: tuple[int, int], threshold: float
) -> QuadtreeCells:
    """The quadtree's cells from the detail energy of every level (module docstring).

    Args:
        energies: ``{level: float (rows >> level, cols >> level)}`` for levels 1 to ``k``: the
            energy of every aligned block of ``2**level`` smallest cells a side that fits whole.
        grid: ``(rows, cols)`` of the smallest cells.
        threshold: a block is split when its energy is above this.

    Returns:
        ``QuadtreeCells`` on the energies' device (the CPU with none).
    """
    rows, cols = grid
    device = next(iter(energies.values())).device if energies else torch.device("cpu")
    covered = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    found = []
    for level in range(max(energies, default=0), -1, -1):
        size = 1 << level
        block_rows, block_cols = rows >> level, cols >> level
        if block_rows == 0 or block_cols == 0:
            continue
        blocks = covered[: block_rows * size, : block_cols * size]
        blocks = blocks.view(block_rows, size, block_cols, size)
        # Larger cells cover whole aligned blocks: a block is free if its first cell is.
        keep = ~blocks[:, 0, :, 0]
        if level:
            keep &= energies[level] <= threshold
        blocks |= keep[:, None, :, None]
        block_row, block_col = keep.nonzero(as_tuple=True)
        found.append((block_row * size, block_col * size, torch.full_like(block_row, level)))
    top, left, level = (torch.cat(parts) for parts in zip(*found, strict=True))
    order = torch.argsort(top * cols + left)
    return QuadtreeCells(top[order], left[order], level[order], grid)


def quadtree_cells(
    frame: torch.Tensor, cell: tuple[int, int], levels: int, threshold: float
) -> QuadtreeCells:
    """The adaptive cells of a uint8 ``(3, H, W)`` frame (any device, any strides): smallest
    cells of ``cell = (height, width)`` pixels, the largest ``2**levels`` times that a side,
    split where ``kernels.block_energy`` is above ``threshold``."""
    padded = repeat_edges(frame, cell)
    rows, cols = padded.shape[1] // cell[0], padded.shape[2] // cell[1]
    energies = {}
    for level in range(1, levels + 1):
        block = (cell[0] << level, cell[1] << level)
        if rows >> level and cols >> level:
            energies[level] = block_energy(padded[None], block)[0]
    return split_cells(energies, (rows, cols), threshold)


def _level_view(
    frame: torch.Tensor, cells: QuadtreeCells, level: int, cell: tuple[int, int]
) -> torch.Tensor:
    """The part of the padded ``frame`` that the aligned blocks of ``level`` cover."""
    rows, cols = cells.grid[0] >> level, cells.grid[1] >> level
    return frame[:, : rows * (cell[0] << level), : cols * (cell[1] << level)]


@dataclass(frozen=True)
class AdaptiveAnalysis:
    """The cells of a still and what they show (``AdaptiveRenderer.describe_cells``).

    Attributes:
        frame: uint8 ``(3, H, W)``, the source on the processing device.
        cells: the quadtree's cells, ``N`` of them.
        features: float32 ``(N, D)``, each cell's descriptor.
        cell_stats: each cell's Oklab mean and spread, ``(N, 3)`` each (saturation applied),
            or ``None`` without colour transfer.
    """

    frame: torch.Tensor
    cells: QuadtreeCells
    features: torch.Tensor
    cell_stats: CellStats | None


class AdaptiveRenderer(FrameRenderer):
    """A ``FrameRenderer`` for one still with adaptive cells: the same pool, tiles and settings,
    its assignment rules counting the quadtree's cells (``plan`` them first)."""

    def __init__(self, pool: TilePool, config: MosaicConfig) -> None:
        super().__init__(pool, config)
        self.pool = pool
        self.cells: QuadtreeCells | None = None

    def plan(self, frame: torch.Tensor) -> QuadtreeCells:
        """Cut a uint8 ``(3, H, W)`` frame into its adaptive cells, which the renderer then
        counts in its capacities (``reuse``, fair use) and its summary."""
        config = self.config
        cell_h, cell_w = config.cell_shape
        if config.color > 0 and cell_w << config.adaptive > MAX_STATISTICS_CELL:
            raise ConfigError(
                f"adaptive {config.adaptive} makes cells {cell_w << config.adaptive} px wide; "
                f"colour transfer measures cells up to {MAX_STATISTICS_CELL} px: lower adaptive"
            )
        self.cells = quadtree_cells(
            frame.to(self.device), (cell_h, cell_w), config.adaptive, config.split_threshold
        )
        return self.cells

    def capacities_for(self, height: int, width: int) -> tuple[int, int]:
        """As ``FrameRenderer.capacities_for``, over the planned cells of every size."""
        if self.cells is None:
            raise RuntimeError("plan the adaptive cells before asking for their capacities")
        if self.config.fair:
            return fair_capacities(len(self.cells), self.pool_size)
        return 0, resolve_reuse(self.config.reuse, len(self.cells), self.pool_size)

    def settings_summary(self, height: int, width: int) -> str:
        """``FrameRenderer.settings_summary``, and the adaptive cells: ``"..., adaptive cells
        16x16 to 128x128 px, split above 0.002"``."""
        cell_h, cell_w = self.config.cell_shape
        largest = max(self.cells.counts())
        return (
            f"{super().settings_summary(height, width)}, adaptive cells {cell_w}x{cell_h} to "
            f"{cell_w << largest}x{cell_h << largest} px, split above "
            f"{self.config.split_threshold:g}"
        )

    def describe_cells(self, frame: torch.Tensor) -> AdaptiveAnalysis:
        """Descriptors and colour statistics of the planned cells of a uint8 ``(3, H, W)``
        frame: ``kernels.analyse_cells`` once per cell size, each cell read whole."""
        config, cells = self.config, self.cells
        frame = frame.to(self.device)
        cell = config.cell_shape
        padded = repeat_edges(frame, cell)
        features = stats = None
        for level in cells.counts():
            view = _level_view(padded, cells, level, cell)
            analysis = analyse_cells(
                view[None], (cell[0] << level, cell[1] << level), config.grid,
                statistics=config.color > 0,
            )  # fmt: skip
            level_features = block_descriptors(
                analysis.block_means, config.grid, config.lightness_weight
            )[0]
            if features is None:
                features = level_features.new_empty(len(cells), level_features.shape[-1])
                if config.color > 0:
                    stats = (features.new_empty(len(cells), 3), features.new_empty(len(cells), 3))
            index, row, col = self._level_cells(level)
            features[index] = level_features[row, col]
            if stats is not None:
                stats[0][index] = analysis.mean[0, row, col]
                stats[1][index] = analysis.std[0, row, col]
        cell_stats = None if stats is None else CellStats(*stats).saturated(config.saturation)
        return AdaptiveAnalysis(frame, cells, features, cell_stats)

    def _level_cells(self, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The indices of the cells of ``level`` and their block rows and columns at it."""
        cells = self.cells
        index = (cells.level == level).nonzero().squeeze(1)
        return index, cells.top[index] >> level, cells.left[index] >> level

    def choose_cells(self, analysis: AdaptiveAnalysis) -> Assignment:
        """The tile of every cell: one assignment over all of them under the reuse cap or fair
        use, then the spacing repair on the cells' neighbours (module docstring)."""
        config = self.config
        height, width = analysis.frame.shape[-2:]
        features = analysis.features
        n = features.shape[0]
        none = torch.full((n,), -1, dtype=torch.int64, device=features.device)
        problem = make_problem(
            features, self.tile_features, none, none.new_zeros((), dtype=torch.float32)
        )
        lower, upper = self.capacities_for(height, width)
        method = resolved_method(config.method, upper, n, self.pool_size, lower)
        assignment = solve(problem, (1, n), upper, method, lower=lower, still=True)
        distance = self.min_distance_for(height, width)
        if distance and upper != 1:
            tiles, clashes = repair_spacing(
                problem, assignment.tiles, neighbour_pairs(analysis.cells, distance), upper, lower
            )
            total = problem.distance(torch.arange(n, device=tiles.device), tiles).double().sum()
            assignment = Assignment(tiles, total, assignment.method, None, clashes)
        self.usage.add(assignment.tiles, assignment.clashes)
        return assignment

    def compose_cells(self, analysis: AdaptiveAnalysis, tiles: torch.Tensor) -> torch.Tensor:
        """The mosaic: uint8 ``(3, H_out, W_out)``, tile ``tiles[i]`` (int64 ``(N,)``) drawn
        at the size of cell ``i``, colour-transferred, the source blended over it by
        ``config.blend``."""
        config, cells = self.config, analysis.cells
        (rows, cols), (tile_h, tile_w) = cells.grid, config.tile_shape
        mosaic = torch.empty(3, rows * tile_h, cols * tile_w, dtype=torch.uint8, device=self.device)
        for level in cells.counts():
            index, row, col = self._level_cells(level)
            shape = (tile_h << level, tile_w << level)
            drawn, local, drawn_stats = self._tiles_at(tiles[index], level, shape)
            transfer = None
            if analysis.cell_stats is not None:
                stats = analysis.cell_stats
                transfer = ColourTransfer(
                    config.color, *drawn_stats, stats.mean[index][None], stats.std[index][None],
                    MAX_SPREAD_GAIN, SPREAD_EPS,
                )  # fmt: skip
            lab = self.tile_lab if level == 0 else None
            row_of_cells = composite_tiles(drawn, local[None], transfer, tile_lab=lab)
            blocks = mosaic[:, : (rows >> level) * shape[0], : (cols >> level) * shape[1]]
            blocks = blocks.view(3, rows >> level, shape[0], cols >> level, shape[1])
            blocks[:, row, :, col, :] = row_of_cells.view(3, shape[0], -1, shape[1]).permute(
                2, 0, 1, 3
            )
        size = self.output_size(*analysis.frame.shape[-2:])
        if not config.blend:
            return mosaic[:, : size[0], : size[1]]
        whole = torch.zeros((1, 1), dtype=torch.int64, device=self.device)
        return composite_tiles(
            mosaic[None], whole, size=size, blend=Blend(analysis.frame, config.blend)
        )

    def _tiles_at(
        self, chosen: torch.Tensor, level: int, shape: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The tiles ``chosen`` (int64 ``(n,)`` pool indices) at ``shape``: ``(tiles, local,
        stats)``, ``local`` each cell's index into ``tiles``, ``stats`` their Oklab mean and
        spread with colour transfer. The renderer's own tiles at level 0; above, only the
        distinct tiles chosen, resized from the pool's when those are large enough, else
        decoded again from their photos (``TilePool.load_tiles``; a pool whose tiles had to be
        cropped to the cells' aspect, or made from a tensor, resizes its cropped tiles)."""
        if level == 0:
            return self.tiles, chosen, self.tile_stats
        used, local = torch.unique(chosen, return_inverse=True)
        pool = self.pool.cropped(self.config.cell_shape)
        if shape[0] <= pool.tile_shape[0] and shape[1] <= pool.tile_shape[1]:
            drawn = resize(pool.images[used.to(pool.images.device)], shape)
        else:
            drawn = pool.load_tiles(used.tolist(), shape)
        drawn = drawn.to(self.device).contiguous()
        return drawn, local, tile_stats(drawn) if self.config.color > 0 else None


def neighbour_pairs(cells: QuadtreeCells, distance: int) -> torch.Tensor:
    """int64 ``(P, 2)``: every pair ``(a, b)``, ``a < b``, of cells that come within
    ``distance`` smallest cells of each other (Chebyshev), each pair once."""
    owner = cells.owners()
    rows, cols = cells.grid
    pairs = []
    for dy in range(distance + 1):
        for dx in range(-distance, distance + 1):
            if dy == 0 and dx <= 0:
                continue
            here = owner[: rows - dy, max(-dx, 0) : cols - max(dx, 0)]
            there = owner[dy:, max(dx, 0) : cols + min(dx, 0)]
            pairs.append(torch.stack([here.reshape(-1), there.reshape(-1)], 1))
    pairs = torch.cat(pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].sort(1).values
    return pairs.unique(dim=0)


def repair_spacing(
    problem: Problem, tiles: torch.Tensor, pairs: torch.Tensor, upper: int, lower: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``tiles (N,)`` with no tile in two neighbouring cells (``pairs``, from
    ``neighbour_pairs``) where a greedy pass in cell order can manage it (module docstring),
    and the clashes left (an int64 ``()`` tensor). ``upper`` is the reuse cap (0 unlimited),
    ``lower`` every tile's fewest uses; both still hold."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    device = tiles.device
    pairs_np = pairs.cpu().numpy()
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in pairs_np.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    degree = max((len(around) for around in neighbours), default=0)
    count = min(m, degree + 1 + EXTRA_CANDIDATES)
    assign = tiles.cpu().numpy().copy()
    use = np.bincount(assign, minlength=m)
    cap = upper or n
    # The nearest tiles, then the nearest with a use left (all may be full among the first).
    room = torch.where(torch.as_tensor(use < cap, device=device), 0.0, 1e4)
    nearest = cost_topk(problem.cells, problem.tiles, count)[1].cpu().numpy()
    with_room = cost_topk(problem.cells, problem.tiles, count, bias=room)[1].cpu().numpy()
    clashes = 0
    for cell in range(n):
        earlier = {int(assign[other]) for other in neighbours[cell] if other < cell}
        mine = int(assign[cell])
        if mine not in earlier:
            continue
        shown = {int(assign[other]) for other in neighbours[cell]}
        options = (t for t in (*nearest[cell], *with_room[cell]) if use[t] < cap and t not in shown)
        new = next(options, None) if use[mine] > lower else None
        if new is None:
            clashes += 1
            continue
        use[mine] -= 1
        use[new] += 1
        assign[cell] = new
    result = torch.from_numpy(assign).to(device)
    return result, torch.tensor(clashes, dtype=torch.int64, device=device)


def render_adaptive(
    frame: torch.Tensor, pool: TilePool, config: MosaicConfig, step_done: Callable[[], None]
) -> tuple[torch.Tensor, ImageStats]:
    """``render_image_with_stats`` with adaptive cells: uint8 ``(3, H_out, W_out)`` on the
    processing device and its ``ImageStats`` (``grid`` the smallest cells', ``cells`` the
    quadtree's count per size). ``step_done()`` is called after each of the three steps."""
    started = time.perf_counter()
    renderer = AdaptiveRenderer(pool, config)
    height, width = frame.shape[-2:]
    cells = renderer.plan(frame)
    warn_if_repetitive(config, renderer.reuse_for(height, width), len(cells), renderer.pool_size)
    analysis = renderer.describe_cells(frame)
    step_done()
    assignment = renderer.choose_cells(analysis)
    step_done()
    mosaic = renderer.compose_cells(analysis, assignment.tiles)
    step_done()
    score = fidelity(analysis.frame, mosaic, cells.grid)["mean"]
    stats = finished_stats(renderer, assignment, (height, width), started, score)
    cell_h, cell_w = config.cell_shape
    sizes = tuple(
        (f"{cell_w << level}x{cell_h << level}", count) for level, count in cells.counts().items()
    )
    return mosaic, dataclasses.replace(stats, cells=sizes)
