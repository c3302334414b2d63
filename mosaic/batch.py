"""Render a folder of videos into an output folder, longest first, one failure never stopping
the rest."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import find_media, probe, schedule_longest_first
from adapters.errors import first_line
from mosaic.config import MosaicConfig, as_config
from mosaic.image import ProgressCallback
from mosaic.pool import TilePool
from mosaic.video import VideoStats, pipeline_decoder, render_video


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

    def summary(self) -> str:
        damaged = f" ({len(self.ended_early)} ended early)" if self.ended_early else ""
        return (
            f"{len(self.rendered)} rendered{damaged}, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed"
        )


def output_path(source: Path, output_dir: Path) -> Path:
    """Where the mosaic of ``source`` goes: same name, ``.mp4``."""
    return output_dir / f"{source.stem if source.is_file() else source.name}.mp4"


def render_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    jobs: int = 1,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    **video_options: Any,
) -> BatchReport:
    """Render every video (and folder of frames) in ``input_dir`` into ``output_dir``.

    Inputs whose output already exists are skipped (outputs are renamed into place only when
    complete, so an existing one is finished). With ``jobs > 1`` videos render concurrently,
    dealt to the jobs longest first by frame count so no job idles at the end. A video that fails
    is reported in the returned ``BatchReport`` and the others go on. ``config`` is a
    ``MosaicConfig``, a preset's name or ``None``; ``video_options`` go to every
    ``render_video`` call (``fps``, ``decoder``, ``decode_device``, ``encoder_preset``, ``crf``).

    ``on_progress(done, total)`` is called as frames are rendered, from the rendering threads
    (one at a time): frames done over all inputs, and the frames of every input to render as
    probed beforehand (``None`` when no input could be probed).
    """
    config = as_config(config)
    log = log or (lambda line: print(line, file=sys.stderr))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport()
    pending: list[Path] = []
    for source in find_media(input_dir):
        if output_path(source, output_dir).exists():
            report.skipped.append(source)
        else:
            pending.append(source)
    frame_counts = []
    backend = pipeline_decoder(
        video_options.get("decoder", "auto"),
        config.torch_device(),
        video_options.get("decode_device", "auto"),
    )
    for source in pending:
        try:
            frame_counts.append(probe(source, backend=backend).num_frames or 0)
        except Exception:  # it will fail again, and be reported, when rendered
            frame_counts.append(0)
    total = sum(frame_counts) or None
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

    def render_one(source: Path) -> None:
        try:
            stats = render_video(
                source,
                output_path(source, output_dir),
                pool,
                config,
                progress=progress and jobs == 1,
                on_progress=None if on_progress is None else counter(on_progress),
                **video_options,
            )
        except Exception as error:
            reason = first_line(error)
            report.failed.append((source, reason))
            log(f"failed: {source.name}: {reason}")
        else:
            report.rendered.append((source, stats))
            damage = "" if stats.ended_early_at is None else ", ended early"
            log(
                f"done: {source.name} ({stats.frames} frames, {stats.render_fps:.1f} frames/s"
                f"{damage})"
            )

    def render_share(share: list[int]) -> None:
        for position in share:
            render_one(pending[position])

    counts_for_scheduling = [count or 1 for count in frame_counts]
    shares = schedule_longest_first(counts_for_scheduling, max(1, min(jobs, len(pending) or 1)))
    if len(shares) == 1:
        render_share(shares[0])
    else:
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="render") as pool_:
            list(pool_.map(render_share, shares))
    return report
