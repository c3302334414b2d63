"""Microbenchmarks of ``grid_reduce`` and ``cell_features`` on uint8 frames.

8 x 1080p on CUDA (never zeros: random codes): blocks 2 to 32, powers of two (one reshaped run
of columns per tile row) and 3 and 12 (a run of columns, gathered into blocks), on CHW planes
and on HWC frames (a decoder's batch seen as CHW, always gathered); beside the eager-torch
references at block 4 (for ``cell_features`` the unfused ``srgb_to_oklab`` then block sums). On
a CPU only the references run, on one 720p frame, so the file finishes in seconds. Bytes are the
floor: the pixels read once plus the float32 means written.

``cell_features`` also converts every pixel to Oklab, so it may be bound by instruction issue or
by the MUFU ops rather than by memory. Its ``extra_info`` states the roofline, the lowest of
three rates for the pixels of an SM per clock:

- memory: the measured copy bandwidth, 3 bytes a pixel;
- issue: 128 instructions per clock (4 schedulers of a 32-wide warp) over the instructions a
  pixel costs, counted in the sm_90 SASS of the kernel's loop (Triton 3.9, ptxas 12.8): 44 for
  CHW planes, 52 for HWC frames (3 byte loads instead of vectors). Of these, per pixel: the sRGB
  decode 9 (byte extract, address, shared-memory gather per channel), the LMS mix 9, the cube
  roots 15 (two ``lg2``/``ex2`` pairs on the MUFU, one ``lg2`` then ``exp2_fma``), the sums 3;
  the rest is addressing and the loop;
- MUFU: 16 results per clock over 5 a pixel.

and the shared memory the decode table is read from, 32 banks: random codes put 3.15 of a
warp's reads in one bank on average (3 per pixel, 0.3 clocks), a third of a clock a pixel, about
the issue limit; natural images conflict far less. SM count and clock are the device's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kernels import cell_features, grid_reduce
from kernels.features import cell_features_reference
from kernels.grid import grid_reduce_reference

CUDA_FRAMES = (8, 3, 1080, 1920)
CPU_FRAMES = (1, 3, 720, 1280)
GPU_BLOCKS = [2, 4, 8, 16, 32, 3, 12]
# The H100 and H200 run at up to 1980 MHz; torch reports the clock from CUDA 12.x on.
NOMINAL_CLOCK_HZ = 1.98e9
ISSUE_PER_CLOCK = 128
MUFU_PER_CLOCK = 16
INSTRUCTIONS_PER_PIXEL = {"CHW": 44, "HWC": 52}
MUFU_PER_PIXEL = 5
BYTES_PER_PIXEL = 3


def random_frames(device: torch.device, layout: str) -> torch.Tensor:
    """Random uint8 frames ``(N, 3, H, W)`` on ``device``: CHW planes, or an HWC batch seen as
    CHW."""
    n, channels, height, width = CUDA_FRAMES if device.type == "cuda" else CPU_FRAMES
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (n, height, width, channels) if layout == "HWC" else (n, channels, height, width)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)
    return frames.permute(0, 3, 1, 2) if layout == "HWC" else frames


@pytest.fixture(scope="module", params=["CHW", "HWC"])
def frames(request: pytest.FixtureRequest, device: torch.device) -> tuple[str, torch.Tensor]:
    return request.param, random_frames(device, request.param)


def run(op: Callable, frames: torch.Tensor, block: int, measure, benchmark) -> None:
    """Time ``op(frames, block)``; bytes: the pixels read plus the float32 means written."""
    n, channels, height, width = frames.shape
    means = n * channels * (height // block) * (width // block)
    benchmark.extra_info["shape"] = list(frames.shape)
    benchmark.extra_info["block"] = block
    measure(lambda: op(frames, block), bytes=frames.numel() + means * 4)


def roofline_bytes_per_second(device: torch.device, layout: str, copy_bandwidth: float) -> dict:
    """``cell_features``' roofline on ``device`` (module docstring): the three rates in bytes/s
    and the lowest."""
    properties = torch.cuda.get_device_properties(device)
    clock_khz = getattr(properties, "clock_rate", 0)
    clock = clock_khz * 1e3 if clock_khz else NOMINAL_CLOCK_HZ
    pixel_rate = properties.multi_processor_count * clock
    rates = {
        "memory": copy_bandwidth,
        "issue": pixel_rate * ISSUE_PER_CLOCK / INSTRUCTIONS_PER_PIXEL[layout] * BYTES_PER_PIXEL,
        "mufu": pixel_rate * MUFU_PER_CLOCK / MUFU_PER_PIXEL * BYTES_PER_PIXEL,
    }
    return {**rates, "roofline": min(rates.values()), "clock_hz": clock}


@pytest.mark.cuda
@pytest.mark.benchmark(group="grid_reduce")
@pytest.mark.parametrize("block", GPU_BLOCKS)
def test_grid_reduce_triton(frames, block, measure, benchmark):
    layout, pixels = frames
    benchmark.extra_info["layout"] = layout
    run(grid_reduce, pixels, block, measure, benchmark)


@pytest.mark.benchmark(group="grid_reduce")
def test_grid_reduce_torch(frames, measure, benchmark):
    layout, pixels = frames
    benchmark.extra_info["layout"] = layout
    run(grid_reduce_reference, pixels, 4, measure, benchmark)


@pytest.mark.cuda
@pytest.mark.benchmark(group="cell_features")
@pytest.mark.parametrize("block", GPU_BLOCKS)
def test_cell_features_triton(frames, block, measure, benchmark, device, copy_bandwidth):
    layout, pixels = frames
    info = benchmark.extra_info
    info["layout"] = layout
    run(cell_features, pixels, block, measure, benchmark)
    if "GB/s" not in info:  # --benchmark-disable: nothing measured
        return
    rates = roofline_bytes_per_second(device, layout, copy_bandwidth)
    info["clock_hz"] = rates.pop("clock_hz")
    info |= {f"{name}_GB/s": rate / 1e9 for name, rate in rates.items()}
    info["pct_of_roofline"] = 100.0 * info["GB/s"] * 1e9 / rates["roofline"]


@pytest.mark.benchmark(group="cell_features")
def test_cell_features_torch(frames, measure, benchmark):
    layout, pixels = frames
    benchmark.extra_info["layout"] = layout
    run(cell_features_reference, pixels, 4, measure, benchmark)
