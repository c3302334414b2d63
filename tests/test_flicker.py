"""The flicker measure: how each cell's source changed (``source_change``), which tiles were
swapped (``tile_swaps``), their sums over a video (``FrameTally``) and where a video reports them
(``VideoStats``).

Compared with plain loops over the pixels and cells in numpy and Python; ``source_change`` runs
``grid_reduce`` (in Triton's interpreter on a CPU), so the frames stay small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic import MosaicConfig, render_video
from mosaic.metrics import CALM_CHANGE, source_change, tile_swaps
from mosaic.tally import FrameTally
from tests.adapters.media import make_clip
from tests.scenes import photo_pool
from tests.syncs import count_syncs


def change_numpy(a: np.ndarray, b: np.ndarray, cell_h: int, cell_w: int) -> np.ndarray:
    """Mean absolute difference of every cell of two ``(3, H, W)`` frames, cell by cell."""
    height, width = a.shape[1:]
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    out = np.zeros((rows, cols))
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    for r in range(rows):
        for c in range(cols):
            rows_of = slice(r * cell_h, (r + 1) * cell_h)
            out[r, c] = difference[:, rows_of, c * cell_w : (c + 1) * cell_w].mean()
    return out


@given(
    height=st.sampled_from([1, 7, 8, 9, 17]),
    width=st.sampled_from([1, 5, 8, 13, 24]),
    cell=st.sampled_from([1, 2, 3, 8, (3, 4), (8, 6)]),
    layout=st.sampled_from(["CHW", "HWC"]),
    seed=st.integers(0, 2**16),
)
def test_source_change_is_the_mean_absolute_difference_of_each_cell(
    height: int, width: int, cell: int | tuple[int, int], layout: str, seed: int
):
    """Square and non-square cells ``(height, width)``; partial cells at the bottom and right
    average over the pixels they have; frames may be views of HWC buffers (as decoders deliver
    them)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (3, height, width)
    a, b = (torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8) for _ in "ab")
    expected = change_numpy(
        a.numpy(), b.numpy(), *((cell, cell) if isinstance(cell, int) else cell)
    )
    if layout == "HWC":
        a, b = (x.permute(1, 2, 0).contiguous().permute(2, 0, 1) for x in (a, b))
    got = source_change(a, b, cell)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-4)


def swaps_by_loops(previous: np.ndarray, choice: np.ndarray, change: np.ndarray) -> tuple:
    """``(calm, moving, changed)`` counted cell by cell."""
    rows, cols = choice.shape
    calm = moving = 0
    for r in range(rows):
        for c in range(cols):
            around = previous[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            if choice[r, c] not in around:
                calm += change[r, c] < CALM_CHANGE
                moving += change[r, c] >= CALM_CHANGE
    return calm, moving, int((change >= CALM_CHANGE).sum())


@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 7),
    tiles=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_tile_swaps_count_new_tiles_not_moved_ones(rows: int, cols: int, tiles: int, seed: int):
    """A cell is swapped when its tile is neither its own previous one nor one of its eight
    neighbours' (a tile that moved one cell with the content)."""
    generator = torch.Generator().manual_seed(seed)
    previous = torch.randint(0, tiles, (rows, cols), generator=generator)
    choice = torch.randint(0, tiles, (rows, cols), generator=generator)
    change = torch.rand(rows, cols, generator=generator) * 2 * CALM_CHANGE
    swaps = tile_swaps(previous, choice, change)
    expected = swaps_by_loops(previous.numpy(), choice.numpy(), change.numpy())
    assert (int(swaps.calm), int(swaps.moving), int(swaps.changed)) == expected


def test_a_pan_by_one_cell_swaps_only_the_entering_column():
    previous = torch.arange(20).view(4, 5)
    panned = torch.cat([previous[:, 1:], torch.arange(20, 24)[:, None]], 1)  # new column right
    swaps = tile_swaps(previous, panned, torch.zeros(4, 5))
    assert int(swaps.calm) == 4 and int(swaps.moving) == 0


