"""Render a folder of videos into an output folder, longest first, one failure never stopping
the rest."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adapters import find_media, probe, schedule_longest_first
from mosaic.config import MosaicConfig
from mosaic.pool import TilePool
from mosaic.video import VideoStats, render_video


@dataclass
class BatchReport:
    """What ``render_folder`` did with each input."""

    rendered: list[tuple[Path, VideoStats]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # their output already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)  # with a one-line reason

    def summary(self) -> str:
        return (
            f"{len(self.rendered)} rendered, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed"
        )


def output_path(source: Path, output_dir: Path) -> Path:
    """Where the mosaic of ``source`` goes: same name, ``.mp4``."""
    return output_dir / f"{source.stem if source.is_file() else source.name}.mp4"


def render_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    pool: TilePool,
    config: MosaicConfig | None = None,
    *,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Render every video (and folder of frames) in ``input_dir`` into ``output_dir``.

    Inputs whose output already exists are skipped (outputs are renamed into place only when
    complete, so an existing one is finished). With ``jobs > 1`` videos render concurrently,
    dealt to the jobs longest first by frame count so no job idles at the end. A video that fails
    is reported in the returned ``BatchReport`` and the others go on.
    """
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
    for source in pending:
        try:
            frame_counts.append(probe(source).num_frames or 1)
        except Exception:  # it will fail again, and be reported, when rendered
            frame_counts.append(1)

    def render_one(source: Path) -> None:
        try:
            stats = render_video(
                source,
                output_path(source, output_dir),
                pool,
                config,
                progress=progress and jobs == 1,
            )
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            report.failed.append((source, reason))
            log(f"failed: {source.name}: {reason}")
        else:
            report.rendered.append((source, stats))
            log(f"done: {source.name} ({stats.frames} frames, {stats.render_fps:.1f} frames/s)")

    def render_share(share: list[int]) -> None:
        for position in share:
            render_one(pending[position])

    shares = schedule_longest_first(frame_counts, max(1, min(jobs, len(pending) or 1)))
    if len(shares) == 1:
        render_share(shares[0])
    else:
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="render") as pool_:
            list(pool_.map(render_share, shares))
    return report
