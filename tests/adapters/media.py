"""Test media made on the spot with FFmpeg's lavfi sources and Pillow (never downloaded)."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    """Run ffmpeg quietly; fail the test with its error output if it fails."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def make_clip(
    path: Path,
    *,
    size: str = "64x48",
    rate: str = "25",
    seconds: float = 1,
    audio: str | None = "aac",
    video: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
) -> Path:
    """A testsrc clip, with a sine tone encoded with ``audio`` (an FFmpeg codec) unless None.

    testsrc (RGB) rather than testsrc2 (YUV), which would round odd sizes down to even ones.
    """
    inputs = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio is not None:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    audio_options = ["-c:a", audio, "-shortest"] if audio is not None else []
    ffmpeg(*inputs, *video, *audio_options, str(path))
    return path


def make_grey_ramp(
    path: Path,
    *,
    frames: int = 25,
    size: tuple[int, int] = (64, 48),
    level_step: int = 10,
    gop: int | None = None,
) -> Path:
    """A 25 fps clip whose frame ``i`` is a solid grey of level ``level_step * i``.

    Lossless, unless ``gop``: a key frame every ``gop`` frames, with two B-frames between
    references, so that
    reads must really seek and frames come out of the decoder in another order than they go in.
    B-frames need lossy coding (x264 drops them when lossless) and must be forced (it would use
    none on frames this simple); at quantiser 10 a solid grey stays within a level.
    """
    width, height = size
    assert (frames - 1) * level_step <= 255, "the levels must fit in a byte"
    levels = (level_step * np.arange(frames)).astype(np.uint8)[:, None, None, None]
    pixels = np.broadcast_to(levels, (frames, height, width, 3)).tobytes()
    structure = ("-qp", "0")
    if gop:
        structure = ("-qp", "10", "-g", str(gop), "-keyint_min", str(gop), "-bf", "2")
        structure += ("-x264-params", "b-adapt=0")
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}"),
        *("-framerate", "25", "-i", "pipe:0"),
        *("-c:v", "libx264", "-pix_fmt", "yuv444p", *structure, str(path)),
        stdin=pixels,
    )
    return path


def frame_numbers(frames: torch.Tensor, level_step: int) -> list[int]:
    """The index each frame of a ``make_grey_ramp`` clip carries, from its mean grey level."""
    levels = frames.float().mean(dim=tuple(range(1, frames.ndim)))
    return (levels / level_step).round().int().tolist()


def probe(path: Path) -> dict:
    """ffprobe's view of ``path``: ``{"video": {...}, "audio": {...} or None, "format": {...}}``.

    ``video["packets"]`` counts the video packets (one per frame for these codecs).
    """
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_packets", "-show_format"),
            *("-show_entries", "stream", "-of", "json", str(path)),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    data = json.loads(result.stdout)
    streams = {}
    for stream in data["streams"]:
        streams.setdefault(stream["codec_type"], stream)
    video = streams["video"]
    video["packets"] = int(video["nb_read_packets"])
    video["fps"] = Fraction(video["r_frame_rate"])
    return {"video": video, "audio": streams.get("audio"), "format": data["format"]}


def cut_short(path: Path, keep: float = 0.6) -> Path:
    """What a download of the MP4 ``path`` that stopped leaves: the file made streamable (its
    index first, as served for downloads) and cut after ``keep`` of its bytes."""
    streamable = path.with_name(f"{path.stem}-streamable.mp4")
    ffmpeg("-i", str(path), "-c", "copy", "-movflags", "+faststart", str(streamable))
    data = streamable.read_bytes()
    cut = path.with_name(f"{path.stem}-cut.mp4")
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut
