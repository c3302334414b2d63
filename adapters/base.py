"""``FrameSource``: the reader interface every backend implements.

A source reads frames three ways, all returning uint8 RGB in the source's ``layout`` on its
``device``:

- iteration: every frame in order, in batches (``for batch in source``);
- ``iter_frames(indices)``: the frames at any indices, in the order asked, in batches;
- ``get_frames(indices)``, ``get_range(start, stop, step)``, ``sample_uniform(n)``: one tensor.

How a backend reaches the frames is the ``mode``:

- ``"stream"``: one forward pass from the first wanted frame to the last, decoding every frame in
  between and keeping the wanted ones; it never seeks after the start (unless the request itself
  goes back).
- ``"seek"``: each wanted frame is reached by jumping to the key frame before it when a key frame
  lies between the decoder's position and that frame, else by decoding forward to it; only the
  wanted frames are converted to RGB.
- ``"auto"``: ``"stream"`` when the wanted frames are one contiguous run (every frame of the span is
  wanted, so both modes decode the same frames and streaming has no per-frame bookkeeping), else
  ``"seek"``: ``bench/test_bench_decode.py`` measured it faster than streaming for every sparser
  pattern with torchcodec (which converts every streamed frame to RGB), and as fast with PyAV.

Sources of independent images (a folder of frames, a still image) read any frame directly, so
both modes are the same there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal

import torch

from adapters.info import VideoInfo
from adapters.metadata import FileStamp, file_stamp

__all__ = [
    "LAYOUTS",
    "MODES",
    "FrameSource",
    "Indices",
    "Layout",
    "Mode",
    "resolve_device",
    "uniform_indices",
]

Layout = Literal["NCHW", "NHWC"]
Mode = Literal["auto", "stream", "seek"]
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC")
MODES: tuple[Mode, ...] = ("auto", "stream", "seek")
Indices = Sequence[int] | torch.Tensor


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as torch reads it.

    Raises ValueError when CUDA is asked for and there is none (rather than later, mid-stream).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return resolved


def uniform_indices(num_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``num_frames``: the middle frame of each of ``n``
    equal segments (``uniform_indices(100, 4) == [12, 37, 62, 87]``).

    Ascending; when ``n > num_frames`` some frames repeat.
    """
    if n < 1 or num_frames < 1:
        raise ValueError(f"need n >= 1 and at least one frame, got n={n}, {num_frames} frames")
    return [(2 * i + 1) * num_frames // (2 * n) for i in range(n)]


def _in_order(frames: torch.Tensor, wanted: list[int], order: list[int]) -> torch.Tensor:
    """``frames`` (one per index of the ascending, distinct ``wanted``) rearranged to follow
    ``order``, which holds the same indices in any order, repeats allowed."""
    if wanted == order:
        return frames
    row = {index: i for i, index in enumerate(wanted)}
    return frames[torch.tensor([row[index] for index in order], device=frames.device)]


class FrameSource(ABC):
    """Frames of a video, a folder of images or a single image, read in batches or by index.

    Every read returns uint8 contiguous RGB tensors on ``device``, ``(N, 3, H, W)`` for
    ``layout="NCHW"`` or ``(N, H, W, 3)`` for ``"NHWC"``. Iterating yields batches of
    ``1 <= B <= batch_size`` frames (only the last may be short), in display order, from the first
    frame on every new iteration; at most one batch is decoded at a time, so memory does not grow
    with the length of the video. Use as a context manager, or call ``close()``.

    ``info`` is read once when the source opens (see ``adapters.metadata``). Each read checks
    the file's size and modification time first; when the file has changed, the source reopens it
    and reads ``info`` again.

    Attributes:
        path: the file or folder read.
        info: size, frame rate, frame count, audio presence, codec (``VideoInfo``).
        device: where frames are delivered; it may be changed between reads (a GPU pipeline
            takes frames decoded on the CPU on the host, and uploads them itself).
        decode_device: where frames are decoded: ``"cpu"``, or the CUDA device of NVDEC.
        layout: ``"NCHW"`` or ``"NHWC"``.
        batch_size: the largest batch yielded.
        backend: what decodes, as a name: ``"torchcodec"``, ``"pyav"`` or ``"pillow"``.
        decoder: the backend and where it decodes, for reports (``"torchcodec (cuda)"``).
    """

    backend: ClassVar[str]
    decode_device: str = "cpu"
    # The layout of the tensors that ``_decode_at`` and ``_decode_stream`` return.
    native_layout: ClassVar[Layout]
    info: VideoInfo
    decoder: str

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device,
        batch_size: int,
        layout: Layout = "NCHW",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
        self.path = Path(path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.layout: Layout = layout
        self._stamp: FileStamp | None = None
        self._closed = False

    def _open(self) -> None:
        """(Re)open the path as it is now: subclasses call this last in ``__init__``."""
        stamp = file_stamp(self.path)
        self._load(stamp)
        self._stamp = stamp

    @abstractmethod
    def _load(self, stamp: FileStamp) -> None:
        """Open the decoder state for the file version ``stamp`` and set ``self.info``."""

    @abstractmethod
    def _decode_at(self, indices: list[int]) -> torch.Tensor:
        """uint8 frames at ascending, distinct, valid ``indices`` (at most ``batch_size``) in
        ``native_layout``, on any device, reached as ``"seek"`` describes."""

    def _decode_stream(self, start: int, indices: list[int]) -> torch.Tensor:
        """Like ``_decode_at``, decoding every frame from ``start <= indices[0]`` to the last.

        Sources whose frames are independent images have nothing to stream: they read directly.
        """
        return self._decode_at(indices)

    def __len__(self) -> int:
        return self.info.num_frames or 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Every frame, in order, in batches of at most ``batch_size``."""
        self._ensure_current()
        return self.iter_frames(range(len(self)), mode="stream")

    def _ensure_current(self) -> None:
        """Reopen the path if the file changed since it was opened; fail if closed."""
        if self._closed:
            raise ValueError(f"{self.path}: the source is closed")
        if self._stamp != file_stamp(self.path):
            self._open()

    def plan_mode(self, indices: Indices) -> Literal["stream", "seek"]:
        """What ``mode="auto"`` does for ``indices``: ``"stream"`` for one contiguous run of
        frames, else ``"seek"``."""
        wanted = sorted(set(self._checked(indices)))
        contiguous = not wanted or wanted[-1] - wanted[0] + 1 == len(wanted)
        return "stream" if contiguous else "seek"

    def iter_frames(self, indices: Indices, *, mode: Mode = "auto") -> Iterator[torch.Tensor]:
        """The frames at ``indices``, in that order, in batches of at most ``batch_size``.

        ``indices`` may repeat, come in any order and be negative (``-1`` is the last frame).

        Raises:
            IndexError: an index outside the video.
            SourceError: the file cannot be decoded at some frame.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be auto, stream or seek, got {mode!r}")
        self._ensure_current()
        order = self._checked(indices)
        if mode == "auto":
            mode = self.plan_mode(order)
        return self._batches(order, mode)

    def _batches(self, order: list[int], mode: str) -> Iterator[torch.Tensor]:
        position: int | None = None  # in stream mode, the next frame of the current pass
        for first in range(0, len(order), self.batch_size):
            chunk = order[first : first + self.batch_size]
            wanted = sorted(set(chunk))
            if mode == "stream":
                start = wanted[0] if position is None or position > wanted[0] else position
                frames = self._decode_stream(start, wanted)
                position = wanted[-1] + 1
            else:
                frames = self._decode_at(wanted)
            yield self._deliver(_in_order(frames, wanted, chunk))

    def get_frames(self, indices: Indices, *, mode: Mode = "auto") -> torch.Tensor:
        """uint8 ``(N, 3, H, W)`` or ``(N, H, W, 3)``: the frames at ``indices``, in that order.

        Each distinct frame is decoded once, in ascending order, whatever the order asked.
        """
        self._ensure_current()
        order = self._checked(indices)
        wanted = sorted(set(order))
        frames = list(self.iter_frames(wanted, mode=mode))
        if not frames:
            return self._empty()
        return _in_order(torch.cat(frames), wanted, order)

    def get_range(
        self, start: int = 0, stop: int | None = None, step: int = 1, *, mode: Mode = "auto"
    ) -> torch.Tensor:
        """Frames ``start:stop:step`` as Python slices them (``step=n``: every n-th frame)."""
        self._ensure_current()
        return self.get_frames(range(*slice(start, stop, step).indices(len(self))), mode=mode)

    def sample_uniform(self, n: int, *, mode: Mode = "auto") -> torch.Tensor:
        """``n`` frames spread evenly over the video (see ``uniform_indices``)."""
        self._ensure_current()
        return self.get_frames(uniform_indices(len(self), n), mode=mode)

    def _checked(self, indices: Indices) -> list[int]:
        """``indices`` as a list of non-negative ints, Python's negative indices resolved."""
        if isinstance(indices, torch.Tensor):
            if indices.ndim != 1 or indices.is_floating_point() or indices.is_complex():
                raise ValueError(f"indices must be a 1-D integer tensor, got {indices.dtype}")
            indices = indices.tolist()
        total = len(self)
        checked = []
        for index in indices:
            resolved = int(index) + total if index < 0 else int(index)
            if not 0 <= resolved < total:
                raise IndexError(f"frame {index} is outside {self.path} ({total} frames)")
            checked.append(resolved)
        return checked

    def _deliver(self, frames: torch.Tensor) -> torch.Tensor:
        """Native-layout frames on any device -> contiguous ``layout`` frames on ``device``."""
        frames = frames.to(self.device)
        if self.native_layout != self.layout:
            frames = (
                frames.permute(0, 3, 1, 2) if self.layout == "NCHW" else frames.permute(0, 2, 3, 1)
            )
        return frames.contiguous()

    def _empty(self) -> torch.Tensor:
        height, width = self.info.height, self.info.width
        shape = (0, 3, height, width) if self.layout == "NCHW" else (0, height, width, 3)
        return torch.empty(shape, dtype=torch.uint8, device=self.device)

    def close(self) -> None:
        """Release the decoder; reading afterwards raises ValueError."""
        self._closed = True

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
