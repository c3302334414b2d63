"""Both video sinks (the ffmpeg program, PyAV), checked with ffprobe: containers, audio, odd
sizes, YUV input, failures and interruptions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from adapters import (
    PyAVSink,
    SinkError,
    Terminated,
    VideoSink,
    open_sink,
    open_source,
    rgb_to_yuv420,
)
from adapters.pyav_sink import pyav_encoder_works
from adapters.sinks import video_encoder
from tests.adapters.media import make_clip, probe
from tests.processes import child_env, interruptible

BACKENDS = ["ffmpeg", "pyav"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each sink: ``VideoSink`` (the ffmpeg program) and ``PyAVSink``."""
    return request.param


def gradient_frames(count: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """uint8 (count, 3, height, width): smooth gradients that move from frame to frame."""
    y = torch.arange(height).view(1, height, 1)
    x = torch.arange(width).view(1, 1, width)
    t = torch.arange(count).view(count, 1, 1)
    channels = [(4 * x + 2 * t) % 256, (4 * y + 3 * t) % 256, (2 * x + 2 * y) % 256]
    return torch.stack([c.expand(count, height, width) for c in channels], dim=1).to(torch.uint8)


def decoded(path: Path) -> torch.Tensor:
    """Every frame of a video as uint8 RGB ``(N, 3, H, W)``."""
    with open_source(path, device="cpu", backend="pyav") as source:
        return torch.cat(list(source))


def decoded_yuv(path: Path) -> np.ndarray:
    """Every frame of a video as its decoded I420 bytes, ``(N, H * 3 // 2, W)``."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray() for frame in container.decode(video=0)])


def has_partial_file(folder: Path) -> bool:
    """Whether a sink writing ``out.*`` has created its temporary output in ``folder`` (ffmpeg
    after reading its inputs, PyAV with the first packet out of the encoder)."""
    return any(p.name.startswith(".out.partial-") for p in folder.iterdir())


def test_writes_h264_with_the_input_audio(
    clip_with_audio: Path, tmp_path: Path, backend: str
) -> None:
    output = tmp_path / "out.mp4"
    fps = Fraction(30000, 1001)
    frames = gradient_frames(30)
    size = {"width": 64, "height": 48}
    with open_sink(output, **size, fps=fps, audio_from=clip_with_audio, backend=backend) as sink:
        sink.write(frames[:8])
        sink.write(frames[8])  # a single (3, H, W) frame
        sink.write(frames[9:])
    assert sink.backend == backend and sink.encoder == video_encoder(output, backend).name
    assert sink.encoding.startswith(f"{sink.encoder} ") and sink.label in sink.encoding
    assert sink.audio == "copy" and sink.frames_written == 30
    found = probe(output)
    video = found["video"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert (video["width"], video["height"]) == (64, 48)
    assert video["fps"] == fps and video["packets"] == 30
    tags = ("color_space", "color_primaries", "color_transfer", "color_range", "chroma_location")
    assert [video[tag] for tag in tags] == ["bt709", "bt709", "bt709", "tv", "center"]
    assert found["audio"] is not None and found["audio"]["codec_name"] == "aac"
    assert float(found["format"]["duration"]) == pytest.approx(1.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize(
    ("name", "codecs"),
    [
        ("out.mov", ("h264", "aac")),
        ("out.m4v", ("h264", "aac")),
        ("out.webm", ("vp9", "opus")),  # WebM takes neither H.264 nor AAC
    ],
)
def test_containers_users_expect(
    clip_with_audio: Path, tmp_path: Path, backend: str, name: str, codecs: tuple[str, str]
) -> None:
    output = tmp_path / name
    size = {"width": 64, "height": 48}
    with open_sink(output, **size, fps=25, audio_from=clip_with_audio, backend=backend) as sink:
        sink.write(gradient_frames(10))
    found = probe(output)
    assert (found["video"]["codec_name"], found["audio"]["codec_name"]) == codecs
    assert found["video"]["packets"] == 10 and found["video"]["color_space"] == "bt709"
    assert sink.audio == ("copy" if codecs[1] == "aac" else "opus")


def test_webm_with_av1(tmp_path: Path, backend: str) -> None:
    """What ``"auto"`` takes for WebM where VP9 is missing (see the probe test below)."""
    output = tmp_path / "out.webm"  # 64 rows at least: older SVT-AV1 refuses fewer
    with open_sink(
        output, width=64, height=64, fps=25, backend=backend, encoder="libsvtav1"
    ) as sink:
        sink.write(gradient_frames(5, height=64))
    video = probe(output)["video"]
    assert video["codec_name"] == "av1" and video["packets"] == 5
    assert sink.encoding.startswith("libsvtav1 12 crf 30 (")


def real_time_threads() -> set[int]:
    """This process's threads (Linux thread ids) that run with a real-time scheduling policy."""
    found = set()
    for name in os.listdir("/proc/self/task"):
        try:
            if os.sched_getscheduler(int(name)) in (os.SCHED_FIFO, os.SCHED_RR):
                found.add(int(name))
        except ProcessLookupError:  # ended meanwhile
            pass
    return found


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="SVT-AV1 raises threads to real-time scheduling only in a privileged Linux process",
)
def test_pyav_av1_leaves_every_thread_scheduled_as_before(tmp_path: Path) -> None:
    """SVT-AV1 opened by root switches the opening thread to real-time FIFO scheduling at the
    highest priority, and every thread started after inherits it (a later render on two cores,
    its busy threads never preempted, then never ended). The probe and the sink put them back:
    the encoder's threads as well, while it encodes."""
    assert real_time_threads() == set()
    assert pyav_encoder_works.__wrapped__("libsvtav1")  # the probe itself, not its cached answer
    assert real_time_threads() == set()
    output = tmp_path / "out.webm"
    with open_sink(
        output, width=64, height=64, fps=25, backend="pyav", encoder="libsvtav1"
    ) as sink:
        sink.write(gradient_frames(5, height=64))
        assert real_time_threads() == set()
    assert real_time_threads() == set() and probe(output)["video"]["packets"] == 5


