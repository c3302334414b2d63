"""The frame step (``mosaic.pipeline.step.FrameStep``): the time of one steady frame of a panning
clip and what that frame launches.

A steady frame is a frame after the first three of its shape (on CUDA with the auction, from
then on one graph replay). ``extra_info`` records the median ms, whether the frame replayed a
CUDA graph (``captured``) and, counted in one more untimed frame (``tests.syncs.count_launches``),
its torch operations and Triton launches: what a GPU launches one by one outside a graph, and
the nodes a graph replays. The counts mean the kernel path only where the kernels run (a GPU, or
the interpreter: ``TRITON_INTERPRET=1`` on a CPU; ``launch_path``); a captured frame counts 0,
its launches are inside the replay. Workload: 320 x 192 frames, cells of 16 (240 cells), 500
tiles, reuse 2, colour transfer, I420 out, each solver. On a CPU the counts are of the torch
references (a few seconds); with ``TRITON_INTERPRET=1`` they are of the kernel path, but the
interpreter runs the auction's ~780 kernel launches a frame slowly (past 15 minutes for this file)::

    python -m pytest bench/test_bench_step.py --benchmark-json=OUT.json
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import bench_device, synchronize, timed_rounds

from kernels.dispatch import use_triton
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.pipeline.step import FrameStep
from tests.scenes import add_noise, landscape, photo_pool
from tests.syncs import count_launches, launches

WIDTH, HEIGHT, CELL, TILES = 320, 192, 16, 500
PAN = 3  # pixels a frame
FRAMES = 12


@pytest.fixture(scope="module")
def device() -> torch.device:
    return bench_device()


def panning_frames(device: torch.device) -> list[torch.Tensor]:
    """``FRAMES`` uint8 ``(3, HEIGHT, WIDTH)`` frames of a camera panning over a landscape, with
    sensor noise."""
    scene = landscape(HEIGHT, WIDTH + PAN * FRAMES, seed=5)
    return [
        add_noise(scene[:, :, PAN * i : PAN * i + WIDTH], 2.0, seed=i).to(device)
        for i in range(FRAMES)
    ]


@pytest.mark.parametrize("method", ["auction", "windows", "exact"])
def test_steady_frame(benchmark, device, method):
    config = MosaicConfig(cell=CELL, reuse=2, method=method, device=device.type)
    step = FrameStep(FrameRenderer(photo_pool(TILES, tile_size=CELL), config), "yuv420p")
    frames = itertools.cycle(panning_frames(device))
    for _ in range(4):  # the first frame, the state settling, the capture
        step(next(frames))
    synchronize(device)
    with count_launches() as counts:
        step(next(frames))
    synchronize(device)
    _, seconds = timed_rounds(benchmark, device, lambda: step(next(frames)), rounds=10)
    benchmark.extra_info.update(
        method=step.method,
        captured=step.captured,
        launches_per_frame=launches(counts),
        torch_ops_per_frame=counts["torch ops"],
        triton_launches_per_frame=counts["triton"],
        launch_path="kernels" if use_triton(torch.empty(0, device=device)) else "references",
    )
    if seconds is not None:
        benchmark.extra_info["median_ms"] = seconds * 1e3
