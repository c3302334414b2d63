"""sRGB <-> Oklab microbenchmarks: the Triton kernels against the torch references, timed by
the same timer in one run.

Target (bench/README.md, Targets): both conversions on 8 x 1080p at >= 80 % of the copy
bandwidth measured in the same run (they are memory-bound: a few dozen instructions a pixel
against 15 bytes). Byte counts are the floor each conversion must move: every channel value is
read once and written once (uint8 in and float32 out, or the reverse), 5 bytes in all.
The Triton benchmarks need CUDA; the torch baselines run everywhere, on a 1 x 720p frame on CPU.
"""

from __future__ import annotations

import pytest
import torch

from kernels.oklab import (
    oklab_to_srgb,
    oklab_to_srgb_reference,
    srgb_to_oklab,
    srgb_to_oklab_reference,
)

FULL_HD_BATCH = (8, 3, 1080, 1920)
CPU_FRAME = (1, 3, 720, 1280)
BYTES_PER_VALUE = 1 + 4  # uint8 one way, float32 the other


def frame_shape(device: torch.device) -> tuple[int, ...]:
    return FULL_HD_BATCH if device.type == "cuda" else CPU_FRAME


def random_frames(shape: tuple[int, ...], device: torch.device, layout: str) -> torch.Tensor:
    """Random uint8 ``(N, 3, H, W)`` frames; ``"HWC"`` is a decoder's HWC batch seen as CHW."""
    n, channels, height, width = shape
    if layout == "HWC":
        hwc = torch.randint(0, 256, (n, height, width, channels), dtype=torch.uint8, device=device)
        return hwc.permute(0, 3, 1, 2)
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)


def random_oklab(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Oklab of random frames: in-gamut values, as the engine converts back."""
    return srgb_to_oklab_reference(random_frames(shape, device, "CHW"))


@pytest.mark.cuda
@pytest.mark.benchmark(group="srgb_to_oklab")
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_srgb_to_oklab_triton(measure, device, layout):
    frames = random_frames(FULL_HD_BATCH, device, layout)
    measure(
        lambda: srgb_to_oklab(frames), bytes=frames.numel() * BYTES_PER_VALUE,
        baseline=lambda: srgb_to_oklab_reference(frames),
    )  # fmt: skip


@pytest.mark.benchmark(group="srgb_to_oklab")
def test_srgb_to_oklab_torch(measure, device):
    frames = random_frames(frame_shape(device), device, "CHW")
    measure(lambda: srgb_to_oklab_reference(frames), bytes=frames.numel() * BYTES_PER_VALUE)


@pytest.mark.cuda
@pytest.mark.benchmark(group="oklab_to_srgb")
def test_oklab_to_srgb_triton(measure, device):
    lab = random_oklab(FULL_HD_BATCH, device)
    measure(
        lambda: oklab_to_srgb(lab), bytes=lab.numel() * BYTES_PER_VALUE,
        baseline=lambda: oklab_to_srgb_reference(lab),
    )  # fmt: skip


@pytest.mark.benchmark(group="oklab_to_srgb")
def test_oklab_to_srgb_torch(measure, device):
    lab = random_oklab(frame_shape(device), device)
    measure(lambda: oklab_to_srgb_reference(lab), bytes=lab.numel() * BYTES_PER_VALUE)
