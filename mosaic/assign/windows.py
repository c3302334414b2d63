"""Method ``"windows"``: assignment under a reuse cap by large-neighbourhood search, re-solving
windows of similar cells exactly, in batches.

Why not the obvious alternatives (measured on image-like frames, 700 cells x 1000 tiles): an exact
solve on each cell's nearest tiles (top 8-64, plus each tile's nearest cells) lands 5-27 % above
the optimum, because the sky cells must take tiles far from their colour; a Jacobi auction needs
300-14000 rounds of price wars and eviction chains (more when cells equal tiles), and stopping it
early and finishing greedily costs 1-60 %.

What runs instead, on any device:

1. **Start**: the incumbent tiles that fit under the cap (the cheapest holders of each tile win),
   then a few parallel greedy rounds over each remaining cell's nearest tiles, then a sorted
   (1-D optimal-transport) fill of the last cells into the free slots along the principal axis.
   The start is always a valid assignment.
2. **Passes**: cut the cells into windows of at most ``WINDOW_CELLS`` by a k-d tree with a seeded
   random split direction per node, so a window holds cells alike in the whole descriptor, which
   compete for the same tiles (sorting on one direction instead left 2.4 % where this leaves
   1.3 %, at 8160 x 20000). Odd passes build the tree on the descriptors of the tiles the cells
   hold: cells holding alike tiles can trade them, which a moving scene needs. Each window may
   permute its cells' tiles and take up to ``WINDOW_SPARE`` free slots of tiles whose nearest
   cell it holds (each free slot goes to one window). Every window is solved exactly, all in one
   ``batch_linear_assignment`` call of ``B x R x (R + WINDOW_SPARE)``, ``R = ceil(N / B)`` the
   most cells a window holds: the many-medium-problems shape the GPU solver is built for.
   Windows whose cells all hold their cheapest option are skipped. Slot sets are disjoint, so
   the union is valid; each window's current tiles are feasible for it, so the cost never rises.
3. It stops when a pass gains less than ``STOP_GAIN`` of the colour cost, or after
   ``MAX_PASSES`` (``WARM_PASSES`` when at least half the cells have an incumbent: later frames
   keep improving on it). Measured gaps to SciPy's optimum, image-like frames, reuse 1 unless
   said: first frame 0.2-0.5 % at 700 cells (1000 tiles; 700 tiles; 2040 cells with reuse 3),
   1.3 % at 8160 x 20000 (SciPy took 420 s there). A static scene with a bonus of 0.3x the mean
   cost stops after one pass, at the optimum. A pan of one cell per frame (incumbents tied to
   the grid, bonus 0.3x) stays 1.1-1.7 % of the colour cost above each frame's optimum with 4
   warm passes (4-5 % with 2, 0.4 % with 24), at ~10 ms a pass for 700 cells on one CPU core.

Fair use (lower capacities): the start is raised to the lower capacity by one exact assignment
of the missing uses, and the passes only permute tiles within windows, so which tiles get the
extra use is the start's choice: measured 0-1 % above the fair optimum on image-like frames
(48-1200 cells), 6.6 % on one of ten.

Host syncs that remain on GPU: a few in the start (the incumbents and holes to handle, one per
greedy round), three per pass (the windows to solve, the gain, the stop test), plus those inside
``batch_linear_assignment`` (its input and feasibility checks).
"""

from __future__ import annotations

import math

import torch

from kernels import cost_topk
from mosaic.assign.capacity import accept_within_capacity, order_by, rank_in_runs
from mosaic.assign.exact import solve_batch
from mosaic.assign.problem import Problem

WINDOW_CELLS = 64
WINDOW_SPARE = 64
MAX_PASSES = 24
WARM_PASSES = 4
STOP_GAIN = 1e-4
GREEDY_CANDIDATES = 16
GREEDY_ROUNDS = 4
SEED = 0


