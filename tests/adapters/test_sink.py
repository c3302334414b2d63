"""VideoSink: H.264 output checked with ffprobe, audio, odd sizes, failures and interruptions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from adapters import SinkError, Terminated, VideoSink, open_source
from adapters.ffmpeg import nvenc_works
from tests.adapters.media import make_clip, probe
from tests.processes import child_env


def gradient_frames(count: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """uint8 (count, 3, height, width): smooth gradients that move from frame to frame."""
    y = torch.arange(height).view(1, height, 1)
    x = torch.arange(width).view(1, 1, width)
    t = torch.arange(count).view(count, 1, 1)
    channels = [(4 * x + 2 * t) % 256, (4 * y + 3 * t) % 256, (2 * x + 2 * y) % 256]
    return torch.stack([c.expand(count, height, width) for c in channels], dim=1).to(torch.uint8)


def wait_for_partial_file(folder: Path, timeout_s: float = 30) -> None:
    """Wait until ffmpeg has created its temporary output (after it has probed the input)."""
    deadline = time.monotonic() + timeout_s
    while not any(p.name.startswith(".out.partial-") for p in folder.iterdir()):
        assert time.monotonic() < deadline, "ffmpeg never created its temporary file"
        time.sleep(0.01)


def test_writes_h264_with_the_input_audio(clip_with_audio: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    fps = Fraction(30000, 1001)
    frames = gradient_frames(30)
    with VideoSink(output, width=64, height=48, fps=fps, audio_from=clip_with_audio) as sink:
        sink.write(frames[:8])
        sink.write(frames[8])  # a single (3, H, W) frame
        sink.write(frames[9:])
    assert sink.encoder == ("h264_nvenc" if nvenc_works(sink._ffmpeg) else "libx264")
    assert sink.audio == "copy" and sink.frames_written == 30
    found = probe(output)
    video = found["video"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert (video["width"], video["height"]) == (64, 48)
    assert video["fps"] == fps and video["packets"] == 30
    assert video["color_space"] == "bt709"
    assert found["audio"] is not None and found["audio"]["codec_name"] == "aac"
    assert float(found["format"]["duration"]) == pytest.approx(1.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_frames_on_cuda(tmp_path: Path) -> None:
    frames = gradient_frames(6, height=49, width=65)
    with VideoSink(tmp_path / "gpu.mp4", width=65, height=49, fps=25) as sink:
        sink.write(frames.cuda())
    with VideoSink(tmp_path / "cpu.mp4", width=65, height=49, fps=25) as sink:
        sink.write(frames)
    decoded = []
    for name in ("gpu.mp4", "cpu.mp4"):
        with open_source(tmp_path / name, device="cpu", decode_device="cpu") as source:
            decoded.append(torch.cat(list(source)))
    assert torch.equal(*decoded)


def test_no_audio(clip_silent: Path, tmp_path: Path) -> None:
    for audio_from in (None, clip_silent):
        output = tmp_path / "out.mkv"
        with VideoSink(output, width=64, height=48, fps=25, audio_from=audio_from) as sink:
            sink.write(gradient_frames(5))
        assert sink.audio is None
        found = probe(output)
        assert found["audio"] is None and found["video"]["packets"] == 5


def test_audio_the_container_cannot_hold_becomes_aac(tmp_path: Path) -> None:
    pcm_clip = make_clip(tmp_path / "pcm.mkv", audio="pcm_s16le")
    with VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25, audio_from=pcm_clip) as sink:
        sink.write(gradient_frames(25))
    assert sink.audio == "aac"
    assert probe(tmp_path / "out.mp4")["audio"]["codec_name"] == "aac"
    with VideoSink(tmp_path / "out.mkv", width=64, height=48, fps=25, audio_from=pcm_clip) as sink:
        sink.write(gradient_frames(25))
    assert sink.audio == "copy"
    assert probe(tmp_path / "out.mkv")["audio"]["codec_name"] == "pcm_s16le"


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path: Path) -> None:
    frames = torch.zeros(4, 3, 49, 65, dtype=torch.uint8)
    frames[:, :, :, -1] = torch.tensor([250, 30, 30], dtype=torch.uint8).view(1, 3, 1)
    frames[:, :, -1, :] = torch.tensor([30, 30, 250], dtype=torch.uint8).view(1, 3, 1)
    frames[:, :, -1, -1] = 255
    output = tmp_path / "odd.mp4"
    with VideoSink(output, width=65, height=49, fps=25) as sink:
        sink.write(frames)
    assert sink.encoded_size == (66, 50)
    video = probe(output)["video"]
    assert (video["width"], video["height"]) == (66, 50) and video["packets"] == 4
    with open_source(output, device="cpu") as source:
        decoded = next(iter(source)).int()
    # The added column repeats the red last column, the added row the blue last row.
    assert (decoded[:, 0, 8:40, 65] > 180).all() and (decoded[:, 2, 8:40, 65] < 100).all()
    assert (decoded[:, 2, 49, 8:50] > 180).all() and (decoded[:, 0, 49, 8:50] < 100).all()


def test_colours_survive_a_round_trip(tmp_path: Path) -> None:
    colours = torch.tensor([[200, 50, 100], [20, 220, 60], [128, 128, 128], [250, 250, 10]])
    frames = colours.to(torch.uint8).view(4, 3, 1, 1).expand(4, 3, 48, 64)
    with VideoSink(tmp_path / "solid.mp4", width=64, height=48, fps=25) as sink:
        sink.write(frames)
    with open_source(tmp_path / "solid.mp4", device="cpu") as source:
        decoded = torch.cat(list(source))
    centre = decoded[:, :, 16:32, 16:48].float().mean(dim=(2, 3))
    assert (centre - colours.float()).abs().max() <= 3, centre


def test_awkward_file_names(
    clip_with_audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative names FFmpeg would read as an option ("-...") or a protocol ("a:...").
    monkeypatch.chdir(tmp_path)
    Path("a:clip.mp4").write_bytes(clip_with_audio.read_bytes())
    with open_source("a:clip.mp4", device="cpu") as source:
        assert source.info.has_audio
        output = VideoSink("-out.mp4", width=64, height=48, fps=25, audio_from="a:clip.mp4")
        with output as sink:
            for batch in source:
                sink.write(batch)
    assert probe(tmp_path / "-out.mp4")["video"]["packets"] == 30


def test_exception_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"an older render")
    with (
        pytest.raises(RuntimeError, match="render failed"),
        VideoSink(output, width=64, height=48, fps=25) as sink,
    ):
        sink.write(gradient_frames(10))
        wait_for_partial_file(tmp_path)
        raise RuntimeError("render failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert output.read_bytes() == b"an older render"


def test_no_frames_is_an_error(tmp_path: Path) -> None:
    with (
        pytest.raises(SinkError, match="no frames"),
        VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_output_must_not_be_the_input(clip_with_audio: Path, tmp_path: Path) -> None:
    before = clip_with_audio.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(clip_with_audio)
    roundabout = clip_with_audio.parent / ".." / clip_with_audio.parent.name / clip_with_audio.name
    for output in (clip_with_audio, link, roundabout):
        with pytest.raises(SinkError, match="is the input"):
            VideoSink(output, width=64, height=48, fps=25, audio_from=clip_with_audio)
    assert clip_with_audio.read_bytes() == before


def test_ffmpeg_failure_is_one_line_with_its_error(tmp_path: Path) -> None:
    with (
        pytest.raises(SinkError) as raised,
        VideoSink(
            tmp_path / "out.nonsense", width=64, height=48, fps=25, encoder="libx264"
        ) as sink,
    ):
        for _ in range(50):  # ffmpeg stops at the first frame; a write or the close notices
            sink.write(gradient_frames(1))
    message = str(raised.value)
    assert message.startswith("ffmpeg failed writing") and "\n" not in message
    assert "no error output" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"preset": "nonsense"}, "preset must be one of ultrafast, superfast"),
        ({"crf": 52}, "crf must be from 0"),
        ({"encoder": "h265"}, "encoder must be one of"),
    ],
)
def test_bad_encoding_options_are_refused_before_ffmpeg_starts(
    tmp_path: Path, options: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        VideoSink(
            tmp_path / "out.mp4", width=64, height=48, fps=25, **{"encoder": "libx264", **options}
        )
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SinkError, match="ffmpeg not found"):
        VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="no extension"):
        VideoSink(tmp_path / "out", width=64, height=48, fps=25)
    with pytest.raises(SinkError, match="no such folder"):
        VideoSink(tmp_path / "missing" / "out.mp4", width=64, height=48, fps=25)
    with pytest.raises(ValueError, match="encoder"):
        VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25, encoder="x265")
    with VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25) as sink:
        with pytest.raises(ValueError, match=r"uint8 \(B, 3, 48, 64\)"):
            sink.write(torch.zeros(1, 3, 48, 63, dtype=torch.uint8))
        sink.write(gradient_frames(1))


def test_sigterm_raises_only_while_open(tmp_path: Path) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25) as sink:
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # else the next line kills
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
            sink.write(gradient_frames(1))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_application_sigterm_handler_is_left_alone(tmp_path: Path) -> None:
    def handler(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25) as sink:
            assert signal.getsignal(signal.SIGTERM) is handler
            sink.write(gradient_frames(1))
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    from adapters import VideoSink

    frame = torch.zeros(1, 3, 48, 64, dtype=torch.uint8)
    with VideoSink(sys.argv[1], width=64, height=48, fps=25) as sink:
        sink.write(frame)
        print(sink._process.pid, flush=True)
        while True:
            sink.write(frame)
            time.sleep(0.01)
    """
)


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "Terminated")]
)
def test_interrupted_encode_leaves_nothing(tmp_path: Path, signum: int, raised: str) -> None:
    output = tmp_path / "out.mp4"
    # The child imports this checkout's adapters, whatever is installed.
    env = child_env()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        ffmpeg_pid = int(child.stdout.readline())
        wait_for_partial_file(tmp_path)  # the child is mid-encode from here on
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode != 0
    assert raised in stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(ffmpeg_pid, 0)
