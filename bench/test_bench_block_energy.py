"""Microbenchmarks of ``block_energy`` (mean squared luma gradient per block) on uint8 frames.

8 x 1080p on CUDA (random codes, the frames of ``test_bench_grid.py``), CHW planes and HWC frames
(a decoder's batch seen as CHW), at blocks 4, 14 (not a power of two: padded lanes), 16 and 32,
and the patch stream's clip (16 frames of 224 x 224 in patches of 14); beside the eager-torch
reference at each block, timed by the same timer. On a CPU only the reference runs, on one
720p frame and on the clip. Bytes are the floor: the pixels read once plus the float32 energies
written. The kernel is memory-bound (about 20 float operations a pixel), so its target is the
copy bandwidth, like ``grid_reduce``'s: >= 80 %.
"""

from __future__ import annotations

import pytest
import torch
from test_bench_grid import random_frames

from kernels import block_energy
from kernels.block_energy import block_energy_reference

GPU_BLOCKS = [4, 14, 16, 32]
# The patch stream's clip: sequence_length 16, input_size 224, patch_size 14.
CLIP = (16, 3, 224, 224)
CLIP_BLOCK = 14


@pytest.fixture(scope="module", params=["CHW", "HWC"])
def frames(request: pytest.FixtureRequest, device: torch.device) -> tuple[str, torch.Tensor]:
    return request.param, random_frames(device, request.param)


def run(op, pixels: torch.Tensor, block: int, measure, benchmark, *, baseline: bool) -> None:
    """Time ``op(pixels, block)``, with the reference as the baseline when ``baseline``; bytes:
    the pixels read plus the float32 energies written."""
    n, _, height, width = pixels.shape
    energies = n * (height // block) * (width // block)
    benchmark.extra_info["shape"] = list(pixels.shape)
    benchmark.extra_info["block"] = block
    measure(
        lambda: op(pixels, block),
        bytes=pixels.numel() * pixels.element_size() + energies * 4,
        baseline=(lambda: block_energy_reference(pixels, block)) if baseline else None,
    )


@pytest.mark.cuda
@pytest.mark.benchmark(group="block_energy")
@pytest.mark.parametrize("block", GPU_BLOCKS)
def test_block_energy_triton(frames, block, measure, benchmark):
    layout, pixels = frames
    benchmark.extra_info["layout"] = layout
    run(block_energy, pixels, block, measure, benchmark, baseline=True)


@pytest.mark.benchmark(group="block_energy")
def test_block_energy_torch(frames, measure, benchmark):
    layout, pixels = frames
    benchmark.extra_info["layout"] = layout
    run(block_energy_reference, pixels, 16, measure, benchmark, baseline=False)


@pytest.mark.benchmark(group="block_energy_clip")
def test_block_energy_clip(device, measure, benchmark):
    """The patch stream's step: every 14 x 14 patch of a 224 x 224 clip of 16 frames (the kernel
    on CUDA, else the reference)."""
    generator = torch.Generator(device=device).manual_seed(0)
    clip = torch.randint(0, 256, CLIP, dtype=torch.uint8, device=device, generator=generator)
    run(block_energy, clip, CLIP_BLOCK, measure, benchmark, baseline=device.type == "cuda")
