"""``FrameSource``: the interface every frame source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

import torch

from adapters.info import VideoInfo

__all__ = ["FrameSource", "resolve_device"]


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


class FrameSource(ABC):
    """Frames of a video, a folder of images or a single image, streamed in batches.

    Iterating yields uint8 ``(B, 3, H, W)`` contiguous RGB tensors on ``device``, with
    ``1 <= B <= batch_size`` (only the last batch may be short), in display order, starting from
    the first frame on every new iteration. At most one batch is decoded at a time, so memory
    does not grow with the length of the video. Use as a context manager, or call ``close()``.

    Attributes:
        info: size, frame rate, frame count, audio presence, codec (``VideoInfo``).
        device: where the yielded batches live.
        batch_size: the largest batch yielded.
        decoder: what decodes the frames, for reports (``"torchcodec (cuda)"``, ``"pillow"``).
    """

    info: VideoInfo
    decoder: str

    def __init__(self, *, device: str | torch.device, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = batch_size

    @abstractmethod
    def __iter__(self) -> Iterator[torch.Tensor]:
        """uint8 ``(B, 3, H, W)`` batches on ``self.device``, from the first frame."""

    def close(self) -> None:  # noqa: B027 - sources without resources keep this no-op
        """Release the decoder. Sources that hold nothing open have nothing to do."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
