"""``VideoSink``: uint8 frames in, an H.264 file out, through an ffmpeg subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
import torch

from adapters.errors import SinkError
from adapters.ffmpeg import audio_codec, executable, ffmpeg_path, last_line, nvenc_works
from adapters.info import FpsLike, as_fraction
from adapters.paths import partial_path, remove_quietly, same_file
from adapters.signals import signals_deferred, sigterm_raises

__all__ = ["ENCODERS", "ENCODER_PRESETS", "VideoSink", "check_crf", "check_preset", "pick_encoder"]

ENCODERS = ("auto", "libx264", "h264_nvenc")
# The speed presets of each encoder, fastest first. ffmpeg's own error for an unknown one names
# neither the option nor the choices, so they are checked before it starts.
ENCODER_PRESETS = {
    "libx264": (
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
        "placebo",
    ),
    "h264_nvenc": ("p1", "p2", "p3", "p4", "p5", "p6", "p7"),
}
DEFAULT_PRESETS = {"libx264": "superfast", "h264_nvenc": "p4"}
CRF_RANGE = (0, 51)
_FASTSTART_SUFFIXES = {".mp4", ".m4v", ".mov"}
_GBR = (1, 2, 0)  # FFmpeg's planar RGB (gbrp) stores the planes in the order G, B, R
_STDERR_TAIL_BYTES = 8192
_TRIAL_TIMEOUT_S = 60


def pick_encoder(encoder: str = "auto") -> str:
    """The encoder ``VideoSink(encoder=...)`` uses: ``"auto"`` is ``h264_nvenc`` when a one-frame
    probe encode succeeds (cached per process), else ``libx264``."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    if encoder != "auto":
        return encoder
    return "h264_nvenc" if nvenc_works(executable("ffmpeg", SinkError)) else "libx264"


def check_crf(crf: int) -> None:
    """Raise ``ValueError`` (one line) for a quality ``crf`` outside ``CRF_RANGE``."""
    low, high = CRF_RANGE
    if not low <= crf <= high:
        raise ValueError(f"crf must be from {low} (best) to {high}, got {crf}")


def check_preset(encoder: str, preset: str) -> None:
    """Raise ``ValueError`` (one line) for a ``preset`` that ``encoder`` (not ``"auto"``) lacks."""
    if preset not in ENCODER_PRESETS[encoder]:
        raise ValueError(
            f"the {encoder} preset must be one of {', '.join(ENCODER_PRESETS[encoder])}, "
            f"got {preset!r}"
        )


