"""Microbenchmarks of ``grid_reduce`` and ``cell_features`` on uint8 frames, block 4.

8 x 1080p on CUDA: the Triton kernels beside the eager-torch references (for ``cell_features``
the unfused ``srgb_to_oklab`` then ``avg_pool2d``). On a CPU only the references run, on one
720p frame, so the file finishes in seconds. Bytes are the floor: the pixels read once plus the
float32 means written.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kernels import cell_features, grid_reduce
from kernels.features import cell_features_reference
from kernels.grid import grid_reduce_reference

BLOCK = 4
CUDA_FRAMES = (8, 3, 1080, 1920)
CPU_FRAMES = (1, 3, 720, 1280)


@pytest.fixture(scope="module")
def frames(device: torch.device) -> torch.Tensor:
    """Random uint8 frames on the benchmark device (never zeros)."""
    shape = CUDA_FRAMES if device.type == "cuda" else CPU_FRAMES
    generator = torch.Generator(device=device).manual_seed(0)
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)


def run(op: Callable, frames: torch.Tensor, measure, benchmark) -> None:
    """Time ``op(frames, BLOCK)``; bytes: the pixels read plus the float32 means written."""
    n, channels, height, width = frames.shape
    means = n * channels * (height // BLOCK) * (width // BLOCK)
    benchmark.extra_info["shape"] = list(frames.shape)
    benchmark.extra_info["block"] = BLOCK
    measure(lambda: op(frames, BLOCK), bytes=frames.numel() * frames.element_size() + means * 4)


@pytest.mark.cuda
@pytest.mark.benchmark(group="grid_reduce")
def test_grid_reduce_triton(frames, measure, benchmark):
    run(grid_reduce, frames, measure, benchmark)


@pytest.mark.benchmark(group="grid_reduce")
def test_grid_reduce_torch(frames, measure, benchmark):
    run(grid_reduce_reference, frames, measure, benchmark)


@pytest.mark.cuda
@pytest.mark.benchmark(group="cell_features")
def test_cell_features_triton(frames, measure, benchmark):
    run(cell_features, frames, measure, benchmark)


@pytest.mark.benchmark(group="cell_features")
def test_cell_features_torch(frames, measure, benchmark):
    run(cell_features_reference, frames, measure, benchmark)
