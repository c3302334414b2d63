"""Video collections as Ray Data datasets: ``read_videos`` and its ``VideoDatasource``.

A training job on Ray reads frames, or clips of consecutive frames, from many videos with the
same frame-exact indexing as ``open_source``: row ``i`` of a video holds exactly what
``open_source(path).get_frames(indices)`` returns. The work is cut into blocks of whole frames
(or clips) of one video and dealt to the read tasks longest first (``schedule_longest_first``),
so a long video is shared by several tasks; a task reads its blocks in video order, reusing
each video's decoder.

Needs Ray Data (``pip install 'triton-mosaic[ray]'``); this module is only imported when one of
its names is used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import ray.data
    from ray.data.block import BlockAccessor, BlockMetadata
except ImportError:
    raise ImportError("Ray Data is not installed: pip install 'triton-mosaic[ray]'") from None

from adapters.base import Layout, uniform_indices
from adapters.dataset import schedule_longest_first
from adapters.info import FpsLike, VideoInfo
from adapters.sources import open_source, probe

__all__ = ["VideoDatasource", "read_videos"]


@dataclass(frozen=True)
class _Block:
    """Rows of one video: each row the frames at one tuple of ``rows``."""

    video: int
    rows: tuple[tuple[int, ...], ...]

    @property
    def frames(self) -> int:
        return sum(len(row) for row in self.rows)


class VideoDatasource(ray.data.Datasource):
    """Frames or clips of many videos (or frame folders, or images) for ``ray.data``.

    Args:
        paths: what ``open_source`` opens.
        step: frames mode, read every ``step``-th frame.
        num_samples: frames mode, read this many frames per video spread evenly
            (``uniform_indices``) instead; ``step`` must then be 1.
        clip_length: clips mode: each row is ``clip_length`` frames ``clip_stride`` apart.
        clip_stride: see ``clip_length``.
        num_clips: clips per video, their starts spread evenly; default every clip that fits
            end to end without overlap.
        layout: ``"NCHW"`` (as ``open_source``) or ``"NHWC"``.
        backend: the video backend (``"auto"``, ``"torchcodec"``, ``"pyav"``).
        fps: frame rate of folders and images (default 25).
        frames_per_block: the most frames in one block (a read task's unit of output).

    Rows (numpy, Ray Data's tensor columns): frames mode ``frame`` uint8 ``(3, H, W)`` (or
    ``(H, W, 3)``), ``index`` int64 and ``path`` str; clips mode ``clip`` uint8
    ``(T, 3, H, W)`` (or ``(T, H, W, 3)``), ``indices`` int64 ``(T,)`` and ``path``. Every
    video is probed when the datasource is made (here, in this process), so a missing or
    unreadable input fails at once with its path; a video too short for one clip too.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        step: int = 1,
        num_samples: int | None = None,
        clip_length: int | None = None,
        clip_stride: int = 1,
        num_clips: int | None = None,
        layout: Layout = "NCHW",
        backend: str = "auto",
        fps: FpsLike | None = None,
        frames_per_block: int = 32,
    ) -> None:
        if min(step, clip_stride, frames_per_block) < 1 or (clip_length or 1) < 1:
            raise ValueError("step, clip_length, clip_stride and frames_per_block must be >= 1")
        if num_samples is not None and step != 1:
            raise ValueError("give step or num_samples, not both")
        if clip_length is None and num_clips is not None:
            raise ValueError("num_clips needs clip_length")
        if clip_length is not None and (num_samples is not None or step != 1):
            raise ValueError("clips are chosen by num_clips, not step or num_samples")
        self.paths = [Path(path) for path in paths]
        self.infos: list[VideoInfo] = [probe(path, backend=backend, fps=fps) for path in self.paths]
        self.clips = clip_length is not None
        self._open_options: dict[str, Any] = {"layout": layout, "backend": backend, "fps": fps}
        self._blocks: list[_Block] = []
        for video, info in enumerate(self.infos):
            total = info.num_frames or 0
            if clip_length is None:
                frames = list(range(0, total, step))
                if num_samples is not None:
                    frames = uniform_indices(total, num_samples)
                rows = [(index,) for index in frames]
            else:
                rows = _clips(total, clip_length, clip_stride, num_clips, self.paths[video])
            per_block = max(1, frames_per_block // len(rows[0])) if rows else 1
            self._blocks += [
                _Block(video, tuple(rows[first : first + per_block]))
                for first in range(0, len(rows), per_block)
            ]

    def estimate_inmemory_data_size(self) -> int:
        return sum(
            block.frames * 3 * self.infos[block.video].height * self.infos[block.video].width
            for block in self._blocks
        )

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, **_: Any
    ) -> list[ray.data.ReadTask]:
        """At most ``parallelism`` tasks, each a share of the blocks dealt longest first."""
        if not self._blocks:
            return []
        plan = schedule_longest_first(
            [block.frames for block in self._blocks], max(1, min(parallelism, len(self._blocks)))
        )
        tasks = []
        for share in plan:
            blocks = [self._blocks[position] for position in sorted(share)]
            metadata = BlockMetadata(
                num_rows=sum(len(block.rows) for block in blocks),
                size_bytes=sum(self._block_bytes(block) for block in blocks),
                input_files=sorted({str(self.paths[block.video]) for block in blocks}),
                exec_stats=None,
            )
            work = [(self.paths[block.video], block.rows) for block in blocks]
            read = functools.partial(_read, work, self._open_options, self.clips)
            tasks.append(ray.data.ReadTask(read, metadata, per_task_row_limit=per_task_row_limit))
        return tasks

    def _block_bytes(self, block: _Block) -> int:
        info = self.infos[block.video]
        return block.frames * 3 * info.height * info.width


