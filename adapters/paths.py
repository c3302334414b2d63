"""Output paths: temporary names beside the destination, "is this the same file", and folders
that can be written."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from pathlib import Path

__all__ = ["partial_path", "partials_of", "remove_quietly", "same_file", "writable_folder"]


def partial_path(final: Path) -> Path:
    """A fresh hidden name beside ``final`` with its extension: ``dir/.name.partial-1a2b3c4d.mp4``.

    Same folder, so the final ``os.replace`` is an atomic rename on the same file system; same
    extension, so ffmpeg and Pillow pick the format ``final`` asks for.
    """
    return final.with_name(f".{final.stem}.partial-{secrets.token_hex(4)}{final.suffix}")


def partials_of(final: Path) -> list[Path]:
    """The temporary files ``partial_path(final)`` names that exist now: what writes of ``final``
    left behind when their process was killed before it could remove them."""
    pattern = f".{glob.escape(final.stem)}.partial-*{glob.escape(final.suffix)}"
    return sorted(final.parent.glob(pattern))


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists; a file that is already gone is not an error."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (through links, ``..``, hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def writable_folder(folder: Path) -> bool:
    """Create ``folder`` if it is missing; whether it can then be written (``False`` where it
    cannot be created)."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)
