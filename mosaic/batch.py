"""Render a folder of videos into an output folder, longest first, one failure never stopping
the rest: with local threads here, or on a Ray cluster (``mosaic.distributed``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import find_media, probe, schedule_longest_first
from mosaic.config import MosaicConfig, as_config
from mosaic.distributed import render_on_ray
from mosaic.jobs import VideoJob, VideoResult, render_job
from mosaic.pool import TilePool
from mosaic.reports import ProgressCallback
from mosaic.video import VideoStats, pipeline_decoder


@dataclass
class BatchReport:
    """What ``render_folder`` did with each input."""

    rendered: list[tuple[Path, VideoStats]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # their output already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)  # with a one-line reason

    @property
    def ended_early(self) -> list[Path]:
        """The inputs rendered only up to where they stopped decoding (damaged, cut short)."""
        return [source for source, stats in self.rendered if stats.ended_early_at is not None]

    def add(self, result: VideoResult, log: Callable[[str], None]) -> None:
        """Record what became of one input and say it in one line."""
        if result.stats is None and result.error is None:  # finished by an earlier run
            self.skipped.append(result.source)
            log(f"done: {result.source.name} (joined from an earlier run's segments)")
            return
        if result.stats is None:
            self.failed.append((result.source, result.error or "unknown error"))
            log(f"failed: {result.source.name}: {result.error}")
            return
        stats = result.stats
        self.rendered.append((result.source, stats))
        damage = "" if stats.ended_early_at is None else ", ended early"
        log(
            f"done: {result.source.name} ({stats.frames} frames, {stats.render_fps:.1f} frames/s"
            f"{damage})"
        )

    def summary(self) -> str:
        damaged = f" ({len(self.ended_early)} ended early)" if self.ended_early else ""
        return (
            f"{len(self.rendered)} rendered{damaged}, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed"
        )


def output_path(source: Path, output_dir: Path) -> Path:
    """Where the mosaic of ``source`` goes: same name, ``.mp4``."""
    return output_dir / f"{source.stem if source.is_file() else source.name}.mp4"


def plan_folder(
    input_dir: str | Path, output_dir: Path, decoder: str
) -> tuple[list[VideoJob], list[Path]]:
    """The inputs of ``input_dir`` still to render into ``output_dir``, probed with ``decoder``
    for their frame counts, and those skipped because their output exists (outputs are renamed
    into place only when complete, so an existing one is finished)."""
    jobs: list[VideoJob] = []
    skipped: list[Path] = []
    for source in find_media(input_dir):
        output = output_path(source, output_dir)
        if output.exists():
            skipped.append(source)
            continue
        try:
            frames = probe(source, backend=decoder).num_frames or 0
        except Exception:  # it will fail again, and be reported, when rendered
            frames = 0
        jobs.append(VideoJob(source, output, frames))
    return jobs, skipped


def render_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    jobs: int = 1,
    ray: bool | str = False,
    segment_frames: int | None = None,
    warmup_frames: int | None = None,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    **video_options: Any,
) -> BatchReport:
    """Render every video (and folder of frames) in ``input_dir`` into ``output_dir``.

    Inputs whose output already exists are skipped, so an interrupted run resumes where it
    stopped. A video that fails is reported in the returned ``BatchReport`` (and by ``log``, one
    line each) and the others go on. ``config`` is a ``MosaicConfig``, a preset's name or
    ``None``; ``video_options`` go to every ``render_video`` call (``fps``, ``decoder``,
    ``decode_device``, ``encoder_preset``, ``crf``).

    Where the videos render:

    - ``ray=False``: here, ``jobs`` at a time, dealt to the jobs longest first by frame count
      so no job idles at the end.
    - ``ray=True`` or an address: on a Ray cluster (``mosaic.distributed.render_on_ray``; needs
      ``pip install triton-mosaic[ray]``), one task per video; videos of 1.5 segments or more
      (``segment_frames``, default ``mosaic.distributed.SEGMENT_FRAMES``) split into segments
      that each first assign the ``warmup_frames`` before them (default ``WARMUP_FRAMES``).
      ``True`` joins the cluster ``RAY_ADDRESS`` names, else starts Ray on this machine; a Ray
      already initialised in this process is used as it is.

    ``on_progress(done, total)`` is called as frames are rendered (locally from the rendering
    threads, one at a time; on Ray as tasks finish): frames done over all inputs, and the frames
    of every input to render as probed beforehand (``None`` when no input could be probed).
    """
    config = as_config(config)
    if ray is False and (segment_frames, warmup_frames) != (None, None):
        raise ValueError("segment_frames and warmup_frames split videos on Ray: give ray too")
    log = log or (lambda line: print(line, file=sys.stderr))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    decoder = pipeline_decoder(
        video_options.get("decoder", "auto"),
        config.torch_device(),
        video_options.get("decode_device", "auto"),
    )
    pending, skipped = plan_folder(input_dir, output_dir, decoder)
    report = BatchReport(skipped=skipped)
    record_lock = threading.Lock()

    def record(result: VideoResult) -> None:
        with record_lock:
            report.add(result, log)

    if ray is not False:
        render_on_ray(
            pending,
            pool,
            config,
            record,
            address=ray,
            segment_frames=segment_frames,
            progress=progress,
            **({} if warmup_frames is None else {"warmup_frames": warmup_frames}),
            on_progress=on_progress,
            **video_options,
        )
        return report
    total = sum(job.frames for job in pending) or None
    done = 0
    progress_lock = threading.Lock()

    def counter(report_progress: ProgressCallback) -> ProgressCallback:
        """An ``on_progress`` for one input that adds its frames to the folder's count."""
        counted = 0

        def add(frames: int, _input_total: int | None) -> None:
            nonlocal done, counted
            with progress_lock:
                done += frames - counted
                counted = frames
                report_progress(done, total)

        return add

    def render_share(share: list[int]) -> None:
        for position in share:
            record(
                render_job(
                    pending[position],
                    pool,
                    config,
                    progress=progress and jobs == 1,
                    on_progress=None if on_progress is None else counter(on_progress),
                    **video_options,
                )
            )

    counts_for_scheduling = [job.frames or 1 for job in pending]
    shares = schedule_longest_first(counts_for_scheduling, max(1, min(jobs, len(pending) or 1)))
    if len(shares) == 1:
        render_share(shares[0])
    else:
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="render") as threads:
            list(threads.map(render_share, shares))
    return report