@pytest.mark.cuda
@pytest.mark.parametrize("pixel_format", ["rgb", "yuv420p"])
def test_frames_on_cuda(tmp_path: Path, backend: str, pixel_format: str) -> None:
    frames = gradient_frames(6, height=50, width=66)
    if pixel_format == "yuv420p":
        frames = rgb_to_yuv420(frames)
    results = []
    for device in ("cuda", "cpu"):
        output = tmp_path / f"{device}.mp4"
        with open_sink(
            output, width=66, height=50, fps=25, backend=backend, pixel_format=pixel_format
        ) as sink:
            sink.write(frames.to(device))
        results.append(decoded(output))
    assert torch.equal(*results)


def test_no_audio(clip_silent: Path, tmp_path: Path, backend: str) -> None:
    for audio_from in (None, clip_silent):
        output = tmp_path / "out.mkv"
        size = {"width": 64, "height": 48}
        with open_sink(output, **size, fps=25, audio_from=audio_from, backend=backend) as sink:
            sink.write(gradient_frames(5))
        assert sink.audio is None
        found = probe(output)
        assert found["audio"] is None and found["video"]["packets"] == 5


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path: Path, backend: str) -> None:
    # Unsigned 8-bit PCM: Matroska holds it, MP4 does not (in FFmpeg 5.1 or the wheel's).
    clip = make_clip(tmp_path / "pcm.mkv", audio="pcm_u8")
    for name, mode, codec in [
        ("out.mp4", "aac", "aac"),
        ("out.mkv", "copy", "pcm_u8"),
        ("out.webm", "opus", "opus"),
    ]:
        size = {"width": 64, "height": 48}
        with open_sink(tmp_path / name, **size, fps=25, audio_from=clip, backend=backend) as sink:
            sink.write(gradient_frames(25))
        assert sink.audio == mode
        found = probe(tmp_path / name)
        assert found["audio"]["codec_name"] == codec
        assert float(found["format"]["duration"]) == pytest.approx(1.0, abs=0.1)


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path: Path, backend: str) -> None:
    frames = torch.zeros(4, 3, 49, 65, dtype=torch.uint8)
    frames[:, :, :, -1] = torch.tensor([250, 30, 30], dtype=torch.uint8).view(1, 3, 1)
    frames[:, :, -1, :] = torch.tensor([30, 30, 250], dtype=torch.uint8).view(1, 3, 1)
    frames[:, :, -1, -1] = 255
    output = tmp_path / "odd.mp4"
    with open_sink(output, width=65, height=49, fps=25, backend=backend) as sink:
        sink.write(frames)
    assert sink.encoded_size == (66, 50)
    video = probe(output)["video"]
    assert (video["width"], video["height"]) == (66, 50) and video["packets"] == 4
    first = decoded(output)[:1].int()
    # The added column repeats the red last column, the added row the blue last row.
    assert (first[:, 0, 8:40, 65] > 180).all() and (first[:, 2, 8:40, 65] < 100).all()
    assert (first[:, 2, 49, 8:50] > 180).all() and (first[:, 0, 49, 8:50] < 100).all()


