"""``FrameSink``: the contract of the video sinks and everything they share but the encoding."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

import numpy as np
import torch

from adapters.encoders import (
    check_crf,
    check_preset,
    container_of,
    encoder_options,
    encoder_threads,
    pick_encoder,
)
from adapters.errors import SinkError
from adapters.info import FpsLike, as_fraction
from adapters.paths import partial_path, remove_quietly, same_file
from adapters.signals import signals_deferred, sigterm_raises

__all__ = ["COLOUR_TAGS", "PIXEL_FORMATS", "FrameSink"]

PIXEL_FORMATS = ("rgb", "yuv420p")
# How every stream is tagged, as FFmpeg codec options: BT.709 limited range, chroma sited at the
# centre of each 2x2 block (adapters.yuv), whether the frames came as RGB or as YUV.
COLOUR_TAGS = {
    "colorspace": "bt709",
    "color_primaries": "bt709",
    "color_trc": "bt709",
    "color_range": "tv",
    "chroma_sample_location": "center",
}
# Containers whose index can be moved to the front (playable while downloading).
FASTSTART_CONTAINERS = {".mp4", ".m4v", ".mov"}
_Sink = TypeVar("_Sink", bound="FrameSink")


class FrameSink(ABC):
    """Write uint8 frames, in order, to a video file, keeping an input's audio.

    Use as a context manager; ``write`` batches (or single frames) in order::

        with open_sink("out.mp4", width=w, height=h, fps=info.fps, audio_from="in.mp4") as sink:
            for batch in batches:
                sink.write(batch)

    ``write`` blocks while the encoder takes the frames: overlap it with other work from a
    thread if needed (one thread writing at a time).

    - Frames: with ``pixel_format="rgb"``, uint8 RGB ``(B, 3, H, W)`` or ``(3, H, W)``, any
      strides; with ``"yuv420p"``, uint8 I420 bytes ``(B, H * 3 // 2, W)`` or
      ``(H * 3 // 2, W)`` (``adapters.yuv``; even sizes). Any device: they are copied to the
      host. Either way the stream is YUV 4:2:0, BT.709, limited range, tagged so (RGB converted
      as ``adapters.yuv.rgb_to_yuv420`` does, within one level), for players everywhere.
    - Container and encoder: the extension picks the container (``encoders.CONTAINERS``):
      ``.mp4``, ``.m4v``, ``.mov`` and ``.mkv`` hold H.264, ``.webm`` VP9 or AV1. ``encoder``
      ``"auto"`` takes the first of the container's encoders that encodes a probe frame
      (``h264_nvenc`` before ``libx264``); ``encoder`` says which and ``encoding`` with what
      settings (preset, quality, threads, backend). ``crf`` is the quality (lower is better;
      libx264 ``crf``, NVENC ``cq``), ``preset`` the speed preset; ``None`` takes the
      encoder's defaults (``encoders.ENCODERS``).
    - Odd sizes (RGB): 4:2:0 needs even sizes, so an odd width or height is padded by one
      column or row repeating the last one (nothing of the picture is lost); ``encoded_size``
      is the size written.
    - Audio: the first audio stream of ``audio_from`` is copied when the container can hold its
      codec (checked by a trial mux), else re-encoded (AAC, or Opus for WebM); ``audio`` is
      ``"copy"``, ``"aac"``, ``"opus"`` or ``None``. Both streams are kept whole: a video is
      never cut to a shorter audio track.
    - Safety: the file is written under a hidden temporary name beside ``path`` and renamed over
      ``path`` only after a clean finish; an exception, Ctrl+C or SIGTERM (raised as
      ``Terminated`` while the sink is open) removes it, so no half-written output remains and
      an existing file at ``path`` stays as it was. ``path`` may not be ``audio_from``.

    Raises:
        SinkError: an output the sinks do not write (the extension), no such folder, output is
            the input, no working encoder, the encoder failing (one line), no frames written.
        ValueError: a bad size, pixel format, encoder, preset or quality (before any work).
    """

    backend: ClassVar[str]  # "ffmpeg" or "pyav", as open_sink names them
    label: ClassVar[str]  # the FFmpeg it uses, for messages and ``encoding``

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: FpsLike,
        audio_from: str | Path | None = None,
        encoder: str = "auto",
        crf: int | None = None,
        preset: str | None = None,
        pixel_format: str = "rgb",
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {pixel_format!r}"
            )
        if pixel_format == "yuv420p" and (width % 2 or height % 2):
            raise ValueError(f"yuv420p frames need an even width and height, got {width}x{height}")
        self.path = Path(path)
        self.container = container_of(self.path)
        if not self.path.parent.is_dir():
            raise SinkError(f"cannot write {self.path}: no such folder {self.path.parent}")
        if audio_from is not None and same_file(audio_from, self.path):
            raise SinkError(f"the output {self.path} is the input: choose another output path")
        self.width, self.height, self.fps = width, height, as_fraction(fps)
        self.pixel_format = pixel_format
        self.encoded_size = (width + width % 2, height + height % 2)
        self._prepare()
        chosen = pick_encoder(encoder, self.container, self.encoder_works, self.label)
        preset = chosen.default_preset if preset is None else preset
        crf = chosen.default_crf if crf is None else crf
        check_preset(chosen, preset)
        check_crf(chosen, crf)
        options = encoder_options(chosen, preset, crf, encoder_threads())
        self.encoder = chosen.name
        threads = f"{options['threads']} threads, " if "threads" in options else ""
        self.encoding = f"{chosen.name} {preset} crf {crf} ({threads}{self.label})"
        self._options = {**options, **COLOUR_TAGS}
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.audio = None if self.audio_from is None else self._audio_mode(self.audio_from)
        self.frames_written = 0
        self._temporary = partial_path(self.path)
        self._signals = contextlib.ExitStack()
        self._entered = self._open = False

    # ------------------------------------------------------------------ what a backend does

    @classmethod
    @abstractmethod
    def encoder_works(cls, name: str) -> bool:
        """Whether encoder ``name`` encodes a probe frame with this backend (cached per process).

        Raises ``SinkError`` (saying what to install) when the backend cannot run here.
        """

    @abstractmethod
    def _prepare(self) -> None:
        """Find what the backend needs (``SinkError`` if missing) and set up its state."""

    @abstractmethod
    def _audio_mode(self, audio_from: Path) -> str | None:
        """``"copy"`` if the container takes the first audio stream of ``audio_from`` as it is,
        else the re-encoded codec's name; ``None`` without audio."""

    @abstractmethod
    def _start(self) -> None:
        """Start encoding into ``self._temporary``."""

    @abstractmethod
    def _write(self, frames: np.ndarray) -> None:
        """Encode host frames: ``(B, 3, H', W')`` at the encoded size, or ``(B, H*3//2, W)``."""

    @abstractmethod
    def _finish(self) -> None:
        """Flush the encoders and finish ``self._temporary`` (``SinkError`` on failure)."""

    @abstractmethod
    def _stop(self) -> None:
        """Release whatever encodes, finished or not (never raises)."""

    # ------------------------------------------------------------------ the shared contract

    def __enter__(self: _Sink) -> _Sink:
        if self._entered:
            raise RuntimeError(f"a {type(self).__name__} can be entered only once")
        self._entered = True
        self._signals.enter_context(sigterm_raises())
        try:
            self._start()
        except BaseException:
            self._release()
            raise
        self._open = True
        return self

    def write(self, frames: torch.Tensor) -> None:
        """Append frames: uint8 ``(B, 3, height, width)`` or ``(3, height, width)`` RGB, or with
        ``pixel_format="yuv420p"`` ``(B, height * 3 // 2, width)`` or ``(height * 3 // 2,
        width)`` I420 bytes; any device."""
        if not self._open:
            raise RuntimeError(f"{type(self).__name__}.write needs an open sink: use a with block")
        pixels = self._host_frames(frames)
        self._write(pixels)
        self.frames_written += len(pixels)

    def _host_frames(self, frames: torch.Tensor) -> np.ndarray:
        """``frames`` checked, as a contiguous host batch at the encoded size (RGB edge-padded
        when odd)."""
        if self.pixel_format == "rgb":
            expected = (3, self.height, self.width)
        else:
            expected = (self.height * 3 // 2, self.width)
        batch = frames[None] if frames.ndim == len(expected) else frames
        if frames.dtype != torch.uint8 or tuple(batch.shape[1:]) != expected:
            layout = "" if self.pixel_format == "rgb" else " I420"
            raise ValueError(
                f"frames must be uint8 (B, {', '.join(map(str, expected))}){layout}, "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        if self.pixel_format == "rgb":
            width, height = self.encoded_size
            if width > self.width:
                batch = torch.cat([batch, batch[..., -1:]], dim=3)
            if height > self.height:
                batch = torch.cat([batch, batch[..., -1:, :]], dim=2)
        return batch.contiguous().cpu().numpy()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                if self.frames_written == 0:
                    raise SinkError(f"no frames were written to {self.path}")
                self._finish()
                try:
                    os.replace(self._temporary, self.path)
                except OSError as error:
                    raise SinkError(
                        f"cannot write {self.path}: {error.strerror or error}"
                    ) from None
        finally:
            self._release()

    def _release(self) -> None:
        """Stop the encoder, delete the temporary file, restore the signal handlers."""
        self._open = False
        try:
            with signals_deferred():
                self._stop()
                remove_quietly(self._temporary)
        finally:
            self._signals.close()  # after the deferral, which swaps the handlers meanwhile
