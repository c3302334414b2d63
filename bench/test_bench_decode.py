"""Decode throughput of the frame readers, per backend and device, for each access pattern.

Clips (made once per session in a temporary folder): FFmpeg ``testsrc2``, 30 fps, 4 s (120
frames), H.264 (libx264 ``veryfast``, yuv420p) with a key frame every 60 frames (2 s, as streaming
encoders commonly do), at 720p and 1080p; and the same frames as a folder of JPEGs (quality 95).

Patterns, each delivering uint8 NCHW frames on the decode device:

- ``sequential``: every frame, by iterating the source (batches of 8);
- ``every_4th``: every 4th frame (30 frames), as ``get_range(step=4)`` reads them;
- ``uniform``: 16 frames spread evenly, as ``sample_uniform(16)`` reads them;
- ``random``: 16 random indices (seeded).

All but ``sequential`` go through ``get_frames``.

The sparse patterns run in both modes, ``stream`` and ``seek`` (``auto`` picks ``seek`` for all of
them). ``extra_info`` records the machine, the backend and decoder, the mode, the frames delivered
and frames/s. The CPU runs are kept short (3 rounds of at most about a second); CUDA decoding
(``@pytest.mark.cuda``) is skipped without a GPU.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import device_name, synchronize

from adapters import FrameSource, open_source, uniform_indices
from adapters.pyav_source import pyav_problem

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
SECONDS, FPS, GOP = 4, 30, 60
SAMPLES = 16
PATTERNS = ["sequential", "every_4th", "uniform", "random"]

needs_pyav = pytest.mark.skipif(pyav_problem() is not None, reason="PyAV is not installed")
READERS = [
    pytest.param(("torchcodec", "cpu"), id="torchcodec-cpu"),
    pytest.param(("torchcodec", "cuda"), id="torchcodec-cuda", marks=pytest.mark.cuda),
    pytest.param(("pyav", "cpu"), id="pyav-cpu", marks=needs_pyav),
    pytest.param(("folder", "cpu"), id="folder-jpeg"),
]


def ffmpeg(*args: str) -> None:
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """``clips[size]["video" | "folder"]``: the H.264 clip and its frames as JPEGs."""
    root = tmp_path_factory.mktemp("decode")
    made = {}
    for name, (width, height) in SIZES.items():
        video, folder = root / f"{name}.mp4", root / f"{name}_frames"
        folder.mkdir()
        ffmpeg(
            *("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={FPS}:duration={SECONDS}"),
            *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
            *("-g", str(GOP), "-keyint_min", str(GOP), str(video)),
        )
        ffmpeg("-i", str(video), "-q:v", "2", str(folder / "frame%04d.jpg"))
        made[name] = {"video": video, "folder": folder}
    return made


def machine() -> str:
    """The CPU model and core count (the benchmark's machine, for the recorded results)."""
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def pattern_indices(pattern: str, count: int) -> list[int]:
    """The frame indices a pattern reads from a video of ``count`` frames."""
    if pattern == "sequential":
        return list(range(count))
    if pattern == "every_4th":
        return list(range(0, count, 4))
    if pattern == "uniform":
        return uniform_indices(count, SAMPLES)
    return random.Random(0).sample(range(count), SAMPLES)


def reader(source: FrameSource, pattern: str, mode: str) -> Callable[[], int]:
    """A function reading ``pattern`` from ``source``, returning how many frames it delivered."""
    indices = pattern_indices(pattern, len(source))

    def run() -> int:
        if pattern == "sequential":
            frames = sum(len(batch) for batch in source)
        else:
            frames = len(source.get_frames(indices, mode=mode))
        synchronize(source.device)
        return frames

    return run


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize(
    ("pattern", "mode"),
    [("sequential", "stream")] + [(p, m) for p in PATTERNS[1:] for m in ("stream", "seek")],
)
@pytest.mark.parametrize("decoder", READERS)
def test_decode(benchmark, clips, decoder: tuple[str, str], size: str, pattern: str, mode: str):
    backend, decode_device = decoder
    if backend == "folder" and mode == "stream" and pattern != "sequential":
        pytest.skip("a folder of images reads frames directly: both modes are the same")
    benchmark.group = f"decode {size} {pattern}"
    path = clips[size]["folder" if backend == "folder" else "video"]
    options = {} if backend == "folder" else {"backend": backend, "decode_device": decode_device}
    with open_source(path, device=decode_device, batch_size=8, **options) as source:
        run = reader(source, pattern, mode)
        frames = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
        if benchmark.disabled:
            return
        seconds = benchmark.stats.stats.median
        width, height = SIZES[size]
        benchmark.extra_info.update(
            device=device_name(torch.device(decode_device)),
            machine=machine(),
            backend=source.backend,
            decoder=source.decoder,
            mode=mode if backend != "folder" else "direct",
            auto_mode=source.plan_mode(pattern_indices(pattern, len(source))),
            frames=frames,
            median_ms=seconds * 1e3,
            frames_per_s=frames / seconds,
            megapixels_per_s=frames * width * height / seconds / 1e6,
        )
