"""Pictures too large to hold in memory, written a strip of rows at a time.

A print-size mosaic (20,480 pixels across) is 850 MB of pixels; Pillow can only encode a picture
it holds whole. ``write_image_strips`` takes the rows as an iterator of strips, top to bottom,
and hands them to libvips (``pip install pyvips[binary]``), which encodes JPEG, PNG and tiled
TIFF as the rows arrive: the strips reach it as a PNG stream built on the fly (stored, not
compressed: the rows are copied once), read back row by row, so no more than a strip and
libvips' own buffers are in memory at any time.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from adapters.errors import SinkError
from adapters.paths import partial_path, remove_quietly

__all__ = ["STRIP_SUFFIXES", "write_image_strips"]

STRIP_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
"""Outputs ``write_image_strips`` writes: JPEG, PNG and tiled TIFF."""

# libvips' save options per format: JPEG as write_image writes it (quality 95, no chroma
# subsampling: mosaics are sharp colour edges), TIFF tiled and deflated (BigTIFF past 4 GB).
_SAVE_OPTIONS = {
    ".jpg": {"Q": 95, "subsample_mode": "off"},
    ".jpeg": {"Q": 95, "subsample_mode": "off"},
    ".png": {"compression": 6},
    ".tif": {"tile": True, "tile_width": 256, "tile_height": 256, "compression": "deflate"},
    ".tiff": {"tile": True, "tile_width": 256, "tile_height": 256, "compression": "deflate"},
}


def write_image_strips(
    path: str | Path,
    width: int,
    height: int,
    strips: Iterable[torch.Tensor],
    *,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Write a ``width x height`` RGB picture whose rows come from ``strips``, atomically.

    Args:
        path: ``.jpg``/``.jpeg``, ``.png``, ``.tif``/``.tiff`` (tiled).
        strips: uint8 ``(3, h, width)`` tensors (any device, any ``h``), top to bottom, ``height``
            rows in all; each is asked for when the encoder needs its rows.
        on_rows: called with the rows written so far after each strip (progress).

    Raises:
        SinkError: another extension, no libvips, the rows do not add up, or the file cannot be
            written. A failure leaves no partial file and an existing ``path`` untouched.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SAVE_OPTIONS:
        raise SinkError(f"{path}: a large picture is written as {', '.join(STRIP_SUFFIXES)}")
    try:
        import pyvips
    except (ImportError, OSError) as error:
        raise SinkError(
            f"writing {path} in strips needs libvips: pip install pyvips[binary] ({error})"
        ) from None
    stream = _Stream(_png_chunks(width, height, strips, on_rows))
    source = pyvips.SourceCustom()
    source.on_read(stream.read)
    temporary = partial_path(path)
    try:
        picture = pyvips.Image.new_from_source(source, "", access="sequential")
        picture.write_to_file(str(temporary), **_SAVE_OPTIONS[suffix])
        if stream.error is not None:
            raise stream.error
        os.replace(temporary, path)
    except pyvips.Error as error:
        remove_quietly(temporary)
        if stream.error is not None:  # the strips failed: that is the error to report
            raise stream.error from None
        raise SinkError(f"cannot write {path}: {str(error).strip().splitlines()[0]}") from None
    except BaseException:
        remove_quietly(temporary)
        raise


class _Stream:
    """``read(size)`` over an iterator of byte chunks, for ``pyvips.SourceCustom``; an exception
    raised by the iterator is kept in ``error`` (libvips only sees the stream end)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.error: BaseException | None = None

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size and self.error is None:
            try:
                chunk = next(self._chunks, None)
            except BaseException as error:  # handed back by write_image_strips
                self.error = error
                break
            if chunk is None:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _png_chunks(
    width: int,
    height: int,
    strips: Iterable[torch.Tensor],
    on_rows: Callable[[int], None] | None,
) -> Iterator[bytes]:
    """An 8-bit RGB PNG of the strips, chunk by chunk: one IDAT per strip, stored blocks."""
    yield b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    stored = zlib.compressobj(0)
    rows = 0
    for strip in strips:
        if strip.dtype != torch.uint8 or strip.ndim != 3 or tuple(strip.shape[::2]) != (3, width):
            raise SinkError(f"a strip must be uint8 (3, h, {width}), got {tuple(strip.shape)}")
        count = strip.shape[1]
        if rows + count > height:
            raise SinkError(f"the strips hold more than the picture's {height} rows")
        lines = np.zeros((count, 1 + 3 * width), np.uint8)  # filter byte 0, then RGB
        lines[:, 1:].reshape(count, width, 3)[:] = strip.permute(1, 2, 0).cpu().numpy()
        yield _chunk(b"IDAT", stored.compress(lines.tobytes()))
        rows += count
        if on_rows is not None:
            on_rows(rows)
    if rows != height:
        raise SinkError(f"the strips hold {rows} rows, the picture {height}")
    yield _chunk(b"IDAT", stored.flush()) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
