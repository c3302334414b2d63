"""Tile assignment: optimality against SciPy, the gap of "windows", the reuse cap, min_distance, the
switching bonus, errors and determinism.

Optimality is checked on the dense problem with copied columns (a tile allowed ``k`` uses is ``k``
identical columns), solved by ``scipy.optimize.linear_sum_assignment`` on the same cost values
(``kernels.cost_matrix``). Image-like instances (a sky gradient, a building, objects) come from
``tests.synthetic``: random features understate how hard the problem is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from kernels import cost_matrix
from mosaic.assign import (
    EXACT_MAX_ENTRIES,
    PoolTooSmallError,
    assign_tiles,
    resolve_reuse,
    resolved_method,
)
from mosaic.assign.windows import kd_windows
from tests.synthetic import image_like_instance

pytestmark = pytest.mark.usefixtures("reference_path")

WINDOWS_MAX_GAP = 0.02


def random_instance(
    cells: int, tiles: int, dim: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(cells, dim, generator=generator), torch.rand(tiles, dim, generator=generator)


def dense_costs(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    incumbent: torch.Tensor | None = None,
    bonus: float | torch.Tensor = 0.0,
) -> np.ndarray:
    """float64 ``(N, M)``: the solver's distances minus the bonus on each cell's incumbent."""
    costs = cost_matrix(cells.cpu(), tiles.cpu()).double()
    if incumbent is not None:
        rows = (incumbent >= 0).nonzero().squeeze(1).cpu()
        bonus = torch.as_tensor(bonus, dtype=torch.float64).expand(cells.shape[0])
        costs[rows, incumbent.cpu()[rows]] -= bonus[rows]
    return costs.numpy()


def optimum(costs: np.ndarray, reuse: int) -> float:
    """SciPy's optimum with every tile column copied ``reuse`` times."""
    copied = np.repeat(costs, min(reuse, costs.shape[0]), axis=1)
    rows, columns = linear_sum_assignment(copied)
    return float(copied[rows, columns].sum())


def objective(costs: np.ndarray, tiles: torch.Tensor) -> float:
    return float(costs[np.arange(costs.shape[0]), tiles.cpu().numpy()].sum())


def assert_valid(tiles: torch.Tensor, pool: int, reuse: int) -> None:
    tiles = tiles.cpu()
    assert tiles.dtype == torch.int64
    assert bool(((tiles >= 0) & (tiles < pool)).all()), "tile index out of range"
    if reuse:
        uses = torch.bincount(tiles, minlength=pool)
        assert int(uses.max()) <= reuse, f"a tile is used {int(uses.max())} > {reuse} times"


def assert_spaced(tiles: torch.Tensor, grid: tuple[int, int], distance: int) -> None:
    """Brute force over every pair of cells: equal tiles are more than ``distance`` apart."""
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    near = np.maximum(abs(rows[:, None] - rows[None]), abs(cols[:, None] - cols[None])) <= distance
    values = tiles.cpu().numpy()
    same = values[:, None] == values[None]
    np.fill_diagonal(same, False)
    clashes = np.argwhere(same & near)
    assert clashes.size == 0, f"{len(clashes) // 2} clashes, first cells {clashes[0].tolist()}"


# ---------------------------------------------------------------------------------------------
# Exact mode


@pytest.mark.parametrize(
    ("cells", "tiles", "reuse"),
    [(24, 40, 1), (24, 40, 2), (24, 40, 3), (30, 30, 1), (30, 30, 2), (45, 20, 3), (40, 20, 2)],
)
def test_exact_equals_scipy_on_random_instances(device, cells, tiles, reuse):
    cell_features, tile_features = random_instance(cells, tiles, seed=cells + reuse)
    result = assign_tiles(
        cell_features.to(device), tile_features.to(device), (cells, 1), reuse=reuse, method="exact"
    )
    assert result.method == "exact"
    assert result.tiles.device.type == torch.device(device).type
    assert_valid(result.tiles, tiles, reuse)
    costs = dense_costs(cell_features, tile_features)
    assert objective(costs, result.tiles) == pytest.approx(optimum(costs, reuse), rel=1e-4)
    assert result.cost == pytest.approx(objective(costs, result.tiles), rel=1e-4)


