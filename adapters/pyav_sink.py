"""``PyAVSink``: frames in, a video file out, through the FFmpeg libraries of the PyAV wheel.

It needs no FFmpeg program: a machine with CUDA torch and the ``av`` wheel, and no network, can
write videos (its FFmpeg carries libx264, NVENC, libvpx-vp9, libsvtav1, AAC and Opus encoders).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adapters.encoders import AudioCodec, reencoded_audio
from adapters.errors import SinkError
from adapters.ffmpeg import ffmpeg_path
from adapters.frame_sink import FASTSTART_CONTAINERS, FrameSink
from adapters.paths import remove_quietly
from adapters.pyav_source import pyav_problem, pyav_reason
from adapters.scheduling import scheduling_kept

if TYPE_CHECKING:
    import av

__all__ = ["PyAVSink", "pyav_encoder_works"]

_PROBE_SIZE = 256
_OPUS_RATE = 48_000  # Opus encodes at 48 kHz (or 24, 16, 12, 8)


@functools.cache
def pyav_encoder_works(encoder: str) -> bool:
    """Whether PyAV's FFmpeg really encodes a frame with ``encoder`` (cached per process).

    An encoder may be built in and still fail here: ``h264_nvenc`` on a machine without an NVIDIA
    driver, or on GPUs without NVENC (H100, H200, A100).
    """
    import av

    try:
        context = av.CodecContext.create(encoder, "w")
        context.width = context.height = _PROBE_SIZE
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 25)
        frame = av.VideoFrame(_PROBE_SIZE, _PROBE_SIZE, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = 0
        _open_encoder(context)
        return bool(context.encode(frame) + context.encode(None))
    except (av.error.FFmpegError, ValueError, OSError):
        return False


def _open_encoder(context: av.CodecContext) -> None:
    """Open an encoder, every thread of this process scheduled after as before (SVT-AV1 opened
    by root makes threads real-time: ``adapters.scheduling``)."""
    with scheduling_kept():
        context.open()


class PyAVSink(FrameSink):
    """A ``FrameSink`` (the contract is there) that encodes in this process with PyAV.

    RGB frames are converted by PyAV's swscale (area filter, accurate rounding: within one level
    of ``adapters.yuv.rgb_to_yuv420``), I420 frames go to the encoder as they are. x264 runs its
    own frame threads and PyAV releases the GIL while FFmpeg encodes, so the Python threads of a
    pipeline keep running meanwhile. The input's audio is muxed as the video advances, so the file
    is interleaved and memory stays flat however long the video.

    Raises:
        SinkError: also when PyAV is not installed.
    """

    backend = "pyav"
    label = "PyAV"

    @classmethod
    def encoder_works(cls, name: str) -> bool:
        if (problem := pyav_problem()) is not None:
            raise SinkError(f"cannot encode: {problem}")
        return pyav_encoder_works(name)

    def _prepare(self) -> None:
        if (problem := pyav_problem()) is not None:
            raise SinkError(f"cannot write {self.path}: {problem}")
        self._output: av.container.OutputContainer | None = None
        self._audio: _AudioTrack | None = None
        self._lock = threading.Lock()  # a close waits for a write in another thread to end

    def _audio_mode(self, audio_from: Path) -> str | None:
        import av

        try:
            with av.open(ffmpeg_path(audio_from)) as source:
                if not source.streams.audio:
                    return None
                stream = source.streams.audio[0]
                with tempfile.TemporaryDirectory() as folder:
                    trial = Path(folder) / f"trial{self.container}"
                    with av.open(str(trial), "w") as output:
                        copy = output.add_stream_from_template(stream)
                        packet = next(p for p in source.demux(stream) if p.size)
                        packet.stream = copy
                        output.mux(packet)
        except (av.error.FFmpegError, ValueError, StopIteration):
            # The container refuses the codec, or the audio has no packet to try it with.
            return reencoded_audio(self.container).name
        return "copy"

    def _start(self) -> None:
        import av

        options = {"movflags": "+faststart"} if self.container in FASTSTART_CONTAINERS else {}
        try:
            self._output = av.open(ffmpeg_path(self._temporary), "w", options=options)
            self._video = self._output.add_stream(self.encoder, rate=self.fps)
            self._video.width, self._video.height = self.encoded_size
            self._video.pix_fmt = "yuv420p"
            self._video.options = self._options
            if self.audio is not None:
                assert self.audio_from is not None
                reencode = None if self.audio == "copy" else reencoded_audio(self.container)
                self._audio = _AudioTrack(self._output, self.audio_from, reencode)
        except (av.error.FFmpegError, ValueError) as error:
            raise SinkError(f"PyAV cannot write {self.path}: {pyav_reason(error)}") from None
        try:  # opened here rather than by the first frame, in the thread that opens the sink
            _open_encoder(self._video.codec_context)
        except av.error.FFmpegError as error:
            raise self._failure(error) from None

    def _write(self, frames: np.ndarray) -> None:
        import av

        with self._lock:
            if self._output is None:
                raise RuntimeError("the PyAVSink was closed")
            try:
                for index, pixels in enumerate(frames, self.frames_written):
                    frame = self._video_frame(pixels)
                    frame.pts, frame.time_base = index, 1 / self.fps
                    self._output.mux(self._video.encode(frame))
                    if self._audio is not None:  # the audio up to the end of this frame
                        self._audio.mux_until((index + 1) / self.fps)
            except av.error.FFmpegError as error:
                raise self._failure(error) from None

    def _video_frame(self, pixels: np.ndarray) -> av.VideoFrame:
        """A frame the encoder takes: ``pixels`` as I420, converted first if RGB."""
        import av
        from av.video.reformatter import ColorRange, Colorspace, Interpolation

        if self.pixel_format == "yuv420p":
            return av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        rgb = av.VideoFrame.from_ndarray(
            pixels.transpose(1, 2, 0), format="gbrp", channel_last=True
        )
        return rgb.reformat(
            format="yuv420p",
            src_color_range=ColorRange.JPEG,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            interpolation=Interpolation.AREA | Interpolation.ACCURATE_RND,
        )

    def _finish(self) -> None:
        import av

        assert self._output is not None
        try:
            self._output.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish()
            self._output.close()  # writes the index (and with faststart moves it to the front)
        except av.error.FFmpegError as error:
            raise self._failure(error) from None
        self._output = None

    def _failure(self, error: Exception) -> SinkError:
        return SinkError(f"PyAV failed writing {self.path}: {pyav_reason(error)}")

    def _stop(self) -> None:
        with self._lock:
            if self._audio is not None:
                self._audio.close()
            output, self._output = self._output, None
        if output is not None:
            # Removed first: closing an unfinished file still writes its index, and with
            # faststart would copy the whole file to move the index to the front.
            remove_quietly(self._temporary)
            with contextlib.suppress(Exception):
                output.close()


class _AudioTrack:
    """The first audio stream of a file, copied or re-encoded into an output as the video
    advances.

    Timestamps are shifted by the input's start time, as the ``ffmpeg`` program does, so the
    audio keeps its offset to the first video frame.
    """

    def __init__(
        self, output: av.container.OutputContainer, path: Path, reencode: AudioCodec | None
    ) -> None:
        """Add the audio stream to ``output`` (before its first packet): a copy of the input's
        first audio stream, or with ``reencode`` that codec."""
        import av

        self._output = output
        self._input = av.open(ffmpeg_path(path))
        source = self._input.streams.audio[0]
        self._start = self._input.start_time or 0  # in AV_TIME_BASE units (microseconds)
        self._copy = reencode is None
        if reencode is None:
            self._stream = output.add_stream_from_template(source)
        else:
            rate = _OPUS_RATE if reencode.name == "opus" else source.codec_context.sample_rate
            self._stream = output.add_stream(reencode.encoder, rate=rate)
            # The default layout of as many channels: an input's may be unnamed ("1 channels").
            self._stream.layout = av.AudioLayout(f"{len(source.codec_context.layout.channels)}c")
            self._stream.bit_rate = reencode.bit_rate
        self._packets: Iterator[av.Packet] = self._input.demux(source)
        self._pending: av.Packet | None = None

    def _offset(self, time_base: Fraction) -> int:
        """The input's start time in ``time_base`` units."""
        return round(self._start * Fraction(1, 1_000_000) / time_base)

    def mux_until(self, seconds: Fraction | None) -> None:
        """Mux the input's audio up to ``seconds`` of output time (all of it for ``None``)."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            packet = self._pending
            if packet.pts is None or packet.time_base is None:  # the empty packet at the end
                self._pending = None
                if not self._copy:  # it flushes the decoder
                    for frame in packet.decode():
                        self._encode(frame)
                continue
            offset = self._offset(packet.time_base)
            if seconds is not None and (packet.pts - offset) * packet.time_base > seconds:
                return
            self._pending = None
            if self._copy:
                packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
                packet.stream = self._stream
                self._output.mux(packet)
            else:
                for frame in packet.decode():
                    self._encode(frame)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if frame is not None and frame.pts is not None and frame.time_base is not None:
            frame.pts -= self._offset(frame.time_base)
        self._output.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Mux the rest of the input's audio and flush the encoder."""
        self.mux_until(None)
        if not self._copy:
            self._encode(None)

    def close(self) -> None:
        """Close the input (idempotent)."""
        self._input.close()