def test_colours_survive_a_round_trip(tmp_path: Path, backend: str) -> None:
    colours = torch.tensor([[200, 50, 100], [20, 220, 60], [128, 128, 128], [250, 250, 10]])
    frames = colours.to(torch.uint8).view(4, 3, 1, 1).expand(4, 3, 48, 64)
    with open_sink(tmp_path / "solid.mp4", width=64, height=48, fps=25, backend=backend) as sink:
        sink.write(frames)
    centre = decoded(tmp_path / "solid.mp4")[:, :, 16:32, 16:48].float().mean(dim=(2, 3))
    assert (centre - colours.float()).abs().max() <= 3, centre


def test_yuv_frames_reach_the_encoder_unchanged(tmp_path: Path, backend: str) -> None:
    """I420 input is encoded as it is (lossless x264 gives the bytes back); RGB input is
    converted as ``rgb_to_yuv420`` defines it, to within one level."""
    rgb = gradient_frames(5, height=50, width=66)
    yuv = rgb_to_yuv420(rgb)
    for pixel_format, frames in [("yuv420p", yuv), ("rgb", rgb)]:
        output = tmp_path / f"{pixel_format}.mkv"
        with open_sink(
            output, width=66, height=50, fps=25, crf=0, backend=backend, pixel_format=pixel_format
        ) as sink:
            sink.write(frames[:2])
            sink.write(frames[2])  # a single (H * 3 // 2, W) frame
            sink.write(frames[3:])
        difference = np.abs(decoded_yuv(output).astype(int) - yuv.numpy().astype(int))
        assert difference.max() <= (0 if pixel_format == "yuv420p" else 1), pixel_format
        assert difference.mean() < 0.05


def test_rgb_and_yuv_input_give_the_same_picture(tmp_path: Path, backend: str) -> None:
    """The shared contract: the same frames as RGB or as I420 decode to the same picture, the
    source within codec tolerance."""
    source = gradient_frames(10)
    pictures = {}
    for pixel_format, frames in [("rgb", source), ("yuv420p", rgb_to_yuv420(source))]:
        output = tmp_path / f"{pixel_format}.mp4"
        with open_sink(
            output, width=64, height=48, fps=25, backend=backend, pixel_format=pixel_format
        ) as sink:
            sink.write(frames)
        pictures[pixel_format] = decoded(output).float()
    for picture in pictures.values():
        assert (picture - source.float()).abs().mean() < 4
    # The inputs differ by a rounding at most (one level), the outputs by that and codec noise.
    assert (pictures["rgb"] - pictures["yuv420p"]).abs().mean() < 1


