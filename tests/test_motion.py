"""Camera motion from the block pictures (``mosaic.motion``) and the tiles that follow it
(``mosaic.temporal``): known motions of smooth random pictures recovered, the carry and the
waves against plain loops, and no host syncs in a frame's plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mosaic import motion as motion_module
from mosaic.config import TemporalSettings
from mosaic.motion import (
    MotionConstants,
    _solve_positive_definite,
    block_image,
    carry,
    cell_descriptors,
    cell_displacement,
    estimate_motion,
    motion_field,
)
from mosaic.temporal import FOLLOW, HOP, LIMIT, TemporalCoherence, _waves
from tests.syncs import count_syncs

BLOCK = 8  # pixels a block, as cell 16 with grid 2


def smooth_picture(height: int, width: int, sigma: float, seed: int) -> torch.Tensor:
    """float32 ``(3, H, W)``: Gaussian noise blurred with ``sigma`` pixels (any content moves
    with it: nothing about it favours a direction)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, height, width, generator=generator)
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).repeat(3, 1)[:, None]
    rows = F.conv2d(
        F.pad(noise, (radius, radius, 0, 0), mode="reflect"), taps[..., None, :], groups=3
    )
    return F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="reflect"), taps[..., None], groups=3)[
        0
    ]


def blocks_of(picture: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(picture[None], BLOCK)[0]


@given(
    dx=st.integers(-12, 12),
    dy=st.integers(-12, 12),
    sigma=st.sampled_from([3.0, 6.0]),
    seed=st.integers(0, 2**16),
)
def test_a_pan_is_recovered_to_a_few_percent(dx: int, dy: int, sigma: float, seed: int):
    """Content moved by whole pixels, seen through blocks of 8, sub-block and up to one and a
    half blocks a frame: the fitted displacement, on average over the picture, is within 5 %
    (+ 0.05 pixel) of the truth, and at every block within 12 %. The fit's spurious zoom and
    roll are small, and largest at the picture's edges: over 1,500 random draws the mean was
    at worst 3.6 % off, the worst block 9.2 %, and 2.4 % of draws had a block more than 5 %
    off (pans over a block of fine texture)."""
    picture = smooth_picture(240, 360, sigma, seed)
    before = blocks_of(picture[:, 24:216, 24:344])
    after = blocks_of(picture[:, 24 - dy : 216 - dy, 24 - dx : 344 - dx])
    constants = MotionConstants()
    motion = estimate_motion(before, after, torch.zeros(2, 3), 1, constants)
    field = motion_field(motion, *before.shape[-2:], constants) * BLOCK  # pixels
    truth = torch.tensor([dx, dy], dtype=torch.float32)[:, None, None]
    pan = max(abs(dx), abs(dy))
    assert (field.mean((1, 2)) - truth[:, 0, 0]).abs().max() <= 0.05 * pan + 0.05
    assert (field - truth).abs().max() <= 0.12 * pan + 0.05


@pytest.mark.parametrize("zoom", [0.002, -0.004, 0.01])
def test_a_zoom_is_recovered(zoom: float):
    """Frames sampled from one picture at two scales about the centre: ``M`` is the zoom on its
    diagonal (content at ``x`` moves to ``(1 + zoom) x``)."""
    picture = smooth_picture(300, 420, 6.0, 1)[None]
    height, width = 192, 320

    def view(scale: float) -> torch.Tensor:
        y = (torch.arange(height) + 0.5 - height / 2) / scale / (300 / 2)
        x = (torch.arange(width) + 0.5 - width / 2) / scale / (420 / 2)
        grid = torch.stack(torch.meshgrid(y, x, indexing="ij")).flip(0).permute(1, 2, 0)[None]
        return blocks_of(F.grid_sample(picture, grid, align_corners=False)[0])

    motion = estimate_motion(view(1.0), view(1.0 + zoom), torch.zeros(2, 3), 1, MotionConstants())
    assert motion[0, 1].item() == pytest.approx(zoom, abs=5e-4)
    assert motion[1, 2].item() == pytest.approx(zoom, abs=5e-4)
    assert motion[:, 0].abs().max() < 0.02 and abs(motion[0, 2]) < 5e-4


@given(seed=st.integers(0, 2**16), scale=st.floats(1e-6, 1e6), columns=st.integers(1, 3))
def test_the_normal_equations_are_solved_as_numpy_solves_them(seed, scale, columns):
    rng = np.random.default_rng(seed)
    jacobian = rng.normal(size=(40, 6)) * rng.uniform(0.01, 10, 6) * scale
    normal = jacobian.T @ jacobian + 1e-3 * scale**2 * np.eye(6)  # damped, as the steps are
    rhs = rng.normal(size=(6, columns)) * scale
    solved = _solve_positive_definite(torch.from_numpy(normal), torch.from_numpy(rhs)).numpy()
    np.testing.assert_allclose(solved, np.linalg.solve(normal, rhs), rtol=1e-9, atol=0)


def test_no_texture_no_motion():
    flat = torch.full((3, 24, 40), 0.5)
    start = torch.tensor([[0.3, 0, 0], [0.1, 0, 0]])
    motion = estimate_motion(flat, flat.clone(), start, 1, MotionConstants())
    assert torch.equal(motion, torch.zeros(2, 3))


@given(rows=st.integers(1, 5), cols=st.integers(1, 6), side=st.integers(1, 3))
def test_block_pictures_hold_the_descriptors(rows: int, cols: int, side: int):
    features = torch.randn(rows * cols, 3 * side * side)
    picture = block_image(features, (rows, cols))
    assert picture.shape == (3, rows * side, cols * side)
    assert torch.equal(cell_descriptors(picture, side), features)
    # Channel-major, then block rows and columns (mosaic.descriptors): cell 0's first block.
    assert torch.equal(picture[:, 0, 0], features[0, :: side * side])


def test_cell_displacement_is_the_motion_at_each_cell_centre():
    motion = torch.tensor([[0.5, 0.01, 0.0], [-0.25, 0.0, 0.02]])
    rows, cols, side = 3, 4, 2
    constants = MotionConstants()
    got = cell_displacement(motion, (rows, cols), side, constants)
    field = motion_field(motion, rows * side, cols * side, constants)
    centre_x = (torch.arange(cols) + 0.5) * side - cols * side / 2
    centre_y = (torch.arange(rows) + 0.5) * side - rows * side / 2
    expected_x = (0.5 + 0.01 * centre_x)[None].expand(rows, cols)
    expected_y = (-0.25 + 0.02 * centre_y)[:, None].expand(rows, cols)
    expected = torch.stack([expected_x, expected_y], -1).reshape(-1, 2) / side
    assert torch.allclose(got, expected, atol=1e-6)
    assert field.shape == (2, rows * side, cols * side)


def carry_by_loops(move: np.ndarray, rows: int, cols: int, priority: np.ndarray):
    """Each tile moved; on each cell the lowest (priority, index) stays."""
    best: dict[int, tuple[int, int]] = {}
    for index in range(rows * cols):
        row, col = index // cols + move[index, 1], index % cols + move[index, 0]
        if 0 <= row < rows and 0 <= col < cols:
            key = (int(np.rint(priority[index] * 1024)), index)
            cell = row * cols + col
            best[cell] = min(best.get(cell, key), key)
    source = np.array([best[c][1] if c in best else c for c in range(rows * cols)])
    landed = np.array([c in best for c in range(rows * cols)])
    return source, landed


@given(rows=st.integers(1, 5), cols=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_carry_moves_tiles_and_keeps_one_per_cell(rows: int, cols: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    move = torch.randint(-1, 2, (rows * cols, 2), generator=generator)
    priority = torch.rand(rows * cols, generator=generator).round(decimals=2)
    source, landed = carry(move, (rows, cols), priority)
    expected_source, expected_landed = carry_by_loops(move.numpy(), rows, cols, priority.numpy())
    assert np.array_equal(source.numpy(), expected_source)
    assert np.array_equal(landed.numpy(), expected_landed)


def waves_by_loops(phase: np.ndarray) -> np.ndarray:
    """``_waves``' rule along one row of phases, tile by tile."""
    length = len(phase)
    moves = np.zeros(length)
    for index in range(length):
        ahead = range(index, length)
        stop = next((j for j in ahead if phase[j] <= FOLLOW), length)
        trigger = next((j for j in ahead if phase[j] > HOP), length)
        if trigger < stop and (stop == length or phase[stop - 1] > LIMIT):
            moves[index] += 1
        behind = range(index, -1, -1)
        stop = next((j for j in behind if phase[j] >= -FOLLOW), -1)
        trigger = next((j for j in behind if phase[j] < -HOP), -1)
        if trigger > stop and (stop == -1 or phase[stop + 1] < -LIMIT):
            moves[index] -= 1
    return moves


@given(rows=st.integers(1, 4), cols=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_waves_follow_the_rule_row_by_row(rows: int, cols: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    phase = (torch.rand(rows * cols, 2, generator=generator) * 2.4 - 1.2).round(decimals=2)
    moves = _waves(phase, (rows, cols)).view(rows, cols, 2)
    grid = phase.view(rows, cols, 2).numpy()
    for row in range(rows):
        assert np.array_equal(moves[row, :, 0].numpy(), waves_by_loops(grid[row, :, 0]))
    for col in range(cols):
        assert np.array_equal(moves[:, col, 1].numpy(), waves_by_loops(grid[:, col, 1]))


def test_a_zoom_moves_runs_of_tiles_out_to_the_edge():
    """Phases growing towards the right edge (a zoom in): the tiles from the first past FOLLOW
    behind a trigger to the edge move together, leaving one gap."""
    phase = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.42, 0.5, 0.55, 0.61])
    moves = _waves(torch.stack([phase, torch.zeros(8)], -1), (1, 8))[:, 0]
    assert moves.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_steady_plan_reads_nothing_back(device: str):
    """Motion, carry, waves, anchors and the scene-cut test: no host sync in a frame (on every
    device: CUDA where there is one)."""
    temporal = TemporalCoherence(TemporalSettings())
    pan(temporal, (6, 8), range(1), device)
    with count_syncs() as syncs:
        pan(temporal, (6, 8), range(1, 6), device)
    assert not syncs, f"host syncs in a frame's plan: {dict(syncs)}"


def pan(
    temporal: TemporalCoherence, grid: tuple[int, int], frames: range, device: str = "cpu"
) -> None:
    """Plan and record ``frames`` (0 to 6) of one picture panning 3 pixels a frame, cut into a
    ``grid`` of cells of 16 (grid 2): the first frame of a new ``temporal`` has nothing to
    compare, the others fit the motion. The picture depends on the grid only, so calls that
    continue a video continue its pan."""
    rows, cols = grid
    assert frames.stop <= 7  # the pan stays inside the picture
    picture = smooth_picture(rows * 16 + 40, cols * 16 + 40, 4.0, 2).to(device)
    tiles = torch.randperm(rows * cols).to(device)
    cost = torch.tensor(1.0, dtype=torch.float64, device=device)
    for frame in frames:
        shift = 3 * frame
        view = picture[:, 20 : 20 + rows * 16, 20 + shift : 20 + shift + cols * 16]
        features = cell_descriptors(blocks_of(view), 2)
        plan = temporal.plan(features, grid)
        chosen = tiles if plan.incumbent is None else plan.incumbent.clamp_min(0)
        temporal.update(features, chosen, cost)


def test_a_videos_motion_constants_outlive_other_videos(monkeypatch: pytest.MonkeyPatch):
    """A frame step replayed as a CUDA graph reads the motion constants at fixed addresses as
    long as it replays: a video's frames never make them again, however many videos of other
    sizes ran meanwhile (a cache bounded and shared by every video would drop them)."""
    made: list[tuple[int, int]] = []
    make = motion_module._Constants.__init__

    def counted(self, height: int, width: int, margin: int, device: torch.device) -> None:
        made.append((height, width))
        make(self, height, width, margin, device)

    monkeypatch.setattr(motion_module._Constants, "__init__", counted)
    video = TemporalCoherence(TemporalSettings())
    pan(video, (6, 8), range(3))
    assert (12, 16) in made  # its block picture's
    others = [
        (rows, cols) for rows in range(2, 7) for cols in range(3, 11) if (rows, cols) != (6, 8)
    ]
    for grid in others:  # 39 other sizes, two frames each
        pan(TemporalCoherence(TemporalSettings()), grid, range(2))
    made.clear()
    pan(video, (6, 8), range(3, 6))
    assert made == []
