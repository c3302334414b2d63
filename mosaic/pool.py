"""The tile pool: photos turned into uint8 tiles, with their descriptors.

``TilePool.from_dir`` scans a folder recursively, decodes the images in a thread pool (centre
crop to the tiles' aspect, square by default, antialiased resize), merges files with identical
content into one tile, optionally adds augmented copies, and caches the tiles on disk (in the
user's cache folder, see ``mosaic.cache``) so that a re-run only decodes the files that changed.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from adapters import SourceError, read_image
from kernels import oklab_to_srgb, srgb_to_oklab
from mosaic.cache import FORMAT_VERSION, PoolCache, content_hash, folder_cache_dir
from mosaic.descriptors import descriptors as cell_descriptors
from mosaic.imageops import resize

__all__ = ["IMAGE_SUFFIXES", "Augmentation", "PoolError", "TilePool"]

# Files with these suffixes (any case) are opened; what they really are is read_image's call.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff"}
)
_PROGRESS_MIN_FILES = 256  # fewer files than this load without a progress bar
_CHUNK = 8192  # tiles per step of whole-pool work: bounds the temporaries
# Pixels per step of the descriptors (their float32 Oklab copy is 12 bytes a pixel): large tiles
# (a print's 256 px) go a few hundred at a time.
_CHUNK_PIXELS = 2**23


class PoolError(ValueError):
    """A tile pool cannot be built: missing folder, no readable image, malformed tensor."""


@dataclass(frozen=True)
class Augmentation:
    """Extra tiles made from every photo.

    Attributes:
        mirror: also add the left-right mirror image of every tile.
        brightness: steps ``s``; each adds a copy whose Oklab colour is scaled by ``1 + s``:
            lightness L by ``1 + s`` and a, b with it, so hue and saturation stay. That is
            linear light times ``(1 + s) ** 3``, clipped per channel at white. ``(-0.1, 0.1)``
            adds a copy 10 % darker and one 10 % lighter in L.

    Every photo gives ``variants = (1 + len(brightness)) * (2 if mirror else 1)`` tiles.
    """

    mirror: bool = True
    brightness: tuple[float, ...] = (-0.1, 0.1)

    def __post_init__(self) -> None:
        steps = tuple(float(s) for s in self.brightness)
        if any(s <= -1 or s == 0 for s in steps) or len(set(steps)) != len(steps):
            raise ValueError(f"brightness steps must be distinct, non-zero and > -1: {steps}")
        object.__setattr__(self, "brightness", steps)

    @property
    def variants(self) -> int:
        """Tiles per photo."""
        return (1 + len(self.brightness)) * (2 if self.mirror else 1)

    def apply(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 ``(K, 3, t, t)`` -> ``(K * variants, 3, t, t)``.

        Block-major: rows ``[0, K)`` are the input tiles themselves, then the mirror images,
        then each brightness step (unmirrored, mirrored).
        """
        if self.variants == 1:
            return tiles
        k = len(tiles)
        out = np.empty((k * self.variants, *tiles.shape[1:]), np.uint8)
        blocks = iter(np.split(out, self.variants))
        for step in (0.0, *self.brightness):
            block = next(blocks)
            if step == 0.0:
                block[:] = tiles
            else:
                lut = _brightness_lut(step)
                for start in range(0, k, _CHUNK):
                    block[start : start + _CHUNK] = lut[tiles[start : start + _CHUNK]]
            if self.mirror:
                next(blocks)[:] = block[..., ::-1]
        return out

    def tag(self) -> str:
        """Stable text naming these settings, for cache keys."""
        return f"mirror={self.mirror},brightness={','.join(repr(s) for s in self.brightness)}"


_NO_AUGMENTATION = Augmentation(mirror=False, brightness=())


def _brightness_lut(step: float) -> np.ndarray:
    """uint8 ``(256,)``: an sRGB channel level -> the level with Oklab scaled by ``1 + step``.

    Scaling Oklab by ``k`` scales linear light by ``k ** 3`` in every channel alike, so one
    table built on the grey ramp is exact per channel.
    """
    ramp = torch.arange(256, dtype=torch.uint8).repeat(3, 1, 1)  # (3, 1, 256) greys
    return oklab_to_srgb(srgb_to_oklab(ramp) * (1.0 + step))[0, 0].numpy()


