"""Temporal coherence measured on generated clips (frames rendered by the real engine)."""

from __future__ import annotations

import itertools

import pytest
import torch

from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.metrics import churn, fidelity
from mosaic.temporal import TemporalCoherence, TemporalSettings
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")

HEIGHT, WIDTH, CELL = 96, 128, 8  # 12 x 16 = 192 cells


def run_clip(frames: list[torch.Tensor], settings: TemporalSettings, reuse: int = 1):
    """Render ``frames``; return the tile choices and the per-frame fidelity."""
    config = MosaicConfig(
        cell=CELL, grid=2, reuse=reuse, color=0.0, device="cpu", temporal=settings
    )
    renderer = FrameRenderer(photo_pool(600, tile_size=16), config)
    temporal = TemporalCoherence(settings)
    results = [renderer.render(frame, temporal) for frame in frames]
    grid = renderer.grid_shape(HEIGHT, WIDTH)
    fidelities = [fidelity(f, r.image, grid)["mean"] for f, r in zip(frames, results, strict=True)]
    return results, fidelities


def mean_churn(results) -> float:
    pairs = list(itertools.pairwise(results))
    return sum(churn(a.choice, b.choice) for a, b in pairs) / len(pairs)


INDEPENDENT = TemporalSettings(switch_bonus=0.0)
COHERENT = TemporalSettings()


def test_static_scene_with_sensor_noise_keeps_its_tiles():
    scene = landscape(HEIGHT, WIDTH)
    frames = [add_noise(scene, sigma=4.0, seed=i) for i in range(8)]
    independent, _ = run_clip(frames, INDEPENDENT)
    coherent, _ = run_clip(frames, COHERENT)
    assert mean_churn(coherent) <= 0.01
    # Solving every frame from scratch flickers: the bonus is what keeps the tiles.
    assert mean_churn(independent) > 5 * max(mean_churn(coherent), 0.01)


def test_hard_cut_resets_and_most_cells_change():
    first, second = landscape(HEIGHT, WIDTH, seed=1), landscape(HEIGHT, WIDTH, seed=2).flip(-1)
    second = 255 - second  # a different scene: inverted colours, mirrored layout
    frames = [first, add_noise(first, 3.0, 1), second, add_noise(second, 3.0, 2)]
    results, _ = run_clip(frames, COHERENT)
    assert results[2].scene_cut
    assert churn(results[1].choice, results[2].choice) > 0.6
    assert churn(results[2].choice, results[3].choice) <= 0.02


def test_slow_pan_churns_far_less_than_independent_solves_at_similar_fidelity():
    wide = landscape(HEIGHT, WIDTH + 24, seed=3)
    frames = [add_noise(wide[:, :, shift : shift + WIDTH], 2.0, shift) for shift in range(0, 24, 2)]
    independent, independent_fidelity = run_clip(frames, INDEPENDENT)
    coherent, coherent_fidelity = run_clip(frames, COHERENT)
    assert mean_churn(coherent) < 0.5 * mean_churn(independent)
    mean_independent = sum(independent_fidelity) / len(frames)
    mean_coherent = sum(coherent_fidelity) / len(frames)
    assert mean_coherent <= 1.10 * mean_independent


def test_colour_hold_stops_tiles_shimmering_with_sensor_noise():
    """With colour transfer, noise moves every cell's statistics a little each frame: without
    the hold nearly every cell's pixels change from frame to frame, with it few do."""
    scene = landscape(HEIGHT, WIDTH)
    frames = [add_noise(scene, sigma=3.0, seed=i) for i in range(6)]
    changed = {}
    for tolerance in (0.0, TemporalSettings().colour_hold):
        settings = TemporalSettings(colour_hold=tolerance)
        config = MosaicConfig(
            cell=CELL, tile_size=None, grid=2, color=0.6, device="cpu", temporal=settings
        )
        renderer = FrameRenderer(photo_pool(600, tile_size=16), config)
        temporal, hold = TemporalCoherence(settings), renderer.colour_hold()
        images = [renderer.render(frame, temporal, hold=hold).image for frame in frames]
        rows, cols = renderer.grid_shape(HEIGHT, WIDTH)
        cells = [
            image.reshape(3, rows, CELL, cols, CELL).permute(1, 3, 0, 2, 4) for image in images
        ]
        changed[tolerance] = sum(
            float((a != b).flatten(2).any(2).float().mean()) for a, b in itertools.pairwise(cells)
        ) / (len(frames) - 1)
    assert changed[0.0] > 0.5
    assert changed[TemporalSettings().colour_hold] < 0.1


def test_settings_are_validated():
    with pytest.raises(ValueError, match="switch_bonus"):
        TemporalSettings(switch_bonus=-1)
    with pytest.raises(ValueError, match="scene_cut"):
        TemporalSettings(scene_cut=0)
    with pytest.raises(ValueError, match="colour_hold"):
        TemporalSettings(colour_hold=-0.01)
