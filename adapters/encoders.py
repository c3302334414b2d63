"""The video containers the sinks write, the encoders for each, and each encoder's settings.

Both sinks (``VideoSink`` through the ``ffmpeg`` program, ``PyAVSink`` through PyAV's own
FFmpeg) encode with the same encoders and the same options, so a file does not depend on which
one wrote it. Which encoders an FFmpeg build has, and which of them really work on this machine,
only an encode tells: ``h264_nvenc`` is listed wherever FFmpeg was built with it, including on
GPUs without NVENC (H100, H200, A100). So each sink probes the candidates of a container in order
with a one-frame encode (cached per process) and takes the first that works.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.errors import SinkError

__all__ = [
    "CONTAINERS",
    "ENCODERS",
    "ENCODER_NAMES",
    "AudioCodec",
    "Encoder",
    "check_crf",
    "check_preset",
    "container_of",
    "encoder_options",
    "encoder_threads",
    "pick_encoder",
    "reencoded_audio",
]


@dataclass(frozen=True)
class Encoder:
    """A video encoder as the sinks use it.

    Attributes:
        name: FFmpeg's name for it (``"libx264"``).
        codec: the format of the stream it writes, for messages (``"H.264"``).
        presets: its speed presets, fastest first.
        default_preset: the preset used when none is given.
        crf_range: the lowest (best) and highest quality value it takes.
        default_crf: the quality used when none is given.
    """

    name: str
    codec: str
    presets: tuple[str, ...]
    default_preset: str
    crf_range: tuple[int, int]
    default_crf: int


X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)  # fmt: skip
# Why these defaults, measured: bench/README.md ("Encoding").
ENCODERS = {
    encoder.name: encoder
    for encoder in (
        Encoder("libx264", "H.264", X264_PRESETS, "superfast", (0, 51), 20),
        Encoder("h264_nvenc", "H.264", tuple(f"p{n}" for n in range(1, 8)), "p4", (0, 51), 20),
        # libvpx's speed (cpu-used): 8 fastest; 5 and up in its real-time mode.
        Encoder("libvpx-vp9", "VP9", tuple(str(n) for n in range(8, -1, -1)), "8", (0, 63), 31),
        Encoder("libsvtav1", "AV1", tuple(str(n) for n in range(13, -1, -1)), "12", (1, 63), 30),
    )
}
ENCODER_NAMES = ("auto", *ENCODERS)
# The containers written, by extension, and the encoders each holds, in order of preference.
_H264 = ("h264_nvenc", "libx264")
CONTAINERS = {
    ".mp4": _H264,
    ".m4v": _H264,
    ".mov": _H264,
    ".mkv": _H264,
    ".webm": ("libvpx-vp9", "libsvtav1"),  # WebM holds VP9 or AV1 only
}
_VP9_REALTIME_FROM = 5


@dataclass(frozen=True)
class AudioCodec:
    """What an input's audio is re-encoded to when the container cannot hold it as it is.

    Attributes:
        encoder: FFmpeg's encoder name. name: the codec, as ``sink.audio`` reports it.
        bit_rate: bits per second.
    """

    encoder: str
    name: str
    bit_rate: int


_AAC = AudioCodec("aac", "aac", 192_000)
_OPUS = AudioCodec("libopus", "opus", 160_000)  # WebM takes Opus or Vorbis, not AAC


def container_of(path: Path) -> str:
    """The container ``path`` asks for, its extension in lower case (``".mp4"``), if the sinks
    write it; else a one-line ``SinkError`` naming the ones they do."""
    suffix = path.suffix.lower()
    if suffix in CONTAINERS:
        return suffix
    if not suffix:
        problem = "has no extension"
    else:
        problem = f"is not a video container the sinks write ({suffix})"
    names = ", ".join(CONTAINERS)
    raise SinkError(f"cannot write {path}: the name {problem}; a video output needs {names}")


def reencoded_audio(container: str) -> AudioCodec:
    """The audio codec for ``container`` when the input's cannot be copied into it."""
    return _OPUS if container == ".webm" else _AAC


def pick_encoder(
    encoder: str, container: str, works: Callable[[str], bool], where: str = "FFmpeg"
) -> Encoder:
    """The encoder a sink uses for ``container`` (a key of ``CONTAINERS``).

    ``"auto"``: the first of the container's encoders for which ``works`` (a one-frame probe
    encode) is true. A named encoder must suit the container, and is not probed (its own error
    tells if it fails). ``where`` names the FFmpeg in the error when none works.
    """
    if encoder not in ENCODER_NAMES:
        raise ValueError(f"encoder must be one of {', '.join(ENCODER_NAMES)}, got {encoder!r}")
    candidates = CONTAINERS[container]
    if encoder != "auto":
        if encoder not in candidates:
            codecs = sorted({ENCODERS[name].codec for name in candidates})
            raise ValueError(
                f"{container} holds {' or '.join(codecs)}: the encoder must be one of "
                f"{', '.join(candidates)}, got {encoder!r}"
            )
        return ENCODERS[encoder]
    for name in candidates:
        if works(name):
            return ENCODERS[name]
    raise SinkError(
        f"{where} has no working encoder for {container} (tried {', '.join(candidates)}): "
        "choose another container, such as .mp4"
    )


def check_crf(encoder: Encoder, crf: int) -> None:
    """Raise ``ValueError`` (one line) for a quality ``crf`` that ``encoder`` does not take."""
    low, high = encoder.crf_range
    if not low <= crf <= high:
        raise ValueError(f"the {encoder.name} crf must be from {low} (best) to {high}, got {crf}")


def check_preset(encoder: Encoder, preset: str) -> None:
    """Raise ``ValueError`` (one line) for a ``preset`` that ``encoder`` lacks."""
    if preset not in encoder.presets:
        raise ValueError(
            f"the {encoder.name} preset must be one of {', '.join(encoder.presets)}, got {preset!r}"
        )


def encoder_threads() -> int:
    """The encoder's threads: 1.5 per core this process may run on, x264's own choice (the
    ``ffmpeg`` program's default), made here so that ``encoding`` can say it.

    x264's frame threads wait on the rows of their reference frames, so a few more threads than
    cores keep every core busy. On a CPU pipeline the encoder shares the cores with the other
    stages, and the operating system balances them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) * 3 // 2)


def encoder_options(encoder: Encoder, preset: str, crf: int, threads: int) -> dict[str, str]:
    """FFmpeg's options for ``encoder`` (the ``ffmpeg`` program takes each as ``-NAME:v``,
    PyAV as the stream's options): the speed preset, constant quality ``crf`` and threads."""
    if encoder.name == "libx264":
        # Frame threads (x264's fastest), which the ffmpeg program asks for and PyAV does not.
        return {"preset": preset, "crf": str(crf), "threads": str(threads), "thread_type": "frame"}
    if encoder.name == "h264_nvenc":
        return {"preset": preset, "rc": "vbr", "cq": str(crf), "b": "0"}
    if encoder.name == "libvpx-vp9":
        deadline = "realtime" if int(preset) >= _VP9_REALTIME_FROM else "good"
        return {
            "deadline": deadline,
            "cpu-used": preset,
            "crf": str(crf),
            "b": "0",  # constant quality, no bit rate target
            "row-mt": "1",
            "threads": str(threads),
        }
    return {"preset": preset, "crf": str(crf)}  # libsvtav1 picks its own threads
