"""Microbenchmarks of ``analyse_cells``, the frame path's analysis: Oklab block means of the
descriptors and each cell's Oklab mean and spread, in one pass over the pixels.

The engine's call: one 1080p frame as a decoder gives it (HWC seen as CHW, random codes, never
zeros), cell 16, grid 2, with statistics (colour transfer) and without; also a batch of 8
frames. Beside the path it replaces, timed the same way in the same run: padding,
``srgb_to_oklab``, ``grid_reduce`` three times and the spread's torch operations, each a kernel
of its own (``tests/kernels/frame_path.py``). On a CPU both run their pure-torch or eager paths
on one 720p frame, cell 36 (the CPU workload's).

Bytes are the floor: the frame read once (3 bytes a pixel) and the results written (float32 block
means, and cell means and spreads with statistics); % of copy against the copy bandwidth measured
in the same run.
"""

from __future__ import annotations

import pytest
import torch

from kernels import analyse_cells
from tests.kernels.frame_path import unfused_frame_analysis

CUDA_FRAME = (1080, 1920)
CPU_FRAME = (720, 1280)


def decoder_frames(device: torch.device, count: int) -> torch.Tensor:
    """Random uint8 ``(count, 3, H, W)`` frames, HWC in memory, on ``device``."""
    height, width = CUDA_FRAME if device.type == "cuda" else CPU_FRAME
    generator = torch.Generator(device=device).manual_seed(count)
    shape = (count, height, width, 3)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)
    return frames.permute(0, 3, 1, 2)


def analysis_bytes(frames: torch.Tensor, cell: int, grid: int, statistics: bool) -> int:
    """The pixels read once, plus the float32 results written."""
    n, _, height, width = frames.shape
    cells = n * -(-height // cell) * -(-width // cell)
    results = cells * 3 * grid * grid + (cells * 6 if statistics else 0)
    return frames.numel() + 4 * results


def measure_analysis(analyse, count: int, statistics: bool, device, measure, benchmark) -> None:
    """Time ``analyse(frames, cell, grid)`` on ``count`` decoder frames; bytes as ``analyse_cells``
    with or without ``statistics`` must move."""
    if device.type != "cuda" and count > 1:
        pytest.skip("a CPU pipeline analyses one frame at a time")
    frames = decoder_frames(device, count)
    cell, grid = (16, 2) if device.type == "cuda" else (36, 2)
    benchmark.extra_info |= {"shape": list(frames.shape), "cell": cell, "grid": grid}
    byte_count = analysis_bytes(frames, cell, grid, statistics)
    measure(lambda: analyse(frames, cell, grid), bytes=byte_count)


@pytest.mark.benchmark(group="cell_analysis")
@pytest.mark.parametrize("count", [1, 8])
@pytest.mark.parametrize("statistics", [True, False], ids=["statistics", "means"])
def test_analyse_cells(count, statistics, device, measure, benchmark):
    def analyse(frames: torch.Tensor, cell: int, grid: int) -> object:
        return analyse_cells(frames, cell, grid, statistics=statistics)

    measure_analysis(analyse, count, statistics, device, measure, benchmark)


@pytest.mark.benchmark(group="cell_analysis")
@pytest.mark.parametrize("count", [1, 8])
def test_unfused_frame_path(count, device, measure, benchmark):
    """What ``analyse_cells`` with statistics replaces; the same byte count, so the two GB/s
    compare as times."""
    measure_analysis(unfused_frame_analysis, count, True, device, measure, benchmark)
