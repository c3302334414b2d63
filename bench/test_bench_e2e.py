"""End to end: frames/s of the video pipeline, the time of each stage, peak memory.

Workloads (bench/README.md, Targets):

- ``cpu``: 1280x720, cell 36 (20 x 36 = 720 cells), 1000 tiles, processed on the CPU;
- ``gpu``: 1920x1080, cell 16 (68 x 120 = 8160 cells), 10,000 tiles, on CUDA
  (``@pytest.mark.cuda``: skipped without a GPU), where ``"auto"`` picks the auction;
  ``gpu-windows`` the same with the windows solver.

The input is a slow zoom and pan over a shipped photograph (as ``mosaic --demo``), made at the
start of the session; the tiles are square crops of the shipped photographs at four scales. Each
workload is measured two ways, ``ROUNDS`` times:

- ``pipeline``: ``render_frames`` over frames already decoded in memory, the mosaics discarded
  (no decode, no encode);
- ``video``: ``render_video`` from an H.264 clip of the same frames written with the project's
  ``open_sink``, decode and encode included, in a fresh interpreter, so its peak RSS and the CPU
  time of its encoder (ffmpeg, a child process) are its own. Needs FFmpeg.

``extra_info`` records per round the frames/s, the CPU time per frame (the process's, and
ffmpeg's for ``video``), each stage's wall-clock and CPU ms per frame (``VideoStats``'
``stage_seconds``, torch at one thread per stage), the load average around it (the machine may
be shared: CPU times are the steadier figure), and for ``video`` the peak RSS; and
``stage_overlap``, how many stages worked at once on average. On CUDA the timer synchronises
the device around each stage, which undoes the overlap of the GPU executor's streams: there
the rounds run without it and one more round measures the stages (``timed_round``).
``test_encoder_presets`` times libx264's presets on the mosaic frames. ``test_short_clip_cli``
times the ``mosaic`` command itself on a short clip, from start to exit (``SHORT_CLIP``).
``test_footage_flicker`` measures temporal quality (spurious swaps, fidelity, tiles that follow
the content) on footage-like clips with each temporal idea on or off (``TEMPORAL_VARIANTS``).
The pipeline and video measures record the spurious swaps too. Run, then draw the per-stage
chart::

    python -m pytest bench/test_bench_e2e.py --benchmark-json=bench/results/e2e-MACHINE.json
    python bench/test_bench_e2e.py bench/results/e2e-MACHINE.json bench/results/e2e-MACHINE.png
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import bench_device, device_name, synchronize
from PIL import Image

from adapters import open_sink, read_image
from adapters.pyav_source import pyav_problem
from mosaic import MosaicConfig, TilePool
from mosaic.demo import DEMO_SUBJECT, asset_photos
from mosaic.engine import FrameRenderer
from mosaic.imageops import resize
from mosaic.pipeline import render_frames
from mosaic.stages import StageTimer
from mosaic.video import decode_batch_size
from tests.processes import child_env
from tests.scenes import crop_pool, spread, square_crops

ROUNDS = 3
FPS = 25
needs_a_sink = pytest.mark.skipif(
    shutil.which("ffmpeg") is None and pyav_problem() is not None,
    reason="needs an encoder: the ffmpeg program or PyAV",
)


@dataclass(frozen=True)
class Workload:
    name: str
    width: int
    height: int
    cell: int
    tiles: int
    device: str
    video_frames: int  # frames of the clip for the video measure
    memory_frames: int  # frames held decoded in memory for the pipeline measure
    method: str = "auto"  # the assignment solver

    @property
    def pool_tile_size(self) -> int:
        """The CLI's rule: tiles load at the cell size, but at least 32 px."""
        return max(self.cell, 32)

    def config(self) -> MosaicConfig:
        """The pinned settings the recorded figures were measured with: tiles drawn at the cell
        size (the output has the input's size) and no spacing rule (``min_distance`` 0; its
        repair is measured in ``test_bench_assign.py``), whatever the defaults become."""
        return MosaicConfig(
            cell=self.cell, tile_size=None, min_distance=0, device=self.device, method=self.method
        )