class VideoSink:
    """Write uint8 ``(B, 3, H, W)`` RGB frames to an H.264 video, keeping an input's audio.

    Use as a context manager; ``write`` batches (or single ``(3, H, W)`` frames) in order::

        with VideoSink("out.mp4", width=w, height=h, fps=info.fps, audio_from="in.mp4") as sink:
            for batch in batches:
                sink.write(batch)

    Frames go to ``ffmpeg`` as raw planar RGB on a pipe; ``write`` blocks while ffmpeg takes
    them, so overlap it with other work from a thread if needed. The output is H.264, yuv420p,
    BT.709 (tagged), for players everywhere; the container follows the extension (``.mp4``,
    ``.mkv``, ``.mov``, ...).

    - Encoder: ``"auto"`` uses ``h264_nvenc`` when a one-frame probe encode succeeds (cached per
      process), else ``libx264``; ``encoder`` says which. ``crf`` is the quality (libx264
      ``-crf``, NVENC ``-cq``; lower is better), ``preset`` the encoder's speed preset (default
      ``superfast`` for libx264, ``p4`` for NVENC).
    - Odd sizes: 4:2:0 H.264 needs even sizes, so an odd width or height is padded by one column
      or row repeating the last one (nothing of the picture is lost); ``encoded_size`` is the
      size written.
    - Audio: the first audio stream of ``audio_from`` is copied when the container can hold its
      codec (checked by a trial mux), else re-encoded to AAC; ``audio`` is ``"copy"``, ``"aac"``
      or ``None``. Both streams are kept whole (no ``-shortest``): a video is never cut to a
      shorter audio track.
    - Safety: ffmpeg writes a hidden temporary file beside ``path``, renamed over ``path`` only
      after a clean finish; an exception, Ctrl+C or SIGTERM (raised as ``Terminated`` while the
      sink is open) removes it, so no half-written output remains and an existing file at
      ``path`` stays as it was. ``path`` may not be ``audio_from``.

    Raises:
        SinkError: ffmpeg missing or failing (with its last error line), output is the input,
            no folder or no extension, no frames written.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: FpsLike,
        audio_from: str | Path | None = None,
        encoder: str = "auto",
        crf: int = 20,
        preset: str | None = None,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        self.path = Path(path)
        if not self.path.suffix:
            raise SinkError(f"{self.path} has no extension: name a container such as .mp4")
        if not self.path.parent.is_dir():
            raise SinkError(f"cannot write {self.path}: no such folder {self.path.parent}")
        if audio_from is not None and same_file(audio_from, self.path):
            raise SinkError(f"the output {self.path} is the input: choose another output path")
        self.width, self.height, self.fps = width, height, as_fraction(fps)
        self.encoded_size = (width + width % 2, height + height % 2)
        self._ffmpeg = executable("ffmpeg", SinkError)
        self.encoder = encoder = pick_encoder(encoder)
        check_crf(crf)
        if preset is not None:
            check_preset(encoder, preset)
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.audio = None if self.audio_from is None else self._audio_mode(self.audio_from)
        self.frames_written = 0
        self._temporary = partial_path(self.path)
        self._command_tail = self._encode_options(crf, preset or DEFAULT_PRESETS[encoder])
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._signals = contextlib.ExitStack()

    def _audio_mode(self, audio_from: Path) -> str | None:
        """``"copy"`` if the output container takes the audio codec as is, ``"aac"`` if not."""
        if audio_codec(audio_from, SinkError) is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            trial = [
                self._ffmpeg,
                *("-v", "error", "-nostdin", "-i", ffmpeg_path(audio_from)),
                *("-map", "0:a:0", "-c:a", "copy", "-t", "0.1"),
                str(Path(folder) / f"trial{self.path.suffix}"),
            ]
            try:
                result = subprocess.run(trial, capture_output=True, timeout=_TRIAL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise SinkError(f"ffmpeg timed out reading the audio of {audio_from}") from None
        return "copy" if result.returncode == 0 else "aac"

    def _encode_options(self, crf: int, preset: str) -> list[str]:
        """Everything of the ffmpeg command after the raw-video input."""
        options = []
        if (audio_from := self.audio_from) is not None and self.audio is not None:
            options += ["-i", ffmpeg_path(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
            options += ["-c:a", "copy"] if self.audio == "copy" else ["-c:a", "aac", "-b:a", "192k"]
        options += [
            *("-vf", "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd"),
            *("-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709"),
            *("-color_trc", "bt709", "-color_range", "tv", "-c:v", self.encoder),
        ]
        if self.encoder == "libx264":
            options += ["-preset", preset, "-crf", str(crf)]
        else:
            options += ["-preset", preset, "-rc", "vbr", "-cq", str(crf), "-b:v", "0"]
        if self.path.suffix.lower() in _FASTSTART_SUFFIXES:
            options += ["-movflags", "+faststart"]  # index first: playable while downloading
        return [*options, ffmpeg_path(self._temporary)]

    def __enter__(self) -> VideoSink:
        if self._process is not None:
            raise RuntimeError("a VideoSink can be entered only once")
        width, height = self.encoded_size
        command = [
            self._ffmpeg,
            *("-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
            *("-f", "rawvideo", "-pix_fmt", "gbrp", "-video_size", f"{width}x{height}"),
            *("-framerate", str(self.fps), "-i", "pipe:0"),
            *self._command_tail,
        ]
        self._signals.enter_context(sigterm_raises())
        self._stderr = tempfile.TemporaryFile()
        try:
            # Own session: Ctrl+C in the terminal reaches Python only, which then stops ffmpeg
            # and removes the temporary file, instead of ffmpeg dying first on its own.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,
            )
        except BaseException:
            self._release()
            raise
        return self

    def write(self, frames: torch.Tensor) -> None:
        """Append uint8 ``(B, 3, height, width)`` or ``(3, height, width)`` frames (any device)."""
        if self._process is None or self._process.stdin is None:
            raise RuntimeError("VideoSink.write needs an open sink: use it in a with block")
        batch = frames[None] if frames.ndim == 3 else frames
        expected = (3, self.height, self.width)
        if frames.dtype != torch.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(
                f"frames must be uint8 (B, {', '.join(map(str, expected))}), "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        pixels = self._planar(batch)
        try:
            for frame in pixels:
                for channel in _GBR:
                    self._process.stdin.write(frame[channel])
        except (BrokenPipeError, ValueError):  # ffmpeg exited, or the sink was closed meanwhile
            raise self._failure() from None
        self.frames_written += batch.shape[0]

    def _planar(self, batch: torch.Tensor) -> np.ndarray:
        """uint8 ``(B, 3, H', W')`` contiguous CPU pixels at the encoded size, edge-padded if odd.

        Planar like the input: ffmpeg reads it as ``gbrp`` one plane at a time, so a contiguous
        CPU batch is written without any copy (packed rgb24 would need an interleaving copy).
        """
        width, height = self.encoded_size
        if width > self.width:
            batch = torch.cat([batch, batch[..., -1:]], dim=3)
        if height > self.height:
            batch = torch.cat([batch, batch[..., -1:, :]], dim=2)
        return batch.contiguous().cpu().numpy()

    def _failure(self) -> SinkError:
        """The error to raise when ffmpeg stopped: its last error line, once it has exited."""
        assert self._process is not None and self._stderr is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL_BYTES))
        return SinkError(f"ffmpeg failed writing {self.path}: {last_line(self._stderr.read())}")

    def _finish(self) -> None:
        """Let ffmpeg write the end of the file, check it, and move it to ``path``."""
        assert self._process is not None and self._process.stdin is not None
        if self.frames_written == 0:
            raise SinkError(f"no frames were written to {self.path}")
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            raise self._failure() from None
        if self._process.wait() != 0:
            raise self._failure()
        try:
            os.replace(self._temporary, self.path)
        except OSError as error:
            raise SinkError(f"cannot write {self.path}: {error.strerror or error}") from error

    def _release(self) -> None:
        """Stop ffmpeg if still running, delete the temporary file, restore signal handlers."""
        try:
            with signals_deferred():
                if self._process is not None:
                    if self._process.poll() is None:
                        self._process.kill()
                    with contextlib.suppress(OSError):
                        if self._process.stdin is not None:
                            self._process.stdin.close()
                    self._process.wait()
                if self._stderr is not None:
                    self._stderr.close()
                remove_quietly(self._temporary)
        finally:
            self._signals.close()  # after the deferral, which swaps the handlers meanwhile

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._release()
