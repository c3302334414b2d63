"""The FFmpeg command-line tools: finding them, asking ffprobe, probing encoders.

``VideoSink`` pipes frames to ``ffmpeg`` (``PyAVSink`` needs neither program); ``ffprobe`` ships
with it. ffprobe answers "is there an audio stream" because it lists every stream of the file,
whether or not a decoder for it is installed, which is exactly what ``ffmpeg -map`` can copy.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

from adapters.errors import AdapterError

__all__ = ["audio_codec", "encoder_works", "executable", "ffmpeg_path", "last_line"]

_PROBE_TIMEOUT_S = 30


def executable(name: str, error: type[AdapterError]) -> str:
    """The full path of ``name`` (``"ffmpeg"`` or ``"ffprobe"``) on ``PATH``, else ``error``."""
    found = shutil.which(name)
    if found is None:
        raise error(f"{name} not found on PATH: install FFmpeg (e.g. apt-get install ffmpeg)")
    return found


def ffmpeg_path(path: str | Path) -> str:
    """``path`` as FFmpeg must get it: absolute, so that ``-x.mp4`` is not read as an option and
    ``a:b.mp4`` not as protocol ``a``."""
    return str(Path(path).absolute())


def last_line(stderr: bytes | str) -> str:
    """The last non-empty line of a tool's error output, or a placeholder when it said nothing."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def audio_codec(path: str | Path, error: type[AdapterError]) -> str | None:
    """The codec name of the first audio stream of ``path`` (``"aac"``), or ``None`` if none.

    Raises ``error`` when ffprobe is missing or cannot read the file.
    """
    command = [
        executable("ffprobe", error),
        *("-v", "error", "-select_streams", "a:0"),
        *("-show_entries", "stream=codec_type,codec_name", "-of", "json"),
        ffmpeg_path(path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise error(f"ffprobe timed out reading {path}") from None
    if result.returncode != 0:
        raise error(f"ffprobe cannot read {path}: {last_line(result.stderr)}")
    streams = json.loads(result.stdout or b"{}").get("streams", [])
    return streams[0].get("codec_name", "unknown") if streams else None


@functools.cache
def encoder_works(ffmpeg: str, encoder: str) -> bool:
    """Whether this ``ffmpeg`` really encodes a frame with ``encoder`` (cached per process).

    ``ffmpeg -encoders`` lists NVENC wherever FFmpeg was built with it, including on GPUs that have
    no NVENC (H100, H200, A100), so only an encode tells.
    """
    command = [
        ffmpeg,
        *("-v", "error", "-nostdin", "-f", "lavfi", "-i", "color=black:size=256x256:rate=1"),
        *("-frames:v", "1", "-c:v", encoder, "-f", "null", "-"),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
