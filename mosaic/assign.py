"""Which tile goes in each cell: assignment under a reuse cap, with temporal coherence.

The cost of putting tile ``j`` in cell ``i`` is the squared distance of their descriptors, minus
the switching bonus ``lambda_i`` when ``j`` is the cell's incumbent (its tile in the previous
frame). ``reuse`` caps how often a tile may appear per frame:

- ``reuse=0`` (unlimited): method ``"nearest"``. Each cell takes its nearest tile
  (``cost_topk`` with ``k=1``), or keeps its incumbent when that costs no more after the bonus.
  That is the exact optimum.
- ``reuse=k >= 1``, method ``"exact"``: the optimum under the cap, by ``batch_linear_assignment``
  (SciPy on CPU, Triton on CUDA). Each tile is a column repeated ``min(k, N)`` times (a
  transportation problem with unit demands is an assignment problem on copied columns). Columns
  are pruned without losing optimality: a cell whose chosen tile is not among its
  ``t = ceil(N / copies)`` nearest can always move to a free copy of one of them at no extra cost
  (the other ``N - 1`` cells fill at most ``N - 1`` of those ``t * copies`` slots), so the union of
  every cell's ``t`` nearest tiles and its incumbent holds an optimum, and always a full
  assignment. Used by ``"auto"`` when ``N * M * copies <= EXACT_MAX_ENTRIES``.
- ``reuse=k >= 1``, method ``"windows"``: a large-neighbourhood search; windows of similar cells
  are re-solved exactly, all in one batched solver call per pass (``mosaic.assign_windows``).
  Valid after every pass, never worse than its start; warm-started from the incumbent.
- ``min_distance=d > 0`` (same tile never within ``d`` cells, Chebyshev): a repair after any
  solver moves the later cell of each clash to its cheapest admissible tile
  (``mosaic.assign_spacing``). With ``reuse=1`` no tile repeats, so it never runs.

Everything runs on the device of the features; results are deterministic (stable sorts, seeded
directions, deterministic solvers). Host syncs on GPU: checking that the features are finite, the
incumbent's range and a tensor bonus, reading the cost, and those of the solvers (see
``mosaic.assign_windows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels import cost_matrix, cost_topk
from mosaic.assign_ops import Problem, solve_batch
from mosaic.assign_spacing import enforce_spacing
from mosaic.assign_windows import solve_windows

__all__ = [
    "EXACT_MAX_ENTRIES",
    "METHODS",
    "Assignment",
    "PoolTooSmallError",
    "assign_tiles",
    "resolve_reuse",
]

METHODS = ("auto", "exact", "windows")
# "auto" solves exactly up to this many cost entries (cells x tiles x copies), ~10 ms on one CPU
# core. Measured on image-like frames, exact vs "windows" from scratch: 150 x 225 6 vs 25 ms,
# 200 x 300 16 vs 33 ms, 300 x 450 31 vs 45 ms, 700 x 1000 190 vs 225 ms; warm-started from the
# previous frame, "windows" takes ~8 ms at 700 x 1000 where exact stays at ~190 ms.
EXACT_MAX_ENTRIES = 50_000


class PoolTooSmallError(ValueError):
    """The tile pool cannot fill the grid under the reuse cap."""


def resolve_reuse(reuse: int | str, cells: int, tiles: int) -> int:
    """The reuse cap to use: ``0`` unlimited, ``k >= 1`` at most ``k`` uses per tile per frame.

    ``"auto"`` is the smallest cap that fills the grid, ``ceil(cells / tiles)``: the most
    variety the pool allows (1 when tiles outnumber cells). A larger cap lowers the colour error
    at the price of repeats (ALGORITHMS.md: "reuse cap is a quality knob").

    Raises:
        PoolTooSmallError: ``reuse >= 1`` and ``reuse * tiles < cells``, or no tiles at all.
        ValueError: anything but an int ``>= 0`` or ``"auto"``.
    """
    auto = reuse == "auto"
    if not auto and (isinstance(reuse, bool) or not isinstance(reuse, int) or reuse < 0):
        raise ValueError(f"reuse must be an int >= 0 (0 = unlimited) or 'auto', got {reuse!r}")
    if cells and not tiles:
        raise PoolTooSmallError(f"the tile pool is empty; {cells} cells need at least 1 tile")
    if auto:
        return max(1, math.ceil(cells / tiles)) if tiles else 1
    if reuse and reuse * tiles < cells:
        raise PoolTooSmallError(
            f"the tile pool is too small: {cells} cells with reuse={reuse} need at least "
            f"{math.ceil(cells / reuse)} tiles, but there are {tiles}; use --reuse auto (here "
            f"{math.ceil(cells / tiles)}) or a larger --reuse, or add tiles"
        )
    return reuse


@dataclass(frozen=True)
class Assignment:
    """The tile of every cell of a frame.

    ``tiles``: int64 ``(N,)`` tile index per cell, row-major, on the features' device.
    ``cost``: sum over cells of the squared descriptor distance to their tile (no bonus).
    ``method``: the solver that ran: ``"nearest"``, ``"exact"`` or ``"windows"``.
    """

    tiles: torch.Tensor
    cost: float
    method: str


def assign_tiles(
    cell_features: torch.Tensor,
    tile_features: torch.Tensor,
    grid: tuple[int, int],
    *,
    reuse: int | str = 1,
    method: str = "auto",
    min_distance: int = 0,
    incumbent: torch.Tensor | None = None,
    switch_bonus: float | torch.Tensor = 0.0,
) -> Assignment:
    """Assign a tile to every cell of a frame.

    Args:
        cell_features: float ``(N, D)``, ``N = rows * cols``, row-major.
        tile_features: float ``(M, D)``, same device.
        grid: ``(rows, cols)``.
        reuse: ``0`` unlimited, ``k >= 1`` at most ``k`` uses per tile, or ``"auto"``
            (see ``resolve_reuse``).
        method: ``"auto"``, ``"exact"`` or ``"windows"`` (ignored when ``reuse=0``).
        min_distance: the same tile never within this many cells (Chebyshev); 0 = off.
        incumbent: int64 ``(N,)`` previous tile per cell, -1 for none.
        switch_bonus: float or float ``(N,)``, ``>= 0``: subtracted from the incumbent's cost.
            The incumbent only matters through it (it also warm-starts ``"windows"``): where the
            bonus is 0 the result is the same as without an incumbent.

    Raises:
        PoolTooSmallError: the pool cannot fill the grid under ``reuse`` (before any solver runs).
        ValueError: invalid arguments, or the ``min_distance`` repair found no admissible tile.
    """
    problem = _problem(cell_features, tile_features, grid, incumbent, switch_bonus)
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    reuse = resolve_reuse(reuse, n, m)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(min_distance, bool) or not isinstance(min_distance, int) or min_distance < 0:
        raise ValueError(f"min_distance must be an int >= 0, got {min_distance!r}")
    if n == 0:
        return Assignment(problem.incumbent.clone(), 0.0, "nearest" if reuse == 0 else "exact")

    if reuse == 0:
        method, tiles = "nearest", _nearest(problem)
    else:
        if method == "auto":
            copies = min(reuse, n)
            method = "exact" if n * m * copies <= EXACT_MAX_ENTRIES else "windows"
        tiles = _exact(problem, reuse) if method == "exact" else solve_windows(problem, reuse)
    if min_distance and reuse != 1:
        tiles = enforce_spacing(problem, tiles, grid, min_distance, reuse)
    cells = torch.arange(n, device=problem.device)
    cost = float(problem.distance(cells, tiles).double().sum())
    return Assignment(tiles, cost, method)


def _problem(
    cell_features: torch.Tensor,
    tile_features: torch.Tensor,
    grid: tuple[int, int],
    incumbent: torch.Tensor | None,
    switch_bonus: float | torch.Tensor,
) -> Problem:
    """Validate the arguments (one clear line each) and gather them into a ``Problem``."""
    for name, features in (("cell_features", cell_features), ("tile_features", tile_features)):
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor")
        if features.ndim != 2:
            raise ValueError(f"{name} must be (count, D), got shape {tuple(features.shape)}")
    n, dim = cell_features.shape
    if tile_features.shape[1] != dim or tile_features.device != cell_features.device:
        raise ValueError(
            f"tile_features {tuple(tile_features.shape)} on {tile_features.device} must share D "
            f"and device with cell_features {tuple(cell_features.shape)} on {cell_features.device}"
        )
    if not bool(torch.isfinite(cell_features).all() & torch.isfinite(tile_features).all()):
        raise ValueError("cell_features and tile_features must be finite")
    rows, cols = grid
    if rows * cols != n:
        raise ValueError(f"grid {rows} x {cols} does not match {n} cells")
    device = cell_features.device
    if incumbent is None:
        incumbent = torch.full((n,), -1, dtype=torch.int64, device=device)
    elif incumbent.shape != (n,) or incumbent.dtype != torch.int64 or incumbent.device != device:
        raise ValueError(f"incumbent must be int64 ({n},) on {device}")
    elif n and not -1 <= int(incumbent.min()) <= int(incumbent.max()) < tile_features.shape[0]:
        raise ValueError(f"incumbent tiles must be -1 or in [0, {tile_features.shape[0]})")
    bonus = torch.as_tensor(switch_bonus, dtype=torch.float32, device=device)
    if bonus.shape not in ((), (n,)):
        raise ValueError(f"switch_bonus must be a float or an ({n},) tensor")
    if isinstance(switch_bonus, torch.Tensor):
        valid = n == 0 or bool(torch.isfinite(bonus).all() & (bonus >= 0).all())
    else:
        valid = math.isfinite(switch_bonus) and switch_bonus >= 0
    if not valid:
        raise ValueError("switch_bonus must be finite and >= 0")
    bonus = bonus.expand(n)
    # An incumbent without a bonus changes nothing: drop it, so bonus 0 equals no incumbent.
    incumbent = torch.where(bonus > 0, incumbent, -1)
    return Problem(
        cell_features.to(torch.float32), tile_features.to(torch.float32), incumbent, bonus
    )


def _nearest(problem: Problem) -> torch.Tensor:
    """Unlimited reuse: each cell's nearest tile, or its incumbent if no dearer after the bonus."""
    best, nearest = cost_topk(problem.cells, problem.tiles, 1)
    cells = torch.arange(problem.cells.shape[0], device=problem.device)
    incumbent = problem.incumbent
    keep = (incumbent >= 0) & (problem.cost(cells, incumbent.clamp_min(0)) <= best[:, 0])
    return torch.where(keep, incumbent, nearest[:, 0])


def _exact(problem: Problem, reuse: int) -> torch.Tensor:
    """The optimum under the cap, on the pruned columns described in the module docstring."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    copies = min(reuse, n)
    per_cell = math.ceil(n / copies)
    if per_cell < m:
        _, nearest = cost_topk(problem.cells, problem.tiles, per_cell)
        incumbent = problem.incumbent[problem.incumbent >= 0]
        columns = torch.unique(torch.cat([nearest.view(-1), incumbent]))
    else:
        columns = torch.arange(m, device=problem.device)
    cells = torch.arange(n, device=problem.device)
    cost = cost_matrix(problem.cells, problem.tiles[columns])
    cost -= problem.bonus_for(cells[:, None], columns[None, :])
    cost = cost.repeat_interleave(copies, dim=1)
    if cost.is_cuda:
        # The Triton solver compiles once per shape and runs next_power_of_2(columns) lanes
        # anyway: forbidden padding columns up to that keeps the shapes few and costs nothing.
        padding = (1 << (cost.shape[1] - 1).bit_length()) - cost.shape[1]
        cost = torch.nn.functional.pad(cost, (0, padding), value=float("inf"))
    solution = solve_batch(cost[None])[0]
    return columns[solution // copies]