def test_awkward_file_names(
    clip_with_audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # Relative names FFmpeg would read as an option ("-...") or a protocol ("a:...").
    monkeypatch.chdir(tmp_path)
    Path("a:clip.mp4").write_bytes(clip_with_audio.read_bytes())
    with open_source("a:clip.mp4", device="cpu") as source:
        assert source.info.has_audio
        size = {"width": 64, "height": 48}
        with open_sink(
            "-out.mp4", **size, fps=25, audio_from="a:clip.mp4", backend=backend
        ) as sink:
            for batch in source:
                sink.write(batch)
    found = probe(tmp_path / "-out.mp4")
    assert found["video"]["packets"] == 30 and found["audio"] is not None


def test_exception_inside_the_block_leaves_nothing(tmp_path: Path, backend: str) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"an older render")
    with (
        pytest.raises(RuntimeError, match="render failed"),
        open_sink(output, width=64, height=48, fps=25, backend=backend) as sink,
    ):
        deadline = time.monotonic() + 30
        while not has_partial_file(tmp_path):
            assert time.monotonic() < deadline, "the sink never created its temporary file"
            sink.write(gradient_frames(1))
        raise RuntimeError("render failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert output.read_bytes() == b"an older render"


def test_closing_while_another_thread_writes(tmp_path: Path, backend: str) -> None:
    sink = open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend=backend)
    writing, errors = threading.Event(), []

    def write_until_closed() -> None:
        try:
            while True:
                sink.write(gradient_frames(1))
                writing.set()
        except RuntimeError as error:
            errors.append(error)

    writer = threading.Thread(target=write_until_closed)
    with pytest.raises(KeyError), sink:
        writer.start()
        assert writing.wait(30)
        raise KeyError("the render failed")
    writer.join(30)
    assert not writer.is_alive()
    [error] = errors  # the writer stopped with a plain error, however far it had got
    assert "was closed" in str(error) or "needs an open sink" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error(tmp_path: Path, backend: str) -> None:
    with (
        pytest.raises(SinkError, match="no frames"),
        open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend=backend),
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
            open_sink(output, width=64, height=48, fps=25, audio_from=clip_with_audio)
    assert clip_with_audio.read_bytes() == before


def test_encoder_failure_is_one_line_with_its_error(tmp_path: Path, backend: str) -> None:
    sink_type = VideoSink if backend == "ffmpeg" else PyAVSink
    if sink_type.encoder_works("h264_nvenc"):
        pytest.skip("NVENC works here: it cannot be made to fail")
    with (
        pytest.raises(SinkError) as raised,
        open_sink(
            tmp_path / "out.mp4", width=64, height=48, fps=25, backend=backend, encoder="h264_nvenc"
        ) as sink,
    ):  # a named encoder is not probed: it fails when opened (PyAV) or at the first frame
        for _ in range(50):  # the encoder stops at the first frame; a write or the close notices
            sink.write(gradient_frames(1))
    message = str(raised.value)
    assert "failed writing" in message and "\n" not in message
    assert "no error output" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"preset": "nonsense"}, "preset must be one of ultrafast, superfast"),
        ({"crf": 52}, "crf must be from 0"),
        ({"encoder": "h265"}, "encoder must be one of"),
        ({"encoder": "libvpx-vp9"}, r".mp4 holds H.264: the encoder must be one of"),
        ({"pixel_format": "nv12"}, "pixel_format must be one of rgb, yuv420p"),
    ],
)
def test_bad_encoding_options_are_refused_before_the_encoder_starts(
    tmp_path: Path, backend: str, options: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        open_sink(
            tmp_path / "out.mp4",
            width=64,
            height=48,
            fps=25,
            backend=backend,
            **{"encoder": "libx264", **options},
        )
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SinkError, match="ffmpeg not found"):
        VideoSink(tmp_path / "out.mp4", width=64, height=48, fps=25)


