"""On-disk cache of a tile pool: tile pixels and descriptors, keyed by file content.

Caches live in the user's cache folder, ``$XDG_CACHE_HOME/triton-mosaic`` or else
``~/.cache/triton-mosaic`` (``cache_root``), never beside the photos: one folder per tile folder,
named after it and a hash of its absolute path (``folder_cache_dir``), created only when there is
something to store. ``clear_cache`` deletes them.

A tile folder's cache folder holds (no pickle anywhere; every file is written to a temporary file
in the same folder and renamed over the old one, so readers never see a half-written file):

- ``manifest.json``: ``{"format": 1, "files": [[relative path, size, mtime_ns, hash], ...]}``.
  A file whose size and ``mtime_ns`` are unchanged is trusted to still have the recorded hash,
  so a re-run reads none of the image files that did not change.
- ``tiles-{t}px.npz``: ``hashes`` ``S32`` ``(K,)``, the hex BLAKE2b-128 of each distinct file
  content, and ``tiles`` uint8 ``(K, 3, t, t)``, its decoded, cropped and resized tile (before
  augmentation, which is cheap to redo).
- ``descriptors-{settings}.npz``: ``key``, the content key of the pool they describe, and
  ``descriptors`` float32 ``(M, D)`` for one (tile size, augmentation, grid, lightness weight).

A cache file that is missing, unreadable, of another format version or inconsistent is ignored
(and rewritten); a cache that cannot be written costs one warning, never an error.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "ManifestEntry",
    "PoolCache",
    "cache_root",
    "clear_cache",
    "content_hash",
    "folder_cache_dir",
]

# Bump when what a cache file holds for the same input changes (decoder, resize, descriptor math).
FORMAT_VERSION = 1
# The files a cache folder may hold (those of interrupted writes are hidden ".NAME.*.tmp" files).
_CACHE_FILES = ("manifest.json", "tiles-*px.npz", "descriptors-*.npz", ".*.tmp")
# Whatever np.load and zipfile raise on a truncated, garbled or foreign file.
_BAD_FILE_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)

# (size in bytes, mtime_ns, content hash) of one file, by relative path.
ManifestEntry = tuple[int, int, str]


def content_hash(data: bytes) -> str:
    """Hex BLAKE2b-128 of a file's bytes: the key of everything cached for that content."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def cache_root() -> Path:
    """Where tile caches live unless told otherwise: ``$XDG_CACHE_HOME/triton-mosaic``, else
    ``~/.cache/triton-mosaic`` (a relative ``XDG_CACHE_HOME`` is ignored, as the XDG base
    directory specification says)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "triton-mosaic"


def folder_cache_dir(folder: Path, root: Path | None = None) -> Path:
    """The cache folder of the tile folder ``folder`` in ``root`` (default ``cache_root()``):
    ``<name>-<hash of its absolute path>``. Nothing is created here."""
    resolved = folder.resolve()
    key = hashlib.blake2b(str(resolved).encode(), digest_size=8).hexdigest()
    return (cache_root() if root is None else root) / f"{resolved.name or 'root'}-{key}"


def clear_cache(root: Path | None = None) -> tuple[int, int]:
    """Delete every tile folder's cache in ``root`` (default ``cache_root()``).

    Only the files a cache writes are deleted, then the folders that leaves empty, ``root``
    included: anything else found there stays. Returns the files deleted and their bytes.
    """
    root = cache_root() if root is None else root
    files = size = 0
    if not root.is_dir():
        return 0, 0
    for folder in [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]:
        for path in folder.iterdir():
            if path.is_file() and any(fnmatch.fnmatch(path.name, f) for f in _CACHE_FILES):
                size += path.stat().st_size
                path.unlink()
                files += 1
        with contextlib.suppress(OSError):  # not empty: something else lives there
            folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
    return files, size


class PoolCache:
    """The cache files of one tile folder, in ``directory`` (one folder per tile folder)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._warned = False

    # ------------------------------------------------------------------ manifest

    def read_manifest(self) -> dict[str, ManifestEntry]:
        """``{relative path: (size, mtime_ns, hash)}``; empty when there is no usable manifest."""
        try:
            data = json.loads((self.directory / "manifest.json").read_text(encoding="utf-8"))
            if data["format"] != FORMAT_VERSION:
                return {}
            return {rel: (int(size), int(mtime), str(h)) for rel, size, mtime, h in data["files"]}
        except (*_BAD_FILE_ERRORS, TypeError):
            return {}

    def write_manifest(self, entries: dict[str, ManifestEntry]) -> None:
        """Replace the manifest with ``entries``."""
        files = [[rel, *entry] for rel, entry in entries.items()]
        text = json.dumps({"format": FORMAT_VERSION, "files": files}, separators=(",", ":"))
        self._write("manifest.json", lambda f: f.write(text.encode("utf-8")))

    # ------------------------------------------------------------------ tiles

    def read_tiles(self, shape: tuple[int, int]) -> tuple[list[str], np.ndarray]:
        """Content hashes ``(K,)`` and uint8 tiles ``(K, 3, h, w)`` of ``shape = (h, w)``; none
        when nothing usable."""
        empty = np.empty((0, 3, *shape), np.uint8)
        arrays = self._read_npz(_tiles_file(shape), ("hashes", "tiles"))
        if arrays is None:
            return [], empty
        hashes, tiles = arrays["hashes"], arrays["tiles"]
        shape_ok = tiles.shape == (len(hashes), 3, *shape) and hashes.ndim == 1
        if not shape_ok or tiles.dtype != np.uint8 or hashes.dtype.kind != "S":
            return [], empty
        return hashes.astype(str).tolist(), tiles

    def write_tiles(self, shape: tuple[int, int], hashes: list[str], tiles: np.ndarray) -> None:
        """Replace the tiles of ``shape = (h, w)`` with ``tiles`` uint8 ``(K, 3, h, w)``."""
        arrays = {"hashes": np.array(hashes, dtype="S32").reshape(-1), "tiles": tiles}
        self._write_npz(_tiles_file(shape), arrays)

    # ------------------------------------------------------------------ descriptors

    def read_descriptors(self, settings: str, key: str) -> np.ndarray | None:
        """float32 ``(M, D)`` stored for ``settings`` if they describe the pool ``key``."""
        arrays = self._read_npz(f"descriptors-{settings}.npz", ("key", "descriptors"))
        if arrays is None or str(arrays["key"]) != key:
            return None
        values = arrays["descriptors"]
        return values if values.dtype == np.float32 and values.ndim == 2 else None

    def write_descriptors(self, settings: str, key: str, values: np.ndarray) -> None:
        """Store float32 ``(M, D)`` descriptors of the pool ``key`` for ``settings``."""
        self._write_npz(
            f"descriptors-{settings}.npz", {"key": np.array(key), "descriptors": values}
        )

    # ------------------------------------------------------------------ files

    def _read_npz(self, name: str, fields: Iterable[str]) -> dict[str, np.ndarray] | None:
        try:
            with np.load(self.directory / name, allow_pickle=False) as npz:
                if int(npz["format"]) != FORMAT_VERSION:
                    return None
                return {field: npz[field] for field in fields}
        except _BAD_FILE_ERRORS:
            return None

    def _write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        self._write(name, lambda f: np.savez(f, format=np.array(FORMAT_VERSION), **arrays))

    def _write(self, name: str, write: Callable[[IO[bytes]], object]) -> None:
        """Write ``name`` atomically: a temporary file in the same folder, then ``os.replace``.

        The folder is created on the first write; a first write that fails removes it again.
        """
        temporary = None
        created = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=f".{name}.", suffix=".tmp", delete=False
            ) as f:
                temporary = Path(f.name)
                write(f)
            os.replace(temporary, self.directory / name)
        except OSError as error:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"cannot write the tile cache in {self.directory} ({error}); "
                    "continuing without it",
                    RuntimeWarning,
                    stacklevel=3,
                )
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)  # only left behind by a failed write
            for folder in created:  # innermost first; only a failed first write left it empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _tiles_file(shape: tuple[int, int]) -> str:
    """``tiles-32px.npz`` for square tiles, ``tiles-48x36px.npz`` (width by height) otherwise."""
    height, width = shape
    return f"tiles-{width}px.npz" if height == width else f"tiles-{width}x{height}px.npz"
