"""``open_sink``: the video sink for an output; ``check_output``: whether an output can be
written, decided from its name before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

from adapters.encoders import Encoder, container_of, pick_encoder
from adapters.frame_sink import FrameSink
from adapters.images import output_image_format
from adapters.info import FpsLike
from adapters.pyav_sink import PyAVSink
from adapters.pyav_source import pyav_problem
from adapters.sink import VideoSink

__all__ = ["SINK_BACKENDS", "check_output", "open_sink", "sink_backend", "video_encoder"]

SINK_BACKENDS = ("auto", "ffmpeg", "pyav")
_SINKS: dict[str, type[FrameSink]] = {"ffmpeg": VideoSink, "pyav": PyAVSink}


def sink_backend(backend: str = "auto") -> str:
    """``backend`` with ``"auto"`` resolved: ``"ffmpeg"`` (``VideoSink``) when the ``ffmpeg``
    program is on ``PATH``, else ``"pyav"`` (``PyAVSink``) when PyAV is installed.

    Why the program first where both exist (measured, bench/README.md, "Encoding"): on the CPU
    pipeline both cost the same CPU per frame and write the same file, but PyAV's encoder
    buffers sit in the Python process: its peak RSS was 70 MiB higher.
    """
    if backend not in SINK_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(SINK_BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    if shutil.which("ffmpeg") is None and pyav_problem() is None:
        return "pyav"
    return "ffmpeg"  # when neither works, its error says to install FFmpeg


def open_sink(
    path: str | Path,
    *,
    width: int,
    height: int,
    fps: FpsLike,
    audio_from: str | Path | None = None,
    backend: str = "auto",
    encoder: str = "auto",
    crf: int | None = None,
    preset: str | None = None,
    pixel_format: str = "rgb",
) -> FrameSink:
    """A sink writing a video to ``path``: ``VideoSink`` or ``PyAVSink`` as ``sink_backend``
    picks (``backend`` names one). The arguments and what a sink does: ``FrameSink``; which it
    is: its ``backend``; what it encodes with: its ``encoding``."""
    return _SINKS[sink_backend(backend)](
        path,
        width=width,
        height=height,
        fps=fps,
        audio_from=audio_from,
        encoder=encoder,
        crf=crf,
        preset=preset,
        pixel_format=pixel_format,
    )


def video_encoder(path: str | Path, backend: str = "auto") -> Encoder:
    """The encoder a sink opened on ``path`` with ``encoder="auto"`` uses: the first of its
    container's encoders that works with ``backend`` (probed once per process).

    Raises a one-line ``SinkError`` for a container the sinks do not write, or none working.
    """
    sink = _SINKS[sink_backend(backend)]
    return pick_encoder("auto", container_of(Path(path)), sink.encoder_works, sink.label)


def check_output(path: str | Path, *, video: bool, backend: str = "auto") -> None:
    """Refuse, with a one-line ``SinkError``, an output that cannot be written as asked.

    A video needs a container the sinks write (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``,
    ``.webm``) and a working encoder for it (``video_encoder``); an image, an extension Pillow
    writes (``.png``, ``.jpg``, ``.webp``, ...). The command line and ``render_video`` call it
    before any work, so that ``-o x.jpg`` for a video, or ``-o x.avi``, fails at once rather than
    after rendering.
    """
    if video:
        video_encoder(path, backend)
    else:
        output_image_format(path)
