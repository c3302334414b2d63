"""TilePool: folder loading (formats, modes, crop, skips), the disk cache, augmentation,
descriptors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mosaic.cache
import mosaic.pool
from adapters import SourceError
from kernels import srgb_to_oklab
from mosaic.cache import PoolCache, cache_root, clear_cache, folder_cache_dir
from mosaic.pool import Augmentation, PoolError, TilePool

pytestmark = pytest.mark.usefixtures("reference_path")

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
T = 8  # tile size of most tests: small keeps decoding and descriptors cheap


def _bands(width: int, height: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    """An RGB image of vertical bands of equal width, left to right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        pixels[:, i * width // len(colours) : (i + 1) * width // len(colours)] = colour
    return Image.fromarray(pixels)


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


# Readable images in the folder built by ``photos``, by relative path.
READABLE = [
    "bands.png",
    "big/photo.jpg",
    "cmyk.jpg",
    "grey.png",
    "nested/deeper/rotated.jpg",
    "nested/grey-copy.png",  # same bytes as grey.png: merged into one tile
    "nested/sixteen.tif",
    "palette.bmp",
    "palette-transparent.png",
    "rgba.png",
    "tiny.png",
    "web.webp",
]
UNREADABLE = {"corrupt.jpg", "empty.png", "notes.jpg"}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with every supported format and mode, nested folders, and bad files."""
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "big").mkdir()
    (root / ".hidden").mkdir()
    # 80 x 40: the centre square is the red and blue bands; green only outside it.
    _bands(80, 40, [GREEN, RED, BLUE, GREEN]).save(root / "bands.png")
    Image.new("RGB", (300, 200), (200, 120, 40)).save(root / "big" / "photo.jpg", quality=95)
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)
    Image.new("L", (16, 12), 77).save(root / "grey.png")
    shutil.copyfile(root / "grey.png", root / "nested" / "grey-copy.png")
    # Stored 40 x 20, left red, right blue; EXIF 6 shows it rotated 90 degrees clockwise,
    # 20 x 40 with red on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    _bands(40, 20, [RED, BLUE]).save(root / "nested/deeper/rotated.jpg", exif=exif, quality=95)
    Image.new("I;16", (10, 10), 257 * 200).save(root / "nested" / "sixteen.tif")
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([10, 20, 30])
    palette.save(root / "palette.bmp")
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 250, 0, 0])
    palette.save(root / "palette-transparent.png", transparency=1)
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(root / "rgba.png")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(root / "tiny.png")
    Image.new("RGB", (12, 12), (10, 200, 30)).save(root / "web.webp", lossless=True)
    (root / "corrupt.jpg").write_bytes(_jpeg_bytes(Image.new("RGB", (64, 64), RED))[:300])
    (root / "notes.jpg").write_text("not a picture")
    (root / "empty.png").write_bytes(b"")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    Image.new("RGB", (4, 4)).save(root / ".hidden" / "ignored.png")
    return root


def _load(folder: Path, tile_size: int = T, **options) -> TilePool:
    return TilePool.from_dir(folder, tile_size, progress=False, workers=2, **options)


def _tile(pool: TilePool, source: str) -> torch.Tensor:
    return pool.images[pool.sources.index(source)]


def _colour(tile: torch.Tensor) -> list[float]:
    return tile.float().mean(dim=(1, 2)).tolist()


# ---------------------------------------------------------------------------- loading


def test_loads_every_format_and_skips_bad_files(photos: Path) -> None:
    pool = _load(photos)

    assert len(pool) == len(READABLE) - 1  # one duplicate
    assert pool.images.shape == (len(pool), 3, T, T)
    assert pool.images.dtype == torch.uint8 and pool.images.is_contiguous()
    assert pool.tile_size == T
    assert pool.sources == sorted(s for s in READABLE if s != "nested/grey-copy.png")
    assert {path for path, _ in pool.skipped} == UNREADABLE
    reasons = dict(pool.skipped)
    assert reasons["empty.png"] == "empty file"
    assert all(reason for reason in reasons.values())
    assert pool.summary() == (
        f"{len(pool)} tiles from 15 files in {photos} (3 unreadable skipped, 1 duplicates merged)"
    )


def test_modes_become_rgb(photos: Path) -> None:
    pool = _load(photos)

    def close(source: str, rgb: tuple[int, int, int], tolerance: float) -> None:
        actual = _colour(_tile(pool, source))
        assert max(abs(a - b) for a, b in zip(actual, rgb, strict=True)) <= tolerance, (
            source,
            actual,
        )

    close("grey.png", (77, 77, 77), 0)
    close("nested/sixteen.tif", (200, 200, 200), 0)
    close("palette.bmp", (10, 20, 30), 0)
    close("palette-transparent.png", (128, 128, 128), 0)  # transparent: neutral grey
    close("rgba.png", (128, 128, 128), 0)
    close("tiny.png", (1, 2, 3), 0)
    close("web.webp", (10, 200, 30), 0)
    close("big/photo.jpg", (200, 120, 40), 3)
    close("cmyk.jpg", RED, 12)


def test_centre_crop_and_resize(photos: Path) -> None:
    tile = _tile(_load(photos, tile_size=16), "bands.png").float()
    left, right = tile[:, :, :4].mean(dim=(1, 2)), tile[:, :, 12:].mean(dim=(1, 2))
    assert torch.allclose(left, torch.tensor(RED, dtype=torch.float32), atol=2)
    assert torch.allclose(right, torch.tensor(BLUE, dtype=torch.float32), atol=2)
    assert tile[1].max() <= 2  # no green: it lies outside the centre square


def test_exif_orientation_is_applied(photos: Path) -> None:
    tile = _tile(_load(photos, tile_size=16), "nested/deeper/rotated.jpg").float()
    top, bottom = tile[:, :6].mean(dim=(1, 2)), tile[:, 10:].mean(dim=(1, 2))
    assert torch.allclose(top, torch.tensor(RED, dtype=torch.float32), atol=12)
    assert torch.allclose(bottom, torch.tensor(BLUE, dtype=torch.float32), atol=12)


@pytest.mark.parametrize("content", ["none", "unreadable"])
def test_pool_without_images_is_an_error(tmp_path: Path, content: str) -> None:
    if content == "unreadable":
        (tmp_path / "a.png").write_text("no")
        (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(PoolError, match=r"no .*images in") as error:
        _load(tmp_path)
    assert "\n" not in str(error.value)


def test_missing_folder_and_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="does not exist"):
        _load(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(PoolError, match="is not a folder"):
        _load(tmp_path / "file.png")
    assert issubclass(PoolError, ValueError)


# ---------------------------------------------------------------------------- cache


class _DecoderSpy:
    """Stands in for ``_load_tile``; records the files decoded, optionally refuses them all."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.paths: list[str] = []
        self._real = mosaic.pool._load_tile
        self._fail = fail
        monkeypatch.setattr(mosaic.pool, "_load_tile", self)

    def __call__(self, path: str, tile_size: int) -> np.ndarray:
        self.paths.append(Path(path).name)
        if self._fail:
            raise SourceError("decoder called")
        return self._real(path, tile_size)


def test_second_load_comes_from_the_cache(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _load(photos)
    spy = _DecoderSpy(monkeypatch, fail=True)
    monkeypatch.setattr(mosaic.pool, "content_hash", None)  # unchanged files are not re-read
    second = _load(photos)

    assert torch.equal(first.images, second.images)
    assert second.sources == first.sources
    assert set(spy.paths) <= UNREADABLE - {"empty.png"}  # bad files are retried, nothing else
    assert len(second.skipped) == len(first.skipped)


def test_cache_follows_changes(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _load(photos)
    spy = _DecoderSpy(monkeypatch)
    Image.new("RGB", (9, 9), (0, 0, 90)).save(photos / "web.webp", lossless=True)  # changed
    Image.new("RGB", (9, 9), (5, 6, 7)).save(photos / "nested" / "added.png")
    (photos / "tiny.png").unlink()
    (photos / "palette.bmp").rename(photos / "renamed.bmp")  # same content: not decoded
    second = _load(photos)

    assert set(spy.paths) - UNREADABLE == {"web.webp", "added.png"}
    assert len(second) == len(first)  # one added, one removed
    assert "tiny.png" not in second.sources
    assert _colour(_tile(second, "web.webp")) == [0, 0, 90]
    assert _colour(_tile(second, "nested/added.png")) == [5, 6, 7]
    assert torch.equal(_tile(second, "renamed.bmp"), _tile(first, "palette.bmp"))

    spy.paths.clear()
    bigger = _load(photos, tile_size=2 * T)
    assert bigger.images.shape[-1] == 2 * T
    # Another tile size: every readable file decoded again.
    assert set(spy.paths) - UNREADABLE == {Path(s).name for s in bigger.sources} | {"grey-copy.png"}


def _cache_files(folder: Path) -> list[str]:
    """The files of the tile folder ``folder``'s cache, in the default cache folder."""
    return sorted(p.name for p in folder_cache_dir(folder).iterdir())


def test_cache_files_hold_no_pickle_and_no_leftovers(photos: Path) -> None:
    pool = _load(photos)
    pool.descriptors(2)
    names = _cache_files(photos)

    assert names[1:] == ["manifest.json", f"tiles-{T}px.npz"]  # and no temporary file
    assert names[0].startswith("descriptors-") and names[0].endswith(".npz")
    for name in names:
        path = folder_cache_dir(photos) / name
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                assert all(npz[key].dtype != object for key in npz.files)
        else:
            assert json.loads(path.read_text())["format"] == mosaic.cache.FORMAT_VERSION


def test_corrupt_cache_is_ignored_and_rebuilt(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _load(photos)
    cache = folder_cache_dir(photos)
    tiles = cache / f"tiles-{T}px.npz"
    tiles.write_bytes(tiles.read_bytes()[:1000])  # truncated
    (cache / "manifest.json").write_text('{"format": 1, "files": [["a", 1]]}')
    second = _load(photos)
    assert torch.equal(first.images, second.images)

    _DecoderSpy(monkeypatch, fail=True)
    assert torch.equal(_load(photos).images, first.images)  # the rebuilt cache is whole


def test_failed_cache_write_warns_once_and_leaves_nothing(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(file, **arrays) -> None:
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mosaic.cache.np, "savez", disk_full)
    with pytest.warns(RuntimeWarning, match="cannot write the tile cache") as warned:
        pool = _load(photos)
        pool.descriptors()
    assert len(warned) == 1
    assert len(pool) == len(READABLE) - 1
    assert _cache_files(photos) == ["manifest.json"]  # json writes fine; no temporary left


def test_the_cache_lives_in_the_user_cache_folder_never_beside_the_photos(
    photos: Path, tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(photos.rglob("*"))
    _load(photos).descriptors(2)
    assert sorted(photos.rglob("*")) == before  # nothing written into the tile folder
    assert folder_cache_dir(photos).parent == cache_home / "triton-mosaic" == cache_root()
    assert (folder_cache_dir(photos) / "manifest.json").exists()

    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "triton-mosaic"


def test_no_cache_folder_without_something_to_cache(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolError):
        _load(tmp_path / "empty", cache_dir=tmp_path / "caches")
    assert not (tmp_path / "caches").exists()


def test_a_failed_first_write_leaves_no_folder(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mosaic.cache.tempfile, "NamedTemporaryFile", disk_full)
    with pytest.warns(RuntimeWarning, match="cannot write the tile cache"):
        _load(photos, cache_dir=tmp_path / "caches")
    assert not (tmp_path / "caches").exists()


def test_no_cache_writes_nothing(photos: Path, tmp_path: Path, cache_home: Path) -> None:
    _load(photos, cache=False)
    assert not folder_cache_dir(photos).exists()
    _load(photos, cache_dir=tmp_path / "elsewhere")
    assert not folder_cache_dir(photos).exists()
    assert (folder_cache_dir(photos, tmp_path / "elsewhere") / "manifest.json").exists()


def test_clear_cache_deletes_the_caches_and_nothing_else(photos: Path, tmp_path: Path) -> None:
    root = tmp_path / "caches"
    _load(photos, cache_dir=root).descriptors(2)
    other = photos / "nested"
    _load(other, cache_dir=root)
    (folder_cache_dir(other, root) / "notes.txt").write_text("not the cache's")
    (folder_cache_dir(photos, root) / ".tiles-8px.npz.1234.tmp").write_bytes(b"interrupted")

    files, size = clear_cache(root)

    assert files == 3 + 1 + 2  # manifest, tiles, descriptors, a temporary; manifest and tiles
    assert size > 0
    assert not folder_cache_dir(photos, root).exists()
    assert [p.name for p in root.rglob("*")] == [folder_cache_dir(other, root).name, "notes.txt"]
    assert clear_cache(tmp_path / "never-made") == (0, 0)


def test_hundred_thousand_tiles_load_from_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100k-tile cache written through the cache API loads without touching any image."""
    count, tile_size = 100_000, 32
    files = [mosaic.pool._File(f"{i:06d}.jpg", "/nonexistent", 1000 + i, 7) for i in range(count)]
    contents = [f"{i:032x}" for i in range(count)]
    tiles = np.random.default_rng(0).integers(0, 256, (count, 3, tile_size, tile_size), np.uint8)
    cache = PoolCache(folder_cache_dir(tmp_path, tmp_path / "cache"))
    cache.write_manifest(
        {f.relative: (f.size, f.mtime_ns, h) for f, h in zip(files, contents, strict=True)}
    )
    cache.write_tiles((tile_size, tile_size), contents, tiles)
    monkeypatch.setattr(mosaic.pool, "_scan", lambda folder, skipped: list(files))
    monkeypatch.setattr(mosaic.pool, "_decode_file", None)

    pool = TilePool.from_dir(tmp_path, tile_size, cache_dir=tmp_path / "cache", progress=False)

    assert len(pool) == count
    assert np.array_equal(pool.images[-1].numpy(), tiles[-1])
    assert pool.sources[-1] == files[-1].relative


# ---------------------------------------------------------------------------- augmentation


def test_augmentation_multiplies_and_mirrors(photos: Path) -> None:
    plain = _load(photos)
    augmented = _load(photos, augment=True)
    k, variants = len(plain), Augmentation().variants

    assert variants == 6
    assert len(augmented) == k * variants
    assert augmented.sources == plain.sources * variants
    assert torch.equal(augmented.images[:k], plain.images)
    assert torch.equal(augmented.images[k : 2 * k], plain.images.flip(-1))
    assert "6 variants per photo" in augmented.summary()

    mirror_only = _load(photos, augment=Augmentation(mirror=True, brightness=()))
    assert len(mirror_only) == 2 * k


def test_brightness_steps_scale_oklab_lightness() -> None:
    grey = torch.full((1, 3, 4, 4), 120, dtype=torch.uint8)
    steps = Augmentation(mirror=False, brightness=(-0.2, 0.1))
    images = torch.from_numpy(steps.apply(grey.numpy()))
    lightness = TilePool.from_tensor(images).mean_lab[:, 0]
    expected = lightness[0] * torch.tensor([1.0, 0.8, 1.1])
    assert torch.allclose(lightness, expected, atol=4e-3)  # one uint8 level is about 3e-3 in L

    with pytest.raises(ValueError, match="brightness"):
        Augmentation(brightness=(0.0,))


# ---------------------------------------------------------------------------- tensors, descriptors


def test_from_tensor_checks_its_input() -> None:
    pool = TilePool.from_tensor(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), ["a", "b", "c"])
    assert len(pool) == 3 and pool.sources == ["a", "b", "c"]
    assert pool.to("cpu") is pool
    for bad in (
        torch.zeros(3, 3, 4, 4),  # float
        torch.zeros(3, 4, 4, dtype=torch.uint8),  # no batch axis
        torch.zeros(3, 3, 4, 0, dtype=torch.uint8),  # no columns
        torch.zeros(0, 3, 4, 4, dtype=torch.uint8),  # empty
    ):
        with pytest.raises(PoolError):
            TilePool.from_tensor(bad)
    with pytest.raises(PoolError, match="sources"):
        TilePool.from_tensor(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), ["a"])


def test_descriptors_of_solid_tiles() -> None:
    colours = torch.tensor([[255, 0, 0], [12, 200, 90], [128, 128, 128]], dtype=torch.uint8)
    images = colours[:, :, None, None].expand(3, 3, 8, 8).contiguous()
    pool = TilePool.from_tensor(images)
    expected = srgb_to_oklab(colours[:, :, None, None])[:, :, 0, 0]

    torch.testing.assert_close(pool.mean_lab, expected, atol=1e-6, rtol=0)
    assert pool.descriptors(1) is pool.mean_lab  # memoised
    grid = pool.descriptors(2, lightness_weight=2.0)
    assert grid.shape == (3, 12) and grid.dtype == torch.float32
    torch.testing.assert_close(grid[:, :4], 2.0 * expected[:, :1].expand(3, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[:, 4:8], expected[:, 1:2].expand(3, 4), atol=1e-6, rtol=0)


def test_descriptors_are_cached_on_disk(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed = _load(photos).descriptors(2, lightness_weight=1.5)
    monkeypatch.setattr(mosaic.pool, "cell_descriptors", None)
    again = _load(photos).descriptors(2, lightness_weight=1.5)
    torch.testing.assert_close(again, computed, atol=0, rtol=0)
    with pytest.raises(TypeError):  # other settings are not in the cache: computed, and fail
        _load(photos).descriptors(1)


def test_a_tensor_pool_loads_tiles_cropped_to_the_asked_aspect():
    """A pool of 2:1 tiles asked for square ones gives their centres, not squeezed tiles."""
    from mosaic.imageops import resize

    images = torch.randint(0, 256, (3, 3, 8, 16), dtype=torch.uint8)
    pool = TilePool.from_tensor(images)
    loaded = pool.load_tiles([2, 0], (4, 4))
    assert torch.equal(loaded, resize(images[[2, 0], :, :, 4:12], (4, 4)))