def test_without_the_ffmpeg_program_pyav_encodes(
    clip_with_audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare machine (no FFmpeg program, no network) still writes videos, with their audio."""
    with open_sink(tmp_path / "with.mp4", width=64, height=48, fps=25) as sink:
        sink.write(gradient_frames(2))
    assert isinstance(sink, VideoSink)  # the program, where there is one
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg, no ffprobe
    output = tmp_path / "without.mp4"
    size = {"width": 64, "height": 48}
    with open_sink(output, **size, fps=25, audio_from=clip_with_audio) as sink:
        sink.write(gradient_frames(30))
    assert isinstance(sink, PyAVSink) and sink.audio == "copy"
    monkeypatch.undo()
    found = probe(output)
    assert found["video"]["packets"] == 30 and found["audio"]["codec_name"] == "aac"


def test_auto_takes_the_first_encoder_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NVENC may be listed and fail (H100, H200, A100 have none): only a probe encode tells."""
    working = {"h264_nvenc": False, "libx264": True, "libvpx-vp9": False, "libsvtav1": False}
    monkeypatch.setattr(PyAVSink, "encoder_works", classmethod(lambda cls, name: working[name]))
    sink = open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend="pyav")
    assert sink.encoder == "libx264"
    working["h264_nvenc"] = True
    sink = open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend="pyav")
    assert sink.encoder == "h264_nvenc" and sink.encoding == "h264_nvenc p4 crf 20 (PyAV)"
    with pytest.raises(SinkError, match=r"PyAV has no working encoder for \.webm"):
        open_sink(tmp_path / "out.webm", width=64, height=48, fps=25, backend="pyav")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path: Path, backend: str) -> None:
    size = {"width": 64, "height": 48, "fps": 25, "backend": backend}
    with pytest.raises(SinkError, match="has no extension"):
        open_sink(tmp_path / "out", **size)
    with pytest.raises(SinkError, match=r"not a video container .*\(\.avi\).*\.mp4, .*\.webm"):
        open_sink(tmp_path / "out.avi", **size)
    with pytest.raises(SinkError, match="no such folder"):
        open_sink(tmp_path / "missing" / "out.mp4", **size)
    with pytest.raises(ValueError, match="even width and height"):
        open_sink(tmp_path / "out.mp4", width=65, height=48, fps=25, pixel_format="yuv420p")
    with open_sink(tmp_path / "out.mp4", **size) as sink:
        with pytest.raises(ValueError, match=r"uint8 \(B, 3, 48, 64\)"):
            sink.write(torch.zeros(1, 3, 48, 63, dtype=torch.uint8))
        sink.write(gradient_frames(1))
    with open_sink(tmp_path / "out.mp4", **size, pixel_format="yuv420p") as sink:
        with pytest.raises(ValueError, match=r"uint8 \(B, 72, 64\) I420"):
            sink.write(gradient_frames(1))
        sink.write(rgb_to_yuv420(gradient_frames(1)))
    with pytest.raises(RuntimeError, match="open sink"):
        sink.write(rgb_to_yuv420(gradient_frames(1)))


def test_sigterm_raises_only_while_open(tmp_path: Path, backend: str) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend=backend) as sink:
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # else the next line kills
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
            sink.write(gradient_frames(1))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_application_sigterm_handler_is_left_alone(tmp_path: Path, backend: str) -> None:
    def handler(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with open_sink(tmp_path / "out.mp4", width=64, height=48, fps=25, backend=backend) as sink:
            assert signal.getsignal(signal.SIGTERM) is handler
            sink.write(gradient_frames(1))
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


CHILD = textwrap.dedent(
    """
    import faulthandler, sys, time
    faulthandler.dump_traceback_later(45)  # on stderr, should it hang (the test shows it)
    import torch
    from adapters import open_sink

    frame = torch.zeros(1, 3, 48, 64, dtype=torch.uint8)
    with open_sink(sys.argv[1], width=64, height=48, fps=25, backend=sys.argv[2]) as sink:
        sink.write(frame)
        process = getattr(sink, "_process", None)  # the ffmpeg program's, if it has one
        print(process.pid if process else 0, flush=True)
        while True:
            sink.write(frame)
            time.sleep(0.01)
    """
)


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "Terminated")]
)
def test_interrupted_encode_leaves_nothing(
    tmp_path: Path, backend: str, signum: int, raised: str
) -> None:
    output = tmp_path / "out.mp4"
    # The child imports this checkout's adapters, whatever is installed.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(output), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        text=True,
        preexec_fn=interruptible,
    )
    try:
        ffmpeg_pid = int(child.stdout.readline())
        deadline = time.monotonic() + 30
        while not has_partial_file(tmp_path):  # the child is mid-encode from then on
            assert time.monotonic() < deadline, "the sink never created its temporary file"
            time.sleep(0.01)
        child.send_signal(signum)
        try:
            _, stderr = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            try:
                _, stderr = child.communicate(timeout=10)
            except subprocess.TimeoutExpired as error:  # a process it started holds its pipes
                stderr = f"(its pipes stayed open after it was killed) {error.stderr!r}"
            pytest.fail(f"no exit within 60 s of the signal; the child's stderr:\n{stderr}")
    finally:
        child.kill()
    assert child.returncode != 0
    assert raised in stderr
    assert list(tmp_path.iterdir()) == []
    if ffmpeg_pid:
        with pytest.raises(ProcessLookupError):
            os.kill(ffmpeg_pid, 0)
