"""``TorchCodecSource``: video files decoded by torchcodec (FFmpeg), on the GPU where it can."""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapters.backends import DECODE_DEVICES
from adapters.base import FrameSource, Layout
from adapters.errors import DecodeError, SourceError, first_line
from adapters.ffmpeg import audio_codec, ffmpeg_path
from adapters.info import VideoInfo, as_fraction
from adapters.metadata import INFO_CACHE, FileStamp

if TYPE_CHECKING:
    from torchcodec.decoders import VideoDecoder

__all__ = ["TorchCodecSource", "torchcodec_problem"]

# torchcodec prefixes errors from its C++ core with "function, /path/to/file.cpp:123, ".
_CPP_LOCATION = re.compile(r"^\w+, \S+:\d+, ")
# Set when the installed torchcodec turns out to be a build without CUDA decoding.
_cuda_decode_unsupported = False


@functools.cache
def torchcodec_problem() -> str | None:
    """Why torchcodec cannot decode here (not installed, or FFmpeg libraries it cannot load), or
    ``None`` when it can. Loads FFmpeg on the first call only."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as error:  # ImportError, or RuntimeError/OSError loading libtorchcodec
        return first_line(error)
    return None


class TorchCodecSource(FrameSource):
    """A video file (any container and codec the system's FFmpeg decodes) through torchcodec.

    Args:
        path: the video file.
        device: where frames are delivered: ``"auto"`` (CUDA if available), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, or a ``torch.device``.
        decode_device: where frames are decoded. ``"auto"`` and ``"cuda"`` decode on the GPU
            (NVDEC) when CUDA is available and the installed torchcodec build supports CUDA
            decoding, else on the CPU (``"cuda"`` then warns); ``"cpu"`` always decodes on the
            CPU. The choice is tried when the file opens, never at import. ``decode_device``
            says what was used.
        batch_size: frames per batch.
        layout: ``"NCHW"`` or ``"NHWC"``.
        num_threads: FFmpeg's CPU decoding threads; 0 lets FFmpeg choose.

    Opening scans the file's packets once (no decoding) so that ``info.num_frames`` is exact and
    frame ``i`` is the ``i``-th frame in display order, also for variable-frame-rate files;
    ``info.fps`` is then the average rate. Audio presence comes from ffprobe. ``"seek"`` reads use
    torchcodec's ``get_frames_at``, which jumps to a key frame only when one lies ahead of the
    frame wanted and converts only the wanted frames; ``"stream"`` reads decode whole ranges.

    Raises:
        SourceError: missing file, no video stream, unreadable or corrupt file, ffprobe missing,
            torchcodec unusable here.
    """

    backend = "torchcodec"
    native_layout = "NHWC"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        decode_device: str = "auto",
        batch_size: int = 8,
        layout: Layout = "NCHW",
        num_threads: int = 0,
    ) -> None:
        super().__init__(path, device=device, batch_size=batch_size, layout=layout)
        if decode_device not in DECODE_DEVICES:
            raise ValueError(f"decode_device must be auto, cpu or cuda, got {decode_device!r}")
        if not self.path.is_file():
            raise SourceError(f"no such file: {self.path}")
        if (problem := torchcodec_problem()) is not None:
            raise SourceError(f"torchcodec cannot decode {self.path}: {problem}")
        self._requested_decode_device = decode_device
        self._num_threads = num_threads
        self._decoder: VideoDecoder | None = None
        self._open()

    def _load(self, stamp: FileStamp) -> None:
        self._decoder, self.decode_device = self._open_decoder()
        self.decoder = f"torchcodec ({self.decode_device})"
        self.info = INFO_CACHE.get(self.backend, stamp, self._read_info)

    def _read_info(self) -> VideoInfo:
        assert self._decoder is not None
        metadata = self._decoder.metadata
        rate = metadata.average_fps or metadata.average_fps_from_header
        if not (metadata.num_frames and metadata.width and metadata.height and rate):
            raise SourceError(f"no decodable video frames in {self.path}")
        fps = as_fraction(rate)
        return VideoInfo(
            width=metadata.width,
            height=metadata.height,
            fps=fps,
            num_frames=metadata.num_frames,
            duration_seconds=metadata.duration_seconds or float(metadata.num_frames / fps),
            has_audio=audio_codec(self.path, SourceError) is not None,
            codec=metadata.codec or "unknown",
            header_frames=metadata.num_frames_from_header or None,
        )

    def _open_decoder(self) -> tuple[VideoDecoder, str]:
        """A decoder on the GPU when asked for and possible, else on the CPU."""
        global _cuda_decode_unsupported
        from torchcodec.decoders import VideoDecoder

        source = ffmpeg_path(self.path)
        options = {"dimension_order": "NHWC", "num_ffmpeg_threads": self._num_threads}
        if self._requested_decode_device != "cpu":
            if torch.cuda.is_available() and not _cuda_decode_unsupported:
                gpu = str(self.device) if self.device.type == "cuda" else "cuda"
                try:
                    return VideoDecoder(source, device=gpu, **options), gpu
                except Exception as error:  # fall back to the CPU, which reports file errors
                    _cuda_decode_unsupported = "Unsupported device" in str(error)
                    why = _reason(error)
            else:
                why = "no CUDA device" if not torch.cuda.is_available() else "CPU-only torchcodec"
            if self._requested_decode_device == "cuda":
                warnings.warn(f"decoding {self.path} on the CPU: {why}", stacklevel=5)
        try:
            return VideoDecoder(source, device="cpu", **options), "cpu"
        except Exception as error:
            reason = _reason(error).replace(source, "").replace("  ", " ")  # named once, first
            raise SourceError(f"cannot decode {self.path} as a video: {reason}") from None

    def _decode_at(self, indices: list[int]) -> torch.Tensor:
        assert self._decoder is not None  # the base class refuses reads once closed
        try:
            return self._decoder.get_frames_at(indices).data
        except Exception as error:
            raise self._failure(indices[0], error) from None

    def _decode_stream(self, start: int, indices: list[int]) -> torch.Tensor:
        decoder, stop = self._decoder, indices[-1] + 1
        assert decoder is not None
        wanted = torch.tensor(indices)
        kept = []
        for first in range(start, stop, self.batch_size):
            last = min(first + self.batch_size, stop)
            try:
                # Consecutive ranges decode forward without seeking back.
                frames = decoder.get_frames_in_range(first, last).data
            except Exception as error:
                raise self._failure(first, error) from None
            in_range = wanted[(wanted >= first) & (wanted < last)]
            kept.append(frames if len(in_range) == last - first else frames[in_range - first])
        return torch.cat(kept)

    def _failure(self, index: int, error: Exception) -> DecodeError:
        return DecodeError(self.path, index, _reason(error))

    def close(self) -> None:
        """Drop the decoder (torchcodec frees it with the last reference)."""
        super().close()
        self._decoder = None


def _reason(error: Exception) -> str:
    """torchcodec's message for ``error`` on one line, without its C++ source location."""
    if isinstance(error, ValueError) and "best video stream is unknown" in str(error):
        return "no video stream"
    return _CPP_LOCATION.sub("", first_line(error))
