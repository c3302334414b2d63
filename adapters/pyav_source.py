"""``PyAVSource``: video files decoded on the CPU by PyAV, with the FFmpeg its wheel carries.

It decodes where torchcodec cannot (no system FFmpeg libraries, or a torchcodec build that does
not match the installed torch), loads far less than torchcodec (which imports torch._dynamo), and
gives the tests an independent decoder to check the frames of the others against.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapters.base import FrameSource, Layout
from adapters.errors import DecodeError, SourceError, first_line
from adapters.info import VideoInfo, as_fraction
from adapters.metadata import FileStamp

if TYPE_CHECKING:
    import av

__all__ = ["PyAVSource", "pyav_problem"]


@functools.cache
def pyav_problem() -> str | None:
    """Why PyAV cannot decode here, or ``None`` when it can."""
    try:
        import av  # noqa: F401
    except ImportError:
        return "PyAV is not installed (pip install av)"
    return None


class PyAVSource(FrameSource):
    """A video file decoded by PyAV on the CPU, frame for frame the same as ``TorchCodecSource``.

    Args:
        path: the video file.
        device: where frames are delivered (decoding is always on the CPU).
        batch_size: frames per batch.
        layout: ``"NCHW"`` or ``"NHWC"``.
        num_threads: FFmpeg's decoding threads; 0 lets FFmpeg choose.

    Opening scans the packets once (no decoding) for the presentation time of every frame and the
    positions of the key frames, then decodes the first frame (which also proves the stream
    decodes), so that ``info.num_frames`` is exact and frame ``i`` is the ``i``-th in display
    order, as with torchcodec. The display rotation of the video is applied to the frames.

    Raises:
        SourceError: missing file, PyAV not installed, no video stream, unreadable or corrupt file.
    """

    backend = "pyav"
    native_layout = "NHWC"
    decode_device = "cpu"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        layout: Layout = "NCHW",
        num_threads: int = 0,
    ) -> None:
        super().__init__(path, device=device, batch_size=batch_size, layout=layout)
        if not self.path.is_file():
            raise SourceError(f"no such file: {self.path}")
        if (problem := pyav_problem()) is not None:
            raise SourceError(f"cannot decode {self.path}: {problem}")
        self.decoder = "pyav (cpu)"
        self._num_threads = num_threads
        self._container: av.container.InputContainer | None = None
        self._open()

    def _load(self, stamp: FileStamp) -> None:
        import av

        self._close_container()
        try:
            self._container = av.open(str(self.path))
            streams = self._container.streams.video
            if not streams:
                raise SourceError(f"cannot decode {self.path} as a video: no video stream")
            self._stream = streams[0]
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = self._num_threads
            self._scan()
            first = self._decode_at([0])
        except av.error.FFmpegError as error:
            self._close_container()
            raise SourceError(
                f"cannot decode {self.path} as a video: {pyav_reason(error)}"
            ) from None
        except BaseException:
            self._close_container()
            raise
        height, width = first.shape[1:3]
        self.info = self._read_info(width, height)

    def _scan(self) -> None:
        """Index the frames by presentation time from the packets (no decoding)."""
        assert self._container is not None
        times: list[int] = []
        key_times: dict[int, int] = {}  # presentation time of each key frame -> time to seek to
        for packet in self._container.demux(self._stream):
            if packet.pts is None:  # the empty packet that ends the stream
                continue
            times.append(packet.pts)
            if packet.is_keyframe:
                # Its decoding time, earlier with B-frames: an MPEG-TS seek to a key frame's
                # presentation time lands past the key frame, one to its decoding time on it.
                dts = packet.pts if packet.dts is None else packet.dts
                key_times[packet.pts] = min(packet.pts, dts)
        if not times:
            raise SourceError(f"no decodable video frames in {self.path}")
        self._times = sorted(times)
        self._index_of_time = {time: index for index, time in enumerate(self._times)}
        # Key frame index -> the time a seek to it asks for.
        self._seek_times = {self._index_of_time[pts]: time for pts, time in key_times.items()}
        self._key_frames = sorted(self._seek_times) or [0]
        self._frames: Iterator[av.VideoFrame] = iter(())
        self._next: int | None = None  # index of the next frame out of self._frames, if known

    @property
    def key_frames(self) -> list[int]:
        """The indices of the key frames, ascending: the frames where decoding can start."""
        return list(self._key_frames)

    def _read_info(self, width: int, height: int) -> VideoInfo:
        assert self._container is not None
        stream, num_frames = self._stream, len(self._times)
        rate = stream.average_rate or stream.guessed_rate
        if rate is None:
            raise SourceError(f"no frame rate in {self.path}")
        fps = as_fraction(Fraction(rate))
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(num_frames / fps)
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            duration_seconds=duration,
            has_audio=bool(self._container.streams.audio),
            codec=stream.codec_context.name,
            header_frames=stream.frames or None,
        )

    def _decode_at(self, indices: list[int]) -> torch.Tensor:
        frames = []
        for target in indices:
            if self._must_seek(target):
                self._seek(target)
            frames.append(self._decode_to(target))
        return torch.stack(frames)

    def _decode_stream(self, start: int, indices: list[int]) -> torch.Tensor:
        if self._must_seek(start):
            self._seek(start)
        return torch.stack([self._decode_to(target) for target in indices])

    def _must_seek(self, target: int) -> bool:
        """Whether reaching ``target`` needs a jump: it is behind the decoder, or a key frame
        lies after the decoder's next frame and at or before ``target``."""
        if self._next is None or target < self._next:
            return True
        key = self._key_frames[bisect.bisect_right(self._key_frames, target) - 1]
        return key > self._next

    def _seek(self, target: int) -> None:
        """Position the decoder at the key frame at or before ``target``."""
        assert self._container is not None
        key = self._key_frames[max(bisect.bisect_right(self._key_frames, target) - 1, 0)]
        time = self._seek_times.get(key, self._times[key])
        self._container.seek(time, backward=True, any_frame=False, stream=self._stream)
        self._frames = self._container.decode(self._stream)
        self._next = key

    def _decode_to(self, target: int) -> torch.Tensor:
        """Decode forward to frame ``target``: uint8 ``(H, W, 3)``, rotated for display."""
        import av

        try:
            for frame in self._frames:
                index = self._index_of_time.get(frame.pts)
                if index is None:
                    continue
                self._next = index + 1
                if index < target:  # decoded on the way, never converted
                    continue
                if index > target:
                    break
                pixels = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                quarter_turns = round((frame.rotation or 0) / 90)
                return torch.rot90(pixels, quarter_turns, (0, 1)) if quarter_turns else pixels
        except av.error.FFmpegError as error:
            self._next = None
            raise DecodeError(self.path, target, pyav_reason(error)) from None
        self._next = None
        raise DecodeError(self.path, target, "frame not found")

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def close(self) -> None:
        """Close the file."""
        super().close()
        self._close_container()


def pyav_reason(error: Exception) -> str:
    """PyAV's message without its errno prefix and file name."""
    return getattr(error, "strerror", None) or first_line(error)