def solve_windows(problem: Problem, reuse: int, lower: int = 0) -> torch.Tensor:
    """int64 ``(N,)`` tile per cell, each tile used at most ``reuse`` times (``N <= M * reuse``)
    and, under fair use, at least ``lower`` times (``M * lower <= N``): the start is raised to
    the lower capacity (``raise_to_lower``) and the passes then only permute the tiles among a
    window's cells, which keeps every tile's count."""
    assign = initial_assignment(problem, reuse)
    if lower:
        assign = raise_to_lower(problem, assign, lower)
    n, dim = problem.cells.shape
    distance_to_tile, nearest_cell = cost_topk(problem.tiles, problem.cells, 1)
    depth = max(0, math.ceil(math.log2(n / WINDOW_CELLS)))
    generator = torch.Generator().manual_seed(SEED)
    warm = 2 * int((problem.incumbent >= 0).sum()) >= n
    passes = WARM_PASSES if warm else MAX_PASSES
    directions = torch.randn(passes, (1 << depth) - 1, dim, generator=generator)
    cells = torch.arange(n, device=problem.device)
    for step, split_directions in enumerate(directions.to(problem.device)):
        # Even passes group cells of similar colour, odd passes cells holding similar tiles:
        # when the content moves, a cell wants the tile that a cell of its new colour holds.
        features = problem.tiles[assign] if step % 2 else problem.cells
        members = kd_windows(features, split_directions, depth)
        assign, gain = improve_windows(
            problem,
            0 if lower else reuse,
            assign,
            members,
            nearest_cell[:, 0],
            distance_to_tile[:, 0],
        )
        if gain <= STOP_GAIN * float(problem.distance(cells, assign).sum()):
            break
    return assign


def kd_windows(features: torch.Tensor, split_directions: torch.Tensor, depth: int) -> torch.Tensor:
    """The cells of each window, int64 ``(2^depth, W)``, ``W = ceil(N / 2^depth)``, -1 for none:
    the leaves of a k-d tree.

    Every node sorts its cells by their projection on its own direction (``split_directions``,
    float ``(2^depth - 1, D)``, heap order) and gives the first half to its first child, so
    windows hold cells close in every direction of descriptor space. The ``N`` cells are padded
    to ``2^depth * W`` with entries that sort last: every node splits its positions in exact
    halves, so the tree is a few sorts of a ``(nodes, positions)`` matrix per level.
    """
    n = features.shape[0]
    windows = 1 << depth
    width = math.ceil(n / windows)
    positions = windows * width
    projections = torch.nn.functional.pad(
        features @ split_directions.T, (0, 0, 0, positions - n), value=float("inf")
    )
    order = torch.arange(positions, device=features.device)
    for level in range(depth):
        nodes = 1 << level
        by_node = order.view(nodes, -1)
        node = torch.arange(nodes - 1, 2 * nodes - 1, device=features.device)
        key = projections[by_node, node[:, None]]
        order = by_node.gather(1, key.argsort(dim=1, stable=True)).view(-1)
    return torch.where(order < n, order, -1).view(windows, width)


def initial_assignment(problem: Problem, reuse: int) -> torch.Tensor:
    """A valid start ``(N,)`` int64: kept incumbents, then greedy, then a sorted fill."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    device = problem.device
    assign = torch.full((n,), -1, dtype=torch.int64, device=device)
    capacity = torch.full((m,), reuse, dtype=torch.int64, device=device)

    def take(cells: torch.Tensor, tiles: torch.Tensor, priority: torch.Tensor) -> None:
        accepted = accept_within_capacity(tiles, priority, capacity)
        assign[cells[accepted]] = tiles[accepted]
        capacity.sub_(torch.bincount(tiles[accepted], minlength=m))

    kept = (problem.incumbent >= 0).nonzero().squeeze(1)
    if kept.numel():
        tiles = problem.incumbent[kept]
        take(kept, tiles, problem.cost(kept, tiles))

    holes = (assign < 0).nonzero().squeeze(1)
    if holes.numel():
        values, candidates = cost_topk(
            problem.cells[holes], problem.tiles, min(m, GREEDY_CANDIDATES)
        )
        for _ in range(GREEDY_ROUNDS):
            open_slots = capacity[candidates] > 0
            proposing = (open_slots.any(1) & (assign[holes] < 0)).nonzero().squeeze(1)
            if proposing.numel() == 0:
                break
            choice = open_slots[proposing].to(torch.int8).argmax(1)
            take(holes[proposing], candidates[proposing, choice], values[proposing, choice])

    holes = (assign < 0).nonzero().squeeze(1)
    if holes.numel():
        _sorted_fill(problem, assign, holes, capacity)
    return assign


def raise_to_lower(problem: Problem, assign: torch.Tensor, lower: int) -> torch.Tensor:
    """``assign`` with every tile used at least ``lower`` times: the missing uses are filled,
    optimally (one exact assignment), by cells of tiles used more than ``lower`` times, each
    such tile offering its costliest holders beyond ``lower``."""
    m = problem.tiles.shape[0]
    use = torch.bincount(assign, minlength=m)
    missing = (lower - use).clamp_min(0)
    if int(missing.sum()) == 0:
        return assign
    slots = torch.repeat_interleave(torch.arange(m, device=assign.device), missing)
    cells = torch.arange(assign.numel(), device=assign.device)
    current = problem.cost(cells, assign)
    order = order_by(assign, -current)
    spare = (use - lower).clamp_min(0)
    leaving = order[rank_in_runs(assign[order]) < spare[assign[order]]]
    cost = problem.block_cost(leaving[None], slots[None])[0].T - current[leaving][None, :]
    taken = solve_batch(cost[None])[0]
    assign = assign.clone()
    assign[leaving[taken]] = slots
    return assign


def _sorted_fill(
    problem: Problem, assign: torch.Tensor, holes: torch.Tensor, capacity: torch.Tensor
) -> None:
    """Give ``holes`` free slots in place: both sorted along the cells' principal axis, the r-th
    of h cells takes slot ``r * slots // h`` (distinct, since there are at least h slots)."""
    axis = principal_axis(problem.cells)
    slots = torch.repeat_interleave(
        torch.arange(capacity.numel(), device=holes.device), capacity.clamp_max(holes.numel())
    )
    cell_order = holes[torch.argsort(problem.cells[holes] @ axis, stable=True)]
    slot_order = slots[torch.argsort(problem.tiles[slots] @ axis, stable=True)]
    pick = torch.arange(holes.numel(), device=holes.device) * slots.numel() // holes.numel()
    assign[cell_order] = slot_order[pick]