CPU = Workload("cpu", 1280, 720, 36, 1000, "cpu", video_frames=300, memory_frames=120)
GPU = Workload("gpu", 1920, 1080, 16, 10_000, "cuda", video_frames=300, memory_frames=240)
# The GPU workload with the windows solver instead of "auto"'s auction (what "auto" picked on
# CUDA before the auction; the CPU workload's "auto" is the windows solver).
GPU_WINDOWS = Workload(
    "gpu-windows", 1920, 1080, 16, 10_000, "cuda", video_frames=300, memory_frames=240,
    method="windows",
)  # fmt: skip
WORKLOADS = [
    pytest.param(CPU, id="cpu"),
    pytest.param(GPU, id="gpu", marks=pytest.mark.cuda),
    pytest.param(GPU_WINDOWS, id="gpu-windows", marks=pytest.mark.cuda),
]


# --------------------------------------------------------------------------- inputs


def pan_frames(width: int, height: int, count: int) -> Iterator[torch.Tensor]:
    """uint8 ``(H, W, 3)`` frames: a slow zoom and pan over the demo's photograph."""
    photo = read_image(next(p for p in asset_photos() if p.name == DEMO_SUBJECT))
    photo_h, photo_w = photo.shape[-2:]
    for index in range(count):
        t = index / max(count - 1, 1)
        crop_w = int(photo_w * (1.0 - 0.35 * t))
        crop_h = min(int(crop_w * height / width), photo_h)
        left = int((photo_w - crop_w) * t)
        top = int((photo_h - crop_h) * (0.5 - 0.3 * t))
        view = photo[:, top : top + crop_h, left : left + crop_w]
        yield resize(view, (height, width)).permute(1, 2, 0).contiguous()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Workload], dict]:
    """Per workload shape (workloads that differ only in their settings share them), built once
    when first asked for: its pool (saved for the subprocess), its first ``memory_frames``
    frames in memory and, where an encoder exists, its clip."""
    root = tmp_path_factory.mktemp("e2e")
    made: dict[str, dict] = {}

    def make(workload: Workload) -> dict:
        key = f"{workload.width}x{workload.height}-{workload.tiles}-{workload.video_frames}"
        if key not in made:
            pool = crop_pool(workload.tiles, workload.pool_tile_size)
            pool_path = root / f"{key}-pool.pt"
            torch.save(pool.images, pool_path)
            frames, clip = [], None
            generated = pan_frames(workload.width, workload.height, workload.video_frames)
            if shutil.which("ffmpeg") or pyav_problem() is None:
                clip = root / f"{key}.mp4"
                size = {"width": workload.width, "height": workload.height}
                with open_sink(clip, **size, fps=FPS, crf=18) as sink:
                    for frame in generated:
                        sink.write(frame.permute(2, 0, 1))
                        if len(frames) < workload.memory_frames:
                            frames.append(frame)
            else:
                frames = [next(generated) for _ in range(workload.memory_frames)]
            made[key] = {"pool": pool, "pool_path": pool_path, "frames": frames, "clip": clip}
        return made[key]

    return make


# --------------------------------------------------------------------------- measures


