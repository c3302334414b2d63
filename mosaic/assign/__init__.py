"""Which tile goes in each cell: assignment under a reuse cap, with temporal coherence.

The cost of putting tile ``j`` in cell ``i`` is the squared distance of their descriptors, minus
the switching bonus ``lambda_i`` when ``j`` is the cell's incumbent (its tile in the previous
frame). ``reuse`` caps how often a tile may appear per frame:

- ``reuse=0`` (unlimited): method ``"nearest"``. Each cell takes its nearest tile, or keeps its
  incumbent when that costs no more after the bonus. That is the exact optimum
  (``mosaic.assign.exact``).
- ``reuse=k >= 1``, method ``"exact"``: the optimum under the cap, by ``batch_linear_assignment``
  on pruned columns (``mosaic.assign.exact``). ``"auto"`` picks it when
  ``N * M * min(k, N) <= EXACT_MAX_ENTRIES``.
- ``reuse=k >= 1``, method ``"windows"``: a large-neighbourhood search; windows of similar cells
  are re-solved exactly, all in one batched solver call per pass (``mosaic.assign.windows``).
  Valid after every pass, never worse than its start; warm-started from the incumbent. What
  ``"auto"`` picks for larger problems, except for a video's frames on CUDA.
- ``reuse=k >= 1``, method ``"auction"``: an epsilon-scaled auction on candidate lists with a
  certified gap and no host syncs, whose prices and lists a video carries from frame to frame
  (``mosaic.assign.auction``; pass the ``AuctionState`` as ``warm_start``). What ``"auto"``
  picks for a video's larger frames on CUDA (``resolved_method`` says why).
- ``fair=True`` (fair use): every tile used ``floor(N / M)`` to ``ceil(N / M)`` times, a
  transportation problem with lower and upper capacities. ``"exact"`` solves it exactly
  (``solve_exact_fair``); ``"windows"`` starts from a valid fair assignment and keeps every
  tile's count. The auction cannot honour lower capacities with its certificate, so fair use
  with ``"auction"`` runs what ``"auto"`` picks (with more tiles than cells fair use is reuse 1,
  which the auction solves).
- ``min_distance=d > 0`` (same tile never within ``d`` cells, Chebyshev): a repair after any
  solver moves or swaps the later cell of each clash to its cheapest admissible tile, on the
  device without host syncs, keeping the capacities (``mosaic.assign.spacing``). With
  ``reuse=1`` no tile repeats, so it never runs.

Everything runs on the device of the features; results are deterministic. ``assign_tiles``
checks its arguments (``mosaic.assign.problem``, a few host reads); ``solve`` takes a trusted
``Problem`` and, for ``"auction"`` from a warm state (with or without ``min_distance``), reads
nothing back from the device (a cold auction, the first frame, reads its certificate every few
stages to stop once it meets the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mosaic.assign.auction import AuctionState, objective, solve_auction
from mosaic.assign.exact import solve_exact, solve_exact_fair, solve_nearest
from mosaic.assign.problem import (
    METHODS,
    PoolTooSmallError,
    Problem,
    check_method,
    check_min_distance,
    fair_capacities,
    make_problem,
    resolve_min_distance,
    resolve_reuse,
    validated_problem,
)
from mosaic.assign.spacing import ROUNDS, STILL_ROUNDS, enforce_spacing, spacing_conflicts
from mosaic.assign.usage import TileUsage, UsageReport
from mosaic.assign.windows import solve_windows

__all__ = [
    "EXACT_MAX_ENTRIES",
    "METHODS",
    "Assignment",
    "AuctionState",
    "PoolTooSmallError",
    "Problem",
    "TileUsage",
    "UsageReport",
    "assign_tiles",
    "fair_capacities",
    "make_problem",
    "resolve_min_distance",
    "resolve_reuse",
    "resolved_method",
    "solve",
]

# "auto" solves exactly up to this many cost entries (cells x tiles x copies), ~10 ms on one CPU
# core. Measured on image-like frames, exact vs "windows" from scratch: 150 x 225 6 vs 25 ms,
# 200 x 300 16 vs 33 ms, 300 x 450 31 vs 45 ms, 700 x 1000 190 vs 225 ms; warm-started from the
# previous frame, "windows" takes ~8 ms at 700 x 1000 where exact stays at ~190 ms.
EXACT_MAX_ENTRIES = 50_000
# "auto" picks the auction only with at least this many tile slots (tiles x cap) per cell. With
# barely more slots than cells the last cells to place evict one another along long chains: on
# a pan through temporal coherence (600 cells, reuse 1, seed 0; true gap per frame) 601 tiles
# gave 3.0-15 % (windows 0.8-2.4 %), 630 tiles 0.2-8.8 % (0.4-3.0 %), 660 tiles 0.4-1.2 %
# (1.4-2.7 %).
AUCTION_MIN_SLOTS = 1.1


@dataclass(frozen=True)
class Assignment:
    """The tile of every cell of a frame, with its cost kept on the device.

    ``tiles``: int64 ``(N,)`` tile index per cell, row-major, on the features' device.
    ``total``: float64 ``()`` on that device, the sum over cells of the squared descriptor
    distance to their tile (no bonus); ``cost`` reads it (one host sync, when asked).
    ``method``: the solver that ran: ``"nearest"``, ``"exact"``, ``"windows"`` or ``"auction"``.
    ``gap``: float64 ``()`` on the device for ``"auction"``: a certified upper bound on how far
    the solved objective (bonus included) is above its optimum, as a fraction; 0 for the exact
    methods; ``None`` for ``"windows"`` (no bound). After the ``min_distance`` repair it bounds
    the repaired assignment against the solver's lower bound (the optimum without spacing, at
    most the optimum with it), so cells the repair moved count in it.
    ``clashes``: int64 ``()`` on the device, with ``min_distance``: cells the repair left beside
    a copy of their tile (0 when the rule holds); ``None`` without the rule.
    """

    tiles: torch.Tensor
    total: torch.Tensor
    method: str
    gap: torch.Tensor | None = field(default=None)
    clashes: torch.Tensor | None = field(default=None)

    @property
    def cost(self) -> float:
        """``total`` as a Python float (reads it back from the device)."""
        return float(self.total)


def resolved_method(
    method: str,
    reuse: int,
    cells: int,
    tiles: int,
    lower: int = 0,
    *,
    device: torch.device | str = "cpu",
    video: bool = False,
) -> str:
    """The solver ``method`` stands for on a problem of that size on ``device``: ``"nearest"``
    when ``reuse=0``; for ``"auto"``, ``"exact"`` up to ``EXACT_MAX_ENTRIES``, above it
    ``"auction"`` for a ``video``'s frames on CUDA (without a lower capacity, with at least
    ``AUCTION_MIN_SLOTS`` tile slots per cell) and ``"windows"`` otherwise; ``"exact"`` or
    ``"windows"`` for ``"auction"`` under a lower capacity ``lower`` (fair use); else ``method``
    itself.

    Why the auction only there: on a GPU a video's steady frames replay it as one CUDA graph
    (it reads nothing back), where ``"windows"`` is host-bound (10 ms a frame at 8160 x 20000 on
    an H200, most of it launches and reads); its prices carry over, so a warm frame is a few
    dozen stages. A single picture would solve it cold: thousands of launches, its first stages
    one by one and the rest as replays of a graph captured for that picture (not yet timed
    against ``"windows"`` on a GPU). On a CPU, where each of those launches is an operation of its
    own, ``"windows"`` is far faster (warm frames of a 600 x 700 pan: ~10 ms against ~1.1 s)."""
    if reuse == 0:
        return "nearest"
    if method == "auto" or (method == "auction" and lower):
        copies = min(reuse, cells)
        if cells * tiles * copies <= EXACT_MAX_ENTRIES:
            return "exact"
        on_cuda = torch.device(device).type == "cuda"
        roomy = tiles * copies >= AUCTION_MIN_SLOTS * cells
        auction = method == "auto" and video and on_cuda and roomy and not lower
        return "auction" if auction else "windows"
    return method


def assign_tiles(
    cell_features: torch.Tensor,
    tile_features: torch.Tensor,
    grid: tuple[int, int],
    *,
    reuse: int | str = 1,
    fair: bool = False,
    method: str = "auto",
    min_distance: int = 0,
    incumbent: torch.Tensor | None = None,
    switch_bonus: float | torch.Tensor = 0.0,
    warm_start: AuctionState | None = None,
) -> Assignment:
    """Assign a tile to every cell of a frame.

    Args:
        cell_features: float ``(N, D)``, ``N = rows * cols``, row-major.
        tile_features: float ``(M, D)``, same device.
        grid: ``(rows, cols)``.
        reuse: ``0`` unlimited, ``k >= 1`` at most ``k`` uses per tile, or ``"auto"``
            (see ``resolve_reuse``).
        fair: fair use, every tile ``floor(N / M)`` to ``ceil(N / M)`` times (``reuse`` is
            then ignored).
        method: ``"auto"``, ``"exact"``, ``"windows"`` or ``"auction"`` (ignored when
            ``reuse=0``).
        min_distance: the same tile never within this many cells (Chebyshev); 0 = off.
        incumbent: int64 ``(N,)`` previous tile per cell, -1 for none.
        switch_bonus: float or float ``(N,)``, ``>= 0``: subtracted from the incumbent's cost.
            The incumbent only matters through it (it also warm-starts ``"windows"``): where the
            bonus is 0 the result is the same as without an incumbent.
        warm_start: for ``"auction"``, the state a video carries from frame to frame (updated in
            place; see ``AuctionState``). ``None`` solves from scratch.

    Raises:
        PoolTooSmallError: the pool cannot fill the grid under ``reuse`` (before any solver runs).
        ValueError: invalid arguments, or the ``min_distance`` repair left a clash.
    """
    problem = validated_problem(cell_features, tile_features, grid, incumbent, switch_bonus)
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    lower = 0
    if fair:
        lower, reuse = fair_capacities(n, m)
    reuse = resolve_reuse(reuse, n, m)
    check_method(method)
    check_min_distance(min_distance)
    if warm_start is not None and not warm_start.matches(problem, min(max(reuse, 1), n)):
        raise ValueError("warm_start was made for another grid, pool, reuse or device")
    result = solve(problem, grid, reuse, method, min_distance, warm_start, lower=lower, still=True)
    if result.clashes is not None and int(result.clashes):
        first = int(spacing_conflicts(result.tiles, grid, min_distance).int().argmax())
        rows, cols = divmod(first, grid[1])
        raise ValueError(
            f"min_distance={min_distance} could not be honoured: around cell (row {rows}, column "
            f"{cols}) every tile with a use left already sits within {min_distance} cell(s); "
            "lower min_distance, raise reuse or add tiles"
        )
    return result


def solve(
    problem: Problem,
    grid: tuple[int, int],
    reuse: int,
    method: str = "auto",
    min_distance: int = 0,
    warm_start: AuctionState | None = None,
    *,
    lower: int = 0,
    still: bool = False,
) -> Assignment:
    """``assign_tiles`` on a trusted problem: ``reuse`` resolved and valid (with fair use, the
    upper capacity, and ``lower`` the lower one: ``fair_capacities``), ``method`` one of
    ``METHODS``, ``warm_start`` matching. No argument checks, so no host reads of its own,
    except for a ``still`` picture's spacing repair, which may run longer and stop once clear
    (``mosaic.assign.spacing``)."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    video = warm_start is not None
    method = resolved_method(method, reuse, n, m, lower, device=problem.device, video=video)
    zero = torch.zeros((), dtype=torch.float64, device=problem.device)
    if n == 0:
        return Assignment(problem.incumbent.clone(), zero, method, zero)
    bound = None  # the solver's lower bound on the objective, for the gap after spacing
    if method == "nearest":
        tiles = solve_nearest(problem)
    elif method == "exact":
        tiles = solve_exact_fair(problem, lower, reuse) if lower else solve_exact(problem, reuse)
    elif method == "windows":
        tiles = solve_windows(problem, reuse, lower)
    else:
        result = solve_auction(problem, reuse, warm_start)
        tiles, bound = result.tiles, result.dual
    gap = None if method == "windows" else zero if bound is None else result.gap
    clashes = None
    if min_distance and reuse != 1:
        if gap is not None and bound is None:
            bound = objective(problem, tiles)  # an exact method's optimum
        rounds = STILL_ROUNDS if still else ROUNDS
        spaced = enforce_spacing(
            problem, tiles, grid, min_distance, reuse, lower, rounds=rounds, stop_when_clear=still
        )
        tiles, clashes = spaced.tiles, spaced.clashes
        if gap is not None:
            excess = (objective(problem, tiles) - bound).clamp_min(0)
            gap = torch.where(bound > 0, excess / bound, torch.where(excess > 0, math.inf, 0.0))
    cells = torch.arange(n, device=problem.device)
    total = problem.distance(cells, tiles).double().sum()
    return Assignment(tiles, total, method, gap, clashes)
