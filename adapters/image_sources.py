"""Frame sources decoded by Pillow: one still image, or a folder of numbered images."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import torch

from adapters.base import FrameSource, Layout
from adapters.errors import SourceError
from adapters.images import image_format, read_image
from adapters.info import FpsLike, VideoInfo, as_fraction
from adapters.metadata import FileStamp

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

    backend = "pillow"
    decoder = "pillow"
    native_layout = "NCHW"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        layout: Layout = "NCHW",
        fps: FpsLike | None = None,
    ) -> None:
        super().__init__(path, device=device, batch_size=batch_size, layout=layout)
        self._fps = as_fraction(DEFAULT_FPS if fps is None else fps)
        self._open()

    def _load(self, stamp: FileStamp) -> None:
        self._frame = read_image(self.path)
        self.info = _info(self._frame, self._fps, 1, image_format(self.path))

    def _decode_at(self, indices: list[int]) -> torch.Tensor:
        return self._frame[None]  # the only valid index is 0


class FolderSource(FrameSource):
    """A folder of numbered images, one per frame.

    Which files are frames, and in which order:

    - without ``pattern``: the folder's files (not its subfolders) whose extension is one of
      ``FRAME_SUFFIXES``, hidden files excluded, sorted by ``natural_sort_key``: ``frame2.png``
      comes before ``frame10.png``;
    - with ``pattern``, a regular expression matched against whole file names, whose first group
      is the frame number (``r"shot_(\\d+)\\.png"``): the files that match, sorted by that number.
      Two files with one number are an error.

    Frame ``i`` is the ``i``-th file in that order (``files[i]``), whatever the numbers and their
    gaps. All frames must have the size of the first; the first is decoded when the source opens,
    the others when read. ``fps`` defaults to 25.
    """

    backend = "pillow"
    decoder = "pillow"
    native_layout = "NCHW"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        layout: Layout = "NCHW",
        fps: FpsLike | None = None,
        pattern: str | None = None,
    ) -> None:
        super().__init__(path, device=device, batch_size=batch_size, layout=layout)
        if not self.path.is_dir():
            raise SourceError(f"no such folder: {self.path}")
        self.pattern = None if pattern is None else re.compile(pattern)
        if self.pattern is not None and self.pattern.groups < 1:
            raise ValueError(f"pattern {pattern!r} needs a group that captures the frame number")
        self._fps = as_fraction(DEFAULT_FPS if fps is None else fps)
        self._open()

    def _load(self, stamp: FileStamp) -> None:
        self.files = self._frame_files()
        first = read_image(self.files[0])
        self.info = _info(first, self._fps, len(self.files), image_format(self.files[0]))

    def _frame_files(self) -> list[Path]:
        entries = [
            entry
            for entry in self.path.iterdir()
            if not entry.name.startswith(".") and entry.is_file()
        ]
        if self.pattern is None:
            files = sorted(
                (entry for entry in entries if entry.suffix.lower() in FRAME_SUFFIXES),
                key=lambda entry: natural_sort_key(entry.name),
            )
            if not files:
                raise SourceError(
                    f"no frames in folder {self.path}: expected images named like frame1.png, "
                    f"frame2.png, ... ({', '.join(FRAME_SUFFIXES)})"
                )
            return files
        numbered: dict[int, Path] = {}
        for entry in entries:
            if (match := self.pattern.fullmatch(entry.name)) is None:
                continue
            number = int(match.group(1))
            if number in numbered:
                raise SourceError(
                    f"{numbered[number].name} and {entry.name} in {self.path} are both "
                    f"frame {number} by pattern {self.pattern.pattern!r}"
                )
            numbered[number] = entry
        if not numbered:
            raise SourceError(f"no file in folder {self.path} matches {self.pattern.pattern!r}")
        return [numbered[number] for number in sorted(numbered)]

    def _decode_at(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([self._read(self.files[index]) for index in indices])

    def _read(self, file: Path) -> torch.Tensor:
        frame = read_image(file)
        height, width = frame.shape[-2:]
        if (width, height) != (self.info.width, self.info.height):
            raise SourceError(
                f"{file} is {width}x{height} but the first frame is "
                f"{self.info.width}x{self.info.height}: all frames must have one size"
            )
        return frame
