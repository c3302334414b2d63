"""read_image, write_image and is_image on images of every mode, made with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adapters import SinkError, SourceError, is_image, read_image, write_image
from adapters.images import BACKGROUND_GREY


def pixel(image: torch.Tensor, x: int = 0, y: int = 0) -> tuple[int, ...]:
    return tuple(int(v) for v in image[:, y, x])


def test_rgb_png_exact(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 16) and image.is_contiguous()
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    Image.new("L", (4, 3), 77).save(tmp_path / "grey.png")
    Image.new("1", (4, 3), 1).save(tmp_path / "bilevel.png")
    assert pixel(read_image(tmp_path / "grey.png")) == (77, 77, 77)
    assert pixel(read_image(tmp_path / "bilevel.png")) == (255, 255, 255)


def test_palette(tmp_path: Path) -> None:
    image = Image.new("P", (4, 3), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.save(tmp_path / "palette.png")
    assert pixel(read_image(tmp_path / "palette.png")) == (10, 200, 30)


def test_palette_with_transparent_index(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "palette.png", transparency=0)
    result = read_image(tmp_path / "palette.png")
    assert pixel(result, 0) == (BACKGROUND_GREY,) * 3
    assert pixel(result, 1) == (0, 0, 255)


def test_rgba_composited_on_mid_grey(tmp_path: Path) -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128)])
    image.save(tmp_path / "rgba.png")
    result = read_image(tmp_path / "rgba.png")
    assert result.shape == (3, 1, 3)
    assert pixel(result, 0) == (128, 128, 128)
    assert pixel(result, 1) == (255, 0, 0)
    red, green, blue = pixel(result, 2)
    assert abs(red - 192) <= 1 and abs(green - 64) <= 1 and green == blue


def test_grey_with_alpha(tmp_path: Path) -> None:
    Image.new("LA", (2, 2), (250, 0)).save(tmp_path / "la.png")
    assert pixel(read_image(tmp_path / "la.png")) == (128, 128, 128)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    levels = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / f"deep{suffix}")
    with Image.open(tmp_path / f"deep{suffix}") as opened:
        assert opened.mode.startswith("I")  # really a 16-bit image
    result = read_image(tmp_path / f"deep{suffix}")
    assert [pixel(result, x) for x in range(4)] == [(0,) * 3, (128,) * 3, (255,) * 3, (4,) * 3]


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk(tmp_path: Path, suffix: str) -> None:
    image = Image.new("CMYK", (2, 1))
    image.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])  # white, cyan
    image.save(tmp_path / f"cmyk{suffix}", quality=100)
    result = read_image(tmp_path / f"cmyk{suffix}")
    assert all(abs(a - b) <= 8 for a, b in zip(pixel(result, 0), (255, 255, 255), strict=True))
    assert all(abs(a - b) <= 8 for a, b in zip(pixel(result, 1), (0, 255, 255), strict=True))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer rotates the stored image 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    result = read_image(tmp_path / "rotated.jpg")
    assert result.shape == (3, 40, 20)
    red_on_top = pixel(result, 10, 2)
    assert red_on_top[0] > 200 and red_on_top[2] < 60


def test_min_side_decodes_large_jpegs_smaller(tmp_path: Path) -> None:
    Image.new("RGB", (800, 600), (10, 120, 240)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg").shape == (3, 600, 800)
    reduced = read_image(tmp_path / "big.jpg", min_side=100)
    assert reduced.shape == (3, 150, 200)  # 1/4: the smallest DCT scale with a side >= 100
    assert read_image(tmp_path / "big.jpg", min_side=1000).shape == (3, 600, 800)
    assert abs(pixel(reduced, 5, 5)[2] - 240) <= 4
    Image.new("RGB", (800, 600)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", min_side=100).shape == (3, 600, 800)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name, match in [
        ("missing.png", "no such file"),
        ("text.png", "cannot read image"),
        ("cut.png", "cannot read image"),
    ]:
        with pytest.raises(SourceError, match=match) as raised:
            read_image(tmp_path / name)
        assert "\n" not in str(raised.value)


def test_is_image_by_content(tmp_path: Path, clip_silent: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "picture.mp4", format="PNG")
    frames = [Image.new("RGB", (4, 4), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    assert is_image(tmp_path / "picture.mp4")
    assert not is_image(clip_silent)
    assert not is_image(tmp_path / "animated.gif")
    assert not is_image(tmp_path)
    assert not is_image(tmp_path / "missing.png")


@pytest.mark.parametrize(("suffix", "tolerance"), [(".png", 0), (".jpg", 12), (".webp", 12)])
def test_write_image_round_trip(tmp_path: Path, suffix: str, tolerance: int) -> None:
    image = torch.zeros(3, 24, 32, dtype=torch.uint8)
    image[0, :, :16] = 200
    image[2, 12:] = 90
    write_image(tmp_path / f"out{suffix}", image)
    back = read_image(tmp_path / f"out{suffix}")
    assert back.shape == image.shape
    assert (back.int() - image.int()).abs().float().mean() <= tolerance / 4
    assert (back.int() - image.int()).abs().max() <= 4 * tolerance
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]


def test_write_image_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(target, torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert target.read_bytes() == b"previous"


def test_write_image_errors(tmp_path: Path) -> None:
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    with pytest.raises(SinkError, match="unknown image type"):
        write_image(tmp_path / "out.xyz", image)
    with pytest.raises(SinkError, match="cannot write"):
        write_image(tmp_path / "missing-folder" / "out.png", image)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "out.png", image.float())
    assert list(tmp_path.iterdir()) == []
