"""Video collections on Ray: rendering a folder (``mosaic.distributed``) and reading frames
with Ray Data (``adapters.ray_source``), on one local Ray instance per test session."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from adapters import PyAVSource, open_source
from mosaic.batch import render_folder
from mosaic.cli import main
from mosaic.config import MosaicConfig
from mosaic.distributed import SharedPool, scene_cut_at, segment_bounds
from mosaic.video import render_video
from tests.adapters.media import ffmpeg, frame_numbers, make_clip, make_grey_ramp, probe
from tests.scenes import photo_pool

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.usefixtures("reference_path"),
    # Ray Data's own settings, deprecated in the Ray release installed.
    pytest.mark.filterwarnings("ignore:`use_:DeprecationWarning"),
]

CONFIG = MosaicConfig(cell=8, device="cpu", color=0.0)


@pytest.fixture(scope="session")
def ray_instance(cache_home: Path) -> object:
    """One Ray instance on this machine for the whole session: 2 CPUs, loopback only, a small
    object store, no dashboard. Its workers render with the pure-torch references, as the
    local renders here do (``reference_path``), and keep tile caches in the session's."""
    ray.init(
        runtime_env={"env_vars": {"TRITON_INTERPRET": "0", "XDG_CACHE_HOME": str(cache_home)}},
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=256 * 2**20,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool():
    return photo_pool(200, tile_size=16)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short clips: with and without audio, at three frame rates and lengths."""
    folder = tmp_path_factory.mktemp("clips")
    for name, rate, seconds, audio in (("a", "10", 1.0, "aac"), ("b", "12", 1.5, None)):
        make_clip(folder / f"{name}.mp4", size="96x64", rate=rate, seconds=seconds, audio=audio)
    make_clip(folder / "c.mp4", size="64x48", rate="8", seconds=2.0, audio="aac")
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_clips_render_to_the_same_bytes_as_locally_and_resume(
    ray_instance, pool, clips: Path, tmp_path: Path
):
    local = render_folder(clips, tmp_path / "local", pool, CONFIG, progress=False)
    report = render_folder(clips, tmp_path / "ray", pool, CONFIG, progress=False, ray=True)
    assert report.summary() == local.summary() == "3 rendered, 0 already done, 0 failed"
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert sorted(stats.frames for _, stats in report.rendered) == [10, 16, 18]
    again = render_folder(clips, tmp_path / "ray", pool, CONFIG, progress=False, ray=True)
    assert again.summary() == "0 rendered, 3 already done, 0 failed"


def test_a_corrupt_clip_is_reported_in_one_line_and_the_others_finish(
    ray_instance, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    inputs, outputs, tiles = tmp_path / "in", tmp_path / "out", tmp_path / "tiles"
    inputs.mkdir()
    tiles.mkdir()
    for clip in clips.iterdir():
        (inputs / clip.name).write_bytes(clip.read_bytes())
    (inputs / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    for index, image in enumerate(photo_pool(64, tile_size=32).images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tiles / f"{index}.png")
    argv = [str(inputs), "-o", str(outputs), "--tiles", str(tiles), "--cell", "8"]
    code = main([*argv, "--device", "cpu", "--no-cache", "--ray"])
    assert code == 1
    assert sorted(path.name for path in outputs.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    failures = [line for line in capsys.readouterr().err.splitlines() if "broken" in line]
    assert len(failures) == 1
    assert failures[0].startswith("failed: broken.mp4: ")


def make_scene_cut_clip(folder: Path, gop: int) -> Path:
    """``folder/in/cut.mp4``: 120 frames at 25 fps, 96 x 64, with audio: a slow pan, a cut at
    frame 70 to another slow pan; a key frame at least every ``gop`` frames (x264 adds one at
    the cut when it is not on that grid)."""
    path = folder / "in" / "cut.mp4"
    path.parent.mkdir(parents=True)
    pan = "crop=96:64:x='{0}t*8':y='{0}t*4'"
    scenes = f"[0]{pan.format('')}[a];[1]{pan.format('60-')},hue=h=120[b];[a][b]concat=n=2:v=1[v]"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=200x160:rate=25:duration=2.8"),
        *("-f", "lavfi", "-i", "testsrc2=size=200x160:rate=25:duration=2"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=4.8"),
        *("-filter_complex", scenes, "-map", "[v]", "-map", "2:a"),
        *("-c:v", "libx264", "-g", str(gop), "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)),
    )
    return path


@pytest.fixture(scope="module")
def scene_cut_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scene-cut clip with a key frame every 10 frames."""
    return make_scene_cut_clip(tmp_path_factory.mktemp("cut"), gop=10)


def changed_cells(frames: torch.Tensor, index: int, cell: int) -> float:
    """The fraction of output cells whose pixels changed from frame ``index - 1`` to ``index``
    by more than codec noise (with no colour transfer, a changed tile)."""
    difference = (frames[index].float() - frames[index - 1].float()).abs().mean(0)
    rows, cols = difference.shape[0] // cell, difference.shape[1] // cell
    blocks = difference[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell)
    return (blocks.mean((1, 3)) > 12).float().mean().item()


def test_a_split_video_joins_at_its_scene_cut_keeping_frames_audio_and_tiles(
    ray_instance, pool, scene_cut_clip: Path, tmp_path: Path
):
    with PyAVSource(scene_cut_clip, device="cpu") as source:
        keys = source.key_frames  # every 10 frames, and 70 (the cut) on that grid
        # Near 40 no key frame starts a new shot: no join there; near 80, the cut at 70.
        assert segment_bounds(len(source), keys, 40, scene_cut_at(source, CONFIG)) == [70]
    inputs = scene_cut_clip.parent
    render_folder(inputs, tmp_path / "whole", pool, CONFIG, progress=False)
    report = render_folder(
        inputs,
        tmp_path / "split",
        pool,
        CONFIG,
        progress=False,
        ray=True,
        segment_frames=40,
        warmup_frames=25,
    )
    assert report.summary() == "1 rendered, 0 already done, 0 failed"
    assert [path.name for path in (tmp_path / "split").iterdir()] == ["cut.mp4"]  # no segments
    split, whole = tmp_path / "split" / "cut.mp4", tmp_path / "whole" / "cut.mp4"
    assert probe(split)["video"]["packets"] == probe(whole)["video"]["packets"] == 120
    assert probe(split)["audio"] is not None
    with open_source(split, device="cpu") as joined, open_source(whole, device="cpu") as one:
        joined_frames, whole_frames = joined.get_range(), one.get_range()
    cell = whole_frames.shape[-1] // 12  # 12 cells across
    # From the cut on, the split render assigns exactly as the whole one: the same tiles
    # change at the join as in the whole video, and the frames after it differ by codec noise.
    assert changed_cells(joined_frames, 70, cell) == changed_cells(whole_frames, 70, cell)
    after = (joined_frames[70:90].float() - whole_frames[70:90].float()).abs().mean()
    assert after < 4


def test_a_continuous_shot_is_not_split(ray_instance, pool, tmp_path: Path):
    """A join inside a shot would reshuffle the tiles (a segment starting afresh settles on
    others than a long history did): with key frames every 10 frames and no cut, the video
    renders whole, to the bytes of the local render."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    video = ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10")
    make_clip(inputs / "shot.mp4", size="96x64", rate="25", seconds=4, audio=None, video=video)
    render_folder(inputs, tmp_path / "local", pool, CONFIG, progress=False)
    options = {"segment_frames": 40, "warmup_frames": 10}
    render_folder(inputs, tmp_path / "ray", pool, CONFIG, progress=False, ray=True, **options)
    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_a_split_video_joins_at_the_key_frame_of_a_cut_seamlessly(
    ray_instance, pool, tmp_path: Path
):
    clip = make_scene_cut_clip(tmp_path, gop=40)
    with PyAVSource(clip, device="cpu") as source:
        assert 70 in source.key_frames  # placed at the cut, off the 40-frame grid
        assert segment_bounds(len(source), source.key_frames, 40) == [40, 70]
    render_folder(clip.parent, tmp_path / "whole", pool, CONFIG, progress=False)
    options = {"segment_frames": 40, "warmup_frames": 0}  # no warm-up: the cut alone suffices
    split_dir = tmp_path / "split"
    render_folder(clip.parent, split_dir, pool, CONFIG, progress=False, ray=True, **options)
    with (
        open_source(split_dir / "cut.mp4", device="cpu") as split,
        open_source(tmp_path / "whole" / "cut.mp4", device="cpu") as whole,
    ):
        after = (split.get_range(70, 80).float() - whole.get_range(70, 80).float()).abs().mean()
    assert after < 4


def test_a_stopped_split_video_resumes_from_its_finished_segments(
    ray_instance, pool, scene_cut_clip: Path, tmp_path: Path
):
    inputs, options = scene_cut_clip.parent, {"segment_frames": 40, "warmup_frames": 25}
    render_folder(inputs, tmp_path / "once", pool, CONFIG, progress=False, ray=True, **options)
    # What a run stopped after its first segment leaves: that segment, where the tasks put it.
    first = tmp_path / "resumed" / ".cut.segments" / "0000-0-70.mp4"
    first.parent.mkdir(parents=True)
    render_video(scene_cut_clip, first, pool, CONFIG, progress=False, segment=(0, 70), warmup=25)
    report = render_folder(
        inputs, tmp_path / "resumed", pool, CONFIG, progress=False, ray=True, **options
    )
    assert [stats.frames for _, stats in report.rendered] == [50]  # the segment left
    assert files(tmp_path / "resumed") == files(tmp_path / "once")


def worker_running(task_name: str) -> int | None:
    """The process id of a Ray worker started by this test process that runs ``task_name``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if not command.startswith(f"ray::{task_name}".encode()):
                continue
            pid = int(entry.name)
            parent = pid
            while parent > 1:
                parent = int((Path("/proc") / str(parent) / "stat").read_text().split()[3])
                if parent == os.getpid():
                    return pid
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
def test_a_killed_workers_task_is_retried_and_leaves_no_partial_output(
    ray_instance, pool, tmp_path: Path
):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    make_clip(inputs / "long.mp4", size="96x64", rate="25", seconds=4, audio=None)
    reports = []
    run = threading.Thread(
        target=lambda: reports.append(
            render_folder(inputs, outputs, pool, CONFIG, progress=False, ray=True)
        )
    )
    run.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        partial = outputs.is_dir() and any(".partial-" in p.name for p in outputs.iterdir())
        worker = worker_running("_render_task") if partial else None
        if worker is not None:
            os.kill(worker, signal.SIGKILL)  # mid-video: its temporary output is being written
            killed = worker
        time.sleep(0.02)
    run.join(timeout=300)
    assert killed is not None, "the task finished before it could be killed"
    assert reports[0].summary() == "1 rendered, 0 already done, 0 failed"
    assert [path.name for path in outputs.iterdir()] == ["long.mp4"]
    assert probe(outputs / "long.mp4")["video"]["packets"] == 100


def test_without_ray_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, clips: Path, tmp_path: Path, capsys
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    code = main([str(clips), "-o", str(tmp_path / "out"), "--tiles", str(tmp_path), "--ray"])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["mosaic: error: Ray is not installed: pip install 'triton-mosaic[ray]'"]


def test_ray_is_for_a_folder_without_jobs(clips: Path, tmp_path: Path, capsys):
    one_video = [str(clips / "a.mp4"), "-o", str(tmp_path / "a.mp4"), "--tiles", str(tmp_path)]
    with pytest.raises(SystemExit) as usage:
        main([*one_video, "--ray"])
    assert usage.value.code == 2
    assert "--ray: only for a folder of videos" in capsys.readouterr().err
    folder = [str(clips), "-o", str(tmp_path / "out"), "--tiles", str(tmp_path)]
    with pytest.raises(SystemExit) as usage:
        main([*folder, "--jobs", "2", "--ray", "127.0.0.1:6379"])
    assert usage.value.code == 2
    assert "--jobs: local threads, not with --ray" in capsys.readouterr().err


@given(
    frames=st.integers(1, 400),
    segment=st.integers(1, 120),
    keys=st.sets(st.integers(0, 420), max_size=40),
)
def test_segments_start_at_key_frames_near_multiples_of_the_segment(frames, segment, keys):
    cuts = segment_bounds(frames, sorted(keys), segment)
    assert cuts == sorted(set(cuts))
    assert all(0 < cut < frames and cut in keys for cut in cuts)
    if frames < 1.5 * segment or not [key for key in keys if 0 < key < frames]:
        assert cuts == []
    else:
        assert cuts


@given(frames=st.integers(1, 400), segment=st.integers(1, 120), gop=st.integers(1, 60))
def test_with_a_regular_gop_each_cut_is_the_key_frame_nearest_a_multiple(frames, segment, gop):
    keys = range(0, frames, gop)
    cuts = segment_bounds(frames, keys, segment)
    targets = range(segment, frames - segment // 2, segment) if frames >= 1.5 * segment else []
    inside = [key for key in keys if key > 0]
    nearest = {min(inside, key=lambda key: (abs(key - t), key)) for t in targets if inside}
    assert cuts == sorted(nearest)


def test_a_key_frame_placed_early_near_a_multiple_is_preferred():
    # Key frames every 40 frames, and one at 70 where a scene cuts: 70, not 80, ends the
    # second segment; without it, 80.
    assert segment_bounds(120, [0, 40, 70, 110], 40) == [40, 70]
    assert segment_bounds(120, [0, 40, 80], 40) == [40, 80]


def test_the_pool_is_shared_through_the_object_store_without_copies(ray_instance, pool):
    stored = ray.get(ray.put(SharedPool.of(pool)))
    assert not stored.images.flags.writeable  # a view of the object store's shared memory
    opened = stored.open()
    assert torch.equal(opened.images, pool.images)
    assert opened.images.data_ptr() == stored.images.ctypes.data  # no copy made by open()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A grey ramp with B-frames and a key frame every 5 frames (each frame's index is its
    grey level: an independent oracle), a testsrc clip and a folder of frames."""
    folder = tmp_path_factory.mktemp("collection")
    ramp = make_grey_ramp(folder / "ramp.mp4", frames=23, gop=5)
    clip = make_clip(folder / "clip.mp4", size="48x32", rate="10", seconds=1.7, audio=None)
    frames = folder / "frames"
    frames.mkdir()
    with open_source(clip, device="cpu") as source:
        for index, frame in enumerate(source.get_range(0, 7)):
            Image.fromarray(frame.permute(1, 2, 0).numpy()).save(frames / f"f{index}.png")
    return [ramp, clip, frames]


@pytest.mark.parametrize(
    "options",
    [
        {"step": 3, "frames_per_block": 4},
        {"num_samples": 5, "layout": "NHWC"},
        {"clip_length": 4, "clip_stride": 2, "num_clips": 3},
        {"clip_length": 3, "frames_per_block": 7},
    ],
)
def test_the_ray_data_reader_yields_the_frames_of_the_local_reader(
    ray_instance, collection: list[Path], options: dict
):
    from adapters import read_videos

    rows = read_videos(collection, **options).take_all()
    clips = "clip_length" in options
    layout = options.get("layout", "NCHW")
    read: dict[str, list[int]] = {}
    for row in rows:
        indices = row["indices"].tolist() if clips else [int(row["index"])]
        pixels = torch.from_numpy(np.array(row["clip"] if clips else row["frame"][None]))
        with open_source(row["path"], device="cpu", layout=layout) as source:
            assert torch.equal(pixels, source.get_frames(indices))
        if row["path"].endswith("ramp.mp4"):  # each frame's grey level says its index
            assert frame_numbers(pixels, level_step=10) == indices
        read.setdefault(row["path"], []).extend(indices)
    for path in collection:  # every video, every frame asked for, each once
        with open_source(path, device="cpu") as source:
            total = len(source)
        got = sorted(read[str(path)])
        if clips:
            span = (options["clip_length"] - 1) * options.get("clip_stride", 1) + 1
            expected_clips = options.get("num_clips") or (total // span)
            assert len(got) == expected_clips * options["clip_length"]
        elif "step" in options:
            assert got == list(range(0, total, options["step"]))
        else:
            assert len(got) == options["num_samples"]


def test_key_frames_are_those_of_the_stream(collection: list[Path]):
    with PyAVSource(collection[0], device="cpu") as source:
        assert source.key_frames == [0, 5, 10, 15, 20]
