"""Adaptive cells (mosaic.adaptive): the quadtree against a per-cell scan and a numpy energy, the
assignment rules over cells of every size, the render end to end, the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from adapters import read_image
from kernels.dispatch import KERNELS_INTERPRETED
from mosaic import MosaicConfig, render_image, render_image_with_stats, render_print
from mosaic.adaptive import AdaptiveRenderer, neighbour_pairs, quadtree_cells, split_cells
from mosaic.assign import PoolTooSmallError
from mosaic.cli import main
from mosaic.config import ConfigError
from mosaic.imageops import resize
from tests.scenes import add_noise, landscape, photo_pool, write_photos

pytestmark = pytest.mark.usefixtures("reference_path")

LUMA = np.array([0.2126, 0.7152, 0.0722])


# --------------------------------------------------------------------------- independent oracles


def scanned_cells(energy, grid: tuple[int, int], levels: int, threshold: float) -> set:
    """The quadtree's cells found smallest cell by smallest cell: the largest aligned block
    around it that fits the grid and is not split (``energy(level, block_row, block_col)``
    at most ``threshold``), the smallest cell itself at level 0. ``{(top, left, level)}``."""
    rows, cols = grid
    cells = set()
    for y in range(rows):
        for x in range(cols):
            for level in range(levels, -1, -1):
                size = 2**level
                top, left = y // size * size, x // size * size
                fits = top + size <= rows and left + size <= cols
                if fits and (level == 0 or energy(level, top // size, left // size) <= threshold):
                    cells.add((top, left, level))
                    break
    return cells


def numpy_energy(rgb: np.ndarray, top: int, left: int, height: int, width: int) -> float:
    """The detail energy of one block of a uint8 ``(3, H, W)`` array: the mean squared forward
    difference of its luma across, plus the mean one down (0 for a direction with none)."""
    luma = np.tensordot(LUMA, rgb[:, top : top + height, left : left + width] / 255.0, 1)
    across = np.diff(luma, axis=1) ** 2
    down = np.diff(luma, axis=0) ** 2
    return (across.mean() if across.size else 0.0) + (down.mean() if down.size else 0.0)


def cell_set(cells) -> set:
    return set(zip(cells.top.tolist(), cells.left.tolist(), cells.level.tolist(), strict=True))


def check_tiling(cells) -> None:
    """Every smallest cell is covered exactly once; every cell aligned, inside, a power of two."""
    rows, cols = cells.grid
    cover = np.zeros((rows, cols), np.int64)
    for top, left, level in cell_set(cells):
        size = 2**level
        assert top % size == 0 and left % size == 0
        assert top + size <= rows and left + size <= cols
        cover[top : top + size, left : left + size] += 1
    assert (cover == 1).all()
    assert len(cell_set(cells)) == len(cells)
    order = (cells.top * cols + cells.left).tolist()
    assert order == sorted(order)  # row-major


# --------------------------------------------------------------------------- the quadtree


@given(
    rows=st.integers(1, 13),
    cols=st.integers(1, 13),
    levels=st.integers(0, 3),
    seed=st.integers(0, 2**16),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, math.inf]),
)
def test_cells_tile_the_grid_and_split_where_the_energy_is_high(
    rows, cols, levels, seed, threshold
):
    generator = torch.Generator().manual_seed(seed)
    energies = {  # quarters, so some equal the threshold: those are kept
        level: torch.randint(0, 5, (rows >> level, cols >> level), generator=generator) / 4
        for level in range(1, levels + 1)
        if rows >> level and cols >> level
    }
    cells = split_cells(energies, (rows, cols), threshold)
    check_tiling(cells)
    assert cell_set(cells) == scanned_cells(
        lambda level, r, c: float(energies[level][r, c]), (rows, cols), levels, threshold
    )
    assert int(cells.level.max()) <= levels
    if threshold == math.inf:  # nothing splits: the largest cells that fit
        assert int(cells.level.max()) == max(energies, default=0)


@given(
    height=st.integers(1, 37),
    width=st.integers(1, 37),
    cell=st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 3), (4, 2)]),
    levels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    quantile=st.floats(0.1, 0.9),
)
def test_a_frame_splits_where_its_numpy_energy_is_above_the_threshold(
    height, width, cell, levels, seed, quantile
):
    rng = np.random.default_rng(seed)
    # Flat patches, some with noise: energies from zero to large.
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (3, 5, 5)), 8, 1), 8, 2)[:, :height, :width]
    noisy = np.repeat(np.repeat(rng.random((5, 5)) < 0.4, 8, 0), 8, 1)[:height, :width]
    rgb = np.where(noisy, rng.integers(0, 256, rgb.shape), rgb).astype(np.uint8)
    cell_h, cell_w = cell
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    padded = np.pad(rgb, ((0, 0), (0, rows * cell_h - height), (0, cols * cell_w - width)), "edge")

    def energy(level: int, row: int, col: int) -> float:
        block_h, block_w = cell_h << level, cell_w << level
        return numpy_energy(padded, row * block_h, col * block_w, block_h, block_w)

    blocks = [
        energy(level, r, c)
        for level in range(1, levels + 1)
        for r in range(rows >> level)
        for c in range(cols >> level)
    ]
    threshold = float(np.quantile(blocks, quantile)) if blocks else 0.0
    # No energy so near the threshold that float32 rounding could decide it. A quantile is often
    # one of the energies (always with one block), which the kernel's float32 energy can then
    # exceed: the threshold moves a little above it. Zero stays: a flat block's energy is 0.
    if threshold > 0 and threshold in blocks:
        threshold *= 1 + 1e-3
    assume(all(abs(e - threshold) > 1e-5 * max(threshold, 1e-3) for e in blocks if e != threshold))
    cells = quadtree_cells(torch.from_numpy(rgb), cell, levels, threshold)
    check_tiling(cells)
    assert cells.grid == (rows, cols)
    assert cell_set(cells) == scanned_cells(energy, (rows, cols), levels, threshold)


def test_flat_regions_get_large_cells_and_detail_small_ones():
    frame = torch.full((3, 64, 64), 120, dtype=torch.uint8)
    frame[:, :16, :16] = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator())
    cells = quadtree_cells(frame, (4, 4), 2, 0.002)
    levels = {(top, left): level for top, left, level in cell_set(cells)}
    assert all(levels[(top, left)] == 0 for top in range(4) for left in range(4))  # the noise
    assert levels[(8, 8)] == 2 and levels[(0, 8)] == 2  # flat: 16 x 16 px cells
    assert cells.counts() == {0: 16, 2: 15}


@given(
    rows=st.integers(1, 11),
    cols=st.integers(1, 11),
    seed=st.integers(0, 2**16),
    distance=st.integers(1, 2),
)
def test_neighbours_are_the_cells_within_the_distance(rows, cols, seed, distance):
    generator = torch.Generator().manual_seed(seed)
    energies = {
        level: torch.rand(rows >> level, cols >> level, generator=generator)
        for level in (1, 2)
        if rows >> level and cols >> level
    }
    cells = split_cells(energies, (rows, cols), 0.5)
    boxes = [
        (t, left, 2**level)
        for t, left, level in zip(
            *map(torch.Tensor.tolist, (cells.top, cells.left, cells.level)), strict=True
        )
    ]

    def gap(a: tuple, b: tuple) -> int:  # Chebyshev distance between their nearest cells
        (ta, la, sa), (tb, lb, sb) = a, b
        dy = max(0, tb - (ta + sa - 1), ta - (tb + sb - 1))
        dx = max(0, lb - (la + sa - 1), la - (lb + sb - 1))
        return max(dy, dx)

    expected = {
        (i, j)
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if gap(boxes[i], boxes[j]) <= distance
    }
    assert set(map(tuple, neighbour_pairs(cells, distance).tolist())) == expected


# --------------------------------------------------------------------------- assignment


def planned(frame, pool, config):
    """An ``AdaptiveRenderer`` that planned, analysed and assigned ``frame``: ``(renderer,
    analysis, tiles)``."""
    renderer = AdaptiveRenderer(pool, config)
    renderer.plan(frame)
    analysis = renderer.describe_cells(frame)
    return renderer, analysis, renderer.choose_cells(analysis).tiles


def detailed_frame() -> torch.Tensor:
    """A landscape with a noisy lower half: large cells above, small ones below."""
    frame = landscape(96, 128)
    frame[:, 48:] = add_noise(frame[:, 48:], 40, seed=1)
    return frame


@pytest.mark.parametrize("reuse", [1, 2, "auto"])
def test_the_reuse_cap_counts_every_cell_whatever_its_size(reuse):
    frame, pool = detailed_frame(), photo_pool(150)
    config = MosaicConfig(cell=8, device="cpu", adaptive=2, reuse=reuse, min_distance=0)
    renderer, analysis, tiles = planned(frame, pool, config)
    cells = len(analysis.cells)
    assert len(analysis.cells.counts()) == 3 and cells < 12 * 16  # all three sizes
    cap = math.ceil(cells / 150) if reuse == "auto" else reuse
    assert renderer.reuse_for(96, 128) == cap
    assert tiles.shape == (cells,) and int(tiles.bincount().max()) <= cap
    with pytest.raises(PoolTooSmallError, match=f"{cells} cells with reuse=1"):
        planned(frame, photo_pool(cells - 1), config.replace(reuse=1))


def test_fair_use_counts_every_cell():
    frame, pool = detailed_frame(), photo_pool(40)
    _, analysis, tiles = planned(
        frame, pool, MosaicConfig(cell=8, device="cpu", adaptive=2, fair=True)
    )
    cells = len(analysis.cells)
    uses = tiles.bincount(minlength=40)
    assert int(uses.min()) == cells // 40 and int(uses.max()) == math.ceil(cells / 40)


@pytest.mark.parametrize("distance", [1, 2])
def test_no_tile_in_two_neighbouring_cells(distance):
    frame, pool = detailed_frame(), photo_pool(80)
    config = MosaicConfig(cell=8, device="cpu", adaptive=2, reuse=3, min_distance=distance)
    renderer, analysis, tiles = planned(frame, pool, config)
    pairs = neighbour_pairs(analysis.cells, distance)
    assert not (tiles[pairs[:, 0]] == tiles[pairs[:, 1]]).any()
    assert int(tiles.bincount().max()) <= 3
    assert renderer.usage.read().clashes == 0
    unspaced = planned(frame, pool, config.replace(min_distance=0))[2]
    assert (unspaced[pairs[:, 0]] == unspaced[pairs[:, 1]]).any()  # the repair had work


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(("cell", "pool_tile"), [(8, 32), ((8, 6), 32), ((8, 6), 8)])
def test_each_cell_shows_its_tile_at_its_size(cell, pool_tile):
    """Tiles resized down from the pool's, or up (8 px tiles for cells up to 32 px), and cropped
    to the cells' aspect first."""
    frame, pool = detailed_frame(), photo_pool(150, tile_size=pool_tile)
    config = MosaicConfig(cell=cell, tile_size=None, device="cpu", adaptive=2, color=0)
    _, analysis, tiles = planned(frame, pool, config)
    mosaic = render_image(frame, pool, config)
    assert mosaic.shape == (3, 96, 128)
    cells, (cell_h, cell_w) = analysis.cells, config.cell_shape
    assert len(cells.counts()) == 3
    cropped = pool.cropped((cell_h, cell_w)).images
    for i in range(len(cells)):
        height, width = cell_h << int(cells.level[i]), cell_w << int(cells.level[i])
        top, left = int(cells.top[i]) * cell_h, int(cells.left[i]) * cell_w
        drawn = mosaic[:, top : top + height, left : left + width]
        expected = resize(cropped[tiles[i]], (height, width))[:, : drawn.shape[1], : drawn.shape[2]]
        assert torch.equal(drawn, expected)


