"""Stage timing (``mosaic.stages``) and the pipelined video path (``mosaic.video``)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest
import torch

import mosaic.video as video
from mosaic import MosaicConfig, render_video
from mosaic.engine import FrameRenderer
from mosaic.metrics import churn
from mosaic.pipeline import render_frames, torch_threads
from mosaic.stages import NO_TIMER, StageTimer, timed_iteration
from mosaic.temporal import TemporalCoherence
from tests.adapters.media import make_clip
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")

RENDER_STAGES = {"features", "assignment", "colour", "render"}


def test_timer_sums_wall_and_thread_cpu_time_per_stage():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("sleep"):
            time.sleep(0.01)
    with timer.stage("spin"):  # until this thread has used 20 ms of CPU, however busy the machine
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
    assert set(timer.seconds) == set(timer.cpu_seconds) == {"sleep", "spin"}
    assert timer.seconds["sleep"] >= 0.02
    assert timer.cpu_seconds["sleep"] < timer.seconds["sleep"] / 2  # sleeping costs no CPU
    assert timer.cpu_seconds["spin"] >= 0.02


def test_timer_records_a_stage_that_raises():
    timer = StageTimer()
    with pytest.raises(KeyError), timer.stage("failing"):
        raise KeyError
    assert "failing" in timer.seconds


def test_disabled_timer_records_nothing():
    for timer in (NO_TIMER, StageTimer(enabled=False)):
        with timer.stage("anything"):
            pass
        timer.add("anything", 1.0, 1.0)
        assert timer.seconds == {} and timer.cpu_seconds == {}


def test_adding_from_many_threads_loses_nothing():
    timer = StageTimer()

    def add() -> None:
        for _ in range(1000):
            timer.add("shared", 0.001, 0.0)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert timer.seconds["shared"] == pytest.approx(4.0)


def test_timed_iteration_yields_everything_and_times_it():
    timer = StageTimer()

    def slow() -> object:
        for item in range(3):
            time.sleep(0.005)
            yield item

    assert list(timed_iteration(slow(), timer, "produce")) == [0, 1, 2]
    assert timer.seconds["produce"] >= 0.015


def test_renderer_steps_record_their_stages():
    renderer = FrameRenderer(photo_pool(200), MosaicConfig(cell=8, device="cpu"))
    timer = StageTimer()
    renderer.render(landscape(48, 64), TemporalCoherence(), timer)
    assert set(timer.seconds) == RENDER_STAGES


def clip_frames(count: int) -> list[torch.Tensor]:
    """uint8 ``(H, W, 3)`` frames: a noisy landscape drifting right, 60x84 (cells of 8 pad)."""
    scene = landscape(60, 120, seed=3)
    return [
        add_noise(scene[:, :, 2 * i : 2 * i + 84], sigma=3, seed=i).permute(1, 2, 0).contiguous()
        for i in range(count)
    ]


@pytest.mark.parametrize("color", [0.0, 0.6])
def test_pipelined_frames_equal_sequential_rendering(color: float):
    """render_frames (stages in threads) gives exactly what FrameRenderer.render gives frame
    after frame with one temporal state and colour hold; the size is not a multiple of the
    cell."""
    config = MosaicConfig(cell=8, tile_size=None, color=color, device="cpu")
    renderer = FrameRenderer(photo_pool(300), config)
    frames = clip_frames(11)
    temporal, hold = TemporalCoherence(config.temporal), renderer.colour_hold()
    expected = [renderer.render(frame.permute(2, 0, 1), temporal, hold=hold) for frame in frames]

    written: list[torch.Tensor] = []
    batches = [torch.stack(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    counts: list[int] = []
    summary = render_frames(batches, renderer, written.append, on_batch=counts.append)

    images = torch.stack(written)
    assert images.shape == (11, 3, 60, 84)
    for image, result in zip(images, expected, strict=True):
        assert torch.equal(image, result.image)
    assert summary.frames == 11 and counts == [4, 4, 3]
    churns = [churn(a.choice, b.choice) for a, b in itertools.pairwise(expected)]
    assert summary.tally.churn == pytest.approx(sum(churns) / len(churns))
    assert summary.method == expected[-1].assignment.method


def test_a_failing_writer_stops_the_pipeline_with_its_error():
    renderer = FrameRenderer(photo_pool(200), MosaicConfig(cell=8, device="cpu"))
    batches = [torch.stack(clip_frames(2))] * 6

    def write(image: torch.Tensor) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        render_frames(batches, renderer, write)


def test_torch_threads_are_set_for_the_run_and_restored():
    before = torch.get_num_threads()
    expected = max(1, len(os.sched_getaffinity(0)) // 4)
    with torch_threads(torch.device("cpu")):
        assert torch.get_num_threads() == expected
        with torch_threads(torch.device("cpu")):  # a concurrent run
            assert torch.get_num_threads() == expected
        assert torch.get_num_threads() == expected  # still one run going
    assert torch.get_num_threads() == before
    with torch_threads(torch.device("meta")):
        assert torch.get_num_threads() == before


def test_render_video_reports_stage_times_only_when_asked(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="96x64", rate="10", seconds=1)
    pool, config = photo_pool(200), MosaicConfig(cell=8, device="cpu")
    plain = render_video(source, tmp_path / "plain.mp4", pool, config, progress=False)
    assert plain.stage_seconds == {} and plain.stage_cpu_seconds == {}

    timed = render_video(source, tmp_path / "timed.mp4", pool, config, progress=False, timing=True)
    stages = {"open", "decode", "encode", "metrics", "waiting_input", "waiting_output", "flush"}
    assert set(timed.stage_seconds) == RENDER_STAGES | stages
    assert set(timed.stage_cpu_seconds) == set(timed.stage_seconds)
    assert all(seconds >= 0 for seconds in timed.stage_seconds.values())
    same = ("churn", "fidelity", "method", "frames")
    assert [getattr(timed, name) for name in same] == [getattr(plain, name) for name in same]


def test_render_video_passes_the_encoder_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    presets = []
    original = video.open_sink

    def sink(*args, **kwargs):
        presets.append(kwargs["preset"])
        return original(*args, **kwargs)

    monkeypatch.setattr(video, "open_sink", sink)
    source = make_clip(tmp_path / "in.mp4", size="96x64", rate="10", seconds=1)
    config = MosaicConfig(cell=8, device="cpu")
    stats = render_video(
        source,
        tmp_path / "out.mp4",
        photo_pool(200),
        config,
        progress=False,
        encoder_preset="ultrafast",
    )
    assert presets == ["ultrafast"] and stats.frames == 10
