"""Fair use and the spacing rule: lower and upper capacities against a linear-programming
oracle, the windows solver's fair start and passes, the device-side spacing repair (no host
reads, capacities kept, the certificate kept honest) and the usage report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

import mosaic.assign.spacing as spacing
from kernels import cost_matrix
from mosaic.assign import (
    TileUsage,
    assign_tiles,
    fair_capacities,
    make_problem,
    resolve_min_distance,
    resolved_method,
    solve,
)
from mosaic.assign.spacing import enforce_spacing, spacing_conflicts
from mosaic.config import AUTO_MIN_DISTANCE, AUTO_SPACING_MIN_TILES
from tests.syncs import count_syncs
from tests.synthetic import image_like_instance

pytestmark = pytest.mark.usefixtures("reference_path")


def fair_optimum(cells: torch.Tensor, tiles: torch.Tensor) -> float:
    """The fair-use optimum as a transportation LP (HiGHS; the constraint matrix is totally
    unimodular, so the LP optimum is the integer one): every cell one tile, every tile between
    ``floor(N / M)`` and ``ceil(N / M)`` cells."""
    costs = cost_matrix(cells, tiles).double().numpy()
    n, m = costs.shape
    lower, upper = fair_capacities(n, m)
    rows = np.kron(np.eye(n), np.ones(m))  # each cell: one tile
    columns = np.kron(np.ones(n), np.eye(m))  # each tile: its uses
    result = linprog(
        costs.reshape(-1),
        A_ub=np.vstack([columns, -columns]),
        b_ub=np.concatenate([np.full(m, upper), np.full(m, -lower)]),
        A_eq=rows,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    assert result.success, result.message
    return float(result.fun)


def assert_fair(tiles: torch.Tensor, pool: int) -> None:
    lower, upper = fair_capacities(tiles.numel(), pool)
    uses = torch.bincount(tiles.cpu(), minlength=pool)
    assert int(uses.min()) >= lower and int(uses.max()) <= upper, (lower, upper, uses.tolist())


def distance_sum(cells: torch.Tensor, tiles: torch.Tensor, assign: torch.Tensor) -> float:
    return float((cells - tiles[assign]).square().sum(1).double().sum())


@given(
    cells=st.integers(1, 36),
    pool=st.integers(1, 11),
    dim=st.sampled_from([3, 12]),
    seed=st.integers(0, 2**16),
)
def test_fair_exact_is_the_lp_optimum(cells, pool, dim, seed):
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(cells, dim, generator=generator)
    pool_features = torch.rand(pool, dim, generator=generator)
    result = assign_tiles(features, pool_features, (1, cells), fair=True, method="exact")
    assert_fair(result.tiles, pool)
    assert result.method == "exact"
    optimum = fair_optimum(features, pool_features)
    assert distance_sum(features, pool_features, result.tiles) == pytest.approx(optimum, abs=1e-4)


@pytest.mark.parametrize(("rows", "cols", "pool"), [(12, 15, 40), (10, 14, 35), (6, 8, 48)])
def test_fair_windows_keeps_every_count_close_to_the_optimum(rows, cols, pool):
    cells, tiles = image_like_instance(rows, cols, tiles=pool, dim=12, seed=3)
    result = assign_tiles(cells, tiles, (rows, cols), fair=True, method="windows")
    assert_fair(result.tiles, pool)
    exact = assign_tiles(cells, tiles, (rows, cols), fair=True, method="exact")
    # Measured: 0-1 % above the optimum, 6.6 % on the first case (which tiles get the extra use
    # is settled by the start: the passes keep every count).
    assert result.cost <= 1.08 * exact.cost


def test_fair_use_is_reuse_one_with_more_tiles_than_cells_and_steers_the_auction():
    assert fair_capacities(30, 50) == (0, 1)
    assert fair_capacities(100, 30) == (3, 4) and fair_capacities(90, 30) == (3, 3)
    assert resolved_method("auction", 1, 30, 50, lower=0) == "auction"
    assert resolved_method("auction", 4, 100, 30, lower=3) in ("exact", "windows")
    cells, tiles = image_like_instance(8, 10, tiles=24, dim=12, seed=5)
    result = assign_tiles(cells, tiles, (8, 10), fair=True, method="auction")
    assert result.method in ("exact", "windows")
    assert_fair(result.tiles, 24)


def test_auto_spacing_needs_a_pool_that_allows_it():
    assert resolve_min_distance("auto", AUTO_SPACING_MIN_TILES, 4) == AUTO_MIN_DISTANCE
    assert resolve_min_distance("auto", AUTO_SPACING_MIN_TILES - 1, 4) == 0
    assert resolve_min_distance("auto", 1000, 1) == 0  # no tile repeats anyway
    assert resolve_min_distance(3, 5, 1) == 3
    with pytest.raises(ValueError, match="min_distance must be an int"):
        resolve_min_distance(-1, 5, 1)


@pytest.mark.parametrize(("upper", "lower", "distance"), [(0, 0, 1), (6, 0, 2), (5, 4, 1)])
def test_the_repair_reads_nothing_back_and_keeps_the_capacities(
    monkeypatch, upper, lower, distance
):
    """The GPU's schedule (every round, no early stop) on the CPU: no host reads, and each tile
    stays within ``[lower, upper]`` (fair use: 4 or 5 uses; 180 cells, 40 tiles)."""
    grid = (12, 15)
    cells, tiles = image_like_instance(*grid, tiles=40, dim=12, seed=7)
    fair = lower > 0
    start = assign_tiles(cells, tiles, grid, reuse=upper, fair=fair, method="exact").tiles
    problem = make_problem(cells, tiles, torch.full((180,), -1), torch.zeros(()))
    monkeypatch.setattr(spacing, "STOP_WHEN_CLEAR_ON_CPU", False)
    with count_syncs() as syncs:
        result = enforce_spacing(problem, start, grid, distance, upper, lower)
    assert not syncs, dict(syncs)
    assert int(result.clashes) == 0
    assert not bool(spacing_conflicts(result.tiles, grid, distance).any())
    uses = torch.bincount(result.tiles, minlength=40)
    assert int(uses.min()) >= lower and (upper == 0 or int(uses.max()) <= upper)
    monkeypatch.setattr(spacing, "STOP_WHEN_CLEAR_ON_CPU", True)
    assert torch.equal(
        enforce_spacing(problem, start, grid, distance, upper, lower).tiles, result.tiles
    )


def test_spacing_keeps_the_certificate_honest():
    """After the repair an exact method's gap bounds the repaired cost against the optimum
    without spacing, which is at most the optimum with it."""
    grid = (12, 15)
    cells, tiles = image_like_instance(*grid, tiles=60, dim=12, seed=8)
    free = assign_tiles(cells, tiles, grid, reuse=4, method="exact")
    spaced = assign_tiles(cells, tiles, grid, reuse=4, method="exact", min_distance=1)
    assert int(spaced.clashes) == 0 and float(free.gap) == 0
    assert spaced.cost >= free.cost
    assert float(spaced.gap) == pytest.approx(spaced.cost / free.cost - 1, rel=1e-5)


def test_fair_use_and_spacing_together():
    grid = (12, 15)
    cells, tiles = image_like_instance(*grid, tiles=40, dim=12, seed=9)
    for method in ("exact", "windows"):
        result = assign_tiles(cells, tiles, grid, fair=True, method=method, min_distance=1)
        assert_fair(result.tiles, 40)
        assert not bool(spacing_conflicts(result.tiles, grid, 1).any())


def test_usage_counts_tiles_frames_and_clashes():
    usage = TileUsage(5, torch.device("cpu"))
    usage.add(torch.tensor([[0, 0], [3, 0]]))
    usage.add(torch.tensor([1, 3, 3, 3]), clashes=torch.tensor(2))
    report = usage.read()
    assert (report.tiles_used, report.pool_size, report.frames) == (3, 5, 2)
    assert (report.most_used, report.most_used_cells, report.most_in_a_frame) == (3, 4, 3)
    assert report.clashes == 2
    assert report.summary("sea.jpg") == (
        "3 of 5 tiles used, the most used sea.jpg (4 cells, at most 3 a frame); "
        "2 cells beside a copy of their tile (pool too small)"
    )


def test_solve_without_spacing_has_no_clash_count():
    cells, tiles = image_like_instance(4, 5, tiles=30, dim=12, seed=1)
    problem = make_problem(cells, tiles, torch.full((20,), -1), torch.zeros(()))
    assert solve(problem, (4, 5), 1, "exact").clashes is None
    spaced = solve(problem, (4, 5), 2, "exact", 1)
    assert int(spaced.clashes) == 0 and 0 <= float(spaced.gap) < math.inf
