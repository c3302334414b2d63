"""The exact solvers: each cell's nearest tile (unlimited reuse), and the optimum under a reuse cap
by ``torch-linear-assignment`` (SciPy on CPU, one Triton program per problem on CUDA).

Under a cap ``k`` each tile is a column repeated ``min(k, N)`` times (a transportation problem
with unit demands is an assignment problem on copied columns). Columns are pruned without losing
optimality: a cell whose chosen tile is not among its ``t = ceil(N / copies)`` nearest can always
move to a free copy of one of them at no extra cost (the other ``N - 1`` cells fill at most
``N - 1`` of those ``t * copies`` slots), so the union of every cell's ``t`` nearest tiles and its
incumbent holds an optimum, and always a full assignment.
"""

from __future__ import annotations

import math

import torch
from torch_linear_assignment import batch_linear_assignment

from kernels import cost_matrix, cost_topk
from mosaic.assign.problem import Problem


def solve_nearest(problem: Problem) -> torch.Tensor:
    """Unlimited reuse: each cell's nearest tile, or its incumbent if no dearer after the bonus.
    That is the exact optimum. Returns int64 ``(N,)``."""
    best, nearest = cost_topk(problem.cells, problem.tiles, 1)
    cells = torch.arange(problem.cells.shape[0], device=problem.device)
    incumbent = problem.incumbent
    keep = (incumbent >= 0) & (problem.cost(cells, incumbent.clamp_min(0)) <= best[:, 0])
    return torch.where(keep, incumbent, nearest[:, 0])


def solve_exact(problem: Problem, reuse: int) -> torch.Tensor:
    """The optimum under the cap ``reuse >= 1``, on the pruned columns of the module docstring.
    Returns int64 ``(N,)``."""
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


def solve_exact_fair(problem: Problem, lower: int, upper: int) -> torch.Tensor:
    """The optimum with every tile used ``lower >= 1`` to ``upper`` times (``M * lower <= N <=
    M * upper``), on the square problem of the module docstring. Returns int64 ``(N,)``."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    cells = torch.arange(n, device=problem.device)
    tiles = torch.arange(m, device=problem.device)
    cost = cost_matrix(problem.cells, problem.tiles)
    cost -= problem.bonus_for(cells[:, None], tiles[None, :])
    optional = upper - lower
    mandatory = m * lower
    dummy = torch.zeros((m * upper - n, m * upper), device=problem.device)
    dummy[:, :mandatory] = float("inf")
    square = torch.cat(
        [
            torch.cat([cost.repeat_interleave(lower, 1), cost.repeat_interleave(optional, 1)], 1),
            dummy,
        ]
    )
    column = solve_batch(square[None])[0][:n]
    optional_tile = (column - mandatory).div(max(optional, 1), rounding_mode="floor")
    return torch.where(column < mandatory, column.div(lower, rounding_mode="floor"), optional_tile)


def solve_batch(cost: torch.Tensor) -> torch.Tensor:
    """Optimal assignment of each problem of ``cost (B, R, T)``, ``R <= T``, +inf = forbidden.

    Returns int64 ``(B, R)`` column per row. Callers build problems that always have a full
    assignment; a solver failure is therefore a bug and is reported as one.
    """
    try:
        return batch_linear_assignment(cost)
    except ValueError as error:
        raise RuntimeError(
            f"linear-assignment solver failed on a {tuple(cost.shape)} problem that should always "
            f"be feasible ({error}); please report this"
        ) from error