def frames_with(counts: list[int], cells: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of ``(previous, choice)`` grids ``(1, cells)`` where ``counts[i]`` cells of pair
    ``i`` got a tile no neighbour had."""
    previous = torch.arange(cells)[None]
    pairs = []
    for count in counts:
        choice = previous.clone()
        choice[0, :count] = cells + torch.arange(count)
        pairs.append((previous, choice))
    return pairs


def test_tally_reads_exact_quantiles_and_leaves_scene_cuts_out():
    cells = 37
    counts = [0, 3, 1, 0, 9, 2, 0, 0, 5, 1, 4]
    tally = FrameTally(torch.device("cpu"))
    calm = torch.zeros(1, cells)
    for previous, choice in frames_with(counts, cells):
        tally.add(previous, choice, False, None, calm)
    # A scene cut changes every tile: counted as a cut, not as churn or swaps.
    tally.add(torch.arange(cells)[None], torch.arange(cells)[None] + cells, True, None, calm)
    reading = tally.read()
    shares = np.array(counts) / cells
    assert reading.scene_cuts == 1
    assert reading.churn == pytest.approx(shares.mean())
    assert reading.churn_p95 == pytest.approx(np.percentile(shares, 95, method="inverted_cdf"))
    assert reading.spurious_swaps == pytest.approx(np.percentile(shares, 50, method="inverted_cdf"))
    assert reading.content_swaps == 0 and reading.source_changes == 0


def test_tally_adds_up_on_the_device_without_reading_it(device: str):
    generator = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (4, 3, 24, 40), generator=generator, dtype=torch.uint8)
    choices = torch.randint(0, 50, (4, 3, 5), generator=generator)
    frames, choices = frames.to(device), choices.to(device)
    cut = torch.tensor(False, device=device)
    tally = FrameTally(torch.device(device))
    with count_syncs() as syncs:
        for index in range(1, 4):
            change = source_change(frames[index - 1], frames[index], 8)
            tally.add(choices[index - 1], choices[index], cut, None, change)
    assert not syncs, f"host syncs: {dict(syncs)}"
    assert 0 <= tally.read().spurious_swaps <= 1


@pytest.mark.usefixtures("reference_path")
def test_video_stats_report_the_swaps(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="96x64", rate="10", seconds=1, audio=None)
    config = MosaicConfig(cell=8, device="cpu")
    stats = render_video(source, tmp_path / "out.mp4", photo_pool(200), config, progress=False)
    for name in ("spurious_swaps", "spurious_swaps_p95", "content_swaps", "source_changes"):
        assert 0.0 <= getattr(stats, name) <= 1.0
        assert name in stats.as_dict()
    assert stats.spurious_swaps <= stats.spurious_swaps_p95
    assert "spurious swaps" in stats.summary()


def test_a_video_rendered_in_segments_reports_its_swaps():
    """Segments of one video (``mosaic.distributed``, on Ray): the median swaps weighted by each
    segment's frames, the 95th percentile the largest of theirs."""
    from fractions import Fraction

    from mosaic.distributed import joined_stats
    from mosaic.video import VideoStats

    def part(frames: int, spurious: float, p95: float) -> VideoStats:
        return VideoStats(
            frames, (64, 48), (64, 48), Fraction(25), 1.0, frames, "pyav", "libx264", "cpu",
            "exact", 1, (6, 8), 0.1, 0.2, 0.05, 0, spurious_swaps=spurious,
            spurious_swaps_p95=p95, content_swaps=2 * spurious, source_changes=0.5,
        )  # fmt: skip

    joined = joined_stats([part(30, 0.01, 0.03), part(10, 0.05, 0.02)])
    assert joined is not None
    assert joined.spurious_swaps == pytest.approx((30 * 0.01 + 10 * 0.05) / 40)
    assert joined.content_swaps == pytest.approx(2 * joined.spurious_swaps)
    assert joined.spurious_swaps_p95 == 0.03 and joined.source_changes == pytest.approx(0.5)
