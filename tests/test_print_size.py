"""Print-size stills drawn and written in strips: the same pixels as the whole render, every
format read back, the strips and the tile cache bounded, and the command line's choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import mosaic.print_size as print_size
from adapters import SinkError, read_image
from adapters.strips import write_image_strips
from mosaic import MosaicConfig, TilePool, render_image
from mosaic.cli import main
from mosaic.print_size import PrintTiles, render_print
from tests.scenes import landscape, write_photos

pytestmark = pytest.mark.usefixtures("reference_path")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 photo-like JPEGs of 60 x 45."""
    return write_photos(tmp_path_factory.mktemp("photos"), 40, (60, 45), seed=1)


@pytest.mark.parametrize(
    "settings",
    [{"color": 0.6}, {"color": 0.0, "blend": 0.3}, {"color": 0.6, "blend": 0.5, "fair": True}],
)
def test_strips_equal_the_whole_mosaic(photos: Path, tmp_path: Path, monkeypatch, settings):
    """Drawn a cell row or two at a time (the last one cropped), written as PNG: the pixels of
    ``render_image`` with the same pool, blend included."""
    frame = landscape(44, 60, seed=2)  # 6 x 8 cells of 8, the last row cut
    pool = TilePool.from_dir(photos, tile_size=24, cache=False, progress=False)
    config = MosaicConfig(cell=8, tile_size=24, device="cpu", **settings)
    monkeypatch.setattr(print_size, "STRIP_BYTES", 3 * 24 * 180 * 2)  # two cell rows a strip
    progress = []
    stats = render_print(
        frame, tmp_path / "print.png", pool, config, on_progress=lambda *a: progress.append(a)
    )
    assert torch.equal(read_image(tmp_path / "print.png"), render_image(frame, pool, config))
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert stats.output_size == (180, 132) and stats.grid == (6, 8)
    assert 0 < stats.fidelity < 0.3 and stats.settings.startswith("cells 8x8 px, tiles 24x24 px")


def test_print_tiles_are_decoded_from_the_photos_at_print_size(photos: Path):
    """A pool loaded small for its descriptors draws tiles decoded again from the photos, as a
    pool loaded at print size holds them; the cache keeps at most its budget."""
    small = TilePool.from_dir(photos, tile_size=8, cache=False, progress=False)
    large = TilePool.from_dir(photos, tile_size=48, cache=False, progress=False)
    tiles = PrintTiles(small, (48, 48), budget=3 * 48 * 48 * 5)  # five tiles
    assert torch.equal(tiles.get([3, 7, 1]), large.images[[3, 7, 1]])
    tiles.get([10, 11, 12, 13])
    assert len(tiles._cache) <= 5 and tiles.decoded == 7
    tiles.get([12, 13])  # still cached
    assert tiles.decoded == 7
    mirrored = TilePool.from_dir(photos, tile_size=8, augment=True, cache=False, progress=False)
    expected = TilePool.from_dir(photos, tile_size=48, augment=True, cache=False, progress=False)
    picked = [0, 45, 130, 159]  # a photo, a mirror image, a darker and a lighter mirrored copy
    assert torch.equal(mirrored.load_tiles(picked, (48, 48)), expected.images[picked])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_every_strip_format_reads_back(tmp_path: Path, suffix: str):
    picture = landscape(70, 90, seed=3)
    path = tmp_path / f"out{suffix}"
    rows = []
    write_image_strips(path, 90, 70, iter(picture.split(16, dim=1)), on_rows=rows.append)
    back = read_image(path)
    assert back.shape == picture.shape and rows == [16, 32, 48, 64, 70]
    error = (back.int() - picture.int()).abs().float()
    if suffix == ".jpg":  # lossy: close on average (quality 95, no chroma subsampling)
        assert float(error.mean()) < 2
    else:
        assert float(error.max()) == 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_strips_that_do_not_add_up_leave_nothing(tmp_path: Path):
    picture = landscape(20, 30)
    for strips, message in (
        ([picture[:, :10]], "hold 10 rows, the picture 20"),
        ([picture, picture], "more than the picture's 20 rows"),
        ([picture[:2]], "a strip must be uint8"),
    ):
        with pytest.raises(SinkError, match=message):
            write_image_strips(tmp_path / "x.png", 30, 20, iter(strips))
    with pytest.raises(SinkError, match=r"is written as \.jpg"):
        write_image_strips(tmp_path / "x.webp", 30, 20, iter([picture]))
    assert not list(tmp_path.iterdir())


def test_the_command_line_draws_a_large_mosaic_in_strips(
    photos: Path, tmp_path: Path, monkeypatch, capsys
):
    picture = tmp_path / "in.png"
    Image.fromarray(landscape(40, 64, seed=4).permute(1, 2, 0).numpy()).save(picture)
    monkeypatch.setattr(print_size, "STRIPS_ABOVE_BYTES", 100_000)  # 3 x 200 x 320 is larger
    common = [str(picture), "--tiles", str(photos), "--cell", "8", "--tile-size", "40"]
    common += ["--no-cache", "--device", "cpu"]
    drawn = []
    monkeypatch.setattr(
        print_size,
        "write_image_strips",
        lambda *a, **k: drawn.append(a) or write_image_strips(*a, **k),
    )
    assert main([*common, "-o", str(tmp_path / "print.tif")]) == 0
    assert read_image(tmp_path / "print.tif").shape == (3, 200, 320) and drawn
    assert "look: cells 8x8 px, tiles 40x40 px (output 320x200)" in capsys.readouterr().err
    assert main([*common, "-o", str(tmp_path / "print.webp"), "--quiet"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mosaic: error: a 320x200 mosaic is written in strips: use .jpg, .jpeg, .png, .tif, "
        f".tiff for {tmp_path / 'print.webp'}"
    )
