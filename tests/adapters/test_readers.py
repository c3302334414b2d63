"""Readers: indexed, ranged and sampled reads in every mode and layout, the same frames from every
backend, backend and device choice, metadata caching and invalidation, errors."""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import adapters.sources
import adapters.video_source
from adapters import (
    INFO_CACHE,
    MODES,
    DecodeError,
    FolderSource,
    FrameSource,
    PyAVSource,
    SourceError,
    TorchCodecSource,
    open_source,
    probe,
    uniform_indices,
)
from adapters.pyav_source import pyav_problem
from tests.adapters.conftest import RAMP_FRAMES, RAMP_STEP
from tests.adapters.media import cut_short, ffmpeg, frame_numbers, make_clip, make_grey_ramp
from tests.processes import child_env

needs_pyav = pytest.mark.skipif(pyav_problem() is not None, reason="PyAV is not installed")
FOLDER_PATTERN = r"shot_(\d+)\.png"

# What reads the indexed frames: (backend, decode device); "folder" reads the PNG frames.
READERS = [
    pytest.param(("torchcodec", "cpu"), id="torchcodec-cpu"),
    pytest.param(("torchcodec", "cuda"), id="torchcodec-cuda", marks=pytest.mark.cuda),
    pytest.param(("pyav", "cpu"), id="pyav", marks=needs_pyav),
    pytest.param(("folder", "cpu"), id="folder"),
]
VIDEO_READERS = READERS[:3]

Opener = Callable[..., FrameSource]


@pytest.fixture(params=READERS)
def open_indexed(
    request: pytest.FixtureRequest, indexed_clips: dict[str, Path], indexed_folder: Path
) -> Opener:
    """Opens the 60 indexed frames with one reader: ``open_indexed(container="mp4", **options)``."""
    backend, decode_device = request.param

    def open_reader(container: str = "mp4", **options: object) -> FrameSource:
        options.setdefault("device", decode_device)
        if backend == "folder":
            return open_source(indexed_folder, pattern=FOLDER_PATTERN, **options)
        return open_source(
            indexed_clips[container], backend=backend, decode_device=decode_device, **options
        )

    return open_reader


def numbers(frames: torch.Tensor) -> list[int]:
    return frame_numbers(frames, RAMP_STEP)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
@pytest.mark.parametrize("mode", MODES)
def test_frames_at_indices(open_indexed: Opener, container: str, mode: str) -> None:
    # Unsorted, repeated, negative, across key frames (every 12 frames) and back.
    indices = [59, 3, 3, -1, 17, 40, 0, 58, 13, 12, 11, 25]
    with open_indexed(container, batch_size=5) as source:
        frames = source.get_frames(indices, mode=mode)
        assert numbers(frames) == [index % RAMP_FRAMES for index in indices]
        assert numbers(source.get_frames([7], mode=mode)) == [7]  # after the end, back again


@pytest.mark.parametrize("mode", MODES)
def test_ranges_strides_and_uniform_samples(open_indexed: Opener, mode: str) -> None:
    with open_indexed(batch_size=8) as source:
        assert numbers(source.get_range(5, 50, 7, mode=mode)) == list(range(5, 50, 7))
        assert numbers(source.get_range(step=3, mode=mode)) == list(range(0, 60, 3))
        assert numbers(source.get_range(-10, mode=mode)) == list(range(50, 60))
        assert numbers(source.get_range(20, 10, -4, mode=mode)) == [20, 16, 12]
        assert numbers(source.sample_uniform(7, mode=mode)) == uniform_indices(60, 7)
        batches = list(source.iter_frames(range(59, -1, -5), mode=mode))
    assert [len(batch) for batch in batches] == [8, 4]
    assert numbers(torch.cat(batches)) == list(range(59, -1, -5))


def test_iteration_gives_every_frame_in_order(open_indexed: Opener) -> None:
    with open_indexed(batch_size=16) as source:
        batches = list(source)
        assert len(source) == RAMP_FRAMES
    assert [len(batch) for batch in batches] == [16, 16, 16, 12]
    assert numbers(torch.cat(batches)) == list(range(RAMP_FRAMES))


