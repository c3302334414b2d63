"""``VideoSink``: frames in, a video file out, through an ``ffmpeg`` subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO

import numpy as np

from adapters.encoders import reencoded_audio
from adapters.errors import SinkError
from adapters.ffmpeg import audio_codec, encoder_works, executable, ffmpeg_path, last_line
from adapters.frame_sink import COLOUR_TAGS, FASTSTART_CONTAINERS, FrameSink

__all__ = ["VideoSink"]

_GBR = (1, 2, 0)  # FFmpeg's planar RGB (gbrp) stores the planes in the order G, B, R
_STDERR_TAIL_BYTES = 8192
_TRIAL_TIMEOUT_S = 60
# RGB to YUV 4:2:0 as adapters.yuv defines it: BT.709 limited range, each chroma sample the mean
# of its 2x2 block (swscale's area filter), rounded to nearest (accurate_rnd).
_RGB_TO_YUV = "scale=out_color_matrix=bt709:out_range=tv:flags=area+accurate_rnd"


class VideoSink(FrameSink):
    """A ``FrameSink`` (the contract is there) that pipes raw frames to the ``ffmpeg`` program.

    Frames go down a pipe, RGB as planar ``gbrp`` (a contiguous CPU batch is written without any
    copy) converted by ffmpeg's swscale, I420 as they are; ffmpeg is its own process, so its
    encoding never holds this process's GIL. The audio's codec is read with ``ffprobe``.

    Raises:
        SinkError: also when ``ffmpeg`` or ``ffprobe`` is not on ``PATH``.
    """

    backend = "ffmpeg"
    label = "ffmpeg"

    @classmethod
    def encoder_works(cls, name: str) -> bool:
        return encoder_works(executable("ffmpeg", SinkError), name)

    def _prepare(self) -> None:
        self._ffmpeg = executable("ffmpeg", SinkError)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def _audio_mode(self, audio_from: Path) -> str | None:
        if audio_codec(audio_from, SinkError) is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            trial = [
                self._ffmpeg,
                *("-v", "error", "-nostdin", "-i", ffmpeg_path(audio_from)),
                *("-map", "0:a:0", "-c:a", "copy", "-t", "0.1"),
                str(Path(folder) / f"trial{self.container}"),
            ]
            try:
                result = subprocess.run(trial, capture_output=True, timeout=_TRIAL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise SinkError(f"ffmpeg timed out reading the audio of {audio_from}") from None
        return "copy" if result.returncode == 0 else reencoded_audio(self.container).name

    def _command(self) -> list[str]:
        width, height = self.encoded_size
        tags = [item for name, value in COLOUR_TAGS.items() for item in (f"-{name}", value)]
        command = [self._ffmpeg, *("-hide_banner", "-nostdin", "-loglevel", "error", "-y")]
        if self.pixel_format == "rgb":
            command += ["-f", "rawvideo", "-pix_fmt", "gbrp"]
        else:  # the frames are already what the encoder takes, and tagged so: no conversion
            command += ["-f", "rawvideo", "-pix_fmt", "yuv420p", *tags]
        command += ["-video_size", f"{width}x{height}", "-framerate", str(self.fps)]
        command += ["-i", "pipe:0"]
        if (audio_from := self.audio_from) is not None and self.audio is not None:
            command += ["-i", ffmpeg_path(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
            if self.audio == "copy":
                command += ["-c:a", "copy"]
            else:
                codec = reencoded_audio(self.container)
                command += ["-c:a", codec.encoder, "-b:a", str(codec.bit_rate)]
        if self.pixel_format == "rgb":
            command += ["-vf", _RGB_TO_YUV]
        command += ["-c:v", self.encoder, "-pix_fmt", "yuv420p"]
        command += [item for name, value in self._options.items() for item in (f"-{name}:v", value)]
        if self.container in FASTSTART_CONTAINERS:
            command += ["-movflags", "+faststart"]  # index first: playable while downloading
        return [*command, ffmpeg_path(self._temporary)]

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stop)
        # Own session: Ctrl+C in the terminal reaches Python only, which then stops ffmpeg and
        # removes the temporary file, instead of ffmpeg dying first on its own.
        self._process = subprocess.Popen(
            self._command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )

    def _write(self, frames: np.ndarray) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            for frame in frames:
                if self.pixel_format == "rgb":
                    for channel in _GBR:
                        self._process.stdin.write(frame[channel])
                else:
                    self._process.stdin.write(frame)
        except (BrokenPipeError, ValueError):  # ffmpeg exited, or the sink was closed meanwhile
            if not self._open:
                raise RuntimeError("the VideoSink was closed") from None
            raise self._failure() from None

    def _failure(self) -> SinkError:
        """The error to raise when ffmpeg stopped: its last error line, once it has exited."""
        assert self._process is not None and self._stderr is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL_BYTES))
        return SinkError(f"ffmpeg failed writing {self.path}: {last_line(self._stderr.read())}")

    def _finish(self) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            raise self._failure() from None
        if self._process.wait() != 0:
            raise self._failure()

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            with contextlib.suppress(OSError):
                if self._process.stdin is not None:
                    self._process.stdin.close()
            self._process.wait()
        if self._stderr is not None:
            self._stderr.close()
