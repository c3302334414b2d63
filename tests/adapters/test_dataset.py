"""Many videos: longest-first scheduling, work units balanced by frame count, every selected frame
read exactly once with and without worker processes, media discovery."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from adapters import (
    SourceError,
    VideoDataset,
    find_media,
    probe,
    schedule_longest_first,
    uniform_indices,
)
from tests.adapters.conftest import RAMP_STEP
from tests.adapters.media import frame_numbers


def test_schedule_longest_first() -> None:
    assert schedule_longest_first([3, 7, 2, 5, 4], 2) == [[1, 0], [3, 4, 2]]
    assert schedule_longest_first([], 3) == [[], [], []]
    with pytest.raises(ValueError):
        schedule_longest_first([1], 0)
    generator = random.Random(0)
    for _ in range(200):
        weights = [generator.randint(1, 100) for _ in range(generator.randint(1, 30))]
        workers = generator.randint(1, 6)
        plan = schedule_longest_first(weights, workers)
        assert sorted(item for items in plan for item in items) == list(range(len(weights)))
        loads = [sum(weights[item] for item in items) for items in plan]
        assert max(loads) <= sum(weights) / workers + max(weights)


@pytest.fixture(scope="module")
def videos(indexed_clips: dict[str, Path], indexed_folder: Path, grey_ramp: Path) -> list[Path]:
    """60 + 60 + 25 + 60 frames, all carrying their index as grey level (4 * i or 10 * i)."""
    return [indexed_clips["mp4"], indexed_folder, grey_ramp, indexed_clips["mkv"]]


def check_batches(batches: list, dataset: VideoDataset) -> None:
    """Every selected frame exactly once, each batch of one video with the frames it claims."""
    seen = Counter()
    for batch in batches:
        assert 1 <= len(batch.frames) <= dataset.batch_size == 8
        assert batch.frames.shape[1:] == (3, 48, 64) and batch.frames.dtype == torch.uint8
        step = 10 if batch.path.endswith("ramp.mkv") else RAMP_STEP
        assert frame_numbers(batch.frames, step) == batch.indices.tolist()
        seen.update((batch.video, index) for index in batch.indices.tolist())
    expected = Counter(
        (video, index) for video, indices in enumerate(dataset.frame_indices) for index in indices
    )
    assert seen == expected


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_work_units_are_balanced_by_frame_count(videos: list[Path], workers: int) -> None:
    dataset = VideoDataset(videos, batch_size=8)
    plan = dataset.work_units(workers)
    loads = [sum(len(unit.indices) for unit in units) for units in plan]
    biggest_unit = max(len(unit.indices) for units in plan for unit in units)
    assert sum(loads) == 205 and max(loads) - min(loads) <= biggest_unit
    if workers > 1:  # long videos are shared: far better than whole videos per worker
        assert biggest_unit < 60 and max(loads) <= 205 / workers + biggest_unit
    units = sorted((unit for units in plan for unit in units), key=lambda unit: unit.indices)
    for unit in units:  # whole batches, except at the end of a video
        assert (
            len(unit.indices) % 8 == 0
            or unit.indices[-1] == len(dataset.frame_indices[unit.video]) - 1
        )
    for units in plan:  # each worker reads its videos in order, each unit ascending
        keys = [(unit.video, unit.indices[0]) for unit in units]
        assert keys == sorted(keys)


def test_one_process_reads_every_frame_once(videos: list[Path]) -> None:
    dataset = VideoDataset(videos, batch_size=8, fps=25)
    batches = list(dataset)
    assert len(batches) == len(dataset) == 8 + 8 + 4 + 8
    check_batches(batches, dataset)


def test_worker_processes_read_every_frame_once(videos: list[Path]) -> None:
    dataset = VideoDataset(videos, step=3, batch_size=8)
    batches = list(dataset.loader(workers=2))
    assert len(batches) == len(dataset)
    check_batches(batches, dataset)


def test_uniform_samples_per_video_in_nhwc(videos: list[Path]) -> None:
    dataset = VideoDataset(videos[:3], num_samples=5, layout="NHWC", batch_size=8)
    assert dataset.frame_indices == [uniform_indices(60, 5)] * 2 + [uniform_indices(25, 5)]
    batches = list(dataset)
    assert [batch.frames.shape for batch in batches] == [(5, 48, 64, 3)] * 3
    assert [batch.video for batch in batches] == [0, 1, 2]


def test_bad_inputs_fail_when_the_dataset_is_made(videos: list[Path], tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.mp4"):
        VideoDataset([videos[0], tmp_path / "nope.mp4"])
    with pytest.raises(ValueError, match="not both"):
        VideoDataset(videos, step=2, num_samples=4)
    if not torch.cuda.is_available():
        return
    with pytest.raises(RuntimeError, match="CUDA"):
        list(VideoDataset(videos[:1], device="cuda").loader(workers=1))


def test_find_media_and_probe(videos: list[Path], tmp_path: Path) -> None:
    (tmp_path / "clip10.mp4").write_bytes(videos[0].read_bytes())
    (tmp_path / "clip9.MKV").write_bytes(videos[3].read_bytes())
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "1.png").write_bytes((videos[1] / "shot_1.png").read_bytes())
    (tmp_path / "empty").mkdir()
    media = find_media(tmp_path)
    assert [path.name for path in media] == ["clip9.MKV", "clip10.mp4", "frames"]
    assert [probe(path).num_frames for path in media] == [60, 60, 1]
    with pytest.raises(SourceError, match="no such folder"):
        find_media(tmp_path / "notes.txt")
