"""Compositing a mosaic frame: the fused ``composite_tiles`` kernel beside the unfused torch path.

Workloads, as ``test_bench_e2e.py``'s: on CUDA the 1080p mosaic (68 x 120 cells of 16 px cropped
to 1080 x 1920, 10,000 tiles, tiles kept in Oklab as the renderer keeps them), on a CPU the 720p
one (20 x 36 cells of 36 px, 1000 tiles). Colour transfer at strength 0.6 toward random cell
statistics in the range of real frames; the tiles are random pixels with their own statistics.

- ``fused``: ``composite_tiles`` to RGB and to YUV 4:2:0 (CUDA: the Triton kernel; CPU: the
  reference, every cell converted, and with the previous frame given and a quarter of the cells
  changed, the share a slow pan recolours under the colour hold).
- ``unfused``: what the engine ran before, each step its own operation: the chosen tiles'
  Oklab gathered, the coefficients, the affine map, ``oklab_to_srgb``, the frame arranged.
- ``compose_step``: a steady video frame as ``FrameRenderer.compose`` draws it: the colour hold
  (statistics, torch elementwise operations) then the fused op.

Bytes are the floor each must move: every output pixel's tile pixel read once (Oklab float32,
12 bytes, or uint8 sRGB, 3) and the output written (3 bytes a pixel RGB, 1.5 YUV); the per-cell
statistics and indices (under 0.2 MB) are left out. On CUDA the unfused path moves far more
(a float32 Oklab copy of the chosen tiles, written and read twice); its GB/s is against the same
floor, so the two compare as speeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from kernels import composite_tiles, oklab_to_srgb
from kernels.composite import ColourTransfer, transfer_coefficients_reference
from kernels.oklab import srgb_to_oklab_reference
from mosaic.colour import (
    MAX_SPREAD_GAIN,
    SPREAD_EPS,
    CellStats,
    ColourHold,
    tile_stats,
)
from mosaic.render import render_mosaic_unchecked

STRENGTH = 0.6
CHANGED_SHARE = 0.25


@dataclass(frozen=True)
class Mosaic:
    rows: int
    cols: int
    side: int
    pool: int
    size: tuple[int, int]


GPU = Mosaic(rows=68, cols=120, side=16, pool=10_000, size=(1080, 1920))
CPU = Mosaic(rows=20, cols=36, side=36, pool=1000, size=(720, 1280))


@pytest.fixture(scope="module")
def scene(device: torch.device) -> dict:
    """Tiles, their Oklab and statistics, a choice and cell statistics on the device."""
    mosaic = GPU if device.type == "cuda" else CPU
    generator = torch.Generator().manual_seed(0)
    shape = (mosaic.pool, 3, mosaic.side, mosaic.side)
    tiles = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)
    tile_lab = srgb_to_oklab_reference(tiles)
    grid = (mosaic.rows, mosaic.cols)
    choice = torch.randint(0, mosaic.pool, grid, generator=generator).to(device)
    low, span = torch.tensor([0.3, -0.1, -0.1]), torch.tensor([0.5, 0.2, 0.2])
    mean = (torch.rand(*grid, 3, generator=generator) * span + low).to(device)
    std = (torch.rand(*grid, 3, generator=generator) * 0.08).to(device)
    stats = tile_stats(tiles, tile_lab)
    transfer = ColourTransfer(STRENGTH, *stats, mean, std, MAX_SPREAD_GAIN, SPREAD_EPS)
    changed = torch.rand(grid, generator=generator).to(device) < CHANGED_SHARE
    return {
        "mosaic": mosaic,
        "tiles": tiles,
        "tile_lab": tile_lab,
        "tile_stats": stats,
        "choice": choice,
        "cell_stats": CellStats(mean, std),
        "transfer": transfer,
        "changed": changed,
    }


def floor_bytes(mosaic: Mosaic, *, input_bytes: int, pixel_format: str) -> int:
    """Each output pixel's tile pixel read once and the output written."""
    height, width = mosaic.size
    output = 3 * height * width if pixel_format == "rgb" else 3 * height * width // 2
    return input_bytes * height * width + output


