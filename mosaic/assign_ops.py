"""Pieces shared by the assignment solvers: the cost of a choice, capacity-limited acceptance and
the call into the batched linear-assignment solver."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_linear_assignment import batch_linear_assignment


@dataclass(frozen=True)
class Problem:
    """One frame's assignment problem.

    ``cells``: float32 ``(N, D)``; ``tiles``: float32 ``(M, D)``; ``incumbent``: int64 ``(N,)``, the
    previous tile of each cell or -1; ``bonus``: float32 ``(N,)``, subtracted from the cost of the
    incumbent tile (zero where there is none). All on one device.
    """

    cells: torch.Tensor
    tiles: torch.Tensor
    incumbent: torch.Tensor
    bonus: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.cells.device

    def distance(self, cell_index: torch.Tensor, tile_index: torch.Tensor) -> torch.Tensor:
        """Squared descriptor distance of paired indices (same shape), float32, no bonus."""
        return (self.cells[cell_index] - self.tiles[tile_index]).square_().sum(-1)

    def cost(self, cell_index: torch.Tensor, tile_index: torch.Tensor) -> torch.Tensor:
        """Distance minus the switching bonus where the tile is the cell's incumbent."""
        return self.distance(cell_index, tile_index) - self.bonus_for(cell_index, tile_index)

    def bonus_for(self, cell_index: torch.Tensor, tile_index: torch.Tensor) -> torch.Tensor:
        """The bonus earned by each cell of ``cell_index`` (broadcast against ``tile_index``)."""
        keeps = self.incumbent[cell_index] == tile_index
        return torch.where(keeps, self.bonus[cell_index], 0.0)

    def block_cost(self, cell_index: torch.Tensor, tile_index: torch.Tensor) -> torch.Tensor:
        """Costs of every cell of each row of ``cell_index (B, R)`` against every tile of the same
        row of ``tile_index (B, T)``: float32 ``(B, R, T)``, bonus applied."""
        distances = torch.cdist(self.cells[cell_index], self.tiles[tile_index]).square_()
        return distances - self.bonus_for(cell_index[:, :, None], tile_index[:, None, :])


def rank_in_runs(sorted_keys: torch.Tensor) -> torch.Tensor:
    """int64 position of each element of 1-D ``sorted_keys`` within its run of equal values."""
    positions = torch.arange(sorted_keys.numel(), device=sorted_keys.device)
    run_starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    run_starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return positions - torch.cummax(torch.where(run_starts, positions, 0), 0).values


def order_by(major: torch.Tensor, minor: torch.Tensor) -> torch.Tensor:
    """Permutation sorting 1-D tensors by ``major``, then ``minor``, then position (stable)."""
    order = torch.argsort(minor, stable=True)
    return order[torch.argsort(major[order], stable=True)]


def accept_within_capacity(
    tiles: torch.Tensor, priority: torch.Tensor, capacity: torch.Tensor
) -> torch.Tensor:
    """Which proposals ``(cell -> tiles[p])`` to accept: per tile, the ``capacity[tile]`` ones of
    lowest ``priority`` (ties: earliest). Returns bool, shaped like ``tiles``."""
    order = order_by(tiles, priority)
    accepted = torch.empty_like(tiles, dtype=torch.bool)
    accepted[order] = rank_in_runs(tiles[order]) < capacity[tiles[order]]
    return accepted


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
