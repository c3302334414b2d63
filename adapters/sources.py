"""``open_source``: the right frame source for a path; ``probe`` and ``find_media`` around it."""

from __future__ import annotations

from pathlib import Path

import torch

from adapters.backends import VIDEO_BACKENDS
from adapters.base import FrameSource, Layout
from adapters.errors import SourceError
from adapters.image_sources import FRAME_SUFFIXES, FolderSource, ImageSource, natural_sort_key
from adapters.images import is_image
from adapters.info import FpsLike, VideoInfo
from adapters.pyav_source import PyAVSource, pyav_problem
from adapters.video_source import TorchCodecSource, torchcodec_problem

__all__ = ["VIDEO_BACKENDS", "VIDEO_SUFFIXES", "find_media", "open_source", "probe"]

VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".ogv", ".3gp", ".gif",
)  # fmt: skip


def open_source(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    decode_device: str = "auto",
    backend: str = "auto",
    batch_size: int = 8,
    layout: Layout = "NCHW",
    fps: FpsLike | None = None,
    pattern: str | None = None,
    num_threads: int = 0,
) -> FrameSource:
    """Open ``path`` for reading frames (see ``FrameSource`` for the ways to read them).

    - a folder: ``FolderSource`` (numbered images in natural order, or as ``pattern`` numbers
      them);
    - a still image, recognised by its content whatever its name: ``ImageSource`` (one frame);
    - anything else, a video file, decoded by ``backend``: ``"torchcodec"`` (``TorchCodecSource``,
      CPU or NVDEC as ``decode_device`` says), ``"pyav"`` (``PyAVSource``, CPU), or
      ``"auto"``: torchcodec when it works here, else PyAV when installed.

    What was chosen is on the source: ``backend``, ``device``, ``decoder`` (``"torchcodec
    (cuda)"``). ``device`` is where frames are delivered, ``fps`` the frame rate of a folder or a
    still image (default 25); a video keeps its own. ``num_threads`` is the video decoder's CPU
    threads (0: FFmpeg chooses; 1 when many decoders run side by side).

    Raises:
        SourceError: missing path, empty folder, a file that is neither an image nor a video, or
            no usable video decoder.
    """
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(VIDEO_BACKENDS)}, got {backend!r}")
    path = Path(path)
    if path.is_dir():
        return FolderSource(
            path, device=device, batch_size=batch_size, layout=layout, fps=fps, pattern=pattern
        )
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if is_image(path):
        return ImageSource(path, device=device, batch_size=batch_size, layout=layout, fps=fps)
    if _video_backend(backend) == "pyav":
        if decode_device == "cuda":
            raise ValueError("PyAV decodes on the CPU: use decode_device='cpu' or 'auto'")
        return PyAVSource(
            path, device=device, batch_size=batch_size, layout=layout, num_threads=num_threads
        )
    return TorchCodecSource(
        path,
        device=device,
        decode_device=decode_device,
        batch_size=batch_size,
        layout=layout,
        num_threads=num_threads,
    )


def _video_backend(backend: str) -> str:
    """``backend`` with ``"auto"`` resolved: torchcodec if usable, else PyAV if installed."""
    if backend != "auto":
        return backend
    if torchcodec_problem() is None or pyav_problem() is not None:
        return "torchcodec"  # when neither works, torchcodec's error says why
    return "pyav"


def probe(path: str | Path, *, backend: str = "auto", fps: FpsLike | None = None) -> VideoInfo:
    """The ``VideoInfo`` of a video, folder of frames or image, without decoding its frames
    (a video's metadata is cached per file version: see ``adapters.metadata``)."""
    with open_source(path, device="cpu", decode_device="cpu", backend=backend, fps=fps) as source:
        return source.info


def find_media(folder: str | Path) -> list[Path]:
    """The inputs in ``folder``, in natural order of their names: video files (by extension,
    ``VIDEO_SUFFIXES``) and subfolders holding frame images (``FRAME_SUFFIXES``).

    Hidden entries are skipped; nothing is opened, so an input may still fail to decode.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"no such folder: {folder}")
    media = [
        entry
        for entry in folder.iterdir()
        if not entry.name.startswith(".")
        and (
            (entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES)
            or (entry.is_dir() and any(_is_frame_file(child) for child in entry.iterdir()))
        )
    ]
    return sorted(media, key=lambda entry: natural_sort_key(entry.name))


def _is_frame_file(path: Path) -> bool:
    return path.suffix.lower() in FRAME_SUFFIXES and not path.name.startswith(".")