def test_layouts_dtype_and_device(open_indexed: Opener) -> None:
    indices = [4, 30, 2]
    with open_indexed(layout="NCHW") as nchw, open_indexed(layout="NHWC") as nhwc:
        planar, packed = nchw.get_frames(indices), nhwc.get_frames(indices)
        empty = nhwc.get_frames([])
        assert nchw.layout == "NCHW" and nhwc.layout == "NHWC"
        device = nchw.device
    assert planar.shape == (3, 3, 48, 64) and packed.shape == (3, 48, 64, 3)
    assert empty.shape == (0, 48, 64, 3) and empty.dtype == torch.uint8
    for frames in (planar, packed):
        assert frames.dtype == torch.uint8 and frames.is_contiguous() and frames.device == device
    assert torch.equal(planar.permute(0, 2, 3, 1), packed)


@pytest.mark.parametrize("reader", VIDEO_READERS)
def test_every_backend_gives_the_same_colour_frames(
    reader: tuple[str, str], clip_with_audio: Path
) -> None:
    backend, decode_device = reader
    indices = [29, 0, 14, 15, 7]
    with open_source(clip_with_audio, device="cpu", backend="torchcodec", decode_device="cpu") as s:
        expected = s.get_frames(indices)
    with open_source(
        clip_with_audio, device="cpu", backend=backend, decode_device=decode_device
    ) as source:
        frames = source.get_frames(indices)
    # NVDEC converts YUV to RGB with its own rounding; the CPU decoders agree exactly.
    tolerance = 2.0 if decode_device == "cuda" else 0.0
    assert (frames.int() - expected.int()).abs().float().mean() <= tolerance


def test_auto_mode_streams_contiguous_runs_and_seeks_otherwise(indexed_clips: dict) -> None:
    with open_source(indexed_clips["mp4"], device="cpu", backend="torchcodec") as source:
        assert source.plan_mode(range(10, 30)) == "stream"
        assert source.plan_mode([12, 11, 10, 10]) == "stream"
        assert source.plan_mode([0, 2]) == "seek"
        assert source.plan_mode(range(0, 60, 5)) == "seek"


def test_torchcodec_stream_decodes_a_range_once_and_seek_jumps(indexed_clips: dict) -> None:
    with TorchCodecSource(indexed_clips["mkv"], device="cpu", batch_size=4) as source:
        decoder, calls = source._decoder, []
        for name in ("get_frames_in_range", "get_frames_at"):
            method = getattr(decoder, name)
            spy = lambda *args, name=name, method=method: (
                calls.append((name, *args)) or method(*args)
            )
            setattr(decoder, name, spy)
        source.get_frames([3, 9, 20], mode="stream")
        ranges = [call[1:] for call in calls]
        assert {call[0] for call in calls} == {"get_frames_in_range"}
        assert ranges[0][0] == 3 and ranges[-1][1] == 21  # 3 to 20 decoded once, in order
        assert all(a[1] == b[0] and a[1] - a[0] <= 4 for a, b in itertools.pairwise(ranges))
        calls.clear()
        source.get_frames([3, 9, 20], mode="seek")
        assert calls == [("get_frames_at", [3, 9, 20])]


@needs_pyav
def test_pyav_seeks_only_to_jump_over_key_frames(indexed_clips: dict) -> None:
    with PyAVSource(indexed_clips["mp4"], device="cpu") as source:
        seeks: list[int] = []
        seek = source._seek
        source._seek = lambda target: seeks.append(target) or seek(target)
        source.get_frames([1, 2, 5], mode="seek")  # opening decoded frame 0: reached forward
        assert seeks == []
        source.get_frames([0, 30, 59], mode="seek")  # back to 0, then key frames 24 and 48
        assert len(seeks) == 3
        seeks.clear()
        source.get_frames([0, 30, 59], mode="stream")  # one seek back to 0, then straight on
        assert len(seeks) == 1


def test_bad_requests(indexed_clips: dict) -> None:
    source = open_source(indexed_clips["mp4"], device="cpu")
    with pytest.raises(IndexError, match="frame 60 is outside"):
        source.get_frames([0, 60])
    with pytest.raises(IndexError, match="frame -61"):
        source.get_frames([-61])
    with pytest.raises(ValueError, match="mode"):
        source.get_frames([0], mode="fast")
    with pytest.raises(ValueError, match="integer"):
        source.get_frames(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="n >= 1"):
        source.sample_uniform(0)
    with pytest.raises(ValueError, match="layout"):
        open_source(indexed_clips["mp4"], device="cpu", layout="CHW")
    source.close()
    with pytest.raises(ValueError, match="closed"):
        source.get_frames([0])
    with pytest.raises(ValueError, match="closed"):
        list(source)


