"""The spatial rule: the same tile never within ``min_distance`` cells (Chebyshev) of itself.

Enforced after the solver, by a repair: of each pair of equal tiles that are too close, the later
cell (row-major) gives its tile up; the freed cells then take, in parallel rounds, the cheapest
tile (bonus included) that has a use left and appears nowhere in their neighbourhood, from their
``(2d + 1)^2 + REPAIR_EXTRA`` nearest tiles and the incumbent (with unlimited reuse one of the
first ``(2d + 1)^2`` is always clear), else from all tiles. Each round a tile takes at most one
new cell, so cells placed together never clash. Only the freed cells move, and each keeps its
next-best admissible tile, so the cost stays close to the solver's; the result is no longer
guaranteed optimal when the rule had to move cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import cost_matrix, cost_topk
from mosaic.assign.capacity import accept_within_capacity
from mosaic.assign.problem import Problem

REPAIR_EXTRA = 8


def spacing_conflicts(assign: torch.Tensor, grid: tuple[int, int], distance: int) -> torch.Tensor:
    """bool ``(N,)``: cells whose tile also sits at an earlier cell (row-major) within
    ``distance`` (Chebyshev). ``assign`` is int64 ``(N,)`` row-major, -1 = no tile."""
    rows, cols = grid
    board = assign.view(rows, cols)
    conflict = torch.zeros_like(board, dtype=torch.bool)
    for dy in range(distance + 1):
        for dx in range(-distance, distance + 1):
            if dy == 0 and dx <= 0:
                continue  # only earlier cells: rows above, or to the left on the same row
            columns = slice(max(dx, 0), cols + min(dx, 0))
            here = board[dy:, columns]
            earlier = board[: rows - dy, max(-dx, 0) : cols - max(dx, 0)]
            conflict[dy:, columns] |= (here == earlier) & (here >= 0)
    return conflict.view(-1)


def neighbourhood_tiles(
    assign: torch.Tensor, grid: tuple[int, int], cells: torch.Tensor, distance: int
) -> torch.Tensor:
    """int64 ``(len(cells), (2d + 1)^2)``: the tiles around each cell (itself included), -1 where
    there is none or the window leaves the grid."""
    rows, cols = grid
    side = 2 * distance + 1
    padded = F.pad(assign.view(1, rows, cols), (distance,) * 4, value=-1).view(-1)
    steps = torch.arange(side, device=cells.device)
    window = (steps[:, None] * (cols + 2 * distance) + steps[None, :]).view(-1)
    corner = (cells // cols) * (cols + 2 * distance) + cells % cols
    return padded[corner[:, None] + window[None, :]]


def enforce_spacing(
    problem: Problem, assign: torch.Tensor, grid: tuple[int, int], distance: int, reuse: int
) -> torch.Tensor:
    """Return ``assign (N,)`` repaired so no tile repeats within ``distance``; ``reuse`` is the
    cap (0 = unlimited) and holds on the result. Raises ``ValueError`` if a freed cell has no
    admissible tile left (the repair is greedy: a cleverer arrangement may exist when the pool
    is barely large enough)."""
    movers = spacing_conflicts(assign, grid, distance).nonzero().squeeze(1)
    if movers.numel() == 0:
        return assign
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    assign = assign.clone()
    assign[movers] = -1
    capacity = torch.full((m,), reuse or n, dtype=torch.int64, device=assign.device)
    capacity -= torch.bincount(assign[assign >= 0], minlength=m)

    count = min(m, (2 * distance + 1) ** 2 + REPAIR_EXTRA)
    values, nearest = cost_topk(problem.cells[movers], problem.tiles, count)
    incumbent = problem.incumbent[movers]
    incumbent = torch.where(incumbent >= 0, incumbent, nearest[:, 0])
    candidates = torch.cat([nearest, incumbent[:, None]], 1)
    costs = torch.cat([values, problem.distance(movers, incumbent)[:, None]], 1)
    costs -= problem.bonus_for(movers[:, None], candidates)
    stranded = _place(assign, capacity, grid, distance, movers, candidates, costs)
    if stranded.numel():
        every_tile = torch.arange(m, device=assign.device).expand(stranded.numel(), m)
        costs = cost_matrix(problem.cells[stranded], problem.tiles)
        costs -= problem.bonus_for(stranded[:, None], every_tile)
        stranded = _place(assign, capacity, grid, distance, stranded, every_tile, costs)
    if stranded.numel():
        rows, cols = divmod(int(stranded[0]), grid[1])
        raise ValueError(
            f"min_distance={distance} could not be honoured: around cell (row {rows}, column "
            f"{cols}) every tile with a use left already sits within {distance} cell(s); lower "
            f"min_distance, raise reuse or add tiles"
        )
    return assign


def _place(
    assign: torch.Tensor,
    capacity: torch.Tensor,
    grid: tuple[int, int],
    distance: int,
    cells: torch.Tensor,
    candidates: torch.Tensor,
    costs: torch.Tensor,
) -> torch.Tensor:
    """Give each of ``cells`` its cheapest admissible tile among ``candidates (len(cells), K)``
    of costs ``costs`` (bonus included), updating ``assign`` and ``capacity`` in place. Returns
    the cells that had none."""
    costs, order = costs.sort(dim=1, stable=True)
    candidates = candidates.gather(1, order)
    pending = torch.arange(cells.numel(), device=cells.device)
    stranded = []
    one_each = torch.ones_like(capacity)
    while pending.numel():
        around = neighbourhood_tiles(assign, grid, cells[pending], distance)
        options = candidates[pending]
        admissible = (capacity[options] > 0) & ~(options[:, :, None] == around[:, None, :]).any(2)
        has_option = admissible.any(1)
        stranded.append(pending[~has_option])
        pending = pending[has_option]
        choice = admissible[has_option].to(torch.int8).argmax(1)
        tiles = options[has_option].gather(1, choice[:, None]).squeeze(1)
        chosen_cost = costs[pending].gather(1, choice[:, None]).squeeze(1)
        accepted = accept_within_capacity(tiles, chosen_cost, one_each)
        assign[cells[pending[accepted]]] = tiles[accepted]
        capacity.sub_(torch.bincount(tiles[accepted], minlength=capacity.numel()))
        pending = pending[~accepted]
    return cells[torch.cat(stranded)] if stranded else cells[:0]
