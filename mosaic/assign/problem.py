"""One frame's assignment problem, and the one place where assignment arguments are checked.

``validated_problem`` and ``resolve_reuse`` turn what a caller passed into a ``Problem`` or raise
one clear line; the solvers then trust their inputs. A video validates once, at its public entry
point, and hands the solvers problems it built itself (``Problem`` directly): checking every frame
would read values back from the GPU (a host sync) each time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mosaic.config import AUTO_MIN_DISTANCE, AUTO_SPACING_MIN_TILES, METHODS

__all__ = [
    "METHODS",
    "PoolTooSmallError",
    "Problem",
    "check_method",
    "check_min_distance",
    "fair_capacities",
    "make_problem",
    "resolve_min_distance",
    "resolve_reuse",
    "validated_problem",
]


class PoolTooSmallError(ValueError):
    """The tile pool cannot fill the grid under the reuse cap."""


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


def resolve_reuse(reuse: int | str, cells: int, tiles: int) -> int:
    """The reuse cap to use: ``0`` unlimited, ``k >= 1`` at most ``k`` uses per tile per frame.

    ``"auto"`` is the smallest cap that fills the grid, ``ceil(cells / tiles)``: the most
    variety the pool allows (1 when tiles outnumber cells). A larger cap lowers the colour error
    at the price of repeats (on image-like frames, 2040 cells and 1000 tiles, caps of 3, 6, 12
    and 24 gave 16x, 8x, 4x and 2.6x the error of every cell taking its nearest tile).

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
            f"{math.ceil(cells / reuse)} tiles, but there are {tiles}; set reuse to 'auto' "
            f"(here {math.ceil(cells / tiles)}) or higher, or add tiles"
        )
    return reuse


def fair_capacities(cells: int, tiles: int) -> tuple[int, int]:
    """Fair use's ``(lower, upper)`` uses of every tile: ``floor(cells / tiles)`` and
    ``ceil(cells / tiles)`` (at least 1), so every tile is used before any repeats."""
    if cells and not tiles:
        raise PoolTooSmallError(f"the tile pool is empty; {cells} cells need at least 1 tile")
    return cells // max(tiles, 1), max(1, math.ceil(cells / max(tiles, 1)))


def resolve_min_distance(min_distance: int | str, tiles: int, reuse: int) -> int:
    """The spacing to enforce: ``min_distance`` itself, or for ``"auto"`` ``AUTO_MIN_DISTANCE``
    when the pool has ``AUTO_SPACING_MIN_TILES`` tiles or more and tiles may repeat (``reuse``
    is not 1), else 0."""
    if min_distance != "auto":
        check_min_distance(min_distance)
        return min_distance
    return AUTO_MIN_DISTANCE if tiles >= AUTO_SPACING_MIN_TILES and reuse != 1 else 0


def check_method(method: str) -> None:
    """Raise unless ``method`` is one of ``METHODS``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def check_min_distance(min_distance: int) -> None:
    """Raise unless ``min_distance`` is an int ``>= 0``."""
    if isinstance(min_distance, bool) or not isinstance(min_distance, int) or min_distance < 0:
        raise ValueError(f"min_distance must be an int >= 0, got {min_distance!r}")


def validated_problem(
    cell_features: torch.Tensor,
    tile_features: torch.Tensor,
    grid: tuple[int, int],
    incumbent: torch.Tensor | None,
    switch_bonus: float | torch.Tensor,
) -> Problem:
    """Check the arguments of ``assign_tiles`` (one clear line each) and gather them into a
    ``Problem``. Reads a few values back from the device (finiteness, the incumbents' range)."""
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
    return make_problem(cell_features, tile_features, incumbent, bonus)


def make_problem(
    cells: torch.Tensor, tiles: torch.Tensor, incumbent: torch.Tensor, bonus: torch.Tensor
) -> Problem:
    """A ``Problem`` from trusted tensors (no checks, no host syncs): float features, int64
    incumbents (-1 none) and a scalar or ``(N,)`` bonus, all on one device. An incumbent without
    a bonus changes nothing, so it is dropped: bonus 0 equals no incumbent."""
    bonus = bonus.to(torch.float32).expand(cells.shape[0])
    incumbent = torch.where(bonus > 0, incumbent, -1)
    return Problem(cells.to(torch.float32), tiles.to(torch.float32), incumbent, bonus)
