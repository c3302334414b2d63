"""One video of a folder as a unit of work, wherever it runs (local threads in
``mosaic.batch``, Ray tasks in ``mosaic.distributed``): the job, what became of it, and
rendering it with its failure caught."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.errors import first_line
from adapters.paths import partials_of, remove_quietly
from mosaic.config import MosaicConfig
from mosaic.pool import TilePool
from mosaic.video import VideoStats, render_video


@dataclass(frozen=True)
class VideoJob:
    """One input of a folder to render: the mosaic's path, and the input's frame count as
    probed beforehand (0 when it could not be probed; it fails again, and is reported, when
    rendered)."""

    source: Path
    output: Path
    frames: int


@dataclass(frozen=True)
class VideoResult:
    """What became of one input (or one segment of it): its stats, or why it failed in one
    line; neither for a video whose segments were all rendered by an earlier run (its output
    is complete, its stats are not known)."""

    source: Path
    stats: VideoStats | None = None
    error: str | None = None


def render_job(job: VideoJob, pool: TilePool, config: MosaicConfig, **options: Any) -> VideoResult:
    """``render_video`` of one job (``options`` are its keywords), its failure caught as a
    one-line reason. The temporary files an earlier attempt at the same output left when its
    process was killed are removed first (one run per output folder at a time)."""
    for stale in partials_of(job.output):
        remove_quietly(stale)
    try:
        stats = render_video(job.source, job.output, pool, config, **options)
    except Exception as error:
        return VideoResult(job.source, error=first_line(error))
    return VideoResult(job.source, stats=stats)