def machine() -> dict:
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        model = names[0] if names else model
    ffmpeg = shutil.which("ffmpeg")
    version = ""
    if ffmpeg:
        version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "ffmpeg": version.split("\n", 1)[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def per_frame_ms(seconds: dict[str, float], frames: int) -> dict[str, float]:
    return {name: round(1e3 * value / frames, 2) for name, value in seconds.items()}


def run_pipeline(
    workload: Workload, pool: TilePool, frames: list[torch.Tensor], timing: bool = True
) -> dict:
    """One round of ``render_frames`` over in-memory frames, the mosaics discarded; stage times
    with ``timing``."""
    renderer = FrameRenderer(pool, workload.config())
    device = renderer.device
    batch = decode_batch_size(device)  # as render_video reads them
    batches = [torch.stack(frames[i : i + batch]).to(device) for i in range(0, len(frames), batch)]
    timer = StageTimer(device, enabled=timing)
    load_before = os.getloadavg()[0]
    synchronize(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = render_frames(batches, renderer, lambda image: None, timer=timer)
    synchronize(device)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "frames": summary.frames,
        "seconds": seconds,
        "fps": summary.frames / seconds,
        "cpu_ms_per_frame": 1e3 * cpu / summary.frames,
        "stage_ms": per_frame_ms(timer.seconds, summary.frames),
        "stage_cpu_ms": per_frame_ms(timer.cpu_seconds, summary.frames),
        "load_average": [load_before, os.getloadavg()[0]],
        "churn": summary.tally.churn,
        "spurious_swaps": summary.tally.spurious_swaps,
        "spurious_swaps_p95": summary.tally.spurious_swaps_p95,
        "fidelity": summary.fidelity,
        "certified_gap_mean": summary.tally.gap_mean,
        "certified_gap_max": summary.tally.gap_max,
        "method": summary.method,
    }


# Shared by the scripts below, each run in a fresh interpreter: a field of /proc/self/status
# (VmRSS, or VmHWM: the peak) in MiB.
_RSS_FUNCTION = """
def rss_mib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024
"""

# Run in a fresh interpreter: render_video with timing, then what it cost, as one JSON line.
# Peak RSS is the kernel's high-water mark of this process's memory (VmHWM): ru_maxrss would
# also count the parent's RSS at the fork.
_VIDEO_SCRIPT = (
    _RSS_FUNCTION
    + """
import json, os, resource, sys, time, torch
from mosaic import MosaicConfig, TilePool, render_video

source, output, pool_path, cell, device, method, timing = sys.argv[1:8]
pool = TilePool.from_tensor(torch.load(pool_path))
before = rss_mib("VmRSS:")
load = os.getloadavg()[0]
cpu = time.process_time()
config = MosaicConfig(cell=int(cell), tile_size=None, min_distance=0, device=device,
                      method=method)
stats = render_video(source, output, pool, config, progress=False, timing=timing == "1")
cpu = time.process_time() - cpu
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"stats": stats.as_dict(), "cpu": cpu,
                  "encoder_cpu": children.ru_utime + children.ru_stime,
                  "rss_before_run_mib": before, "peak_rss_mib": rss_mib("VmHWM:"),
                  "load_average": [load, os.getloadavg()[0]]}))
"""
)


def run_video(
    workload: Workload, clip: Path, pool_path: Path, output: Path, timing: bool = True
) -> dict:
    """One round of ``render_video`` (decode and encode included) in a fresh interpreter; stage
    times with ``timing``."""
    env = child_env(TRITON_INTERPRET="0")
    command = [
        sys.executable,
        *("-c", _VIDEO_SCRIPT, str(clip), str(output), str(pool_path)),
        *(str(workload.cell), workload.device, workload.method, str(int(timing))),
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=1800, check=True
    )
    run = json.loads(result.stdout.strip().splitlines()[-1])
    stats, frames = run["stats"], run["stats"]["frames"]
    return {
        "frames": frames,
        "seconds": stats["seconds"],
        "fps": stats["render_fps"],
        "cpu_ms_per_frame": 1e3 * run["cpu"] / frames,
        "encoder_cpu_ms_per_frame": 1e3 * run["encoder_cpu"] / frames,
        "stage_ms": per_frame_ms(stats["stage_seconds"], frames),
        "stage_cpu_ms": per_frame_ms(stats["stage_cpu_seconds"], frames),
        "load_average": run["load_average"],
        "peak_rss_mib": run["peak_rss_mib"],
        "rss_before_run_mib": run["rss_before_run_mib"],
        "decoder": stats["decoder"],
        "encoder": stats["encoder"],
        "output_bytes": output.stat().st_size,
        "churn": stats["churn"],
        "spurious_swaps": stats["spurious_swaps"],
        "spurious_swaps_p95": stats["spurious_swaps_p95"],
        "fidelity": stats["fidelity"],
        "certified_gap_mean": stats["gap_mean"],
        "certified_gap_max": stats["gap_max"],
        "method": stats["method"],
    }


def record(
    benchmark, workload: Workload, measure: str, rounds: list[dict], timed: dict | None = None
) -> None:
    """Every round, and the round of median frames/s as the summary, in ``extra_info``; with
    ``timed``, the stage times come from that round (``timed_round``), the rounds having run
    without. ``stage_overlap``: the work stages' ms per frame summed (waits left out) per ms of
    wall clock a frame in the median round: above 1, stages ran at once."""
    by_fps = sorted(rounds, key=lambda r: r["fps"])
    info = benchmark.extra_info
    info.update(machine())
    info["device"] = device_name(torch.device(workload.device))
    info["workload"] = {
        "name": workload.name,
        "size": [workload.width, workload.height],
        "cell": workload.cell,
        "tiles": workload.tiles,
        "frames": rounds[0]["frames"],
    }
    info["measure"] = measure
    info["fps_best"] = by_fps[-1]["fps"]
    info["median"] = median = by_fps[len(by_fps) // 2]
    info["rounds"] = rounds
    if timed is not None:
        info["timed_round"] = timed
    stage_ms = (timed or median)["stage_ms"]
    work = sum(ms for name, ms in stage_ms.items() if name not in WAITING_STAGES)
    info["stage_overlap"] = round(work * median["fps"] / 1e3, 2)


# Stages that wait for another thread, or happen once per run, rather than work on frames.
WAITING_STAGES = {"open", "waiting_input", "waiting_output", "flush"}


def timing_rounds_apart(workload: Workload) -> bool:
    """Whether stage times come from a round of their own: on CUDA the timer synchronises the
    device around each stage, which undoes the overlap of the streams, so the measured rounds
    run without it."""
    return workload.device == "cuda"


def measure_rounds(benchmark, run) -> list[dict]:
    rounds: list[dict] = []
    benchmark.pedantic(lambda: rounds.append(run()), rounds=ROUNDS, iterations=1)
    return rounds


# --------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("workload", WORKLOADS)
def test_pipeline(benchmark, inputs, workload: Workload):
    """Frames already decoded in memory, no encode: the engine's own frames/s."""
    made = inputs(workload)
    apart = timing_rounds_apart(workload)

    def run(timing: bool) -> dict:
        return run_pipeline(workload, made["pool"], made["frames"], timing)

    rounds = measure_rounds(benchmark, lambda: run(not apart))
    record(benchmark, workload, "pipeline", rounds, run(True) if apart else None)


@needs_a_sink
@pytest.mark.parametrize("workload", WORKLOADS)
def test_video(benchmark, inputs, workload: Workload, tmp_path: Path):
    """render_video from the H.264 clip: decode and encode included."""
    made = inputs(workload)
    output = tmp_path / "out.mp4"
    apart = timing_rounds_apart(workload)

    def run(timing: bool) -> dict:
        return run_video(workload, made["clip"], made["pool_path"], output, timing)

    rounds = measure_rounds(benchmark, lambda: run(not apart))
    record(benchmark, workload, "video", rounds, run(True) if apart else None)


PRESETS = ("ultrafast", "superfast", "veryfast", "faster")


@needs_a_sink
def test_encoder_presets(benchmark, inputs, tmp_path: Path):
    """libx264 at CRF 20 on the CPU workload's mosaic frames: encoder CPU ms per frame and
    bits per second of each preset (the sink's default is one of them)."""
    made = inputs(CPU)
    renderer = FrameRenderer(made["pool"], CPU.config())
    mosaics: list[torch.Tensor] = []
    render_frames([frame[None] for frame in made["frames"]], renderer, mosaics.append)
    images = torch.stack(mosaics)
    results: dict[str, dict] = {}

    def encode_all() -> None:
        for preset in PRESETS:
            path = tmp_path / f"{preset}.mp4"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with open_sink(
                path, width=CPU.width, height=CPU.height, fps=FPS, preset=preset
            ) as sink:
                sink.write(images)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            seconds = len(images) / FPS
            results.setdefault(preset, {"cpu_ms_per_frame": [], "mbit_per_s": 0.0})
            results[preset]["cpu_ms_per_frame"].append(1e3 * cpu / len(images))
            results[preset]["mbit_per_s"] = 8 * path.stat().st_size / seconds / 1e6

    benchmark.pedantic(encode_all, rounds=ROUNDS, iterations=1)
    info = benchmark.extra_info
    info.update(machine())
    info["frames"] = len(images)
    info["presets"] = {
        preset: {
            "cpu_ms_per_frame": sorted(r["cpu_ms_per_frame"])[ROUNDS // 2],
            "mbit_per_s": r["mbit_per_s"],
        }
        for preset, r in results.items()
    }


# --------------------------------------------------------------------------- the command itself

# A short clip through the ``mosaic`` command as a user runs it, from start to exit: the job of the
# side-by-side comparison with the best CPU video-mosaic tool we know (bench/README.md, Targets).
# 132 frames of 1280x720 at 25 fps, H.264 with AAC audio; cell 36 (20 x 36 = 720 cells); a folder
# of 900 JPEG photos, its tile cache warm.
SHORT_CLIP = {"frames": 132, "width": 1280, "height": 720, "cell": 36, "photos": 900}
SHORT_CLIP_ROUNDS = 5
PHOTO_SCALES = (0.5, 0.25)  # of a photo's short side: 128 to 320 px, each crop also mirrored

# Run in a fresh interpreter: what the ``mosaic`` program runs (``mosaic.cli.entry_point``) on
# this script's arguments, with its exit status and peak RSS (VmHWM of this process: ffmpeg, a
# child, has its own) printed as one JSON line before the exit.
_CLI_SCRIPT = (
    _RSS_FUNCTION
    + """
import json
from mosaic.cli import exit_now, main
code = main()
print(json.dumps({"code": code, "peak_rss_mib": rss_mib("VmHWM:")}))
exit_now(code)
"""
)
# What ``mosaic --timing`` prints first: seconds before the tile pool, of the pool, of the video.
_SPLIT = re.compile(
    r"start-up ([\d.]+) s, tile pool ([\d.]+) s, video ([\d.]+) s \(encoder tail ([\d.]+) s\)"
)


def photo_folder(folder: Path, count: int) -> Path:
    """``count`` JPEG photos (quality 90) spread evenly over the square crops of the shipped
    photographs at ``PHOTO_SCALES`` and their mirror images."""
    folder.mkdir()
    crops = [view for crop in square_crops(PHOTO_SCALES) for view in (crop, crop.flip(-1))]
    for index, crop in enumerate(spread(crops, count)):
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(folder / f"{index:04d}.jpg", quality=90)
    return folder


def short_clip(path: Path) -> Path:
    """The ``SHORT_CLIP`` input: the slow zoom and pan of ``pan_frames``, H.264 (CRF 18), with a
    440 Hz tone as AAC audio."""
    frames, width, height = SHORT_CLIP["frames"], SHORT_CLIP["width"], SHORT_CLIP["height"]
    silent = path.with_name(f"silent-{path.name}")
    with open_sink(silent, width=width, height=height, fps=FPS, crf=18) as sink:
        for frame in pan_frames(width, height, frames):
            sink.write(frame.permute(2, 0, 1))
    tone = f"sine=frequency=440:duration={frames / FPS}"
    subprocess.run(
        [
            *(shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-i", str(silent)),
            *("-f", "lavfi", "-i", tone, "-c:v", "copy", "-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
        timeout=120,
    )
    return path


def run_cli(argv: list[str], env: dict[str, str]) -> dict:
    """One ``mosaic`` run in a fresh interpreter: wall-clock seconds from start to exit, CPU
    seconds (the process and its children, ffmpeg included), peak RSS, and the ``--timing``
    split when asked for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0, result.stderr
    run = {
        "seconds": wall,
        "cpu_seconds": sum(
            getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime")
        ),
        "peak_rss_mib": outcome["peak_rss_mib"],
        "load_average": os.getloadavg()[0],
    }
    if (split := _SPLIT.search(result.stderr)) is not None:
        startup, pool, video, tail = map(float, split.groups())
        run["split"] = {
            "start_up": startup,
            "tile_pool": pool,
            "render": video - tail,
            "encoder_tail": tail,
            # The interpreter's start before the command's clock, the summary, the exit.
            "exit": wall - startup - pool - video,
        }
    return run


@needs_a_sink
def test_short_clip_cli(benchmark, tmp_path_factory: pytest.TempPathFactory):
    """The ``mosaic`` command on ``SHORT_CLIP``, start to exit, tile cache warm: rounds without
    options beyond the job's (the headline figure), each followed by one with ``--timing`` (the
    split: start-up, tile pool, render, encoder tail, exit)."""
    root = tmp_path_factory.mktemp("short-clip")
    photos = photo_folder(root / "photos", SHORT_CLIP["photos"])
    clip = short_clip(root / "clip.mp4")
    env = child_env(TRITON_INTERPRET="0", XDG_CACHE_HOME=str(root / "cache"))
    argv = [str(clip), "-o", str(root / "mosaic.mp4"), "--tiles", str(photos), "--quiet"]
    argv += ["--cell", str(SHORT_CLIP["cell"])]
    run_cli(argv, env)  # fills the tile cache
    plain: list[dict] = []
    timed: list[dict] = []

    def one_round() -> None:
        plain.append(run_cli(argv, env))
        timed.append(run_cli([*argv, "--timing"], env))

    benchmark.pedantic(one_round, rounds=SHORT_CLIP_ROUNDS, iterations=1)
    info = benchmark.extra_info
    info.update(machine())
    info["workload"] = SHORT_CLIP
    info["rounds"] = plain
    info["timing_rounds"] = timed
    info["median_seconds"] = sorted(r["seconds"] for r in plain)[len(plain) // 2]
    info["median_cpu_seconds"] = sorted(r["cpu_seconds"] for r in plain)[len(plain) // 2]
    info["peak_rss_mib"] = [
        min(r["peak_rss_mib"] for r in plain),
        max(r["peak_rss_mib"] for r in plain),
    ]
    info["median_split"] = {
        name: sorted(r["split"][name] for r in timed)[len(timed) // 2] for name in timed[0]["split"]
    }


# --------------------------------------------------------------------------- scaling

# Assignment alone, on image-like descriptors (``tests.synthetic``, D = 12 as grid 2): the first
# frame, then the steady state (the same frame with noise 0.01, the first frame's tiles as
# incumbents, a bonus of the mean cost as the engine gives it), and the cost stage alone
# (``cost_topk``, k = 1 and 16). In a fresh interpreter, torch on one thread as in the video
# pipeline, so that the peak RSS above the inputs is the stage's own.
_ASSIGN_SCRIPT = (
    _RSS_FUNCTION
    + """
import json, sys, time, torch
from kernels import cost_topk
from mosaic.assign import assign_tiles
from tests.synthetic import image_like_instance

def seconds(fn, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], result

torch.set_num_threads(1)
rows, cols, tiles, rounds = map(int, sys.argv[1:5])
cells, pool = image_like_instance(rows, cols, tiles, dim=12, seed=0)
moved = cells + 0.01 * torch.randn(cells.shape, generator=torch.Generator().manual_seed(1))
inputs_rss = rss_mib("VmRSS:")
first_s, first = seconds(lambda: assign_tiles(cells, pool, (rows, cols), reuse="auto"), 1)
bonus = first.cost / len(first.tiles)
steady_s, steady = seconds(lambda: assign_tiles(
    moved, pool, (rows, cols), reuse="auto", incumbent=first.tiles, switch_bonus=bonus), rounds)
top1_s, _ = seconds(lambda: cost_topk(cells, pool, 1), rounds)
top16_s, _ = seconds(lambda: cost_topk(cells, pool, 16), rounds)
print(json.dumps({"first_ms": 1e3 * first_s, "steady_ms": 1e3 * steady_s,
                  "topk1_ms": 1e3 * top1_s, "topk16_ms": 1e3 * top16_s,
                  "method": steady.method, "inputs_rss_mib": inputs_rss,
                  "peak_rss_mib": rss_mib("VmHWM:")}))
"""
)

ASSIGN_SCALING = [  # (rows, cols, tiles)
    (20, 36, 1_000),
    (20, 36, 10_000),
    (20, 36, 100_000),
    (20, 36, 1_000_000),
    (34, 60, 10_000),
    (68, 120, 10_000),
    (135, 240, 10_000),
]


@pytest.mark.parametrize(
    ("rows", "cols", "tiles"), ASSIGN_SCALING, ids=[f"{r * c}x{t}" for r, c, t in ASSIGN_SCALING]
)
def test_scaling_assignment(benchmark, rows: int, cols: int, tiles: int):
    """Assignment and cost stage time and memory against the tiles (720 cells) and the cells
    (10,000 tiles; reuse "auto", so 4 per tile at 32,400 cells), on this CPU."""
    rounds = 3 if rows * cols * tiles <= 10**8 else 1
    env = child_env(TRITON_INTERPRET="0")
    command = [sys.executable, "-c", _ASSIGN_SCRIPT, *map(str, (rows, cols, tiles, rounds))]
    runs: list[dict] = []

    def run() -> None:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=1800, check=True
        )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    info = benchmark.extra_info
    info.update(machine())
    info["scaling"] = "assignment"
    info.update({"cells": rows * cols, "tiles": tiles, "rounds": rounds, **runs[0]})


PIPELINE_SCALING = [  # (width, height, cell, tiles)
    (1280, 720, 36, 1_000),
    (1280, 720, 36, 10_000),
    (1920, 1080, 16, 10_000),
    (1920, 1080, 8, 10_000),
]


@pytest.mark.parametrize(
    ("width", "height", "cell", "tiles"),
    PIPELINE_SCALING,
    ids=[f"{h}p-cell{c}-{t}" for _, h, c, t in PIPELINE_SCALING],
)
def test_scaling_pipeline(benchmark, width: int, height: int, cell: int, tiles: int):
    """The whole pipeline (frames in memory, no encode) on this CPU, more tiles or more cells."""
    workload = Workload("scaling", width, height, cell, tiles, "cpu", 0, memory_frames=24)
    pool = crop_pool(tiles, workload.pool_tile_size)
    frames = list(pan_frames(width, height, workload.memory_frames))
    runs: list[dict] = []
    benchmark.pedantic(lambda: runs.append(run_pipeline(workload, pool, frames)), rounds=1)
    info = benchmark.extra_info
    info.update(machine())
    info["scaling"] = "pipeline"
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    info.update({"size": [width, height], "cell": cell, "cells": rows * cols, "tiles": tiles})
    info.update(runs[0])


# --------------------------------------------------------------------------- temporal quality

# Footage-like clips (``tests.scenes.footage``: a camera over a shipped photograph, sensor noise,
# H.264 at CRF 28) at the size of the street clip, rendered with the default settings
# (tiles drawn at the cell size: the choice does not depend on it) and each temporal idea on or
# off: ``today`` is the engine before them (tiles fixed in their cells, a fixed bonus).
FOOTAGE = {"width": 640, "height": 272, "frames": 60, "cell": 16, "tiles": 1000}
TEMPORAL_VARIANTS = {
    "today": {"follow_motion": False, "masking": False},
    "masking": {"follow_motion": False, "masking": True},
    "follow": {"follow_motion": True, "masking": False},
    "both": {"follow_motion": True, "masking": True},  # the defaults
}
# Each clip: (motion, speed, noise). The range: pans of 1 to 3 pixels a frame, noise of
# 2 to 4 levels; the slow and fast pans are measured before and now only.
FOOTAGE_CLIPS = {
    "pan": ("pan", 1.0, 3.0),
    "zoom": ("zoom", 1.0, 3.0),
    "shake": ("shake", 1.0, 3.0),
    "pan-slow": ("pan", 1.0 / 2.2, 2.0),
    "pan-fast": ("pan", 3.0 / 2.2, 4.0),
}
STRIP_FRAMES = range(30, 35)  # the consecutive frames of the README's strips
STRIP_CROP = (64, 208, 96, 256)  # top, bottom, left, right: 9 x 10 cells of the pan


@pytest.fixture(scope="session")
def footage_inputs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict]:
    """The pool, and each clip of ``FOOTAGE_CLIPS``, made once when first asked for."""
    from tests.scenes import footage

    folder = tmp_path_factory.mktemp("footage")
    made: dict[str, object] = {}

    def make(clip: str) -> dict:
        if "pool" not in made:
            made["pool"] = crop_pool(FOOTAGE["tiles"], 32)
        if clip not in made:
            motion, speed, noise = FOOTAGE_CLIPS[clip]
            size = FOOTAGE["width"], FOOTAGE["height"], FOOTAGE["frames"]
            made[clip] = footage(motion, *size, folder, noise=noise, speed=speed)
        return {"pool": made["pool"], "clip": made[clip]}

    return make


def write_strip(frames: list[torch.Tensor], path: Path) -> None:
    """Frames side by side, each cropped to ``STRIP_CROP``, with a 4-pixel white gap, as a JPEG."""
    top, bottom, left, right = STRIP_CROP
    gap = torch.full((3, bottom - top, 4), 255, dtype=torch.uint8)
    parts = [part for frame in frames for part in (frame[:, top:bottom, left:right].cpu(), gap)]
    strip = torch.cat(parts[:-1], 2)
    Image.fromarray(strip.permute(1, 2, 0).numpy()).save(path, quality=88)


@pytest.mark.parametrize(
    ("clip_name", "variant"),
    [(clip, variant) for clip in ("pan", "zoom", "shake") for variant in TEMPORAL_VARIANTS]
    + [(clip, variant) for clip in ("pan-slow", "pan-fast") for variant in ("today", "both")],
)
def test_footage_flicker(benchmark, footage_inputs, monkeypatch, clip_name: str, variant: str):
    """Spurious swaps (median and 95th percentile frame), swaps with the content, churn,
    fidelity, the tiles that followed the pan's content and the assignment's ms per frame, one
    round per clip and variant. With ``MOSAIC_STRIP_DIR`` set, the pan's strips are written
    there (``STRIP_FRAMES``; the source's too): the README's pictures."""
    import mosaic.temporal
    from mosaic.temporal import TemporalSettings
    from tests.scenes import render_footage

    made = footage_inputs(clip_name)
    clip = made["clip"]
    settings = TEMPORAL_VARIANTS[variant]
    if not settings["masking"]:
        monkeypatch.setattr(mosaic.temporal, "MASKING", math.inf)  # the bonus never falls
    config = MosaicConfig(
        cell=FOOTAGE["cell"],
        tile_size=None,
        device=str(bench_device()),
        temporal=TemporalSettings(follow_motion=settings["follow_motion"]),
    )
    runs = []
    frames = clip.frames.to(bench_device())
    benchmark.pedantic(
        lambda: runs.append(render_footage(frames, made["pool"], config, keep=STRIP_FRAMES)),
        rounds=1,
        iterations=1,
    )
    run = runs[0]
    reading = run.reading
    info = benchmark.extra_info
    info.update(machine())
    info["device"] = device_name(bench_device())
    motion, speed, noise = FOOTAGE_CLIPS[clip_name]
    info.update(FOOTAGE, clip=clip_name, motion=motion, speed=speed, noise=noise)
    info.update(variant=variant, **settings)
    info.update(
        spurious_swaps=reading.spurious_swaps,
        spurious_swaps_p95=reading.spurious_swaps_p95,
        content_swaps=reading.content_swaps,
        source_changes=reading.source_changes,
        churn=reading.churn,
        scene_cuts=reading.scene_cuts,
        fidelity=run.fidelity,
        followed=clip.followed(run.choices[0], run.choices[-1], FOOTAGE["cell"]),
        assignment_ms=run.assignment_ms,
    )
    strips = os.environ.get("MOSAIC_STRIP_DIR")
    if strips and clip_name == "pan":
        write_strip(run.images, Path(strips) / f"temporal-{variant}.jpg")
        write_strip([clip.frames[i] for i in STRIP_FRAMES], Path(strips) / "temporal-source.jpg")


# --------------------------------------------------------------------------- chart

CHART_STAGES = (
    "open", "decode", "upload", "features", "assignment", "colour", "render", "step", "metrics",
    "encode",
)  # fmt: skip


def draw_chart(results_json: Path, png: Path) -> None:
    """Horizontal bars: CPU ms per frame of each stage, per measure, from a results file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = json.loads(results_json.read_text())["benchmarks"]
    runs = [b["extra_info"] for b in benchmarks if "measure" in b["extra_info"]]
    fig, ax = plt.subplots(figsize=(9, 2.2 + 0.8 * len(runs)))
    labels = []
    for row, info in enumerate(runs):
        median = info["median"]
        stage_cpu_ms = info.get("timed_round", median)["stage_cpu_ms"]
        stages = {name: stage_cpu_ms.get(name, 0.0) for name in CHART_STAGES}
        stages["ffmpeg (encoder process)"] = median.get("encoder_cpu_ms_per_frame", 0.0)
        stages["other (threads, queues)"] = max(
            0.0, median["cpu_ms_per_frame"] - sum(stage_cpu_ms.values())
        )
        left = 0.0
        for index, (name, value) in enumerate(stages.items()):
            ax.barh(row, value, left=left, color=f"C{index}", label=name if row == 0 else None)
            left += value
        workload = info["workload"]
        labels.append(f"{workload['name']} {info['measure']}\n{median['fps']:.1f} frames/s")
    cores = runs[0]["cores"] if runs else 1
    ax.axvline(
        1e3 * cores / 40, color="black", linestyle="--", label=f"40 frames/s on {cores} cores"
    )
    ax.set_yticks(range(len(runs)), labels)
    ax.set_xlabel("CPU ms per frame (median round)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    draw_chart(Path(sys.argv[1]), Path(sys.argv[2]))
