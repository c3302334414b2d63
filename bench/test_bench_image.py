"""render_image at 1080p: one still image, cell 16 (8160 cells), from a generated pool.

Pinned settings: tiles at the cell size, no spacing rule (the figures stay comparable whatever
the defaults become).

``test_print_in_strips``: the ``mosaic`` command writing a print-size still in strips, its
peak memory and time (printed as one JSON line: run with ``-s``).

On CUDA this is the GPU pipeline for one frame (features, assignment, colour transfer, render);
on CPU the same work through the torch references. The pool is built once and its descriptors
are computed before timing, as a session that renders several images from one pool would.
``extra_info`` records the device, the median seconds, the grid, the pool size and the
assignment method.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch
from conftest import device_name, synchronize
from PIL import Image

from mosaic import MosaicConfig
from mosaic.demo import asset_photos
from mosaic.engine import FrameRenderer
from tests.scenes import landscape, photo_pool

HEIGHT, WIDTH, CELL = 1080, 1920, 16


@pytest.mark.parametrize("tiles", [10_000])
def test_render_image_1080p(benchmark, device: torch.device, tiles: int):
    image = landscape(HEIGHT, WIDTH).to(device)
    config = MosaicConfig.from_preset(
        "faithful", cell=CELL, tile_size=None, min_distance=0, device=device.type
    )
    renderer = FrameRenderer(photo_pool(tiles, tile_size=32), config)

    def render():
        result = renderer.render(image)
        synchronize(device)
        return result

    rounds = 5 if device.type == "cuda" else 2
    result = benchmark.pedantic(render, rounds=rounds, iterations=1, warmup_rounds=1)
    rows, cols = result.choice.shape
    benchmark.extra_info.update(
        device=device_name(device),
        median_s=benchmark.stats.stats.median,
        grid=f"{rows}x{cols}",
        tiles=tiles,
        method=result.assignment.method,
    )


# --------------------------------------------------------------------------- prints

PRINT_PHOTOS, PRINT_SOURCE, PRINT_CELL, PRINT_TILE = 1000, (1280, 853), 16, 256


def test_print_in_strips(tmp_path: Path):
    """The ``mosaic`` command writing a 20,480 x 13,648 print (a 1280 x 853 photo, cells of 16,
    tiles of 256) from 1000 photos (480 x 360 crops of the shipped photographs, colours
    shifted), in strips: its peak memory (the child's ``ru_maxrss``) and wall clock. Uncached,
    so the photos are decoded (at 32 px for the descriptors, at 256 px strip by strip)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    shipped = [np.asarray(Image.open(path).convert("RGB")) for path in asset_photos()]
    for index in range(PRINT_PHOTOS):
        photo = shipped[index % len(shipped)]
        height, width = photo.shape[:2]
        crop_h, crop_w = int(height * rng.uniform(0.3, 0.9)), int(width * rng.uniform(0.3, 0.9))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        pixels = photo[top : top + crop_h, left : left + crop_w] * rng.uniform(0.6, 1.4, 3)
        shifted = np.clip(pixels + rng.uniform(-40, 40, 3), 0, 255).astype(np.uint8)
        Image.fromarray(shifted).resize((480, 360)).save(photos / f"p{index:04d}.jpg", quality=88)
    source = tmp_path / "source.jpg"
    subject = Image.open(next(p for p in asset_photos() if p.name == "astronaut.jpg"))
    subject.convert("RGB").resize(PRINT_SOURCE).save(source, quality=92)
    output = tmp_path / "print.jpg"
    command = [sys.executable, "-m", "mosaic.cli", str(source), "-o", str(output)]
    command += ["--tiles", str(photos), "--cell", str(PRINT_CELL), "--tile-size", str(PRINT_TILE)]
    started = time.perf_counter()
    subprocess.run([*command, "--no-cache", "--quiet", "--device", "cpu"], check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    written = pyvips.Image.new_from_file(str(output))  # Pillow refuses a picture this large
    width, height = written.width, written.height
    print(json.dumps({"print": f"{width}x{height}", "peak_rss_mib": peak, "seconds": seconds}))
