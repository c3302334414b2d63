"""Encoding throughput of the video sinks at 1080p, per backend, preset, threads and content;
and the CPU pipeline with each sink (``test_video_with_each_sink``).

Frames (made once per session, in memory): 1920x1080 at 25 frames/s, two contents:

- ``tiles``: what the mosaic pipeline writes: 16 px tiles cut from the shipped photographs, a
  grid of 68 x 120 cells; from one frame to the next 5 % of the cells take another tile and 25 %
  another colour (a gain of 0.9 to 1.1), about the churn and the recoloured share of the CPU
  workload's slow pan (bench/README.md);
- ``noise``: uniform random pixels, the worst case for any encoder (nothing to predict).

Each case writes the same frames through ``open_sink`` as I420 (``pixel_format="yuv420p"``:
the encoder's own work, nothing converted) or RGB (``rgb``: swscale's conversion included), with
x264's threads at 1 (frames/s per core) or the sinks' default (1.5 per core,
``encoders.encoder_threads``). ``extra_info``: the
backend and ``encoding``, frames/s, CPU ms per frame (this process and ffmpeg, a child process,
together), frames/s per core of CPU time, Mbit/s at 25 frames/s and the load average before the
run (the cores may be shared). Nothing here asserts a time.

Run (``-k "superfast and tiles"`` for a subset)::

    python -m pytest bench/test_bench_encode.py --benchmark-json=bench/results/encode-<machine>.json
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest
import test_bench_e2e
import torch
from test_bench_e2e import CPU, machine, record, run_video

from adapters import open_sink, rgb_to_yuv420
from adapters.encoders import encoder_threads
from adapters.pyav_source import pyav_problem
from mosaic.demo import demo_pool

WIDTH, HEIGHT, FPS = 1920, 1080, 25
FRAMES = 30
CELL = 16
CHURN, RECOLOURED = 0.05, 0.25
ROUNDS = 3
PRESETS = ("ultrafast", "superfast", "veryfast")
inputs = test_bench_e2e.inputs  # its session fixture: the CPU workload's clip and pool
BACKENDS = [
    pytest.param("ffmpeg", id="ffmpeg"),
    pytest.param(
        "pyav",
        id="pyav",
        marks=pytest.mark.skipif(pyav_problem() is not None, reason="PyAV is not installed"),
    ),
]


def tile_frames(count: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``(count, 3, HEIGHT, WIDTH)``: a grid of photo tiles, ``CHURN`` of them changing
    tile and ``RECOLOURED`` changing colour from one frame to the next."""
    tiles = demo_pool(CELL).images.float()
    generator = torch.Generator().manual_seed(seed)
    rows, cols = -(-HEIGHT // CELL), -(-WIDTH // CELL)

    def drawn(fraction: float, values: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.rand(rows, cols, generator=generator) < fraction, values, old)

    grid = torch.randint(len(tiles), (rows, cols), generator=generator)
    gain = torch.ones(rows, cols)
    frames = []
    for _ in range(count):
        grid = drawn(CHURN, torch.randint(len(tiles), (rows, cols), generator=generator), grid)
        gain = drawn(RECOLOURED, 0.9 + 0.2 * torch.rand(rows, cols, generator=generator), gain)
        cells = tiles[grid] * gain[:, :, None, None, None]  # (rows, cols, 3, CELL, CELL)
        image = cells.permute(2, 0, 3, 1, 4).reshape(3, rows * CELL, cols * CELL)
        frames.append(image[:, :HEIGHT, :WIDTH].clamp(0, 255).round().to(torch.uint8))
    return torch.stack(frames)


@pytest.fixture(scope="session")
def frames() -> dict[str, dict[str, torch.Tensor]]:
    """``frames[content][pixel_format]``: the benchmark's frames as RGB and as I420."""
    generator = torch.Generator().manual_seed(0)
    rgb = {
        "tiles": tile_frames(FRAMES),
        "noise": torch.randint(256, (FRAMES, 3, HEIGHT, WIDTH), generator=generator).to(
            torch.uint8
        ),
    }
    return {
        content: {"rgb": images, "yuv420p": rgb_to_yuv420(images)}
        for content, images in rgb.items()
    }


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ``ffmpeg`` program)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.mark.parametrize("content", ["tiles", "noise"])
@pytest.mark.parametrize("pixel_format", ["yuv420p", "rgb"])
@pytest.mark.parametrize("threads", ["1", "default"])
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_encode(
    benchmark, frames, tmp_path: Path, monkeypatch, backend, preset, threads, pixel_format, content
):
    if pixel_format == "rgb" and (threads == "1" or preset != "superfast"):
        pytest.skip("RGB input: the conversion's cost, measured at the default settings only")
    if threads == "1":
        monkeypatch.setattr("adapters.frame_sink.encoder_threads", lambda: 1)
    images = frames[content][pixel_format]
    output = tmp_path / "out.mp4"
    rounds: list[dict] = []

    def encode() -> None:
        load = os.getloadavg()[0]
        cpu, started = cpu_seconds(), time.perf_counter()
        with open_sink(
            output,
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            backend=backend,
            encoder="libx264",
            preset=preset,
            pixel_format=pixel_format,
        ) as sink:
            for image in images:
                sink.write(image)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        rounds.append(
            {"seconds": seconds, "cpu": cpu, "load": load, "bytes": output.stat().st_size}
        )
        benchmark.extra_info["encoding"] = sink.encoding

    benchmark.group = f"encode 1080p {content} {pixel_format}"
    benchmark.pedantic(encode, rounds=ROUNDS, iterations=1)
    if benchmark.disabled:
        return
    median = sorted(rounds, key=lambda run: run["seconds"])[len(rounds) // 2]
    cpu_ms = 1e3 * median["cpu"] / FRAMES
    benchmark.extra_info.update(
        machine(),
        backend=backend,
        threads=1 if threads == "1" else encoder_threads(),
        frames=FRAMES,
        frames_per_s=FRAMES / median["seconds"],
        frames_per_s_rounds=[FRAMES / run["seconds"] for run in rounds],
        cpu_ms_per_frame=cpu_ms,
        frames_per_s_per_core=1e3 / cpu_ms,
        mbit_per_s=8 * median["bytes"] / (FRAMES / FPS) / 1e6,
        load_average=[run["load"] for run in rounds],
    )


def test_video_with_each_sink(benchmark, inputs, tmp_path: Path, monkeypatch):
    """``render_video`` on the CPU workload of ``test_bench_e2e.py`` (720p, cell 36, 1000 tiles,
    300 frames, decode and encode included, a fresh interpreter each round) with the ffmpeg
    program's sink and with PyAV's, rounds alternating so that both see the same load.

    PyAV's round runs with no ``ffmpeg`` on ``PATH``, which is what makes ``open_sink`` pick it.
    """
    if pyav_problem() is not None:
        pytest.skip("PyAV is not installed")
    made = inputs(CPU)
    no_ffmpeg = tmp_path / "bin"
    no_ffmpeg.mkdir()
    child_env = test_bench_e2e.child_env
    environments = {
        "ffmpeg": child_env,
        "pyav": lambda **env: child_env(**env, PATH=str(no_ffmpeg)),
    }
    rounds: dict[str, list[dict]] = {backend: [] for backend in environments}

    def both() -> None:
        for backend, environment in environments.items():
            monkeypatch.setattr(test_bench_e2e, "child_env", environment)
            output = tmp_path / f"{backend}.mp4"
            rounds[backend].append(run_video(CPU, made["clip"], made["pool_path"], output))

    benchmark.pedantic(both, rounds=ROUNDS, iterations=1)
    for backend, runs in rounds.items():  # each ran with the sink it was meant to
        assert {"ffmpeg": "ffmpeg)", "pyav": "PyAV)"}[backend] in runs[0]["encoder"]
    record(benchmark, CPU, "video", rounds["ffmpeg"])
    benchmark.extra_info["rounds_by_sink"] = rounds
