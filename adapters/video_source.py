"""``TorchCodecSource``: video files decoded by torchcodec (FFmpeg), on the GPU where it can."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapters.base import FrameSource
from adapters.errors import SourceError, first_line
from adapters.ffmpeg import audio_codec, ffmpeg_path
from adapters.info import VideoInfo, as_fraction

if TYPE_CHECKING:
    from torchcodec.decoders import VideoDecoder

__all__ = ["TorchCodecSource"]

# torchcodec prefixes errors from its C++ core with "function, /path/to/file.cpp:123, ".
_CPP_LOCATION = re.compile(r"^\w+, \S+:\d+, ")
# Set when the installed torchcodec turns out to be a build without CUDA decoding.
_cuda_decode_unsupported = False


class TorchCodecSource(FrameSource):
    """A video file (any container and codec the system's FFmpeg decodes) through torchcodec.

    Args:
        path: the video file.
        device: where batches are delivered: ``"auto"`` (CUDA if available), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, or a ``torch.device``.
        decode_device: where frames are decoded. ``"auto"`` and ``"cuda"`` decode on the GPU
            (NVDEC) when CUDA is available and the installed torchcodec build supports CUDA
            decoding, else on the CPU (``"cuda"`` then warns); ``"cpu"`` always decodes on the
            CPU. The choice is tried when the file opens, never at import. ``decode_device``
            says what was used.
        batch_size: frames per batch.
        num_threads: FFmpeg's CPU decoding threads; 0 lets FFmpeg choose.

    Opening scans the file's packets once (no decoding) so that ``info.num_frames`` is exact and
    every frame is delivered once, in order, also for variable-frame-rate files; ``info.fps`` is
    then the average rate. Audio presence comes from ffprobe.

    Raises:
        SourceError: missing file, no video stream, unreadable or corrupt file, ffprobe missing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        decode_device: str = "auto",
        batch_size: int = 8,
        num_threads: int = 0,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if decode_device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"decode_device must be auto, cpu or cuda, got {decode_device!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"no such file: {self.path}")
        self._decoder: VideoDecoder | None
        self._decoder, self.decode_device = self._open(decode_device, num_threads)
        self.decoder = f"torchcodec ({self.decode_device})"
        metadata = self._decoder.metadata
        rate = metadata.average_fps or metadata.average_fps_from_header
        if not (metadata.num_frames and metadata.width and metadata.height and rate):
            raise SourceError(f"no decodable video frames in {self.path}")
        fps = as_fraction(rate)
        self.info = VideoInfo(
            width=metadata.width,
            height=metadata.height,
            fps=fps,
            num_frames=metadata.num_frames,
            duration_seconds=metadata.duration_seconds or float(metadata.num_frames / fps),
            has_audio=audio_codec(self.path, SourceError) is not None,
            codec=metadata.codec or "unknown",
        )

    def _open(self, decode_device: str, num_threads: int) -> tuple[VideoDecoder, str]:
        """A decoder on the GPU when asked for and possible, else on the CPU."""
        global _cuda_decode_unsupported
        from torchcodec.decoders import VideoDecoder  # loads FFmpeg: only when a video is opened

        source = ffmpeg_path(self.path)
        options = {"dimension_order": "NHWC", "num_ffmpeg_threads": num_threads}
        if decode_device != "cpu":
            if torch.cuda.is_available() and not _cuda_decode_unsupported:
                gpu = str(self.device) if self.device.type == "cuda" else "cuda"
                try:
                    return VideoDecoder(source, device=gpu, **options), gpu
                except Exception as error:  # fall back to the CPU, which reports file errors
                    _cuda_decode_unsupported = "Unsupported device" in str(error)
                    why = _reason(error)
            else:
                why = "no CUDA device" if not torch.cuda.is_available() else "CPU-only torchcodec"
            if decode_device == "cuda":
                warnings.warn(f"decoding {self.path} on the CPU: {why}", stacklevel=3)
        try:
            return VideoDecoder(source, device="cpu", **options), "cpu"
        except Exception as error:
            raise SourceError(f"cannot decode {self.path} as a video: {_reason(error)}") from None

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._decoder is None:
            raise ValueError(f"{self.path}: the source is closed")
        total = self.info.num_frames or 0
        for start in range(0, total, self.batch_size):
            stop = min(start + self.batch_size, total)
            try:
                # Consecutive ranges decode forward without seeking back.
                frames = self._decoder.get_frames_in_range(start, stop).data
            except Exception as error:
                raise SourceError(
                    f"decoding {self.path} failed at frame {start}: {_reason(error)}"
                ) from None
            yield frames.to(self.device).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        """Drop the decoder (torchcodec frees it with the last reference)."""
        self._decoder = None


def _reason(error: Exception) -> str:
    """torchcodec's message for ``error`` on one line, without its C++ source location."""
    if isinstance(error, ValueError) and "best video stream is unknown" in str(error):
        return "no video stream"
    return _CPP_LOCATION.sub("", first_line(error))