def _read(
    work: list[tuple[Path, tuple[tuple[int, ...], ...]]], options: dict[str, Any], clips: bool
) -> Iterator[Any]:
    """One read task: for each ``(path, rows)`` of ``work``, in order, one Ray Data block of
    the frames at each row's indices (a clip when ``clips``, else one frame)."""
    source = None
    try:
        for path, rows in work:
            if source is None or source.path != path:
                if source is not None:
                    source.close()
                source = open_source(
                    path,
                    device="cpu",
                    decode_device="cpu",
                    batch_size=sum(len(row) for row in rows),
                    num_threads=1,  # the read tasks are the parallelism
                    **options,
                )
            frames = source.get_frames([index for row in rows for index in row]).numpy()
            indices = np.array(rows, dtype=np.int64)
            if clips:
                batch = {
                    "clip": frames.reshape(len(rows), -1, *frames.shape[1:]),
                    "indices": indices,
                }
            else:
                batch = {"frame": frames, "index": indices[:, 0]}
            batch["path"] = np.array([str(path)] * len(rows), dtype=object)
            yield BlockAccessor.batch_to_block(batch)
    finally:
        if source is not None:
            source.close()


def _clips(
    total: int, length: int, stride: int, count: int | None, path: Path
) -> list[tuple[int, ...]]:
    """The frame indices of each clip of a video of ``total`` frames."""
    span = (length - 1) * stride + 1
    if total < span:
        raise ValueError(f"{path} has {total} frames, fewer than one clip ({span})")
    if count is None:
        starts = list(range(0, total - span + 1, span))
    else:
        starts = uniform_indices(total - span + 1, count)
    return [tuple(range(start, start + span, stride)) for start in starts]


def read_videos(paths: Sequence[str | Path], **options: Any) -> ray.data.Dataset:
    """A Ray Data ``Dataset`` of the frames or clips of ``paths``.

    ``options`` are ``VideoDatasource``'s (``step``, ``num_samples``, ``clip_length``,
    ``clip_stride``, ``num_clips``, ``layout``, ``backend``, ``fps``, ``frames_per_block``);
    any other goes to ``ray.data.read_datasource`` (``override_num_blocks``, ``num_cpus``...).
    """
    names = set(inspect.signature(VideoDatasource).parameters) - {"paths"}
    source = VideoDatasource(paths, **{k: v for k, v in options.items() if k in names})
    return ray.data.read_datasource(source, **{k: v for k, v in options.items() if k not in names})