def test_cells_that_all_split_make_the_uniform_mosaic():
    frame, pool = add_noise(landscape(40, 56), 30, seed=2), photo_pool(60)
    config = MosaicConfig(cell=8, device="cpu", reuse=0, color=0.6, blend=0.3, min_distance=0)
    adaptive = config.replace(adaptive=2, split_threshold=0.0)
    image, stats = render_image_with_stats(frame, pool, adaptive)
    assert stats.cells == (("8x8", 35),)
    assert torch.equal(image, render_image(frame, pool, config))


def test_render_is_deterministic_and_reports_its_cells():
    frame, pool = detailed_frame(), photo_pool(150)
    config = MosaicConfig(cell=8, device="cpu", adaptive=2, color=0.5, blend=0.2)
    image, stats = render_image_with_stats(frame, pool, config)
    assert torch.equal(image, render_image(frame, pool, config))
    assert image.shape == (3, 384, 512)  # tiles of 32 for the 8 px cells: 4x
    counts = dict(stats.cells)
    assert set(counts) == {"8x8", "16x16", "32x32"}
    assert f"{sum(counts.values())} adaptive cells ({counts['8x8']} of 8x8" in stats.summary()
    assert "adaptive cells 8x8 to 32x32 px, split above 0.002" in stats.settings
    assert 0 < stats.fidelity < 1


