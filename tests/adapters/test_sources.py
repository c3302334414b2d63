"""Frame sources: metadata, batches, order, routing and errors."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from PIL import Image

from adapters import (
    FolderSource,
    ImageSource,
    SourceError,
    TorchCodecSource,
    VideoInfo,
    natural_sort_key,
    open_source,
)
from tests.adapters.media import make_clip, probe


def solid_png(path: Path, level: int, size: tuple[int, int] = (16, 12)) -> Path:
    Image.new("RGB", size, (level, level, level)).save(path, format="PNG")
    return path


@pytest.mark.parametrize("clip", ["clip_with_audio", "clip_silent"])
def test_video_metadata_matches_ffprobe(clip: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(clip)
    expected = probe(path)
    with open_source(path, device="cpu") as source:
        info = source.info
        assert isinstance(source, TorchCodecSource)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (expected["video"]["width"], expected["video"]["height"])
    assert isinstance(info.fps, Fraction) and info.fps == expected["video"]["fps"]
    assert info.num_frames == expected["video"]["packets"]
    assert info.has_audio == (expected["audio"] is not None)
    assert info.codec == "h264"
    assert info.duration_seconds == pytest.approx(info.num_frames / info.fps, rel=0.02)


def test_ntsc_rate_is_exact(clip_with_audio: Path) -> None:
    with open_source(clip_with_audio, device="cpu") as source:
        assert source.info.fps == Fraction(30000, 1001)
        assert source.info.num_frames == 30
        assert source.info.has_audio


def test_batches_are_uint8_nchw_on_the_device(clip_with_audio: Path) -> None:
    with open_source(clip_with_audio, device="cpu", batch_size=8) as source:
        batches = list(source)
        again = sum(len(batch) for batch in source)  # every iteration starts from frame 0
    assert [batch.shape[0] for batch in batches] == [8, 8, 8, 6]
    for batch in batches:
        assert batch.dtype == torch.uint8
        assert batch.shape[1:] == (3, 48, 64)
        assert batch.device == torch.device("cpu")
        assert batch.is_contiguous()
    assert again == 30


def test_frames_come_in_order(grey_ramp: Path) -> None:
    with open_source(grey_ramp, device="cpu", batch_size=4) as source:
        frames = torch.cat(list(source))
    assert frames.shape[0] == 25
    levels = frames.float().mean(dim=(1, 2, 3))
    expected = 10 * torch.arange(25, dtype=torch.float32)
    assert torch.allclose(levels, expected, atol=3), levels


def test_decoding_is_streamed_one_batch_at_a_time(grey_ramp: Path) -> None:
    with TorchCodecSource(grey_ramp, device="cpu", batch_size=4) as source:
        decoder = source._decoder
        requested: list[tuple[int, int]] = []
        decode_range = decoder.get_frames_in_range

        def spy(start: int, stop: int):
            requested.append((start, stop))
            return decode_range(start, stop)

        decoder.get_frames_in_range = spy
        first = next(iter(source))
        assert requested == [(0, 4)] and first.shape[0] == 4
        for _ in source:
            pass
    assert max(stop - start for start, stop in requested) <= 4


def test_odd_sized_video(media: Path) -> None:
    full_chroma = ("-c:v", "libx264", "-pix_fmt", "yuv444p")  # 4:2:0 needs even sizes
    clip = make_clip(media / "odd.mkv", size="65x49", audio=None, video=full_chroma)
    with open_source(clip, device="cpu", batch_size=10) as source:
        assert (source.info.width, source.info.height) == (65, 49)
        batch = next(iter(source))
    assert batch.shape == (10, 3, 49, 65)


def test_cpu_decode_when_asked(clip_silent: Path) -> None:
    with TorchCodecSource(clip_silent, device="cpu", decode_device="cpu") as source:
        assert source.decode_device == "cpu"
        assert source.decoder == "torchcodec (cpu)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_decode_falls_back_to_cpu_without_cuda(clip_silent: Path) -> None:
    with pytest.warns(UserWarning, match="on the CPU"):
        source = TorchCodecSource(clip_silent, device="cpu", decode_device="cuda")
    with source:
        assert source.decode_device == "cpu"
        assert next(iter(source)).device == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA"):
        TorchCodecSource(clip_silent, device="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("decode_device", ["auto", "cpu"])
def test_batches_on_cuda(clip_silent: Path, decode_device: str) -> None:
    with open_source(clip_silent, device="cuda", decode_device=decode_device) as source:
        batch = next(iter(source))
    with open_source(clip_silent, device="cpu", decode_device="cpu") as source:
        reference = next(iter(source))
    assert batch.device.type == "cuda" and batch.dtype == torch.uint8 and batch.is_contiguous()
    # NVDEC and FFmpeg convert YUV to RGB with slightly different rounding.
    assert (batch.cpu().int() - reference.int()).abs().float().mean() < 2


def test_natural_sort_key() -> None:
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame02b.png", "a9_2.png", "a10_1.png"]
    assert sorted(names, key=natural_sort_key) == [
        "a9_2.png",
        "a10_1.png",
        "Frame1.png",
        "frame2.png",
        "frame02b.png",
        "frame10.png",
    ]


def test_folder_source_natural_order(tmp_path: Path) -> None:
    for index in (1, 2, 10, 3):
        solid_png(tmp_path / f"frame{index}.png", 20 * index)
    (tmp_path / "notes.txt").write_text("not a frame")
    solid_png(tmp_path / ".hidden.png", 255)
    with open_source(tmp_path, device="cpu", batch_size=3) as source:
        assert isinstance(source, FolderSource)
        assert [path.name for path in source.files] == [
            "frame1.png",
            "frame2.png",
            "frame3.png",
            "frame10.png",
        ]
        batches = list(source)
    assert [batch.shape for batch in batches] == [(3, 3, 12, 16), (1, 3, 12, 16)]
    levels = [int(frame[0, 0, 0]) for frame in torch.cat(batches)]
    assert levels == [20, 40, 60, 200]
    assert source.info == VideoInfo(
        width=16,
        height=12,
        fps=Fraction(25),
        num_frames=4,
        duration_seconds=0.16,
        has_audio=False,
        codec="png",
    )


def test_folder_source_fps_and_size_mismatch(tmp_path: Path) -> None:
    solid_png(tmp_path / "1.png", 0)
    solid_png(tmp_path / "2.png", 0, size=(8, 8))
    source = FolderSource(tmp_path, device="cpu", fps=Fraction(30000, 1001))
    assert source.info.fps == Fraction(30000, 1001)
    with pytest.raises(SourceError, match=r"2\.png is 8x8 but the first frame is 16x12"):
        list(source)


def test_image_source_is_one_frame(tmp_path: Path) -> None:
    # Routed by content: a PNG with a name that says nothing.
    path = solid_png(tmp_path / "still.dat", 90)
    with open_source(path, device="cpu", fps=10) as source:
        assert isinstance(source, ImageSource)
        batches = list(source)
    assert [batch.shape for batch in batches] == [(1, 3, 12, 16)]
    assert source.info.num_frames == 1 and source.info.fps == 10
    assert source.info.codec == "png" and not source.info.has_audio


def test_video_named_like_an_image_is_decoded_as_video(clip_silent: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "clip.png"
    disguised.write_bytes(clip_silent.read_bytes())
    with open_source(disguised, device="cpu") as source:
        assert isinstance(source, TorchCodecSource)
        assert source.info.num_frames == 25


def assert_one_line_source_error(path: Path, match: str) -> None:
    with pytest.raises(SourceError, match=match) as raised:
        open_source(path, device="cpu")
    message = str(raised.value)
    assert "\n" not in message and ".cpp" not in message, message


def test_missing_path(tmp_path: Path) -> None:
    assert_one_line_source_error(tmp_path / "nope.mp4", "no such file or folder")


def test_empty_folder(tmp_path: Path) -> None:
    assert_one_line_source_error(tmp_path, "no frames in folder")


def test_truncated_video(clip_with_audio: Path, tmp_path: Path) -> None:
    data = clip_with_audio.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_source_error(truncated, "cannot decode .*truncated.mp4 as a video")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    assert_one_line_source_error(fake, "cannot decode .*fake.mp4 as a video: .*Invalid data")


def test_audio_only_file(tmp_path: Path) -> None:
    from tests.adapters.media import ffmpeg

    tone = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", str(tone))
    assert_one_line_source_error(tone, "no video stream")


def test_fps_is_checked(tmp_path: Path) -> None:
    solid_png(tmp_path / "1.png", 0)
    with pytest.raises(ValueError, match="positive"):
        FolderSource(tmp_path, fps=0)
    assert math.isclose(float(FolderSource(tmp_path, fps=29.97).info.fps), 29.97)
