"""Frame sources decoded by Pillow: one still image, or a folder of numbered images."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import torch

from adapters.base import FrameSource
from adapters.errors import SourceError
from adapters.images import image_format, read_image
from adapters.info import FpsLike, VideoInfo, as_fraction

__all__ = ["DEFAULT_FPS", "FRAME_SUFFIXES", "FolderSource", "ImageSource", "natural_sort_key"]

DEFAULT_FPS = Fraction(25)
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def natural_sort_key(name: str) -> tuple[tuple[int | str, ...], str]:
    """Sort key comparing runs of digits as numbers: ``frame2`` < ``frame10``, ``a9_2`` < ``a10_1``.

    Text runs compare case-insensitively; names equal under that rule (``f01``, ``f1``) fall back
    to plain string order.
    """
    runs = re.split(r"(\d+)", name)  # text, digits, text, ...: digit runs at odd positions
    return tuple(int(run) if i % 2 else run.casefold() for i, run in enumerate(runs)), name


def _info(frame: torch.Tensor, fps: Fraction, num_frames: int, codec: str) -> VideoInfo:
    return VideoInfo(
        width=frame.shape[-1],
        height=frame.shape[-2],
        fps=fps,
        num_frames=num_frames,
        duration_seconds=float(num_frames / fps),
        has_audio=False,
        codec=codec,
    )


class ImageSource(FrameSource):
    """A single still image as a one-frame video (decoded once, when the source opens).

    ``fps`` (default 25) sets ``info.fps`` and a duration of one frame.
    """

    decoder = "pillow"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        fps: FpsLike | None = None,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.path = Path(path)
        self._frame = read_image(self.path)
        fps = as_fraction(DEFAULT_FPS if fps is None else fps)
        self.info = _info(self._frame, fps, 1, image_format(self.path))

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield self._frame[None].to(self.device)


class FolderSource(FrameSource):
    """A folder of numbered images, one per frame, in natural order of their names.

    The frames are the folder's files (not its subfolders) whose extension is one of
    ``FRAME_SUFFIXES``, hidden files excluded, sorted by ``natural_sort_key``: ``frame2.png``
    comes before ``frame10.png``. All must have the size of the first; the first is decoded when
    the source opens, the others as they are iterated. ``fps`` defaults to 25.
    """

    decoder = "pillow"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        fps: FpsLike | None = None,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceError(f"no such folder: {self.path}")
        self.files = sorted(
            (
                entry
                for entry in self.path.iterdir()
                if entry.suffix.lower() in FRAME_SUFFIXES
                and not entry.name.startswith(".")
                and entry.is_file()
            ),
            key=lambda entry: natural_sort_key(entry.name),
        )
        if not self.files:
            raise SourceError(
                f"no frames in folder {self.path}: expected images named like frame1.png, "
                f"frame2.png, ... ({', '.join(FRAME_SUFFIXES)})"
            )
        first = read_image(self.files[0])
        fps = as_fraction(DEFAULT_FPS if fps is None else fps)
        self.info = _info(first, fps, len(self.files), image_format(self.files[0]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.files), self.batch_size):
            batch = [self._read(file) for file in self.files[start : start + self.batch_size]]
            yield torch.stack(batch).to(self.device)

    def _read(self, file: Path) -> torch.Tensor:
        frame = read_image(file)
        height, width = frame.shape[-2:]
        if (width, height) != (self.info.width, self.info.height):
            raise SourceError(
                f"{file} is {width}x{height} but the first frame is "
                f"{self.info.width}x{self.info.height}: all frames must have one size"
            )
        return frame