def test_larger_cells_get_tiles_decoded_at_their_size(tmp_path: Path):
    from mosaic.pool import TilePool

    folder = write_photos(tmp_path, 60, (96, 96))
    pool = TilePool.from_dir(folder, tile_size=8, cache=False, progress=False)
    config = MosaicConfig(
        cell=8, tile_size=None, device="cpu", adaptive=2, color=0, min_distance=0, reuse=0
    )
    frame = landscape(64, 64)
    _, analysis, tiles = planned(frame, pool, config)
    mosaic = render_image(frame, pool, config)
    large = int((analysis.cells.level == 2).nonzero()[0])
    top, left = int(analysis.cells.top[large]) * 8, int(analysis.cells.left[large]) * 8
    decoded = pool.load_tiles([int(tiles[large])], (32, 32))[0]
    assert torch.equal(mosaic[:, top : top + 32, left : left + 32], decoded)


def on_the_kernels(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send this test's ``device`` tensors to the Triton kernels: CUDA always, the CPU through
    the interpreter (skipped where the kernels were compiled for a GPU instead)."""
    if device == "cpu":
        if not KERNELS_INTERPRETED:
            pytest.skip("the kernels are compiled for the GPU in this process")
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def test_the_kernels_draw_what_the_references_draw(device, monkeypatch):
    # 16 x 24: flat 8 x 8 blocks, one of two flat halves (cells of 4), noise below (cells of 2).
    frame = torch.full((3, 16, 24), 90, dtype=torch.uint8)
    frame[:, :8, 8:12] = 250
    frame[:, 8:] = torch.randint(0, 256, (3, 8, 24), generator=torch.Generator().manual_seed(0))
    pool = photo_pool(40, tile_size=8)
    config = MosaicConfig(cell=2, tile_size=4, device=device, adaptive=2, color=0.6, blend=0.3)
    reference, expected_analysis, tiles = planned(frame, pool, config.replace(device="cpu"))
    expected = reference.compose_cells(expected_analysis, tiles)
    on_the_kernels(device, monkeypatch)
    renderer, analysis, chosen = planned(frame.to(device), pool, config)
    assert analysis.cells.counts() == {0: 48, 1: 4, 2: 2}
    assert cell_set(analysis.cells) == cell_set(expected_analysis.cells)
    assert int(chosen.bincount().max()) <= renderer.reuse_for(16, 24)
    features = analysis.features.cpu()
    torch.testing.assert_close(features, expected_analysis.features, atol=1e-4, rtol=0)
    # The same tiles drawn: the kernels' pixels within one code of the references'.
    image = renderer.compose_cells(analysis, tiles.to(device))
    assert image.shape == expected.shape == (3, 32, 48)
    assert (image.cpu().int() - expected.int()).abs().max() <= 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"adaptive": 7}, "adaptive must be at most 6 levels"),
        ({"adaptive": -1}, "adaptive must be an integer >= 0"),
        ({"adaptive": True}, "adaptive must be an integer >= 0"),
        ({"split_threshold": -0.1}, "split_threshold must be a number >= 0"),
        ({"split_threshold": float("nan")}, "split_threshold must be a number >= 0"),
    ],
)
def test_bad_adaptive_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        MosaicConfig(**settings)


def test_too_large_cells_for_colour_statistics_and_prints_are_refused(tmp_path: Path):
    frame, pool = landscape(32, 32), photo_pool(20)
    with pytest.raises(ConfigError, match="adaptive 6 makes cells 2048 px wide"):
        render_image(frame, pool, MosaicConfig(cell=32, device="cpu", adaptive=6))
    with pytest.raises(ConfigError, match="adaptive cells are not drawn in strips yet"):
        render_print(frame, tmp_path / "print.png", pool, MosaicConfig(adaptive=1))


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("picture") / "detailed.png"
    Image.fromarray(detailed_frame().permute(1, 2, 0).numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("tiles"), 120, (32, 32))


def run(*argv: str) -> int:
    return main(["--device", "cpu", "--cell", "8", "--no-cache", *argv])


def test_the_option_draws_adaptive_cells(tiles: Path, picture: Path, tmp_path: Path, capsys):
    output = tmp_path / "out.png"
    code = run(str(picture), "-o", str(output), "--tiles", str(tiles), "--adaptive", "2")
    assert code == 0
    assert read_image(output).shape == (3, 384, 512)
    err = capsys.readouterr().err
    assert "adaptive cells (" in err and "split above 0.002" in err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--adaptive", "9"], "mosaic: error: --adaptive must be at most 6 levels"),
        (["--adaptive", "-1"], "mosaic: error: --adaptive must be an integer >= 0"),
        (["--adaptive", "1", "--split-threshold", "-1"], "--split-threshold must be a number"),
        (["--adaptive", "1", "--tile-size", "800"], "adaptive cells do not do yet"),
    ],
)
def test_bad_adaptive_options_are_one_line(tiles, picture, tmp_path, capsys, options, expected):
    output = tmp_path / "out.png"
    assert run(str(picture), "-o", str(output), "--tiles", str(tiles), *options) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not output.exists()


@pytest.mark.parametrize("video", ["--demo", "a folder of videos"])
def test_adaptive_is_a_usage_error_for_a_video(tiles: Path, tmp_path: Path, capsys, video):
    argv = ["--demo"]
    if video != "--demo":
        (tmp_path / "videos").mkdir()
        argv = [str(tmp_path / "videos"), "-o", str(tmp_path / "out"), "--tiles", str(tiles)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--adaptive", "2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("adaptive cells are for an image, not a video")