@pytest.mark.parametrize("reuse", [1, 2, 3])
def test_exact_equals_scipy_on_image_like_instances(reuse):
    grid = (9, 12)
    cells, tiles = image_like_instance(*grid, tiles=150, dim=12, seed=reuse)
    result = assign_tiles(cells, tiles, grid, reuse=reuse, method="exact")
    assert_valid(result.tiles, 150, reuse)
    costs = dense_costs(cells, tiles)
    assert objective(costs, result.tiles) == pytest.approx(optimum(costs, reuse), rel=1e-4)


@pytest.mark.parametrize("reuse", [1, 3])
def test_exact_fills_a_pool_that_fits_exactly(reuse):
    grid = (6, 10)
    cells, tiles = image_like_instance(*grid, tiles=60 // reuse, dim=12, seed=7)
    result = assign_tiles(cells, tiles, grid, reuse=reuse, method="exact")
    assert_valid(result.tiles, 60 // reuse, reuse)
    assert int(torch.bincount(result.tiles).min()) == reuse  # every copy used
    costs = dense_costs(cells, tiles)
    assert objective(costs, result.tiles) == pytest.approx(optimum(costs, reuse), rel=1e-4)


@pytest.mark.parametrize("reuse", [1, 2])
def test_exact_with_incumbent_and_bonus_is_optimal(reuse):
    grid = (8, 10)
    cells, tiles = image_like_instance(*grid, tiles=120, dim=12, seed=3)
    generator = torch.Generator().manual_seed(3)
    incumbent = torch.randint(-1, 120, (80,), generator=generator)
    bonus = torch.rand(80, generator=generator) * 0.05
    result = assign_tiles(
        cells, tiles, grid, reuse=reuse, method="exact", incumbent=incumbent, switch_bonus=bonus
    )
    costs = dense_costs(cells, tiles, incumbent, bonus)
    assert objective(costs, result.tiles) == pytest.approx(optimum(costs, reuse), rel=1e-4)


def test_auto_picks_exact_when_small_and_windows_when_large():
    small = image_like_instance(5, 8, tiles=60, dim=3)
    assert EXACT_MAX_ENTRIES >= 40 * 60
    assert assign_tiles(*small, (5, 8)).method == "exact"
    large = image_like_instance(10, 20, tiles=300, dim=3)
    assert EXACT_MAX_ENTRIES < 200 * 300
    assert assign_tiles(*large, (10, 20)).method == "windows"


def test_auto_picks_the_auction_for_a_videos_large_frames_on_cuda():
    """Only there: a video's steady frames replay it as a CUDA graph, a still would solve it
    cold and eagerly, and a CPU runs the windows solver far faster."""
    large = dict(reuse=1, cells=8160, tiles=20000)
    assert resolved_method("auto", **large, device="cuda:0", video=True) == "auction"
    assert resolved_method("auto", **large, device="cuda", video=False) == "windows"
    assert resolved_method("auto", **large, device="cpu", video=True) == "windows"
    assert resolved_method("auto", 1, 40, 60, device="cuda", video=True) == "exact"
    assert resolved_method("auto", 0, 8160, 20000, device="cuda", video=True) == "nearest"
    # A lower capacity (fair use) is beyond the auction's certificate.
    fair = dict(reuse=4, cells=8160, tiles=2040, lower=4)
    assert resolved_method("auto", **fair, device="cuda", video=True) == "windows"
    # Barely more slots than cells: long eviction chains, windows does better.
    tight = dict(cells=8160, tiles=8161, device="cuda", video=True)
    assert resolved_method("auto", 1, **tight) == "windows"
    assert resolved_method("auto", 2, **tight) == "auction"


# ---------------------------------------------------------------------------------------------
# Scalable mode ("windows")

# rows, cols, tiles, reuse: N < M, the 720p CPU workload, a tight pool, reuse 2 and 3
WINDOWS_CASES = [
    (10, 20, 300, 1),
    (20, 35, 1000, 1),
    (20, 20, 400, 1),
    (16, 20, 200, 2),
    (24, 30, 300, 3),
]


@pytest.mark.parametrize(("rows", "cols", "tiles", "reuse"), WINDOWS_CASES)
def test_windows_gap_to_exact_on_image_like_instances(rows, cols, tiles, reuse):
    cells, pool = image_like_instance(rows, cols, tiles, dim=48, seed=rows * cols)
    result = assign_tiles(cells, pool, (rows, cols), reuse=reuse, method="windows")
    assert result.method == "windows"
    assert_valid(result.tiles, tiles, reuse)
    costs = dense_costs(cells, pool)
    best = optimum(costs, reuse)
    gap = objective(costs, result.tiles) / best - 1
    assert -1e-6 <= gap <= WINDOWS_MAX_GAP, f"gap {100 * gap:.2f} %"


@pytest.mark.parametrize(("rows", "cols", "tiles", "reuse"), [(20, 35, 1000, 1), (16, 20, 200, 2)])
def test_windows_steady_state_with_bonus(rows, cols, tiles, reuse):
    """Second frame: small noise, incumbent = first frame, bonus 0.3 x the mean cost."""
    cells, pool = image_like_instance(rows, cols, tiles, dim=48, seed=1)
    first = assign_tiles(cells, pool, (rows, cols), reuse=reuse, method="windows")
    noisy = cells + 0.01 * torch.randn(cells.shape, generator=torch.Generator().manual_seed(2))
    bonus = 0.3 * first.cost / cells.shape[0]
    second = assign_tiles(
        noisy,
        pool,
        (rows, cols),
        reuse=reuse,
        method="windows",
        incumbent=first.tiles,
        switch_bonus=bonus,
    )
    assert_valid(second.tiles, tiles, reuse)
    costs = dense_costs(noisy, pool, first.tiles, bonus)
    gap = objective(costs, second.tiles) / optimum(costs, reuse) - 1
    assert gap <= WINDOWS_MAX_GAP, f"gap {100 * gap:.2f} %"
    assert float((second.tiles != first.tiles).float().mean()) < 0.05  # little churn


def test_windows_on_device(device):
    cells, pool = image_like_instance(10, 12, tiles=90, dim=12, seed=5)
    result = assign_tiles(cells.to(device), pool.to(device), (10, 12), reuse=2, method="windows")
    assert result.tiles.device.type == torch.device(device).type
    assert_valid(result.tiles, 90, 2)


@given(cells=st.integers(1, 300), depth=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_kd_windows_partition_the_cells(cells, depth, seed):
    depth = min(depth, cells.bit_length() - 1)  # as solve_windows: no more windows than cells
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(cells, 6, generator=generator).round(decimals=1)  # ties too
    directions = torch.randn((1 << depth) - 1, 6, generator=generator)
    members = kd_windows(features, directions, depth)
    width = math.ceil(cells / (1 << depth))
    assert members.shape == (1 << depth, width)
    assert torch.equal(members[members >= 0].sort().values, torch.arange(cells))
    real = members >= 0
    assert not (~real[:, :-1] & real[:, 1:]).any()  # a window's cells come first
    if depth:  # the root splits its cells by their projection on its direction
        key = features @ directions[0]
        half = members.shape[0] // 2
        first, second = members[:half], members[half:]
        assert key[first[first >= 0]].max() <= key[second[second >= 0]].min()


# ---------------------------------------------------------------------------------------------
# Unlimited reuse, the switching bonus and the spatial rule


def test_reuse_zero_takes_the_nearest_tile():
    cells, tiles = random_instance(50, 30, seed=4)
    result = assign_tiles(cells, tiles, (5, 10), reuse=0)
    assert result.method == "nearest"
    costs = dense_costs(cells, tiles)
    np.testing.assert_allclose(costs[np.arange(50), result.tiles.numpy()], costs.min(1))


@pytest.mark.parametrize(
    ("reuse", "method"), [(0, "auto"), (1, "exact"), (2, "exact"), (1, "windows"), (2, "windows")]
)
def test_large_bonus_keeps_every_incumbent(reuse, method):
    cells, tiles = image_like_instance(8, 12, tiles=150, dim=12, seed=6)
    generator = torch.Generator().manual_seed(6)
    incumbent = torch.randperm(150, generator=generator)[:96]
    if reuse != 1:
        incumbent[1::2] = incumbent[::2]  # tiles used twice, as the cap allows
    result = assign_tiles(
        cells, tiles, (8, 12), reuse=reuse, method=method, incumbent=incumbent, switch_bonus=10.0
    )
    assert torch.equal(result.tiles, incumbent)


def test_large_bonus_keeps_incumbents_wherever_the_cap_allows():
    cells, tiles = image_like_instance(6, 10, tiles=80, dim=12, seed=8)
    incumbent = torch.arange(60) % 40  # every tile twice: with reuse 1 only one holder may keep it
    result = assign_tiles(
        cells, tiles, (6, 10), reuse=1, method="exact", incumbent=incumbent, switch_bonus=10.0
    )
    assert int((result.tiles == incumbent).sum()) == 40


@pytest.mark.parametrize(
    ("reuse", "method"), [(0, "auto"), (2, "exact"), (1, "windows"), (2, "windows")]
)
def test_zero_bonus_equals_no_incumbent(reuse, method):
    cells, tiles = image_like_instance(12, 20, tiles=250, dim=12, seed=9)
    incumbent = torch.randint(-1, 250, (240,), generator=torch.Generator().manual_seed(9))
    alone = assign_tiles(cells, tiles, (12, 20), reuse=reuse, method=method)
    with_incumbent = assign_tiles(
        cells, tiles, (12, 20), reuse=reuse, method=method, incumbent=incumbent, switch_bonus=0.0
    )
    assert torch.equal(alone.tiles, with_incumbent.tiles)


@pytest.mark.parametrize("distance", [1, 2])
@pytest.mark.parametrize(
    ("reuse", "method"), [(0, "auto"), (2, "exact"), (3, "windows"), (4, "windows")]
)
def test_min_distance_holds(reuse, method, distance):
    grid = (12, 15)
    cells, tiles = image_like_instance(*grid, tiles=120, dim=12, seed=10)
    result = assign_tiles(cells, tiles, grid, reuse=reuse, method=method, min_distance=distance)
    assert_valid(result.tiles, 120, reuse)
    assert_spaced(result.tiles, grid, distance)


def test_min_distance_keeps_the_cost_close():
    grid = (12, 15)
    cells, tiles = image_like_instance(*grid, tiles=120, dim=12, seed=11)
    free = assign_tiles(cells, tiles, grid, reuse=0)
    spaced = assign_tiles(cells, tiles, grid, reuse=0, min_distance=1)
    assert_spaced(spaced.tiles, grid, 1)
    assert spaced.cost <= 3 * free.cost


def test_min_distance_that_cannot_hold_is_a_clear_error():
    cells, tiles = random_instance(25, 3, seed=12)
    with pytest.raises(ValueError, match="min_distance=1 could not be honoured"):
        assign_tiles(cells, tiles, (5, 5), reuse=0, min_distance=1)


# ---------------------------------------------------------------------------------------------
# Reuse, errors, determinism


def test_pool_too_small_error_says_what_is_needed(monkeypatch):
    def no_solver(*args, **kwargs):
        raise AssertionError("a solver ran before the pool was checked")

    for solver in ("solve_nearest", "solve_exact", "solve_windows", "solve_auction"):
        monkeypatch.setattr(f"mosaic.assign.{solver}", no_solver)
    cells, tiles = random_instance(100, 30)
    with pytest.raises(PoolTooSmallError) as error:
        assign_tiles(cells, tiles, (10, 10), reuse=3)
    message = str(error.value)
    assert "100 cells" in message and "at least 34 tiles" in message and "there are 30" in message
    assert "reuse to 'auto'" in message and "(here 4)" in message
    assert isinstance(error.value, ValueError)


def test_resolve_reuse():
    assert resolve_reuse("auto", cells=100, tiles=30) == 4
    assert resolve_reuse("auto", cells=100, tiles=100) == 1
    assert resolve_reuse("auto", cells=10, tiles=1000) == 1
    assert resolve_reuse(0, cells=100, tiles=1) == 0
    assert resolve_reuse(4, cells=100, tiles=25) == 4
    with pytest.raises(PoolTooSmallError, match="at least 34 tiles"):
        resolve_reuse(3, cells=100, tiles=30)
    with pytest.raises(PoolTooSmallError, match="empty"):
        resolve_reuse("auto", cells=10, tiles=0)
    for bad in (-1, 1.5, True, "3", None):
        with pytest.raises(ValueError, match="reuse must be"):
            resolve_reuse(bad, cells=10, tiles=10)


def test_invalid_arguments_are_clear_errors():
    cells, tiles = random_instance(20, 30)
    with pytest.raises(ValueError, match="grid 4 x 4 does not match 20 cells"):
        assign_tiles(cells, tiles, (4, 4))
    with pytest.raises(ValueError, match="method must be one of"):
        assign_tiles(cells, tiles, (4, 5), method="hungarian")
    with pytest.raises(ValueError, match="incumbent tiles must be"):
        assign_tiles(cells, tiles, (4, 5), incumbent=torch.full((20,), 30), switch_bonus=1.0)
    with pytest.raises(ValueError, match="switch_bonus must be finite and >= 0"):
        assign_tiles(cells, tiles, (4, 5), switch_bonus=-1.0)
    with pytest.raises(ValueError, match="min_distance must be"):
        assign_tiles(cells, tiles, (4, 5), min_distance=-1)
    with pytest.raises(ValueError, match="share D"):
        assign_tiles(cells, tiles[:, :2], (4, 5))
    with pytest.raises(ValueError, match="must be finite"):
        assign_tiles(cells, tiles.clone().fill_(float("nan")), (4, 5))


def test_a_solver_failure_is_reported_as_a_bug(monkeypatch):
    def infeasible(cost):
        raise ValueError("cost matrix is infeasible")

    monkeypatch.setattr("mosaic.assign.exact.batch_linear_assignment", infeasible)
    cells, tiles = random_instance(20, 30)
    with pytest.raises(RuntimeError, match=r"solver failed on a \(1, 20, \d+\) problem"):
        assign_tiles(cells, tiles, (4, 5), method="exact")


def test_empty_grid():
    result = assign_tiles(torch.empty(0, 3), torch.rand(5, 3), (0, 7))
    assert result.tiles.shape == (0,) and result.cost == 0.0


@pytest.mark.parametrize("method", ["exact", "windows"])
def test_deterministic(method):
    cells, tiles = image_like_instance(10, 15, tiles=160, dim=12, seed=13)
    runs = [assign_tiles(cells, tiles, (10, 15), reuse=2, method=method) for _ in range(2)]
    assert torch.equal(runs[0].tiles, runs[1].tiles)


@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    pool=st.integers(1, 12),
    reuse=st.integers(1, 3),
    method=st.sampled_from(["exact", "windows"]),
    seed=st.integers(0, 2**16),
)
def test_small_instances_are_valid_and_exact_is_optimal(rows, cols, pool, reuse, method, seed):
    cells = rows * cols
    reuse = max(reuse, math.ceil(cells / pool))
    cell_features, tile_features = random_instance(cells, pool, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    incumbent = torch.randint(-1, pool, (cells,), generator=generator)
    bonus = torch.rand(cells, generator=generator) * 0.2
    result = assign_tiles(
        cell_features,
        tile_features,
        (rows, cols),
        reuse=reuse,
        method=method,
        incumbent=incumbent,
        switch_bonus=bonus,
    )
    assert_valid(result.tiles, pool, reuse)
    costs = dense_costs(cell_features, tile_features, incumbent, bonus)
    best = optimum(costs, reuse)
    if method == "exact":
        assert objective(costs, result.tiles) == pytest.approx(best, rel=1e-4, abs=1e-5)
    else:
        assert objective(costs, result.tiles) >= best - 1e-5


@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    pool=st.integers(4, 30),
    reuse=st.sampled_from([0, 2, 3]),
    distance=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_min_distance_holds_or_is_refused_clearly(rows, cols, pool, reuse, distance, seed):
    cells = rows * cols
    reuse = max(reuse, math.ceil(cells / pool)) if reuse else 0
    cell_features, tile_features = random_instance(cells, pool, seed=seed)
    incumbent = torch.randint(-1, pool, (cells,), generator=torch.Generator().manual_seed(seed))
    try:
        result = assign_tiles(
            cell_features,
            tile_features,
            (rows, cols),
            reuse=reuse,
            min_distance=distance,
            incumbent=incumbent,
            switch_bonus=0.1,
        )
    except ValueError as error:
        assert "could not be honoured" in str(error)
        return
    assert_valid(result.tiles, pool, reuse)
    assert_spaced(result.tiles, (rows, cols), distance)