def describe(benchmark, mosaic: Mosaic, **extra: object) -> None:
    benchmark.extra_info.update(
        {"cells": [mosaic.rows, mosaic.cols], "tile": mosaic.side, "size": list(mosaic.size)}
    )
    benchmark.extra_info.update(extra)


@pytest.mark.benchmark(group="composite")
@pytest.mark.parametrize("pixel_format", ["rgb", "yuv420p"])
def test_fused(scene, measure, benchmark, pixel_format):
    mosaic = scene["mosaic"]
    options = {"tile_lab": scene["tile_lab"], "size": mosaic.size, "pixel_format": pixel_format}
    describe(benchmark, mosaic, cells_converted=mosaic.rows * mosaic.cols)
    measure(
        lambda: composite_tiles(scene["tiles"], scene["choice"], scene["transfer"], **options),
        bytes=floor_bytes(mosaic, input_bytes=12, pixel_format=pixel_format),
    )


@pytest.mark.benchmark(group="composite")
def test_fused_with_previous_frame(scene, device, measure, benchmark):
    """The CPU path of a steady video frame: only the changed cells converted (on CUDA the kernel
    ignores the hint and this equals ``test_fused[rgb]``)."""
    mosaic = scene["mosaic"]
    tiles, choice, transfer = scene["tiles"], scene["choice"], scene["transfer"]
    options = {"tile_lab": scene["tile_lab"], "size": mosaic.size}
    previous = composite_tiles(tiles, choice, transfer, **options)
    changed = scene["changed"]
    describe(benchmark, mosaic, cells_converted=int(changed.sum()))
    measure(
        lambda: composite_tiles(
            tiles, choice, transfer, **options, previous=previous, changed=changed
        ),
        bytes=floor_bytes(mosaic, input_bytes=12, pixel_format="rgb"),
    )


@pytest.mark.benchmark(group="composite")
def test_unfused(scene, measure, benchmark):
    mosaic = scene["mosaic"]
    choice, transfer, tile_lab = scene["choice"], scene["transfer"], scene["tile_lab"]
    rows, cols, side = mosaic.rows, mosaic.cols, mosaic.side
    height, width = mosaic.size

    def unfused() -> torch.Tensor:
        index = choice.reshape(-1)
        lab = tile_lab.index_select(0, index)
        scale, offset = transfer_coefficients_reference(transfer, index)
        picked = oklab_to_srgb(lab.mul_(scale[:, :, None, None]).add_(offset[:, :, None, None]))
        frame = picked.view(rows, cols, 3, side, side).permute(2, 0, 3, 1, 4)
        return frame.reshape(3, rows * side, cols * side)[:, :height, :width].contiguous()

    describe(benchmark, mosaic, cells_converted=rows * cols)
    measure(unfused, bytes=floor_bytes(mosaic, input_bytes=12, pixel_format="rgb"))


@pytest.mark.benchmark(group="composite")
def test_compose_step(scene, measure, benchmark):
    """A steady frame of a video: the colour hold, then the fused op (the previous frame given,
    as the engine gives it). Frames alternate between two sets of cell statistics that differ in
    a quarter of the cells by more than the hold's tolerance: those are recoloured, the others
    held."""
    mosaic = scene["mosaic"]
    stats, changed = scene["cell_stats"], scene["changed"]
    drifted = CellStats(stats.mean + 0.02 * changed[..., None], stats.std)
    options = {
        "color_strength": STRENGTH,
        "tile_stats": scene["tile_stats"],
        "tile_lab": scene["tile_lab"],
        "hold": ColourHold(0.005),
        "size": mosaic.size,
    }
    frames = [stats, drifted]

    def step() -> torch.Tensor:
        frames.reverse()
        return render_mosaic_unchecked(
            scene["tiles"], scene["choice"], cell_stats=frames[0], **options
        )

    step()
    describe(benchmark, mosaic, cells_converted=int(changed.sum()))
    measure(step, bytes=floor_bytes(mosaic, input_bytes=12, pixel_format="rgb"))
