"""A folder of videos rendered on a Ray cluster: ``render_folder(..., ray=...)`` runs here.

Each video is one Ray task that asks for what it uses (one GPU where the mosaic is computed
with CUDA, one CPU otherwise). The tile pool is put in Ray's object store once as numpy arrays;
the tasks of a node map it from shared memory instead of each holding a copy. A video of 1.5
``segment_frames`` or more is split at scene cuts into segments rendered as tasks of their own
and joined without re-encoding (``adapters.concat_videos``), so that one long clip does not hold
the whole run back. Only scene cuts (``scene_cut_at``): there an unsplit render starts afresh
too, so a segment that starts there chooses exactly the tiles the whole video would and the
join is seamless. Inside one continuous shot it would not be: temporal coherence keeps the tiles
a cell has, and a segment that starts afresh settles on other tiles than the long history of an
unsplit render did (README.md, "Collections on Ray"), so a long single shot renders whole. Each
segment first runs the ``WARMUP_FRAMES`` frames before it through the assignment without
writing them.

Outputs appear only when complete, as with local threads: a video's mosaic, and each segment
file (kept in a hidden folder beside the outputs until the join), are written to temporary files
and renamed. A run that stops resumes: finished videos and finished segments are skipped. A
task whose worker dies (a node lost, a process killed) is retried by Ray, and the retry removes
the temporary files the dead attempt left. The input and output folders must be visible at the
same paths on every node (a shared file system) when the cluster has several.

Ray is optional (``pip install triton-mosaic[ray]``) and imported only here, when asked for.
"""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from adapters import PyAVSource, concat_videos
from adapters.errors import first_line
from kernels import analyse_cells
from mosaic.config import MosaicConfig
from mosaic.descriptors import block_descriptors
from mosaic.jobs import VideoJob, VideoResult, render_job
from mosaic.pool import TilePool
from mosaic.reports import ProgressCallback
from mosaic.temporal import descriptor_distance
from mosaic.video import VideoStats

__all__ = [
    "INSTALL_RAY",
    "SEAMLESS_CUT",
    "SEGMENT_FRAMES",
    "WARMUP_FRAMES",
    "SharedPool",
    "import_ray",
    "render_on_ray",
    "scene_cut_at",
    "segment_bounds",
]

INSTALL_RAY = "pip install 'triton-mosaic[ray]'"
# Videos longer than 1.5 times this many frames are split (1 minute at 25 fps: a task long
# enough that Ray's per-task cost, about a second, stays small beside it).
SEGMENT_FRAMES = 1500
# The fraction of cells whose content must jump at a key frame for a video to be split there:
# well above the engine's default scene cut (0.6), so that the engine surely starts afresh.
SEAMLESS_CUT = 0.75
# Frames before a segment that its task assigns but does not write (2 s at 25 fps).
WARMUP_FRAMES = 50
# Attempts after the first when a task's worker dies (Ray's default for tasks).
TASK_RETRIES = 3


