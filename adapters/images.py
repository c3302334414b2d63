"""Still images: read any common image as RGB, write PNG/JPEG/WebP atomically.

``read_image`` is shared by the frame sources and the tile-pool loader, so it turns every image
Pillow can decode into the same thing, a uint8 ``(3, H, W)`` RGB tensor on the CPU:

- EXIF orientation is applied (the pixels come out the way a viewer shows them);
- grayscale, bilevel, palette, CMYK and YCbCr images are converted to RGB;
- transparent images (RGBA, LA, palette or RGB with a transparent colour) are composited over a
  neutral mid-grey (128, 128, 128), so a cut-out matches what surrounds it no better than any
  other colour;
- 16-bit grayscale (``I;16`` PNG and TIFF, ``I``) is scaled from 0..65535 to 0..255 (Pillow's own
  conversion would clip it at 255); 16-bit RGB is reduced to 8 bits by Pillow when it opens it;
- a multi-frame file (GIF, TIFF) gives its first frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from adapters.errors import SinkError, SourceError, first_line
from adapters.paths import partial_path, remove_quietly

__all__ = ["image_format", "is_image", "output_image_format", "read_image", "write_image"]

BACKGROUND_GREY = 128
_SIXTEEN_BIT_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SAVE_OPTIONS: dict[str, dict[str, int]] = {
    "JPEG": {"quality": 95, "subsampling": 0},  # 4:4:4: mosaics are all sharp colour edges
    "WEBP": {"quality": 95},
}


def is_image(path: str | Path) -> bool:
    """Whether ``path`` is a still image Pillow can decode, judged by its content.

    The name does not matter: a PNG called ``clip.mp4`` is an image, a video called ``a.png`` is
    not. Animated images (GIF, APNG, animated WebP) are not still images: they are videos.
    """
    try:
        with Image.open(path) as image:
            # An empty tile list means Pillow recognised the header but has no decoder for the
            # pixels (it "opens" MPEG video that way).
            return bool(image.tile) and not getattr(image, "is_animated", False)
    except Exception:  # any file Pillow cannot identify, including folders and missing files
        return False


def image_format(path: str | Path) -> str:
    """The format of an image file in lower case (``"png"``, ``"jpeg"``), from its header."""
    try:
        with Image.open(path) as image:
            return (image.format or "unknown").lower()
    except Exception as error:
        raise SourceError(f"cannot read image {path}: {first_line(error)}") from error


def read_image(path: str | Path, *, min_side: int | None = None) -> torch.Tensor:
    """Decode an image file into RGB.

    Args:
        path: any image file Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF, ...).
        min_side: a size hint for callers that only need a small version (tiles): a JPEG is then
            decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, several times faster than a
            full decode and resize), the smallest of those whose shorter side is still at least
            ``min_side``. Other formats, and JPEGs smaller than that, decode at full size, so the
            result can be any size with a shorter side >= ``min_side``: resize it yourself.

    Returns:
        uint8 ``(3, H, W)`` contiguous CPU tensor (see the module docstring for the conversions).

    Raises:
        SourceError: the file is missing, not an image, truncated or otherwise undecodable.
    """
    try:
        with Image.open(path) as image:
            if min_side is not None:
                image.draft(None, (min_side, min_side))  # no-op for formats other than JPEG
            ImageOps.exif_transpose(image, in_place=True)
            pixels = _rgb_pixels(image)
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except Exception as error:  # Pillow's plugins raise many types on malformed files
        raise SourceError(f"cannot read image {path}: {first_line(error)}") from error
    chw = pixels.transpose(2, 0, 1)
    # Pillow's arrays can be read-only; torch needs a writable, contiguous one.
    if not (chw.flags.c_contiguous and chw.flags.writeable):
        chw = np.array(chw, order="C")
    return torch.from_numpy(chw)


def _rgb_pixels(image: Image.Image) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB pixels of a Pillow image of any mode."""
    if image.mode in _SIXTEEN_BIT_GREY_MODES:
        levels = np.asarray(image).astype(np.int64).clip(0, 65535)
        grey = ((levels * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (BACKGROUND_GREY,) * 3 + (255,))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def output_image_format(path: str | Path) -> str:
    """The Pillow format an image output's extension asks for (``"PNG"``, ``"JPEG"``), or a
    one-line ``SinkError`` when Pillow writes no image of that type (``.mp4``, ``.xyz``)."""
    path = Path(path)
    file_format = Image.registered_extensions().get(path.suffix.lower())
    if file_format is None or file_format not in Image.SAVE:
        raise SinkError(f"cannot write {path}: unknown image type, use .png, .jpg or .webp")
    return file_format


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write a uint8 ``(3, H, W)`` RGB tensor (any device) as an image file, atomically.

    The format follows the extension (``.png``, ``.jpg``/``.jpeg``, ``.webp``, or any other
    Pillow writes); JPEG and WebP are written at quality 95, JPEG without chroma subsampling.
    The file is written under a temporary name in the destination folder and renamed over
    ``path`` at the end: a failure leaves no partial file and an existing ``path`` untouched.

    Raises:
        ValueError: ``image`` is not a uint8 ``(3, H, W)`` tensor.
        SinkError: unknown extension, or the file cannot be written.
    """
    path = Path(path)
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {image.shape}")
    file_format = output_image_format(path)
    pixels = image.detach().permute(1, 2, 0).contiguous().cpu().numpy()
    temporary = partial_path(path)
    try:
        with open(temporary, "xb") as file:
            options = _SAVE_OPTIONS.get(file_format, {})
            Image.fromarray(pixels).save(file, format=file_format, **options)
        os.replace(temporary, path)
    except OSError as error:
        remove_quietly(temporary)
        raise SinkError(f"cannot write {path}: {error.strerror or error}") from error
    except BaseException:
        remove_quietly(temporary)
        raise
