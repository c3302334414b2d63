"""Throughput of ``adapters.patch_stream`` and ``PatchClipDataset`` on a generated 720p clip.

The clip (made once per session): FFmpeg ``testsrc2``, 1280 x 720, 30 fps, 4 s (120 frames),
H.264 (libx264 ``veryfast``, yuv420p), a key frame every 60 frames. The README's example
reads it: 16 frames spread evenly, resized to a short side of 224 (224 x 398, cut to 392),
patches of 14 (16 x 28 a frame, 7168 a clip), the 2048 most detailed kept, float32.

``extra_info``: the machine, decode and process devices, the decoder, clips/s, kept patches/s
(what a training step receives) and scored patches/s (every patch of the clip gets an energy).
A whole call is timed: opening the video, decoding (seeking to the 16 frames), resizing,
energies, selection. CPU rounds are few (each call takes about a second); the CUDA paths
(``@pytest.mark.cuda``) are skipped without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from conftest import device_name, synchronize, timed_rounds
from test_bench_decode import ffmpeg, machine

from adapters import PatchClip, PatchClipDataset, patch_stream

SEQUENCE_LENGTH, INPUT_SIZE, PATCH_SIZE, K_KEEP = 16, 224, 14, 2048
SCORED = SEQUENCE_LENGTH * (INPUT_SIZE // PATCH_SIZE) * (392 // PATCH_SIZE)
OPTIONS = {
    "sequence_length": SEQUENCE_LENGTH,
    "input_size": INPUT_SIZE,
    "patch_size": PATCH_SIZE,
    "k_keep": K_KEEP,
}
ROUNDS = 5
DATASET_CLIPS = 4  # the clip four times over, for the loader


@pytest.fixture(scope="session")
def clip_720p(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("patches") / "720p.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=4"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-g", "60", "-keyint_min", "60", str(path)),
    )
    return path


def record(benchmark, seconds: float | None, clips: int, **details: object) -> None:
    """``extra_info``: what ran and its rates, ``clips`` clips a call."""
    if seconds is None:  # --benchmark-disable: nothing measured
        return
    benchmark.extra_info.update(
        machine=machine(),
        median_ms=seconds * 1e3,
        clips_per_s=clips / seconds,
        kept_patches_per_s=clips * K_KEEP / seconds,
        scored_patches_per_s=clips * SCORED / seconds,
        **details,
    )


DEVICES = [
    pytest.param(("cpu", "cpu"), id="cpu-cpu"),
    pytest.param(("cpu", "cuda"), id="cpu-cuda", marks=pytest.mark.cuda),
    pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=pytest.mark.cuda),
]


@pytest.mark.benchmark(group="patch_stream 720p")
@pytest.mark.parametrize("devices", DEVICES)
def test_patch_stream(benchmark, clip_720p, devices):
    decode_device, process_device = devices
    process = torch.device(process_device)

    def call() -> PatchClip:
        clip = patch_stream(
            clip_720p, **OPTIONS, decode_device=decode_device, process_device=process_device
        )
        synchronize(process)
        return clip

    clip, seconds = timed_rounds(benchmark, process, call, rounds=ROUNDS)
    assert clip.patches.shape == (K_KEEP, 3, PATCH_SIZE, PATCH_SIZE)
    record(benchmark, seconds, 1, decode_device=decode_device, process=device_name(process))


@pytest.mark.benchmark(group="patch_stream 720p")
@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_loader(benchmark, clip_720p, workers):
    """A pass of ``PatchClipDataset.loader`` over the clip four times, on the CPU."""
    dataset = PatchClipDataset([clip_720p] * DATASET_CLIPS, **OPTIONS, process_device="cpu")
    loader = dataset.loader(workers=workers)
    clips, seconds = timed_rounds(
        benchmark, torch.device("cpu"), lambda: list(loader), rounds=ROUNDS
    )
    assert len(clips) == DATASET_CLIPS
    record(benchmark, seconds, DATASET_CLIPS, workers=workers, process="cpu")
