"""``concat_videos``: video files encoded alike joined into one without re-encoding."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from adapters.encoders import container_of, reencoded_audio
from adapters.errors import SinkError
from adapters.ffmpeg import audio_codec, executable, ffmpeg_path, last_line
from adapters.frame_sink import FASTSTART_CONTAINERS
from adapters.paths import partial_path, remove_quietly

__all__ = ["concat_videos"]

_CONCAT_TIMEOUT_S = 600


def concat_videos(
    parts: Sequence[str | Path], output: str | Path, *, audio_from: str | Path | None = None
) -> None:
    """Join ``parts`` (same codec, size, frame rate and encoder settings, each starting with a
    key frame, as the sinks write them) end to end into ``output``, and add the first audio
    stream of ``audio_from`` if it has one.

    The video is stream-copied (FFmpeg's concat demuxer with ``-c copy``): every frame's bytes
    are those of its part. The audio is copied when ``output``'s container takes its codec,
    else re-encoded as a sink would (``adapters.encoders.reencoded_audio``). Written to a
    temporary file beside ``output`` and renamed when complete.

    Raises:
        SinkError: ``ffmpeg`` or ``ffprobe`` missing, no parts, or ffmpeg failing (its last
            error line).
    """
    output = Path(output)
    container = container_of(output)
    if not parts:
        raise SinkError(f"nothing to join into {output}")
    ffmpeg = executable("ffmpeg", SinkError)
    has_audio = audio_from is not None and audio_codec(audio_from, SinkError) is not None
    temporary = partial_path(output)
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "parts.txt"
        # The concat demuxer's list: one `file` line per part, quoted as it reads them.
        listing.write_text(
            "".join("file '{}'\n".format(ffmpeg_path(part).replace("'", "'\\''")) for part in parts)
        )
        command = [ffmpeg, *("-hide_banner", "-nostdin", "-loglevel", "error", "-y")]
        command += ["-f", "concat", "-safe", "0", "-i", str(listing)]
        if has_audio:
            assert audio_from is not None
            command += ["-i", ffmpeg_path(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
        else:
            command += ["-map", "0:v:0"]
        command += ["-c:v", "copy"]
        if container in FASTSTART_CONTAINERS:
            command += ["-movflags", "+faststart"]
        try:
            failure = _run([*command, "-c:a", "copy", ffmpeg_path(temporary)])
            if failure is not None and has_audio:  # the container does not take that audio
                codec = reencoded_audio(container)
                audio = ["-c:a", codec.encoder, "-b:a", str(codec.bit_rate)]
                failure = _run([*command, *audio, ffmpeg_path(temporary)])
            if failure is not None:
                raise SinkError(
                    f"ffmpeg failed joining {len(parts)} parts into {output}: {failure}"
                )
            os.replace(temporary, output)
        finally:
            remove_quietly(temporary)


def _run(command: list[str]) -> str | None:
    """Run ffmpeg; ``None`` when it succeeded, else its last error line."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=_CONCAT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {_CONCAT_TIMEOUT_S} s"
    return None if result.returncode == 0 else last_line(result.stderr)