def principal_axis(x: torch.Tensor) -> torch.Tensor:
    """Unit ``(D,)`` direction of largest variance of the rows of ``x (N, D)``, sign fixed.

    The ``D x D`` eigenproblem is solved on the CPU: tiny, and no GPU solver library to load."""
    centred = (x - x.mean(0)).double()
    axis = torch.linalg.eigh((centred.T @ centred).cpu()).eigenvectors[:, -1]
    return (axis * axis[axis.abs().argmax()].sign()).to(x.device, x.dtype)


def improve_windows(
    problem: Problem,
    reuse: int,
    assign: torch.Tensor,
    members: torch.Tensor,
    nearest_cell: torch.Tensor,
    distance_to_tile: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """One pass: re-solve every window of cells exactly (``members``: int64 ``(windows, W)``, the
    cells of each window, -1 for none, ``W <= WINDOW_CELLS``; every cell in one window).
    ``reuse`` 0 offers no free slots: windows only permute their tiles (fair use).

    Free tile slots go to the window of the tile's nearest cell (``nearest_cell``, int64
    ``(M,)``), the ``WINDOW_SPARE`` closest (``distance_to_tile``, float32 ``(M,)``) first.
    Returns the new assignment and its cost gain (bonus included), a float >= 0.
    """
    m = problem.tiles.shape[0]
    device = problem.device
    windows, width = members.shape
    real = members >= 0
    safe_members = members.clamp_min(0)
    window = torch.empty_like(assign)
    window[members[real]] = torch.arange(windows, device=device).repeat_interleave(real.sum(1))

    # No window needs more than WINDOW_CELLS slots of one tile.
    spare = (reuse - torch.bincount(assign, minlength=m)).clamp(0, WINDOW_CELLS)
    free = torch.repeat_interleave(torch.arange(m, device=device), spare)
    wanted_by = window[nearest_cell[free]]
    by_window = order_by(wanted_by, distance_to_tile[free])
    rank = rank_in_runs(wanted_by[by_window])
    offered = by_window[rank < WINDOW_SPARE]
    slots = torch.full((windows, width + WINDOW_SPARE), -1, dtype=torch.int64, device=device)
    slots[:, :width] = torch.where(real, assign[safe_members], -1)
    slots[wanted_by[offered], width + rank[rank < WINDOW_SPARE]] = free[offered]

    # Padding rows (windows with fewer cells) may only take padding columns, and real rows only
    # real columns: there are at least as many padding columns as padding rows.
    cost = problem.block_cost(safe_members, slots.clamp_min(0))
    real_column = (slots >= 0)[:, None, :]
    cost = torch.where(
        real[:, :, None] == real_column, torch.where(real_column, cost, 0.0), float("inf")
    )
    diagonal = torch.arange(width, device=device)
    current = cost[:, diagonal, diagonal]
    unsettled = ((current > cost.amin(2)) & real).any(1).nonzero().squeeze(1)
    if unsettled.numel() == 0:
        return assign, 0.0
    cost, slots, members = cost[unsettled], slots[unsettled], members[unsettled]
    solution = solve_batch(cost)
    chosen_cost = cost.gather(2, solution[:, :, None]).squeeze(2)
    real = members >= 0
    gain = float((current[unsettled] - chosen_cost)[real].sum())
    assign = assign.clone()
    assign[members[real]] = slots.gather(1, solution)[real]
    return assign, gain
