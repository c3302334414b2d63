"""The spatial rule: the same tile never within ``min_distance`` cells (Chebyshev) of itself.

Enforced after the solver by a repair that runs on the device in a fixed number of rounds of
fixed-shape tensor operations: nothing is read back to the host, so a GPU frame never waits for
it. A *clash* is a cell whose tile also sits at an earlier cell (row-major) within the distance;
each round, every clashing cell proposes the cheapest (bonus included) of:

- a **move** to one of its ``(2d + 1)^2 + EXTRA_CANDIDATES`` nearest tiles that appears nowhere
  in its neighbourhood and has a use left under the cap, if its own tile may lose one (under
  fair use, a tile never drops below its lower capacity);
- a **swap** with a holder of one of its first ``SWAP_CANDIDATES`` candidates, farther than the
  distance from it and with no copy of the cell's tile around it: usage stays as it was, so a
  swap still works when every tile is at its cap (fair use, or a pool that barely fills).

Proposals that share a tile or a cell are settled in favour of the cheapest, so the changes of a
round never clash with each other, and every change removes a clash without adding one. Only
clashing cells and their swap partners change, each for its next-best admissible tile, so the
cost stays close to the solver's (no longer optimal when cells had to move). On a CPU the rounds
stop once no clash is left (reading a value costs nothing there); on a GPU all ``ROUNDS`` run,
each a few kernels that change nothing once the rule holds. Clashes no candidate could fix are
counted, on the device, in ``SpacingResult.clashes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import cost_topk
from mosaic.assign.capacity import accept_within_capacity
from mosaic.assign.problem import Problem

PASSES = 3
EXTRA_CANDIDATES = 8
SWAP_CANDIDATES = 4
# On a CPU the rounds stop once no clash is left: reading that costs nothing there. (Tests turn
# it off to run the GPU's fixed schedule.)
STOP_WHEN_CLEAR_ON_CPU = True
# Added to the distance of a tile with no use left, so a cell's move candidates are the nearest
# tiles that have one (descriptor distances are below 10).
FULL_TILE_BIAS = 1e4


@dataclass(frozen=True)
class SpacingResult:
    """``tiles``: int64 ``(N,)`` after the repair; ``clashes``: int64 ``()`` on the device, the
    cells still sharing their tile with an earlier cell within the distance (0: the rule holds)."""

    tiles: torch.Tensor
    clashes: torch.Tensor


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
    """int64 ``(*cells.shape, (2d + 1)^2)``: the tiles around each cell (itself included), -1
    where the window leaves the grid."""
    rows, cols = grid
    side = 2 * distance + 1
    padded = F.pad(assign.view(1, rows, cols), (distance,) * 4, value=-1).view(-1)
    steps = torch.arange(side, device=cells.device)
    window = (steps[:, None] * (cols + 2 * distance) + steps[None, :]).view(-1)
    corner = (cells // cols) * (cols + 2 * distance) + cells % cols
    return padded[corner[..., None] + window]


def enforce_spacing(
    problem: Problem,
    assign: torch.Tensor,
    grid: tuple[int, int],
    distance: int,
    upper: int,
    lower: int = 0,
) -> SpacingResult:
    """``assign (N,)`` repaired so that no tile repeats within ``distance`` where the
    candidates allow (module docstring). ``upper`` is the reuse cap (0 = unlimited) and
    ``lower`` the fewest uses of every tile (fair use); both hold on the result if they held on
    ``assign``. Fixed shapes, no host reads on a GPU."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    device = problem.device
    rows, cols = grid
    stride = distance + 1
    board = torch.arange(n, device=device).view(rows, cols)
    classes = [
        board[r::stride, c::stride].reshape(-1) for r in range(stride) for c in range(stride)
    ]
    count = min(m, (2 * distance + 1) ** 2 + EXTRA_CANDIDATES)
    nearest = cost_topk(problem.cells, problem.tiles, count)
    assign = assign.clone()
    use = torch.zeros(m, dtype=torch.int64, device=device)
    use.scatter_add_(0, assign, torch.ones_like(assign))
    for step in range(PASSES * len(classes)):
        clash = spacing_conflicts(assign, grid, distance)
        if STOP_WHEN_CLEAR_ON_CPU and device.type == "cpu" and not bool(clash.any()):
            break
        cells = classes[step % len(classes)]
        if cells.numel() == 0:
            continue
        swap_values, swap_tiles = (x[cells, :SWAP_CANDIDATES] for x in nearest)
        if upper:  # moves look among the nearest tiles that have a use left
            full = torch.where(use < upper, 0.0, FULL_TILE_BIAS)
            move_values, move_tiles = cost_topk(
                problem.cells[cells], problem.tiles, count, bias=full
            )
        else:
            move_values, move_tiles = (x[cells] for x in nearest)
        first_holders = step // len(classes) % 2 == 0
        proposal = _proposals(
            problem, assign, use, grid, distance, cells, clash[cells], (move_tiles, move_values),
            (swap_tiles, swap_values), upper or n, lower, first_holders=first_holders,
        )  # fmt: skip
        assign = _apply(assign, use, proposal, upper or n, lower)
    clashes = spacing_conflicts(assign, grid, distance).sum()
    return SpacingResult(assign, clashes)


