"""``open_source``: the right frame source for a path."""

from __future__ import annotations

from pathlib import Path

import torch

from adapters.base import FrameSource
from adapters.errors import SourceError
from adapters.image_sources import FolderSource, ImageSource
from adapters.images import is_image
from adapters.info import FpsLike
from adapters.video_source import TorchCodecSource

__all__ = ["open_source"]


def open_source(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    decode_device: str = "auto",
    batch_size: int = 8,
    fps: FpsLike | None = None,
) -> FrameSource:
    """Open ``path`` as a stream of uint8 ``(B, 3, H, W)`` batches.

    - a folder: ``FolderSource`` (numbered images in natural order);
    - a still image, recognised by its content whatever its name: ``ImageSource`` (one frame);
    - anything else: ``TorchCodecSource`` (a video file).

    ``device`` is where batches are delivered and ``decode_device`` where a video is decoded (see
    ``TorchCodecSource``); ``fps`` is the frame rate of a folder or a still image (default 25),
    while a video keeps its own.

    Raises:
        SourceError: missing path, empty folder, or a file that is neither an image nor a video.
    """
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, device=device, batch_size=batch_size, fps=fps)
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if is_image(path):
        return ImageSource(path, device=device, batch_size=batch_size, fps=fps)
    return TorchCodecSource(path, device=device, decode_device=decode_device, batch_size=batch_size)