def import_ray() -> Any:
    """The ``ray`` module, or an ``ImportError`` saying in one line how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"Ray is not installed: {INSTALL_RAY}") from None
    return ray


@dataclass(frozen=True)
class SharedPool:
    """A ``TilePool`` as the object store holds it: numpy arrays, which Ray hands to every task
    of a node as read-only views of one shared-memory copy.

    Attributes:
        images: uint8 ``(M, 3, h, w)``.
        sources: per tile, where it came from.
        summary: the pool's one-line summary.
    """

    images: np.ndarray
    sources: list[str]
    summary: str

    @classmethod
    def of(cls, pool: TilePool) -> SharedPool:
        return cls(pool.images.cpu().numpy(), list(pool.sources), pool.summary())

    def open(self) -> TilePool:
        """The pool, its images a view of the shared array (nothing copied; never written)."""
        with warnings.catch_warnings():  # torch warns that the shared array is read-only
            warnings.simplefilter("ignore", UserWarning)
            images = torch.from_numpy(self.images)
        return TilePool(images, self.sources, summary=self.summary)


def segment_bounds(
    frames: int,
    key_frames: Sequence[int],
    segment_frames: int,
    seamless: Callable[[int], bool] | None = None,
) -> list[int]:
    """Where a video of ``frames`` frames is cut into segments of about ``segment_frames``: the
    first frame of every segment after the first (ascending, distinct, between 1 and
    ``frames - 1``); none when the video is shorter than 1.5 segments.

    Each cut is a key frame near a multiple of ``segment_frames`` for which ``seamless(key)``
    holds (any, when ``seamless`` is None). The key frames within half a segment of the
    multiple are tried in turn: first those the encoder placed early (after a shorter interval
    than the stream's longest), which it puts at scene cuts, then the others, nearest first;
    when none is that near, the nearest key frame. A multiple where none holds gets no cut.
    """
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    if frames < 1.5 * segment_frames:
        return []
    keys = sorted({key for key in key_frames if 0 <= key < frames})
    interval = {key: key - before for before, key in itertools.pairwise(keys)}
    longest = max(interval.values(), default=0)
    candidates = [key for key in keys if key > 0]
    cuts: set[int] = set()
    for target in range(segment_frames, frames - segment_frames // 2, segment_frames):
        by_distance = sorted(candidates, key=lambda key: (abs(key - target), key))
        near = [key for key in by_distance if abs(key - target) <= segment_frames // 2]
        early = [key for key in near if interval.get(key, longest) < longest]
        tried = [*early, *near] if near else by_distance[:1]
        chosen = next((key for key in tried if seamless is None or seamless(key)), None)
        if chosen is not None:
            cuts.add(chosen)
    return sorted(cuts)


def scene_cut_at(source: PyAVSource, config: MosaicConfig) -> Callable[[int], bool]:
    """``seamless`` for ``segment_bounds``: whether frame ``key`` of ``source`` starts a new
    shot, so plainly that the mosaic starts afresh there in an unsplit render too. The cells'
    descriptors (as the engine computes them) of frames ``key - 1`` and ``key`` are compared as
    temporal coherence compares them; at least ``SEAMLESS_CUT`` of the cells (or the
    ``scene_cut`` setting, if higher) must have jumped past ``change_threshold``: the margin
    covers the engine's own test, which compares with the previous frame moved by the camera's
    motion."""
    settings = config.temporal
    needed = max(settings.scene_cut, SEAMLESS_CUT)

    @functools.cache
    def seamless(key: int) -> bool:
        frames = source.get_frames([key - 1, key])
        if frames.shape[-1] == 3:  # NHWC from the decoder: seen as NCHW, no copy
            frames = frames.permute(0, 3, 1, 2)
        analysis = analyse_cells(frames, config.cell_shape, config.grid, statistics=False)
        features = block_descriptors(analysis.block_means, config.grid, config.lightness_weight)
        before, after = features.flatten(1, 2)
        jumped = descriptor_distance(after, before) > settings.change_threshold
        return jumped.float().mean().item() >= needed

    return seamless


@dataclass(frozen=True)
class _Segment:
    """Output frames ``start`` to ``stop - 1`` of a video, rendered into ``path``."""

    start: int
    stop: int
    path: Path


def _segments(
    job: VideoJob, config: MosaicConfig, segment_frames: int, video_options: dict[str, Any]
) -> list[_Segment]:
    """The segments ``job`` is split into (none: it renders whole). Only video files at their
    own frame rate are split (a ``--fps`` resampling renders whole), only at scene cuts
    (``scene_cut_at``), and only where ffmpeg can join them (``adapters.concat_videos``)."""
    if not job.source.is_file() or video_options.get("fps") is not None:
        return []
    if job.frames < 1.5 * segment_frames or shutil.which("ffmpeg") is None:
        return []
    try:
        with PyAVSource(job.source, device="cpu") as source:
            seamless = scene_cut_at(source, config)
            cuts = segment_bounds(job.frames, source.key_frames, segment_frames, seamless)
    except Exception:  # unreadable: it renders whole, and fails and is reported then
        return []
    if not cuts:
        return []
    bounds = [0, *cuts, job.frames]
    folder = _segment_folder(job)
    return [
        _Segment(start, stop, folder / f"{index:04d}-{start}-{stop}.mp4")
        for index, (start, stop) in enumerate(itertools.pairwise(bounds))
    ]


def _segment_folder(job: VideoJob) -> Path:
    """The hidden folder beside ``job``'s output that holds its finished segments."""
    return job.output.with_name(f".{job.output.stem}.segments")


def _render_task(
    job: VideoJob,
    shared: SharedPool,
    config: MosaicConfig,
    segment: _Segment | None,
    warmup_frames: int,
    video_options: dict[str, Any],
) -> VideoResult:
    """A Ray task: one video, or one segment of it, rendered as ``render_folder`` renders it."""
    pool = shared.open()
    if segment is None:
        return render_job(job, pool, config, progress=False, **video_options)
    segment.path.parent.mkdir(exist_ok=True)
    part = replace(job, output=segment.path)
    return render_job(
        part,
        pool,
        config,
        progress=False,
        segment=(segment.start, segment.stop),
        warmup=warmup_frames,
        **video_options,
    )


def _join_task(job: VideoJob, segments: list[_Segment]) -> str | None:
    """A Ray task: a split video's segments joined into its output (then deleted); ``None``
    when done, else why not in one line."""
    try:
        concat_videos(
            [segment.path for segment in segments],
            job.output,
            audio_from=job.source if job.source.is_file() else None,
        )
    except Exception as error:
        return first_line(error)
    shutil.rmtree(_segment_folder(job), ignore_errors=True)
    return None


def joined_stats(parts: Sequence[VideoStats]) -> VideoStats | None:
    """The stats of a video rendered in ``parts`` (in order; the segments rendered in this run,
    ``None`` when there are none: all came from an earlier run): frames, seconds and scene cuts
    summed (the seconds of all the tasks, which ran side by side), churn, fidelity and the mean
    gap weighted by frames, the tile swaps' medians too (an estimate of the whole video's, which
    no part has) and their 95th percentile the largest, the rest from the first part."""
    if not parts:
        return None
    frames = sum(part.frames for part in parts)
    seconds = sum(part.seconds for part in parts)

    def weighted(values: list[float]) -> float:
        return sum(v * part.frames for v, part in zip(values, parts, strict=True)) / max(frames, 1)

    gaps = [part.gap_mean for part in parts]
    ended = [part.ended_early_at for part in parts if part.ended_early_at is not None]
    return replace(
        parts[0],
        frames=frames,
        seconds=seconds,
        render_fps=frames / seconds if seconds > 0 else 0.0,
        churn=weighted([part.churn for part in parts]),
        churn_p95=max(part.churn_p95 for part in parts),
        spurious_swaps=weighted([part.spurious_swaps for part in parts]),
        spurious_swaps_p95=max(part.spurious_swaps_p95 for part in parts),
        content_swaps=weighted([part.content_swaps for part in parts]),
        source_changes=weighted([part.source_changes for part in parts]),
        fidelity=weighted([part.fidelity for part in parts]),
        scene_cuts=sum(part.scene_cuts for part in parts),
        ended_early_at=ended[0] if ended else None,
        gap_mean=None if None in gaps else weighted([gap or 0.0 for gap in gaps]),
        gap_max=None if None in gaps else max(part.gap_max or 0.0 for part in parts),
    )


def _task_options(ray: Any, config: MosaicConfig) -> tuple[dict[str, Any], MosaicConfig]:
    """The resources each render task asks for, and the config the tasks get: ``"auto"``
    resolved against the cluster (CUDA when it has GPUs), so a CPU task on a GPU node stays on
    the CPU."""
    gpus = ray.cluster_resources().get("GPU", 0)
    wants_cuda = config.device.startswith("cuda") or (config.device == "auto" and gpus > 0)
    if wants_cuda and gpus == 0:
        raise RuntimeError(f"device {config.device!r} asked for, but the Ray cluster has no GPU")
    if wants_cuda:
        device = "cuda" if config.device == "auto" else config.device
        return {"num_gpus": 1, "num_cpus": 1}, config.replace(device=device)
    return {"num_cpus": 1}, config.replace(device="cpu")


def connect(address: bool | str) -> Any:
    """Ray, initialised: as it is when this process already did, else joined to ``address``
    (``True``: the cluster ``RAY_ADDRESS`` names, or a new one on this machine)."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(
            address=None if address is True else address,
            logging_level=logging.WARNING,
            log_to_driver=False,  # the workers' own messages: results come back as values
        )
    return ray


def render_on_ray(
    jobs: Sequence[VideoJob],
    pool: TilePool,
    config: MosaicConfig,
    record: Callable[[VideoResult], None],
    *,
    address: bool | str = True,
    segment_frames: int | None = None,
    warmup_frames: int = WARMUP_FRAMES,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    **video_options: Any,
) -> None:
    """Render ``jobs`` on Ray (see the module docstring), longest first; ``record`` receives
    each video's result as it finishes, here in this thread.

    A progress bar (``progress``) and ``on_progress(done, total)`` count the frames of the
    videos and segments done over the frames of all of them, as their tasks finish.
    """
    if not jobs:
        return
    ray = connect(address)
    resources, config = _task_options(ray, config)
    render = ray.remote(_render_task).options(max_retries=TASK_RETRIES, **resources)
    shared = ray.put(SharedPool.of(pool))
    run = _Run(ray, record, sum(job.frames for job in jobs), progress, on_progress)
    try:
        for job in sorted(jobs, key=lambda job: -job.frames):
            segments = _segments(job, config, segment_frames or SEGMENT_FRAMES, video_options)
            if not segments:
                run.rendering(render.remote(job, shared, config, None, 0, video_options), job)
                continue
            run.split(job, segments)
            for segment in segments:
                if segment.path.exists():  # finished by an earlier run
                    run.advance(segment.stop - segment.start)
                    continue
                task = render.remote(job, shared, config, segment, warmup_frames, video_options)
                run.rendering(task, job, segment)
            run.join_when_rendered(job)
        run.wait_all()
    except BaseException:
        run.cancel()  # what the tasks leave, the next run removes
        raise


class _Run:
    """The tasks of one ``render_on_ray`` call, and what their results lead to: each video's
    result recorded once, a split video's segments joined when the last is rendered, the
    progress counted."""

    def __init__(
        self,
        ray: Any,
        record: Callable[[VideoResult], None],
        total: int,
        progress: bool,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._ray, self._record, self._on_progress = ray, record, on_progress
        self._join = ray.remote(_join_task).options(max_retries=TASK_RETRIES, num_cpus=1)
        self._total, self._done = total, 0
        self._bar = tqdm(total=total, unit="frame", disable=not progress, desc="mosaic")
        self._tasks: dict[Any, tuple[VideoJob, _Segment | None]] = {}  # render task -> its work
        self._joins: dict[Any, VideoJob] = {}  # join task -> its video
        self._segments: dict[Path, list[_Segment]] = {}  # a split video's source -> segments
        self._rendered: dict[Path, dict[int, VideoStats]] = {}  # ... -> its segments' stats
        self._failed: set[Path] = set()  # split videos with a failed segment

    def advance(self, frames: int) -> None:
        self._done += frames
        self._bar.update(frames)
        if self._on_progress is not None:
            self._on_progress(self._done, self._total or None)

    def rendering(self, task: Any, job: VideoJob, segment: _Segment | None = None) -> None:
        self._tasks[task] = (job, segment)

    def split(self, job: VideoJob, segments: list[_Segment]) -> None:
        self._segments[job.source], self._rendered[job.source] = segments, {}

    def join_when_rendered(self, job: VideoJob) -> None:
        """Start joining ``job``'s segments if none is still rendering (or failed)."""
        if job.source in self._failed or any(entry[0] == job for entry in self._tasks.values()):
            return
        self._joins[self._join.remote(job, self._segments[job.source])] = job

    def wait_all(self) -> None:
        with self._bar:
            while self._tasks or self._joins:
                ready, _ = self._ray.wait([*self._tasks, *self._joins], num_returns=1)
                if ready[0] in self._joins:
                    self._joined(ready[0])
                else:
                    self._finished(ready[0])

    def _finished(self, task: Any) -> None:
        job, segment = self._tasks.pop(task)
        result = self._outcome(task)
        if isinstance(result, str):  # the task could not run, even after its retries
            result = VideoResult(job.source, error=result)
        if result.stats is not None:
            self.advance(result.stats.frames)
        if segment is None:
            self._say(result)
        elif result.stats is None:
            if job.source not in self._failed:  # one line per video, not per segment
                self._failed.add(job.source)
                self._say(result)
        else:
            self._rendered[job.source][segment.start] = result.stats
            self.join_when_rendered(job)

    def _joined(self, task: Any) -> None:
        job = self._joins.pop(task)
        error = self._outcome(task)
        rendered = self._rendered[job.source]
        stats = joined_stats([rendered[start] for start in sorted(rendered)])
        self._say(VideoResult(job.source, stats=None if error else stats, error=error))

    def _say(self, result: VideoResult) -> None:
        """``record`` the result, its line printed above the progress bar, not through it."""
        with tqdm.external_write_mode(file=sys.stderr):
            self._record(result)

    def _outcome(self, task: Any) -> Any:
        """A finished task's value, or why it has none in one line (its worker died on every
        try)."""
        try:
            return self._ray.get(task)
        except Exception as error:
            return first_line(error)

    def cancel(self) -> None:
        for task in [*self._tasks, *self._joins]:
            self._ray.cancel(task, force=True)