@dataclass(frozen=True)
class _Proposal:
    """What cells ``cells (C,)`` propose: ``gain`` (C,) float32, the cost change (inf: none);
    ``new_tile`` (C,); ``partner`` (C,), a swap's other cell, else the cell itself."""

    cells: torch.Tensor
    gain: torch.Tensor
    new_tile: torch.Tensor
    partner: torch.Tensor
    is_swap: torch.Tensor


def _proposals(
    problem: Problem,
    assign: torch.Tensor,
    use: torch.Tensor,
    grid: tuple[int, int],
    distance: int,
    cells: torch.Tensor,
    clash: torch.Tensor,
    move_options: tuple[torch.Tensor, torch.Tensor],
    swap_options: tuple[torch.Tensor, torch.Tensor],
    cap: int,
    lower: int,
    *,
    first_holders: bool,
) -> _Proposal:
    """Each clashing cell's cheapest move or swap (module docstring) among its options, each
    ``(tiles, distances)`` int64 and float32 ``(C, K)``: for moves the nearest tiles with a use
    left, for swaps the nearest tiles."""
    cols = grid[1]
    mine = assign[cells]
    current = problem.cost(cells, mine)
    around = neighbourhood_tiles(assign, grid, cells, distance)[:, None, :]

    candidates, distances = move_options
    count = candidates.shape[1]
    absent = ~(candidates[:, :, None] == around).any(2)
    moves = (clash & (use[mine] > lower))[:, None] & absent & (use[candidates] < cap)
    costs = distances - problem.bonus_for(cells[:, None], candidates)
    move_gain = torch.where(moves, costs - current[:, None], math.inf)

    wanted, distances = swap_options
    partner = _holders(assign, use.numel(), first=first_holders)[wanted]
    held = partner.clamp_min(0)
    apart = torch.maximum(
        (held // cols - cells[:, None] // cols).abs(), (held % cols - cells[:, None] % cols).abs()
    )
    given = mine[:, None].expand_as(wanted)
    fits = ~(neighbourhood_tiles(assign, grid, held, distance) == given[..., None]).any(2)
    absent = ~(wanted[:, :, None] == around).any(2)
    swappable = clash[:, None] & absent & (partner >= 0) & (apart > distance) & fits
    costs = distances - problem.bonus_for(cells[:, None], wanted)
    swap_gain = costs + problem.cost(held, given) - problem.cost(held, wanted)
    swap_gain = torch.where(swappable, swap_gain - current[:, None], math.inf)

    gain, option = torch.cat([move_gain, swap_gain], 1).min(1)
    is_swap = option >= count
    as_swap = (option - count).clamp_min(0)[:, None]
    as_move = option.clamp_max(count - 1)[:, None]
    new_tile = torch.where(
        is_swap, wanted.gather(1, as_swap)[:, 0], candidates.gather(1, as_move)[:, 0]
    )
    partner = torch.where(is_swap, partner.gather(1, as_swap)[:, 0], cells)
    return _Proposal(cells, gain, new_tile, partner, is_swap)


def _apply(
    assign: torch.Tensor, use: torch.Tensor, proposal: _Proposal, cap: int, lower: int
) -> torch.Tensor:
    """``assign`` with the proposals that go ahead applied (``use`` updated in place).

    Ranked by gain (ties: the earlier proposal), a swap goes ahead when it is the first of all
    proposals that touch its cells or tiles; moves share tiles with each other (the cells of one
    class are too far apart to clash), as many arriving at a tile as it has uses left and as
    many leaving one as it has above ``lower``, but none where a better swap touches it."""
    n, m = assign.numel(), use.numel()
    cells, partner, new_tile = proposal.cells, proposal.partner, proposal.new_tile
    old_tile = assign[cells]
    size = cells.numel()
    proposing = torch.isfinite(proposal.gain)
    order = torch.argsort(torch.where(proposing, proposal.gain, math.inf), stable=True)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(size, device=cells.device))
    rank = torch.where(proposing, rank, size)

    def first(kind: torch.Tensor) -> torch.Tensor:
        ranks = torch.where(kind, rank, size)
        best = torch.full((m,), size, dtype=torch.int64, device=cells.device)
        return best.scatter_reduce_(0, old_tile, ranks, "amin").scatter_reduce_(
            0, new_tile, ranks, "amin"
        )

    best_swap, best_move = first(proposal.is_swap), first(~proposal.is_swap)
    by_cell = torch.full((n,), size, dtype=torch.int64, device=cells.device)
    by_cell.scatter_reduce_(0, cells, rank, "amin").scatter_reduce_(0, partner, rank, "amin")
    owns_cells = proposing & (by_cell[cells] == rank) & (by_cell[partner] == rank)
    swapped = (
        owns_cells
        & proposal.is_swap
        & (best_swap[old_tile] == rank)
        & (best_swap[new_tile] == rank)
        & (rank < best_move[old_tile])
        & (rank < best_move[new_tile])
    )
    movable = owns_cells & ~proposal.is_swap & (rank < best_swap[old_tile])
    movable &= rank < best_swap[new_tile]
    none = torch.zeros(1, dtype=torch.int64, device=cells.device)
    arrive = accept_within_capacity(
        torch.where(movable, new_tile, m), rank, torch.cat([cap - use, none])
    )
    leave = accept_within_capacity(
        torch.where(movable, old_tile, m), rank, torch.cat([use - lower, none])
    )
    moved = movable & arrive & leave
    use.scatter_add_(0, old_tile, -moved.long()).scatter_add_(0, new_tile, moved.long())
    changed = torch.cat([assign, none])
    changed[cells] = torch.where(moved | swapped, new_tile, old_tile)
    changed.scatter_(0, torch.where(swapped, partner, n), torch.where(swapped, old_tile, 0))
    return changed[:n]


def _holders(assign: torch.Tensor, m: int, *, first: bool) -> torch.Tensor:
    """int64 ``(M,)``: the first (or last) cell holding each tile, -1 for a tile held nowhere."""
    n = assign.numel()
    cells = torch.arange(n, device=assign.device)
    if first:
        found = torch.full((m,), n, dtype=torch.int64, device=assign.device)
        found.scatter_reduce_(0, assign, cells, "amin")
        return torch.where(found < n, found, -1)
    found = torch.full((m,), -1, dtype=torch.int64, device=assign.device)
    return found.scatter_reduce_(0, assign, cells, "amax")