# ---------------------------------------------------------------------------- decoding


def centre_crop(height: int, width: int, aspect: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, crop_h, crop_w)``: the largest centred crop of an ``height x width`` image
    with the aspect of ``aspect = (h, w)``."""
    aspect_h, aspect_w = aspect
    crop_w = min(width, height * aspect_w // aspect_h)
    crop_h = min(height, crop_w * aspect_h // aspect_w)
    crop_w = max(1, crop_w)
    crop_h = max(1, crop_h)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _load_tile(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode one image file into its tile: uint8 ``(3, h, w)`` of ``shape = (h, w)``, the
    centred crop of that aspect, antialiased.

    Raises ``SourceError``.
    """
    tile_h, tile_w = shape
    # Twice the tile size, so the reduced-scale JPEG decode leaves room for a clean resample.
    rgb = read_image(path, min_side=2 * max(shape))
    top, left, crop_h, crop_w = centre_crop(*rgb.shape[-2:], shape)
    # Cropped before resizing: a resize box would let the filter reach pixels outside the crop.
    # numpy, not torch: a small torch copy in a worker thread can wait on torch's own threads.
    crop = np.ascontiguousarray(
        rgb.numpy()[:, top : top + crop_h, left : left + crop_w].transpose(1, 2, 0)
    )
    tile = Image.fromarray(crop).resize(
        (tile_w, tile_h), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    return np.asarray(tile).transpose(2, 0, 1)


# ---------------------------------------------------------------------------- scanning


class _File(NamedTuple):
    relative: str  # POSIX path relative to the tile folder
    path: str
    size: int
    mtime_ns: int


def _scan(folder: Path, skipped: list[tuple[str, str]]) -> list[_File]:
    """Image-suffixed files under ``folder``, sorted by relative path.

    Hidden files and folders (name starting with ``.``) are left out; symbolic links to folders
    are not followed. Unlistable folders go to ``skipped``.
    """
    files: list[_File] = []
    pending = [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            skipped.append((prefix.rstrip("/") or ".", f"cannot list folder: {error.strerror}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, relative + "/"))
            elif "." + entry.name.rpartition(".")[2].lower() in IMAGE_SUFFIXES and entry.is_file():
                stat = entry.stat()
                files.append(_File(relative, entry.path, stat.st_size, stat.st_mtime_ns))
    files.sort()
    return files


class _Decoded(NamedTuple):
    content: str | None  # content hash; None when the file could not be read
    tile: np.ndarray | None  # uint8 (3, t, t) when decoded in this run
    reason: str | None  # why the file is skipped


def _decode_file(
    file: _File, content: str | None, tile_size: tuple[int, int], cached: dict[str, int]
) -> _Decoded:
    """Hash ``file`` unless its hash is known, then decode it unless its content is cached."""
    if file.size == 0:
        return _Decoded(None, None, "empty file")
    try:
        if content is None:
            with open(file.path, "rb") as f:
                content = content_hash(f.read())
        if content in cached:
            return _Decoded(content, None, None)
        return _Decoded(content, _load_tile(file.path, tile_size), None)
    except OSError as error:
        return _Decoded(content, None, f"cannot read file: {error.strerror or error}")
    except SourceError as error:
        return _Decoded(content, None, str(error))


# ---------------------------------------------------------------------------- pool


class TilePool:
    """uint8 tiles and their descriptors; build one with ``from_dir`` or ``from_tensor``.

    Attributes:
        images: uint8 ``(M, 3, h, w)``, contiguous.
        tile_shape: ``(h, w)``.
        tile_size: the tiles' side (their width when they are not square).
        sources: per tile, where it came from (for ``from_dir`` the path relative to the
            folder; augmented copies repeat their photo's path).
        skipped: ``(relative path, reason)`` of every image file that could not be read.
    """

    def __init__(
        self,
        images: torch.Tensor,
        sources: Sequence[str] | None = None,
        *,
        skipped: Sequence[tuple[str, str]] = (),
        summary: str | None = None,
        cache: PoolCache | None = None,
        cache_key: str = "",
        cache_settings: str = "",
        folder: Path | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise PoolError(f"tile images must be a uint8 tensor, got {_type_name(images)}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise PoolError(f"tile images must have shape (M, 3, h, w), got {tuple(images.shape)}")
        if len(images) == 0 or images.shape[2] == 0 or images.shape[3] == 0:
            raise PoolError("a tile pool needs at least one tile")
        sources = [f"tile {i}" for i in range(len(images))] if sources is None else list(sources)
        if len(sources) != len(images):
            raise PoolError(f"{len(sources)} sources given for {len(images)} tiles")
        self.images = images.contiguous()
        self.tile_shape = (int(images.shape[2]), int(images.shape[3]))
        self.tile_size = self.tile_shape[1]
        self.sources = sources
        self.skipped = list(skipped)
        self._summary = summary or f"{len(images)} tiles of {self._size_text()} from a tensor"
        self._cache = cache
        self._cache_key = cache_key  # content key of this pool's descriptors in the cache
        self._cache_settings = cache_settings  # format, tile size, augmentation
        self._folder = folder  # the photos' folder, for tiles at another size (from_dir)
        self._augmentation = augmentation or _NO_AUGMENTATION
        # (grid, lightness weight, device) -> float32 (M, D); shared with the pools .to() makes.
        self._descriptors: dict[tuple[int, float, torch.device], torch.Tensor] = {}

    @classmethod
    def from_tensor(cls, images: torch.Tensor, sources: Sequence[str] | None = None) -> TilePool:
        """A pool of ready-made tiles: ``images`` uint8 ``(M, 3, t, t)`` on any device."""
        return cls(images, sources)

    @classmethod
    def from_dir(
        cls,
        path: str | os.PathLike[str],
        tile_size: int | tuple[int, int] = 32,
        *,
        augment: bool | Augmentation = False,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        workers: int | None = None,
    ) -> TilePool:
        """Load every JPEG, PNG, WebP, BMP and TIFF image under ``path`` as a tile.

        Args:
            path: the tile folder, scanned recursively (hidden files and folders left out).
            tile_size: tile side in pixels, or ``(width, height)``: each photo is cropped to
                that aspect around its centre.
            augment: ``True`` for ``Augmentation()``, or the augmentation to apply.
            cache: read and write the on-disk cache.
            cache_dir: the folder that holds the caches, one subfolder per tile folder; default
                ``$XDG_CACHE_HOME/triton-mosaic``, else ``~/.cache/triton-mosaic``. Nothing is
                ever written into the tile folder.
            progress: show a progress bar when many files must be decoded.
            workers: decoding threads (default: ``ThreadPoolExecutor``'s).

        Files with identical content become one tile. Unreadable files are skipped and listed
        in ``skipped``. Raises ``PoolError`` when the folder is missing or holds no readable
        image.
        """
        folder = Path(path).expanduser()
        if not folder.exists():
            raise PoolError(f"tile folder {os.fspath(path)} does not exist")
        if not folder.is_dir():
            raise PoolError(f"tile folder {os.fspath(path)} is not a folder")
        shape = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size[::-1]
        if min(shape) < 1:
            raise ValueError(f"tile_size must be at least 1, got {tile_size}")
        if isinstance(augment, bool):
            augment = Augmentation() if augment else _NO_AUGMENTATION

        skipped: list[tuple[str, str]] = []
        files = _scan(folder, skipped)
        store = None
        if cache:
            root = None if cache_dir is None else Path(cache_dir).expanduser()
            store = PoolCache(folder_cache_dir(folder, root))
        loaded = _load_tiles(files, shape, store, skipped, progress=progress, workers=workers)
        skipped.sort()
        if not loaded.contents:
            raise PoolError(_empty_pool_message(os.fspath(path), files, skipped))

        settings = (
            f"{FORMAT_VERSION}|{tile_size if shape[0] == shape[1] else shape}|{augment.tag()}"
        )
        notes = [f"{len(skipped)} unreadable skipped"] if skipped else []
        if loaded.files_read > len(loaded.contents):
            notes.append(f"{loaded.files_read - len(loaded.contents)} duplicates merged")
        if augment.variants > 1:
            notes.append(f"{augment.variants} variants per photo")
        summary = f"{len(loaded.contents) * augment.variants} tiles from {len(files)} files in "
        summary += os.fspath(path) + (f" ({', '.join(notes)})" if notes else "")
        return cls(
            torch.from_numpy(augment.apply(loaded.tiles)),
            loaded.sources * augment.variants,
            skipped=skipped,
            summary=summary,
            cache=store,
            cache_key=_digest(settings, *loaded.contents),
            cache_settings=settings,
            folder=folder,
            augmentation=augment,
        )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"TilePool({len(self)} tiles of {self._size_text()} on {self.images.device})"

    def _size_text(self) -> str:
        height, width = self.tile_shape
        return f"{width} px" if height == width else f"{width}x{height} px"

    def summary(self) -> str:
        """One line: tiles, files, folder, and what was skipped, merged or added."""
        return self._summary

    def to(self, device: torch.device | str) -> TilePool:
        """This pool with its images on ``device`` (``self`` if they are already there)."""
        images = self.images.to(device)
        if images is self.images:
            return self
        moved = copy.copy(self)  # shares sources, skipped and the descriptor memo
        moved.images = images
        return moved

    def load_tiles(self, indices: Sequence[int], shape: tuple[int, int]) -> torch.Tensor:
        """uint8 ``(len(indices), 3, h, w)``: tiles ``indices`` at ``shape = (h, w)``, decoded
        again from their photos (a print's tiles, sharper than the pool's), augmented as the
        pool is; a pool made from a tensor resizes its own tiles, cropped around their centre
        to ``shape``'s aspect as the photos are. On the CPU."""
        if self._folder is None:
            images = self.cropped(shape).images[torch.as_tensor(list(indices), dtype=torch.long)]
            return resize(images.cpu(), shape)
        photos = len(self) // self._augmentation.variants
        tiles = []
        for index in indices:
            photo = _load_tile(str(self._folder / self.sources[index]), shape)
            tiles.append(self._augmentation.apply(photo[None])[index // photos])
        return torch.from_numpy(np.stack(tiles))

    def cropped(self, aspect: tuple[int, int]) -> TilePool:
        """This pool with every tile cropped around its centre to the aspect of ``aspect =
        (h, w)`` (``self`` when the tiles already have it), for cells of that shape."""
        top, left, crop_h, crop_w = centre_crop(*self.tile_shape, aspect)
        if (crop_h, crop_w) == self.tile_shape:
            return self
        images = self.images[:, :, top : top + crop_h, left : left + crop_w]
        return TilePool(images, self.sources, skipped=self.skipped, summary=self._summary)

    @property
    def mean_lab(self) -> torch.Tensor:
        """Mean Oklab colour of every tile: float32 ``(M, 3)``, ``descriptors(1)``."""
        return self.descriptors(1)

    def descriptors(self, grid: int = 1, lightness_weight: float = 1.0) -> torch.Tensor:
        """Descriptor of every tile, the whole tile being one cell.

        Args:
            grid: descriptor grid ``s``; the tiles' sides must be multiples of it.
            lightness_weight: factor on the L channel (see ``mosaic.descriptors``).

        Returns:
            float32 ``(M, 3 * grid * grid)`` on the images' device. Memoised per
            (grid, weight, device); pools from ``from_dir`` also keep them in the disk cache.
        """
        device = self.images.device
        weight = float(lightness_weight)
        memo_key = (grid, weight, device)
        if memo_key in self._descriptors:
            return self._descriptors[memo_key]
        values = next(
            (v for (g, w, _), v in self._descriptors.items() if (g, w) == (grid, weight)), None
        )
        settings = _digest(self._cache_settings, str(grid), repr(weight))[:16]
        if values is None and self._cache is not None:
            cached = self._cache.read_descriptors(settings, self._cache_key)
            if cached is not None and cached.shape == (len(self), 3 * grid * grid):
                values = torch.from_numpy(cached)
        if values is None:
            values = torch.cat(
                [
                    cell_descriptors(chunk, self.tile_shape, grid, weight).reshape(len(chunk), -1)
                    for chunk in self.images.split(self._chunk_tiles())
                ]
            )
            if self._cache is not None:
                self._cache.write_descriptors(settings, self._cache_key, values.cpu().numpy())
        self._descriptors[memo_key] = values = values.to(device)
        return values

    def _chunk_tiles(self) -> int:
        """Tiles per step of the descriptors: ``_CHUNK``, fewer for large tiles."""
        return max(1, min(_CHUNK, _CHUNK_PIXELS // (self.tile_shape[0] * self.tile_shape[1])))


class _Loaded(NamedTuple):
    contents: list[str]  # distinct content hashes, in path order
    tiles: np.ndarray  # uint8 (K, 3, h, w), one per content
    sources: list[str]  # first relative path of each content
    files_read: int  # files that gave a tile, duplicates included


def _load_tiles(
    files: list[_File],
    tile_size: tuple[int, int],
    store: PoolCache | None,
    skipped: list[tuple[str, str]],
    *,
    progress: bool,
    workers: int | None,
) -> _Loaded:
    """The distinct tiles of ``files``: from the cache where it has them, else decoded.

    Appends unreadable files to ``skipped`` and brings the cache up to date.
    """
    manifest = store.read_manifest() if store else {}
    cached_contents, cached_tiles = (
        store.read_tiles(tile_size) if store else ([], np.empty((0, 3, *tile_size), np.uint8))
    )
    cached = {content: row for row, content in enumerate(cached_contents)}

    contents: dict[str, str] = {}  # relative path -> content hash
    for file in files:
        entry = manifest.get(file.relative)
        if entry is not None and entry[:2] == (file.size, file.mtime_ns):
            contents[file.relative] = entry[2]
    jobs = [file for file in files if contents.get(file.relative) not in cached]
    new_tiles: dict[str, np.ndarray] = {}
    for file, result in zip(
        jobs, _decode_files(jobs, contents, tile_size, cached, progress, workers), strict=True
    ):
        if result.content is not None:
            contents[file.relative] = result.content
        if result.reason is not None:
            skipped.append((file.relative, result.reason))
        elif result.tile is not None:
            new_tiles[result.content] = result.tile

    first_path: dict[str, str] = {}  # content -> first relative path, in path order
    files_read = 0
    for file in files:
        content = contents.get(file.relative)
        if content in cached or content in new_tiles:
            first_path.setdefault(content, file.relative)
            files_read += 1
    unique = list(first_path)
    tiles = (
        cached_tiles
        if unique == cached_contents
        else _gather(unique, cached_tiles, cached, new_tiles)
    )

    # Without jobs every file matched its manifest entry; equal counts then mean no entry is stale.
    if store is not None and (jobs or len(manifest) != len(files)):
        entries = {
            f.relative: (f.size, f.mtime_ns, contents[f.relative])
            for f in files
            if f.relative in contents
        }
        if entries != manifest:
            store.write_manifest(entries)
    if store is not None and unique != cached_contents:
        store.write_tiles(tile_size, unique, tiles)
    return _Loaded(unique, tiles, list(first_path.values()), files_read)


def _gather(
    contents: list[str],
    cached_tiles: np.ndarray,
    cached: dict[str, int],
    new_tiles: dict[str, np.ndarray],
) -> np.ndarray:
    """uint8 ``(K, 3, h, w)``: the tile of each content, from ``new_tiles`` or the cache rows."""
    tiles = np.empty((len(contents), *cached_tiles.shape[1:]), np.uint8)
    reused = [(row, cached[c]) for row, c in enumerate(contents) if c not in new_tiles]
    if reused:
        rows, cached_rows = np.array(reused).T
        tiles[rows] = cached_tiles[cached_rows]
    for row, content in enumerate(contents):
        if content in new_tiles:
            tiles[row] = new_tiles[content]
    return tiles


def _decode_files(
    jobs: list[_File],
    contents: dict[str, str],
    tile_size: tuple[int, int],
    cached: dict[str, int],
    progress: bool,
    workers: int | None,
) -> list[_Decoded]:
    """``_decode_file`` on every job, in a thread pool (Pillow and hashlib release the GIL)."""
    show = progress and len(jobs) >= _PROGRESS_MIN_FILES
    with ThreadPoolExecutor(workers) as executor:
        results = executor.map(
            lambda f: _decode_file(f, contents.get(f.relative), tile_size, cached), jobs
        )
        return list(
            tqdm(results, total=len(jobs), desc="decoding tiles", unit="file", disable=not show)
        )


def _empty_pool_message(folder: str, files: list[_File], skipped: list[tuple[str, str]]) -> str:
    if not files:
        return f"no JPEG, PNG, WebP, BMP or TIFF images in {folder} (searched recursively)"
    example = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
    return f"no readable images in {folder}: all {len(files)} image files are unreadable{example}"


def _digest(*parts: str) -> str:
    """Hex BLAKE2b-128 of ``parts``, for cache keys."""
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _type_name(x: object) -> str:
    return f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
