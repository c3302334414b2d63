"""``render_image`` with adaptive cells (``mosaic.adaptive``) against equal cells: time, cells
and fidelity on shipped photographs.

The default look (cells of 16, tiles of 32, colour 0.6, spacing auto) from the demo's pool less
the photograph rendered (64-pixel crops of the other shipped photographs, built before timing; a
tensor pool: larger tiles are resized from the 64-pixel ones, not decoded again). ``adaptive``
0 is the uniform grid; 3 lets cells grow to 128 pixels (tiles of 256), split above the default
threshold or above 0.005. ``extra_info`` records the device, the median seconds (wall, and
the calling thread's CPU time), the cells of each size, the output size, the fidelity and the
pool's size. On a CPU torch runs on one thread, so the thread's CPU time is all the work: on a
shared machine wall time measures the neighbours too (and torch's threads, spinning while they
wait for a core, inflated the process's CPU time tenfold).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from conftest import device_name, synchronize

from adapters import read_image
from mosaic import MosaicConfig, render_image_with_stats
from mosaic.config import SPLIT_THRESHOLD
from mosaic.demo import asset_photos, demo_pool
from mosaic.pool import TilePool

PHOTOS = ("astronaut.jpg", "rocket.jpg")


@pytest.fixture(autouse=True)
def one_thread(device: torch.device):
    """torch on one thread for a CPU's measurements (module docstring)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_tiles() -> TilePool:
    return demo_pool(tile_size=64)


def pool_without(pool: TilePool, photo: str) -> TilePool:
    """``pool`` less the tiles cropped from ``photo``."""
    kept = [index for index, source in enumerate(pool.sources) if source != photo]
    return TilePool.from_tensor(pool.images[kept], [pool.sources[index] for index in kept])


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize(
    ("adaptive", "threshold"), [(0, SPLIT_THRESHOLD), (3, SPLIT_THRESHOLD), (3, 0.005)]
)
def test_adaptive_still(benchmark, device: torch.device, demo_tiles, photo, adaptive, threshold):
    image = read_image(next(p for p in asset_photos() if p.name == photo)).to(device)
    pool = pool_without(demo_tiles, photo)
    config = MosaicConfig(adaptive=adaptive, split_threshold=threshold, device=device.type)

    cpu_seconds = []  # the thread's CPU time of each call

    def render():
        started = time.thread_time()
        result = render_image_with_stats(image, pool, config)
        synchronize(device)
        cpu_seconds.append(time.thread_time() - started)
        return result

    rounds = 5 if device.type == "cuda" else 3
    mosaic, stats = benchmark.pedantic(render, rounds=rounds, iterations=1, warmup_rounds=1)
    rows, cols = stats.grid
    cells = dict(stats.cells) if stats.cells else {"16x16": rows * cols}
    benchmark.extra_info.update(
        device=device_name(device),
        median_s=benchmark.stats.stats.median,
        median_cpu_s=statistics.median(cpu_seconds[1:]),  # the warm-up round left out
        cells=cells,
        total_cells=sum(cells.values()),
        output=f"{mosaic.shape[2]}x{mosaic.shape[1]}",
        fidelity=stats.fidelity,
        method=stats.method,
        tiles=len(pool),
    )