def test_uniform_indices() -> None:
    assert uniform_indices(100, 4) == [12, 37, 62, 87]
    assert uniform_indices(10, 1) == [5]
    assert uniform_indices(2, 4) == [0, 0, 1, 1]


def test_backend_and_device_auto_report_their_choice(
    clip_silent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_source(clip_silent) as source:
        assert source.backend == "torchcodec"
        assert source.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
        assert source.decoder == f"torchcodec ({source.decode_device})"
    with pytest.raises(ValueError, match="backend"):
        open_source(clip_silent, backend="opencv")
    monkeypatch.setattr(adapters.video_source, "torchcodec_problem", lambda: "no FFmpeg libs")
    with pytest.raises(SourceError, match=r"torchcodec cannot decode .*: no FFmpeg libs"):
        open_source(clip_silent, device="cpu", backend="torchcodec")
    if pyav_problem() is None:
        monkeypatch.setattr(adapters.sources, "torchcodec_problem", lambda: "no FFmpeg libs")
        with open_source(clip_silent, device="cpu") as source:
            assert source.backend == "pyav" and source.decoder == "pyav (cpu)"
        with pytest.raises(ValueError, match="PyAV decodes on the CPU"):
            open_source(clip_silent, backend="pyav", decode_device="cuda")


@needs_pyav
def test_pyav_metadata_matches_torchcodec(clip_with_audio: Path, clip_silent: Path) -> None:
    for clip in (clip_with_audio, clip_silent):
        with open_source(clip, device="cpu", backend="torchcodec") as codec:
            expected = codec.info
        with open_source(clip, device="cpu", backend="pyav") as pyav:
            info = pyav.info
        assert info.duration_seconds == pytest.approx(expected.duration_seconds, abs=0.05)
        assert info == type(info)(**{**vars(expected), "duration_seconds": info.duration_seconds})


@needs_pyav
def test_pyav_applies_the_display_rotation_like_torchcodec(media: Path, tmp_path: Path) -> None:
    import av

    upright = make_clip(media / "to_rotate.mp4", audio=None)
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(upright)) as source, av.open(str(rotated), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.set_display_rotation(90)
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    frames = {}
    for backend in ("torchcodec", "pyav"):
        with open_source(rotated, device="cpu", backend=backend) as source:
            assert (source.info.width, source.info.height) == (48, 64)
            frames[backend] = source.get_frames([0, 12])
    assert frames["pyav"].shape == (2, 3, 64, 48)
    assert torch.equal(frames["pyav"], frames["torchcodec"])


@pytest.mark.parametrize("backend", ["torchcodec", pytest.param("pyav", marks=needs_pyav)])
def test_metadata_is_read_once_per_file_version(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[Path] = []
    audio_codec = adapters.video_source.audio_codec
    monkeypatch.setattr(
        adapters.video_source,
        "audio_codec",
        lambda path, error: probes.append(path) or audio_codec(path, error),
    )
    clip = make_grey_ramp(tmp_path / "clip.mkv", frames=10)
    assert probe(clip, backend=backend).num_frames == 10
    with open_source(clip, device="cpu", backend=backend) as source:
        assert source.info.num_frames == 10
        # Replace the file under the open source: the next read reopens it.
        os.replace(make_grey_ramp(tmp_path / "longer.mkv", frames=20), clip)
        assert frame_numbers(source.get_range(), level_step=10) == list(range(20))
        assert source.info.num_frames == 20
    if backend == "torchcodec":  # ffprobe ran once per version of the file
        assert len(probes) == 2
    assert len(INFO_CACHE) >= 1


def test_folder_is_reread_when_frames_are_added(tmp_path: Path) -> None:
    from PIL import Image

    for index in range(3):
        Image.new("RGB", (8, 6), (index, 0, 0)).save(tmp_path / f"{index}.png")
    with FolderSource(tmp_path, device="cpu") as source:
        assert len(source) == 3
        Image.new("RGB", (8, 6), (3, 0, 0)).save(tmp_path / "3.png")
        assert source.get_frames([-1])[0, 0, 0, 0] == 3 and len(source) == 4


def test_folder_pattern_numbers_the_frames(tmp_path: Path) -> None:
    from PIL import Image

    for number in (10, 2, 33, 1):
        Image.new("RGB", (8, 6), (number, 0, 0)).save(tmp_path / f"take_{number:03d}.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "thumbnail.png")
    with FolderSource(tmp_path, device="cpu", pattern=r"take_(\d+)\.png") as source:
        assert [file.name for file in source.files] == [
            "take_001.png",
            "take_002.png",
            "take_010.png",
            "take_033.png",
        ]
        assert source.get_frames(range(4))[:, 0, 0, 0].tolist() == [1, 2, 10, 33]
    Image.new("RGB", (8, 6)).save(tmp_path / "take_2.png")
    with pytest.raises(SourceError, match="both frame 2"):
        FolderSource(tmp_path, pattern=r"take_(\d+)\.png")
    with pytest.raises(SourceError, match="matches"):
        FolderSource(tmp_path, pattern=r"frame(\d+)\.jpg")
    with pytest.raises(ValueError, match="group"):
        FolderSource(tmp_path, pattern=r"take_\d+\.png")


@pytest.mark.parametrize("backend", ["torchcodec", pytest.param("pyav", marks=needs_pyav)])
def test_corrupt_and_non_video_files_are_clear_errors(backend: str, tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    tone = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", str(tone))
    for path, match in ((fake, "cannot decode .*fake.mp4 as a video"), (tone, "no video stream")):
        with pytest.raises(SourceError, match=match) as raised:
            open_source(path, device="cpu", backend=backend)
        message = str(raised.value)
        assert "\n" not in message and ".cpp" not in message
        assert message.count(path.name) == 1  # the file is named once, not again by FFmpeg


@pytest.mark.parametrize("backend", ["torchcodec", pytest.param("pyav", marks=needs_pyav)])
def test_a_cut_short_video_decodes_up_to_where_it_stops(
    backend: str, indexed_clips: dict[str, Path], tmp_path: Path
) -> None:
    clip = tmp_path / "indexed.mp4"
    clip.write_bytes(indexed_clips["mp4"].read_bytes())
    cut = cut_short(clip, keep=0.8)  # the index announces all 60 frames; 34 of them decode
    with open_source(cut, device="cpu", backend=backend, batch_size=1) as source:
        assert source.info.header_frames == RAMP_FRAMES
        assert source.info.num_frames is not None and source.info.num_frames < RAMP_FRAMES
        decoded: list[int] = []
        with pytest.raises(DecodeError) as raised:
            for batch in source:
                decoded += numbers(batch)
    assert decoded == list(range(raised.value.frame))  # every frame before the failing one
    assert 0 < raised.value.frame < RAMP_FRAMES
    assert f"failed at frame {raised.value.frame}" in str(raised.value)
    copy = pickle.loads(pickle.dumps(raised.value))  # as a worker process hands it over
    assert (copy.frame, copy.reason, str(copy)) == (
        raised.value.frame,
        raised.value.reason,
        str(raised.value),
    )
    with open_source(clip, device="cpu", backend=backend) as whole:
        assert whole.info.header_frames == whole.info.num_frames == RAMP_FRAMES


@needs_pyav
def test_pyav_reads_mpeg_ts(tmp_path: Path) -> None:
    """MPEG-TS seeks by decoding time: a seek to the first key frame's presentation time would
    land past it."""
    clip = make_grey_ramp(tmp_path / "ramp.ts", frames=40, level_step=6, gop=12)
    with PyAVSource(clip, device="cpu", batch_size=7) as source:
        assert source.info.header_frames is None  # MPEG-TS has no frame count
        assert frame_numbers(torch.cat(list(source)), 6) == list(range(40))
        indices = [39, 0, 13, 12, 25, 1]
        assert frame_numbers(source.get_frames(indices, mode="seek"), 6) == indices


def test_importing_the_package_does_not_import_torch() -> None:
    """The command line lists the backends in its help before torch loads."""
    script = (
        "import sys, adapters, adapters.backends, adapters.errors\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert adapters.VIDEO_BACKENDS == ('auto', 'torchcodec', 'pyav')\n"
        "assert 'open_source' in dir(adapters) and 'torch' not in sys.modules\n"
        "from adapters import open_source\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], env=child_env(), check=True, timeout=120)
    with pytest.raises(AttributeError, match="'adapters' has no attribute 'nothing'"):
        adapters.nothing  # noqa: B018
