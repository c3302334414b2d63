"""A video collection on Ray against local threads, and the tile pool in Ray's object store.

- ``test_collection``: 8 short clips (1-2.4 s of 320 x 180 at 25 fps, H.264) rendered by
  ``render_folder`` with ``jobs=2`` here, then on a local Ray instance with 2 CPUs (one task per
  video, none split). The first Ray round starts Ray's worker processes (each imports torch);
  later rounds reuse them. Ray's overhead per video is (Ray - local) / 8.
- ``test_pool_in_object_store``: a pool of 10,000 tiles of 32 px (30 MiB), put in the object
  store once and read by 2 tasks at once, each in its own worker: the memory each worker adds
  (its private memory, ``RssAnon``, and what it maps from the shared store, ``RssShmem``), for
  the pool as ``mosaic.distributed`` shares it (``SharedPool``, numpy) and as a pickled
  ``TilePool`` (torch tensors).

Needs ``pip install 'triton-mosaic[ray]'``.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import device_name

from mosaic import MosaicConfig, TilePool
from mosaic.batch import render_folder
from mosaic.distributed import SharedPool

ray = pytest.importorskip("ray")

CLIPS = 8
ROUNDS = 3


@pytest.fixture(scope="module")
def ray_instance() -> object:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def generated_pool(count: int, tile_size: int) -> TilePool:
    """``count`` tiles: colour gradients with texture, spread over the colour cube."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(count, 3, 1, 1, generator=generator)
    ramp = torch.linspace(-0.2, 0.2, tile_size)
    slope = torch.rand(count, 3, 1, 1, generator=generator) - 0.5
    texture = torch.rand(count, 3, tile_size, tile_size, generator=generator) * 0.05
    images = base + slope * (ramp[:, None] + ramp[None, :]) + texture
    return TilePool.from_tensor((images.clamp(0, 1) * 255).round().to(torch.uint8))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    folder = tmp_path_factory.mktemp("collection")
    for index in range(CLIPS):
        seconds = 1 + 0.2 * index
        source = f"testsrc2=size=320x180:rate=25:duration={seconds}"
        command = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", source]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(folder / f"clip{index}.mp4")]
        subprocess.run(command, check=True, timeout=120)
    return folder


def test_collection(benchmark, ray_instance, clips: Path, tmp_path: Path):
    pool = generated_pool(500, 16)
    config = MosaicConfig(cell=16, tile_size=16, min_distance=0, device="cpu")
    rounds: dict[str, list[float]] = {"local_jobs2": [], "ray_2cpus": []}

    def run(where: str) -> float:
        output = tmp_path / where
        shutil.rmtree(output, ignore_errors=True)
        started = time.perf_counter()
        options = {"jobs": 2} if where == "local_jobs2" else {"ray": True}
        report = render_folder(
            clips, output, pool, config, progress=False, log=lambda _: None, **options
        )
        seconds = time.perf_counter() - started
        assert len(report.rendered) == CLIPS, report.failed
        return seconds

    first_ray = run("ray_2cpus")  # starts the workers

    def both() -> None:
        for where in rounds:
            rounds[where].append(run(where))

    benchmark.pedantic(both, rounds=ROUNDS, iterations=1)
    local, on_ray = min(rounds["local_jobs2"]), min(rounds["ray_2cpus"])
    benchmark.extra_info.update(
        {
            "device": device_name(torch.device("cpu")),
            "clips": CLIPS,
            "seconds": rounds,
            "ray_first_round_s": first_ray,
            "ray_overhead_per_video_s": (on_ray - local) / CLIPS,
        }
    )


def test_pool_in_object_store(benchmark, ray_instance):
    pool = generated_pool(10_000, 32)

    # Defined here, so that Ray sends it by value: workers cannot import this file.
    def _worker_memory(holder: list) -> dict[str, float]:
        """In a Ray worker: the pool in ``holder[0]`` (an object reference) fetched, opened and
        read through; the worker's private and shared memory before and after, in MiB."""

        def status() -> dict[str, float]:
            with open("/proc/self/status") as lines:
                fields = dict(line.split(":", 1) for line in lines)
            return {name: int(fields[name].split()[0]) / 1024 for name in ("RssAnon", "RssShmem")}

        before = status()
        value = ray.get(holder[0])
        pool = value.open() if isinstance(value, SharedPool) else value
        checksum = int(pool.images.sum(dtype=torch.int64))  # every page read
        after = status()
        time.sleep(1)  # both tasks hold their pool at once, in two workers
        return {
            "private_mib": after["RssAnon"] - before["RssAnon"],
            "shared_mib": after["RssShmem"] - before["RssShmem"],
            "checksum": checksum,
        }

    measure = ray.remote(num_cpus=1, max_calls=1)(_worker_memory)  # a fresh worker each
    results: dict[str, list[dict]] = {}

    def both() -> None:
        for name, value in (("shared_numpy", SharedPool.of(pool)), ("pickled_tilepool", pool)):
            reference = ray.put(value)
            results[name] = ray.get([measure.remote([reference]) for _ in range(2)])
            del reference

    benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "pool_mib": pool.images.numel() / 2**20,
            "tiles": len(pool),
            "per_worker": results,
        }
    )
