"""``VideoInfo``: what a frame source knows about its frames before decoding them."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = ["FpsLike", "VideoInfo", "as_fraction"]

FpsLike = Fraction | int | float | str

# Frame rates are ratios of small integers (25, 30000/1001, 24000/1001); a float from a
# decoder is snapped to the nearest such ratio.
_MAX_FPS_DENOMINATOR = 1001


def as_fraction(fps: FpsLike) -> Fraction:
    """``fps`` as an exact positive ``Fraction``; floats snap to the nearest ratio over <= 1001."""
    value = Fraction(fps)
    if isinstance(fps, float):
        value = value.limit_denominator(_MAX_FPS_DENOMINATOR)
    if value <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return value


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a frame source.

    Attributes:
        width, height: frame size in pixels, as the frames are yielded (after any rotation).
        fps: frames per second, exact (``Fraction(30000, 1001)`` for NTSC). For a variable frame
            rate video, the average rate over the stream.
        num_frames: number of frames. Exact for the built-in sources (the torchcodec source
            counts the packets in an index scan when it opens the file); ``None`` is reserved for
            sources that cannot know it in advance, such as live streams.
        duration_seconds: play time of the frames.
        has_audio: whether the file holds an audio stream (always ``False`` for images).
        codec: the video codec (``"h264"``, ``"hevc"``, ...) or the image format (``"png"``).
        header_frames: the frame count that the file's header or index announces, where the
            container records one (MP4, MOV; not Matroska or MPEG-TS), else ``None``. Larger than
            ``num_frames`` when the file was cut short after its index was written.
    """

    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    duration_seconds: float
    has_audio: bool
    codec: str
    header_frames: int | None = None
