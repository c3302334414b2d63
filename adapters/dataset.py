"""Many videos: ``VideoDataset`` reads frames from a list of videos and frame folders with several
workers, its work balanced by frame count; ``schedule_longest_first`` is that balancing.

Balancing: each video's selected frames are cut into work units of whole batches, about
``units_per_worker`` units per worker over the whole dataset, and the units are dealt out
longest first, each to the worker with the fewest frames so far. A long video is thus shared by
several workers, and every worker ends within about one unit of the others instead of one worker
decoding the longest video alone at the end. Within a worker, units run in video order, so
consecutive units of one video reuse its decoder and continue without a seek.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from adapters.base import FrameSource, Layout, resolve_device, uniform_indices
from adapters.info import FpsLike
from adapters.sources import open_source, probe

__all__ = ["VideoBatch", "VideoDataset", "WorkUnit", "schedule_longest_first"]


def schedule_longest_first(weights: Sequence[int], workers: int) -> list[list[int]]:
    """Deal items to ``workers`` longest first (LPT): the positions of the items each worker gets.

    Each item in turn, heaviest first, goes to the worker with the least total weight so far
    (ties to the lowest-numbered worker), so the heaviest worker ends at most one item's weight
    above the mean, and within 4/3 of the best possible schedule.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    loads = [(0, worker) for worker in range(workers)]
    plan: list[list[int]] = [[] for _ in range(workers)]
    for item in sorted(range(len(weights)), key=lambda item: (-weights[item], item)):
        load, worker = heapq.heappop(loads)
        plan[worker].append(item)
        heapq.heappush(loads, (load + weights[item], worker))
    return plan


class VideoBatch(NamedTuple):
    """One batch of frames of one video, as ``VideoDataset`` yields it.

    Attributes:
        frames: uint8 ``(B, 3, H, W)`` or ``(B, H, W, 3)`` frames.
        indices: int64 ``(B,)``: the frames' indices in their video.
        video: the position of the video in ``VideoDataset.paths``.
        path: the video's path, as a string.
    """

    frames: torch.Tensor
    indices: torch.Tensor
    video: int
    path: str


@dataclass(frozen=True)
class WorkUnit:
    """Consecutive selected frames of one video, read by one worker."""

    video: int
    indices: tuple[int, ...]


class VideoDataset(IterableDataset):
    """Batches of frames from many videos (or frame folders), for one process or many workers.

    Use directly (``for batch in dataset``, one process) or through ``loader(workers=N)``, a
    ``torch.utils.data.DataLoader`` whose worker processes share the work as the module docstring
    describes. Every selected frame is yielded exactly once per pass, as ``VideoBatch`` items of at
    most ``batch_size`` frames of a single video; with workers the batches of different workers
    interleave, so use ``VideoBatch.video`` and ``indices`` to tell where a batch comes from.

    Args:
        paths: videos, frame folders or images, as ``open_source`` takes them.
        step: read every ``step``-th frame (1: every frame).
        num_samples: read this many frames per video, spread evenly (``uniform_indices``)
            instead; ``step`` must then be 1.
        batch_size: the most frames in one batch.
        layout: ``"NCHW"`` or ``"NHWC"``.
        backend: the video backend (``"auto"``, ``"torchcodec"``, ``"pyav"``).
        device, decode_device: where frames are delivered and decoded. Worker processes cannot
            use CUDA: with workers both must be ``"cpu"`` (move batches to the GPU in the main
            process, ``pin_memory=True`` helps); without workers CUDA works.
        fps: frame rate of folders and images (default 25).
        units_per_worker: how finely the frames are cut for balancing.

    The videos are probed when the dataset is made (their metadata is then cached, see
    ``adapters.metadata``), so a missing or unreadable input fails at once with its path.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        step: int = 1,
        num_samples: int | None = None,
        batch_size: int = 8,
        layout: Layout = "NCHW",
        backend: str = "auto",
        device: str | torch.device = "cpu",
        decode_device: str = "cpu",
        fps: FpsLike | None = None,
        units_per_worker: int = 8,
    ) -> None:
        if step < 1 or batch_size < 1 or units_per_worker < 1:
            raise ValueError("step, batch_size and units_per_worker must be >= 1")
        if num_samples is not None and step != 1:
            raise ValueError("give step or num_samples, not both")
        self.paths = [Path(path) for path in paths]
        self.batch_size = batch_size
        self.units_per_worker = units_per_worker
        self._open_options = {
            "layout": layout,
            "backend": backend,
            "device": device,
            "decode_device": decode_device,
            "fps": fps,
            "batch_size": batch_size,
        }
        self.infos = [probe(path, backend=backend, fps=fps) for path in self.paths]
        self.frame_indices = [
            list(range(0, info.num_frames or 0, step))
            if num_samples is None
            else uniform_indices(info.num_frames or 0, num_samples)
            for info in self.infos
        ]

    def __len__(self) -> int:
        """Batches per pass, whatever the number of workers (units are whole batches)."""
        return sum(math.ceil(len(indices) / self.batch_size) for indices in self.frame_indices)

    def work_units(self, workers: int) -> list[list[WorkUnit]]:
        """Each worker's units, in the order it reads them (the same in every process)."""
        batches = sum(math.ceil(len(indices) / self.batch_size) for indices in self.frame_indices)
        batches_per_unit = max(1, math.ceil(batches / (workers * self.units_per_worker)))
        unit_frames = batches_per_unit * self.batch_size
        units = [
            WorkUnit(video, tuple(indices[first : first + unit_frames]))
            for video, indices in enumerate(self.frame_indices)
            for first in range(0, len(indices), unit_frames)
        ]
        plan = schedule_longest_first([len(unit.indices) for unit in units], workers)
        return [[units[item] for item in sorted(items)] for items in plan]

    def __iter__(self) -> Iterator[VideoBatch]:
        worker = get_worker_info()
        workers, me = (1, 0) if worker is None else (worker.num_workers, worker.id)
        options = dict(self._open_options)
        if worker is not None:
            if (
                resolve_device(options["device"]).type == "cuda"
                or options["decode_device"] == "cuda"
            ):
                raise RuntimeError("DataLoader workers cannot use CUDA: use device='cpu'")
            options["decode_device"] = "cpu"
            options["num_threads"] = 1  # the workers are the parallelism
        source: FrameSource | None = None
        try:
            for unit in self.work_units(workers)[me]:
                if source is None or source.path != self.paths[unit.video]:
                    if source is not None:
                        source.close()
                    source = open_source(self.paths[unit.video], **options)
                first = 0
                for frames in source.iter_frames(unit.indices):
                    indices = torch.tensor(unit.indices[first : first + len(frames)])
                    yield VideoBatch(frames, indices, unit.video, str(self.paths[unit.video]))
                    first += len(frames)
        finally:
            if source is not None:
                source.close()

    def loader(self, workers: int = 0, **options: object) -> DataLoader:
        """A ``DataLoader`` over this dataset with ``workers`` processes (0: this process).

        ``options`` go to ``DataLoader`` (``pin_memory``, ``prefetch_factor``, ...); batching is
        the dataset's own, so its ``batch_size`` is ``None``.
        """
        return DataLoader(self, batch_size=None, num_workers=workers, **options)
