"""Mosaic compositing: every cell's tile, colour-transferred toward the cell in Oklab, the
source optionally blended over it, written straight into the output frame as planar RGB or as
YUV 4:2:0. Triton kernel, launcher and pure-torch reference.

The frame is a ``rows x cols`` grid of cells of ``th x tw`` pixels; cell ``(r, c)`` shows tile
``choice[r, c]``. With a ``ColourTransfer`` each tile pixel goes to Oklab and through the cell's
affine map, per channel (Reinhard et al.'s mean-and-spread match, blended by the strength ``s``)::

    gain   = min(cell_std / max(tile_std, spread_floor), max_gain)
    scale  = 1 - s + s * gain
    offset = tile_mean * (1 - scale) + s * (cell_mean - tile_mean)
    out    = tile * scale + offset

then back to sRGB (clamped to the gamut, rounded). Without one the tiles are copied, bit-exact.

With a ``Blend`` the source picture is laid over the mosaic at an opacity ``o`` in [0, 1], as an
image editor's layer opacity does on sRGB codes: ``out = round(mosaic + o * (source -
mosaic))``, the source stretched over the output picture by bilinear sampling (PyTorch's
``interpolate(mode="bilinear", align_corners=False)``: a source coordinate
``(y + 0.5) * H_source / H - 0.5``, clamped at 0, between its two nearest rows and columns). A
strip of a larger picture passes the whole picture's scale and its own first rows (in the
output, and in the source crop it brings), so strips sample exactly as the whole would.

One kernel program covers a block of output pixels (``BLOCK_R`` rows of ``BLOCK_W`` columns,
for YUV ``2 x 2`` pixels per element): it finds each pixel's cell, reads the cell's tile index
and statistics (a few addresses per warp, cached), gathers the tile pixel (runs of ``t``
contiguous bytes), computes the affine coefficients and the colour conversions in registers, and
stores whole output rows (coalesced). Everything is fixed-shape and reads nothing back to the
host, so a frame step can be captured in a CUDA graph.

YUV 4:2:0 (``pixel_format="yuv420p"``) is the planar I420 layout FFmpeg calls ``yuv420p``: one
uint8 ``(H * 3 // 2, W)`` tensor holding the Y plane (H rows of W), then U and V (each
``H/2 x W/2``, packed). An odd width or height is padded to even by repeating the last column or
row, as the video sinks pad RGB. Colour: BT.709 matrix (``Kr = 0.2126``, ``Kb = 0.0722``),
limited range (Y in 16..235, U and V in 16..240), each 2 x 2 block's chroma the average of its
four pixels' chroma (centre-sited), rounded to nearest. The conversion starts from the rounded
sRGB codes of the RGB output, in exact integer arithmetic (``rgb_to_yuv420_reference``), so the
YUV frame is exactly the conversion of the RGB frame the same call would give; exact ties (a few
colours' luma) round up, chroma never ties.
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple

import torch

from kernels._launch import check_same_device, check_tensor, empty_output
from kernels._math import encode_to_uint8, linear_srgb_to_oklab, oklab_to_linear_srgb
from kernels._triton import tl, triton
from kernels.dispatch import interpreting, use_triton
from kernels.oklab import (
    load_linear_srgb,
    oklab_to_srgb_reference,
    srgb_decode_table,
    srgb_to_oklab_reference,
)

__all__ = [
    "PIXEL_FORMATS",
    "Blend",
    "ColourTransfer",
    "composite_tiles",
    "composite_tiles_reference",
    "rgb_to_yuv420_reference",
    "transfer_coefficients_reference",
]

PIXEL_FORMATS = ("rgb", "yuv420p")
"""``"rgb"``: uint8 ``(3, H, W)`` planar RGB. ``"yuv420p"``: uint8 ``(H * 3 // 2, W)`` I420."""


class ColourTransfer(NamedTuple):
    """The colour transfer of every cell toward its source (see the module docstring).

    Attributes:
        strength: ``s`` in [0, 1]; 0 still goes through Oklab (use no transfer for a copy).
        tile_mean: float32 ``(M, 3)``, each tile's Oklab mean.
        tile_std: float32 ``(M, 3)``, each tile's Oklab standard deviation.
        cell_mean: float32 ``(rows, cols, 3)``, the Oklab mean each cell moves toward.
        cell_std: float32 ``(rows, cols, 3)``, the Oklab standard deviation it moves toward.
        max_gain: the largest factor a tile's spread may be multiplied by (> 0).
        spread_floor: the floor on a tile's spread in the gain's denominator (> 0).
    """

    strength: float
    tile_mean: torch.Tensor
    tile_std: torch.Tensor
    cell_mean: torch.Tensor
    cell_std: torch.Tensor
    max_gain: float
    spread_floor: float


class Blend(NamedTuple):
    """The source laid over the mosaic (see the module docstring).

    Attributes:
        source: uint8 ``(3, Hs, Ws)``, the source picture (any strides), stretched over the
            output picture.
        opacity: ``o`` in [0, 1]; 0 leaves the mosaic as it is, 1 gives the stretched source.
        scale: source pixels per output pixel ``(rows, columns)``; ``None``: the source's size
            over the output picture's.
        rows: for a strip of a larger picture, ``(output row, source row)``: the rows of the
            whole picture where this output strip and this source crop begin.
    """

    source: torch.Tensor
    opacity: float
    scale: tuple[float, float] | None = None
    rows: tuple[int, int] = (0, 0)

    def scales(self, size: tuple[int, int]) -> tuple[float, float]:
        """``scale``, or the source's size over ``size``, the output picture's ``(H, W)``."""
        if self.scale is not None:
            return self.scale
        return self.source.shape[1] / size[0], self.source.shape[2] / size[1]


# BT.709 limited range in integers (Kr, Kg, Kb scaled by 10000, R, G, B the sRGB codes):
#   Y = round(16 + 219/255 * L / 10000),  L = 2126 R + 7152 G + 722 B
#   U = round(128 + 224/255 * (B - L / 10000) / 1.8556), averaged over 2 x 2 pixels
#   V = round(128 + 224/255 * (R - L / 10000) / 1.5748), likewise
# With the fractions reduced and round(x) = floor(x + 1/2), every numerator below is a
# non-negative int32 (the kernel divides like the reference), and chroma sums 4 pixels' terms.
_LUMA_WEIGHTS = (2126, 7152, 722)
_U_WEIGHTS = (-2126, -7152, 9278)  # 10000 (B - luma)
_V_WEIGHTS = (7874, -7152, -722)  # 10000 (R - luma)
_LUMA_ROUNDING = (73, 14_025_000, 850_000)  # Y = (73 L + 14025000) // 850000
_U_ROUNDING = (28, 304_016_865, 2_365_890)  # U = (28 S + 304016865) // 2365890, S: 4 px
_V_ROUNDING = (28, 258_011_295, 2_007_870)  # V = (28 S + 258011295) // 2007870


# --------------------------------------------------------------------------- references


def transfer_coefficients_reference(
    transfer: ColourTransfer, tile_index: torch.Tensor, cells: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(n, 3)`` ``(scale, offset)`` of the cells ``cells`` (int64 ``(n,)`` row-major
    indices; all cells when ``None``) showing the tiles ``tile_index`` (int64 ``(n,)``)."""
    cell_mean = transfer.cell_mean.reshape(-1, 3)
    cell_std = transfer.cell_std.reshape(-1, 3)
    if cells is not None:
        cell_mean, cell_std = cell_mean[cells], cell_std[cells]
    tile_mean, tile_std = transfer.tile_mean[tile_index], transfer.tile_std[tile_index]
    strength = transfer.strength
    gain = (cell_std / tile_std.clamp_min(transfer.spread_floor)).clamp_max_(transfer.max_gain)
    scale = gain.mul_(strength).add_(1.0 - strength)
    offset = tile_mean * (1.0 - scale) + strength * (cell_mean - tile_mean)
    return scale, offset


def _transferred_tiles(
    tiles: torch.Tensor,
    index: torch.Tensor,
    transfer: ColourTransfer,
    tile_lab: torch.Tensor | None,
    cells: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 ``(n, 3, th, tw)``: tiles ``index`` (int64 ``(n,)``) through the transfer of cells
    ``cells`` (row-major indices, all cells when ``None``)."""
    if tile_lab is None:
        lab = srgb_to_oklab_reference(tiles.index_select(0, index))
    else:
        lab = tile_lab.index_select(0, index)  # a fresh tensor, changed in place below
    scale, offset = transfer_coefficients_reference(transfer, index, cells)
    return oklab_to_srgb_reference(lab.mul_(scale[:, :, None, None]).add_(offset[:, :, None, None]))


def composite_tiles_reference(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    transfer: ColourTransfer | None = None,
    *,
    tile_lab: torch.Tensor | None = None,
    size: tuple[int, int] | None = None,
    pixel_format: str = "rgb",
    previous: torch.Tensor | None = None,
    changed: torch.Tensor | None = None,
    blend: Blend | None = None,
) -> torch.Tensor:
    """Pure-torch ``composite_tiles`` (arguments as it checks them): tiles gathered, converted
    and arranged with whole-tensor operations.

    It is the CPU path of a video, so it spares what it can: given ``previous`` and ``changed``,
    only the changed cells are converted, the others copied from ``previous``. The RGB result
    is a view of the ``rows * th x cols * tw`` frame when ``size`` crops it.
    """
    rows, cols = choice.shape
    side_h, side_w = tiles.shape[-2:]
    height, width = size if size is not None else (rows * side_h, cols * side_w)
    index = choice.reshape(-1)
    shape = (rows, cols, 3, side_h, side_w)
    frame = torch.empty((3, rows * side_h, cols * side_w), dtype=torch.uint8, device=tiles.device)
    blocks = frame.view(3, rows, side_h, cols, side_w).permute(1, 3, 0, 2, 4)  # (r, c, 3, h, w)
    if transfer is None:
        blocks.copy_(tiles.index_select(0, index).view(shape))
    elif previous is None:
        blocks.copy_(_transferred_tiles(tiles, index, transfer, tile_lab).view(shape))
    else:
        frame[:, :height, :width] = previous
        cells = changed.reshape(-1).nonzero().squeeze(1)
        coloured = _transferred_tiles(tiles, index[cells], transfer, tile_lab, cells)
        blocks[cells // cols, cells % cols] = coloured
    frame = frame[:, :height, :width]
    if blend is not None:
        frame = blended_reference(frame, blend)
    return rgb_to_yuv420_reference(frame) if pixel_format == "yuv420p" else frame


def blended_reference(mosaic: torch.Tensor, blend: Blend) -> torch.Tensor:
    """uint8 ``(3, H, W)``: ``blend.source`` stretched over ``H x W`` (bilinear, module
    docstring) laid over the uint8 ``mosaic`` at ``blend.opacity``, in float32."""
    base = mosaic.float()
    source = stretched_reference(blend, mosaic.shape[-2:])
    return base.add_(source.sub_(base).mul_(blend.opacity)).add_(0.5).floor_().to(torch.uint8)


def stretched_reference(blend: Blend, size: tuple[int, int]) -> torch.Tensor:
    """float32 ``(3, H, W)``: ``blend.source`` sampled over an output picture of ``size``."""
    (_, source_h, source_w), device = blend.source.shape, blend.source.device
    (scale_h, scale_w), (output_row, source_row) = blend.scales(size), blend.rows

    def axis(count: int, first: int, scale: float, start: int, extent: int):
        position = torch.arange(first, first + count, device=device, dtype=torch.float32)
        position = ((position + 0.5) * scale - 0.5).clamp_min_(0) - start
        low = position.floor().clamp_(0, extent - 1)
        return low.long(), (low + 1).clamp_max_(extent - 1).long(), position - low

    top, bottom, weight_y = axis(size[0], output_row, scale_h, source_row, source_h)
    left, right, weight_x = axis(size[1], 0, scale_w, 0, source_w)
    rows = blend.source.float()
    rows = rows[:, top] + (rows[:, bottom] - rows[:, top]) * weight_y[:, None]
    return rows[:, :, left] + (rows[:, :, right] - rows[:, :, left]) * weight_x


def rgb_to_yuv420_reference(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 ``(3, H, W)`` RGB -> uint8 ``(H' * 3 // 2, W')`` I420 (module docstring: BT.709,
    limited range, centre-sited 2 x 2 chroma), ``H'`` and ``W'`` the sizes rounded up to even
    by repeating the last row or column. Exact integer arithmetic."""
    if rgb.shape[1] % 2:
        rgb = torch.cat([rgb, rgb[:, -1:]], dim=1)
    if rgb.shape[2] % 2:
        rgb = torch.cat([rgb, rgb[:, :, -1:]], dim=2)
    _, height, width = rgb.shape
    codes = rgb.to(torch.int32)

    def weighted(weights: tuple[int, int, int]) -> torch.Tensor:
        return weights[0] * codes[0] + weights[1] * codes[1] + weights[2] * codes[2]

    def rounded(value: torch.Tensor, rounding: tuple[int, int, int]) -> torch.Tensor:
        factor, bias, divisor = rounding
        return (value * factor + bias) // divisor

    def block_sums(value: torch.Tensor) -> torch.Tensor:
        return value.view(height // 2, 2, width // 2, 2).sum((1, 3), dtype=torch.int32)

    planes = (
        rounded(weighted(_LUMA_WEIGHTS), _LUMA_ROUNDING),
        rounded(block_sums(weighted(_U_WEIGHTS)), _U_ROUNDING),
        rounded(block_sums(weighted(_V_WEIGHTS)), _V_ROUNDING),
    )
    return torch.cat([plane.flatten() for plane in planes]).to(torch.uint8).view(-1, width)


# --------------------------------------------------------------------------- public


def composite_tiles(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    transfer: ColourTransfer | None = None,
    *,
    tile_lab: torch.Tensor | None = None,
    size: tuple[int, int] | None = None,
    pixel_format: str = "rgb",
    previous: torch.Tensor | None = None,
    changed: torch.Tensor | None = None,
    blend: Blend | None = None,
) -> torch.Tensor:
    """The mosaic frame: tile ``choice[r, c]`` in cell ``(r, c)``, colour-transferred and the
    source blended over it if asked.

    Args:
        tiles: uint8 ``(M, 3, th, tw)`` sRGB tiles; any strides.
        choice: int64 ``(rows, cols)`` tile of each cell, each in ``[0, M)`` (not checked here:
            that would read the device; an index out of range reads out of bounds); any strides.
        transfer: each cell's colour transfer (module docstring); ``None`` copies the tiles
            (bit-exact).
        tile_lab: float32 ``(M, 3, th, tw)``, ``srgb_to_oklab(tiles)`` precomputed once per
            pool; read instead of converting the tiles (used with a transfer only).
        size: ``(H, W)`` of the output picture, at most ``(rows * th, cols * tw)``: the mosaic
            is cropped at the bottom and right. Default: the whole mosaic.
        pixel_format: one of ``PIXEL_FORMATS`` (YUV: module docstring).
        previous: uint8 ``(3, H, W)``, the RGB output of an earlier call with the same
            arguments except in the cells ``changed``: the other cells may be copied from it.
            A hint, for RGB output with a transfer only: the reference then converts only the
            changed cells (where a CPU's time goes); the kernel recomputes every cell, which
            gives the same pixels.
        changed: bool ``(rows, cols)``, given with ``previous``.
        blend: the source laid over the mosaic (module docstring); ``None`` for none. Not with
            ``previous``: the source changes every cell.

    Returns:
        uint8 ``(3, H, W)`` (``"rgb"``) or ``(H' * 3 // 2, W')`` (``"yuv420p"``, ``H'`` and
        ``W'`` rounded up to even) on ``tiles``' device; contiguous from the kernel, a cropped
        view from the reference.
    """
    size = _check_arguments(tiles, choice, transfer, tile_lab, size, pixel_format)
    _check_previous(previous, changed, choice, size, transfer, pixel_format)
    _check_blend(blend, tiles, previous)
    if use_triton(tiles):
        return _composite_triton(tiles, choice, transfer, tile_lab, size, pixel_format, blend)
    return composite_tiles_reference(
        tiles,
        choice,
        transfer,
        tile_lab=tile_lab,
        size=size,
        pixel_format=pixel_format,
        previous=previous,
        changed=changed,
        blend=blend,
    )


def _check_arguments(
    tiles: object,
    choice: object,
    transfer: object,
    tile_lab: object,
    size: object,
    pixel_format: object,
) -> tuple[int, int]:
    """Raise one clear line on a bad argument; return the output picture ``(H, W)``."""
    check_tensor(tiles, "tiles", dtypes=(torch.uint8,), ndim=4)
    m, channels, side_h, side_w = tiles.shape
    if m < 1 or channels != 3 or side_h < 1 or side_w < 1:
        raise ValueError(
            f"tiles must be a non-empty (M, 3, th, tw) batch, got {tuple(tiles.shape)}"
        )
    check_tensor(choice, "choice", dtypes=(torch.int64,), ndim=2)
    check_same_device(tiles=tiles, choice=choice)
    rows, cols = choice.shape
    if rows < 1 or cols < 1:
        raise ValueError(f"choice must be a non-empty (rows, cols) grid, got {(rows, cols)}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, got {pixel_format!r}")
    full = (rows * side_h, cols * side_w)
    if size is None:
        size = full
    fits = isinstance(size, tuple) and len(size) == 2
    fits = fits and all(_is_int(s) and 1 <= s <= f for s, f in zip(size, full, strict=True))
    if not fits:
        raise ValueError(
            f"size must be (H, W) with 1 <= H <= {full[0]} and 1 <= W <= {full[1]}, got {size!r}"
        )
    if transfer is not None:
        _check_transfer(transfer, tiles, choice)
    if tile_lab is not None:
        check_tensor(tile_lab, "tile_lab", dtypes=(torch.float32,), ndim=4)
        check_same_device(tiles=tiles, tile_lab=tile_lab)
        if tile_lab.shape != tiles.shape:
            raise ValueError(
                f"tile_lab must have the shape of tiles, {tuple(tiles.shape)}, "
                f"got {tuple(tile_lab.shape)}"
            )
    return size


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_transfer(transfer: object, tiles: torch.Tensor, choice: torch.Tensor) -> None:
    if not isinstance(transfer, ColourTransfer):
        raise TypeError(f"transfer must be a ColourTransfer, got {type(transfer).__name__}")
    numbers = {
        "strength": (transfer.strength, 0.0, 1.0),
        "max_gain": (transfer.max_gain, 0.0, float("inf")),
        "spread_floor": (transfer.spread_floor, 0.0, float("inf")),
    }
    for name, (value, low, high) in numbers.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"transfer.{name} must be a number, got {type(value).__name__}")
        if not low <= value <= high or (name != "strength" and value == 0):
            bound = "in [0, 1]" if name == "strength" else "> 0"
            raise ValueError(f"transfer.{name} must be {bound}, got {value}")
    shapes = {
        "tile_mean": (len(tiles), 3),
        "tile_std": (len(tiles), 3),
        "cell_mean": (*choice.shape, 3),
        "cell_std": (*choice.shape, 3),
    }
    for name, shape in shapes.items():
        value = check_tensor(getattr(transfer, name), f"transfer.{name}", dtypes=(torch.float32,))
        if value.shape != shape:
            raise ValueError(f"transfer.{name} must have shape {shape}, got {tuple(value.shape)}")
        check_same_device(tiles=tiles, **{f"transfer.{name}": value})


def _check_blend(blend: object, tiles: torch.Tensor, previous: object) -> None:
    if blend is None:
        return
    if not isinstance(blend, Blend):
        raise TypeError(f"blend must be a Blend, got {type(blend).__name__}")
    opacity = blend.opacity
    if isinstance(opacity, bool) or not isinstance(opacity, Real) or not 0 <= opacity <= 1:
        raise ValueError(f"blend.opacity must be a number in [0, 1], got {opacity!r}")
    source = check_tensor(blend.source, "blend.source", dtypes=(torch.uint8,), ndim=3)
    if source.shape[0] != 3 or source.shape[1] < 1 or source.shape[2] < 1:
        raise ValueError(f"blend.source must be (3, H, W), got {tuple(source.shape)}")
    scale_ok = blend.scale is None or (
        len(blend.scale) == 2 and all(isinstance(x, Real) and x > 0 for x in blend.scale)
    )
    rows_ok = len(blend.rows) == 2 and all(_is_int(x) and x >= 0 for x in blend.rows)
    if not scale_ok or not rows_ok:
        raise ValueError(
            f"blend.scale must be None or two numbers > 0 and blend.rows two ints >= 0, got "
            f"{blend.scale!r} and {blend.rows!r}"
        )
    check_same_device(tiles=tiles, **{"blend.source": source})
    if previous is not None:
        raise ValueError("previous cannot go with blend: the source changes every cell")


def _check_previous(
    previous: object,
    changed: object,
    choice: torch.Tensor,
    size: tuple[int, int],
    transfer: ColourTransfer | None,
    pixel_format: str,
) -> None:
    if previous is None and changed is None:
        return
    if previous is None or changed is None:
        raise ValueError("previous and changed go together: give both or neither")
    if transfer is None or pixel_format != "rgb":
        raise ValueError("previous is a hint for RGB output with a colour transfer only")
    check_tensor(previous, "previous", dtypes=(torch.uint8,), ndim=3)
    check_tensor(changed, "changed", dtypes=(torch.bool,), ndim=2)
    check_same_device(choice=choice, previous=previous, changed=changed)
    if previous.shape != (3, *size) or changed.shape != choice.shape:
        raise ValueError(
            f"previous must be (3, {size[0]}, {size[1]}) and changed {tuple(choice.shape)}, "
            f"got {tuple(previous.shape)} and {tuple(changed.shape)}"
        )


# --------------------------------------------------------------------------- Triton kernel


@triton.jit
def _transferred(
    value,
    tile,
    cell_row,
    cell_col,
    channel,
    mask,
    tile_mean_ptr,
    tile_std_ptr,
    cell_mean_ptr,
    cell_std_ptr,
    tile_stat_strides,
    cell_stat_strides,
    strength,
    max_gain,
    spread_floor,
):
    """One Oklab channel ``value`` of tile pixels through their cells' affine transfer.

    ``tile_stat_strides``: ``(mean_m, mean_c, std_m, std_c)``; ``cell_stat_strides``:
    ``(mean_r, mean_c, mean_k, std_r, std_c, std_k)``.
    """
    tile_mean = tl.load(
        tile_mean_ptr + tile * tile_stat_strides[0] + channel * tile_stat_strides[1], mask=mask
    )
    tile_std = tl.load(
        tile_std_ptr + tile * tile_stat_strides[2] + channel * tile_stat_strides[3], mask=mask
    )
    cell_mean = tl.load(
        cell_mean_ptr
        + cell_row * cell_stat_strides[0]
        + cell_col * cell_stat_strides[1]
        + channel * cell_stat_strides[2],
        mask=mask,
    )
    cell_std = tl.load(
        cell_std_ptr
        + cell_row * cell_stat_strides[3]
        + cell_col * cell_stat_strides[4]
        + channel * cell_stat_strides[5],
        mask=mask,
    )
    gain = tl.minimum(cell_std / tl.maximum(tile_std, spread_floor), max_gain)
    scale = gain * strength + (1.0 - strength)
    offset = tile_mean * (1.0 - scale) + strength * (cell_mean - tile_mean)
    return value * scale + offset


@triton.jit
def _source_channel(source_ptr, rows0, rows1, cols0, cols1, weight_y, weight_x, channel_offset):
    """One channel of the source, bilinear between rows ``rows0``/``rows1`` (pointer offsets,
    ``(R, 1)``) and columns ``cols0``/``cols1`` (``(1, C)``) with the weights of the second."""
    base = source_ptr + channel_offset
    top = tl.load(base + rows0 + cols0).to(tl.float32)
    top += (tl.load(base + rows0 + cols1).to(tl.float32) - top) * weight_x
    bottom = tl.load(base + rows1 + cols0).to(tl.float32)
    bottom += (tl.load(base + rows1 + cols1).to(tl.float32) - bottom) * weight_x
    return top + (bottom - top) * weight_y


@triton.jit
def _blended(codes, source, opacity):
    """int32 sRGB ``codes`` with ``source`` (float32) laid over them at ``opacity``."""
    value = codes.to(tl.float32)
    return tl.floor(value + (source - value) * opacity + 0.5).to(tl.int32)


@triton.jit
def _mosaic_pixels(
    ys,
    xs,
    mask,
    tiles_ptr,
    lab_ptr,
    choice_ptr,
    tile_mean_ptr,
    tile_std_ptr,
    cell_mean_ptr,
    cell_std_ptr,
    decode_table_ptr,
    source_ptr,
    tile_strides,
    lab_strides,
    choice_strides,
    tile_stat_strides,
    cell_stat_strides,
    source_strides,
    source_shape,
    strength,
    max_gain,
    spread_floor,
    opacity,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    TRANSFER: tl.constexpr,
    LAB_INPUT: tl.constexpr,
    BLEND: tl.constexpr,
):
    """int32 sRGB codes ``(red, green, blue)`` of the output pixels at rows ``ys`` and columns
    ``xs`` (int32 ``(R, 1)`` and ``(1, C)`` blocks that broadcast to the shape of ``mask``).

    ``tile_strides`` and ``lab_strides`` are ``(m, c, h, w)``, ``choice_strides`` ``(r, c)``,
    ``source_strides`` ``(c, h, w)``; ``source_shape`` is ``(Hs, Ws, scale_h, scale_w,
    first output row, first source row)`` (``Blend``).
    """
    cell_row = ys // TILE_H
    cell_col = xs // TILE_W
    tile = tl.load(
        choice_ptr + cell_row * choice_strides[0] + cell_col * choice_strides[1], mask=mask, other=0
    )
    within_y = ys % TILE_H
    within_x = xs % TILE_W
    pixel = (
        tiles_ptr + tile * tile_strides[0] + within_y * tile_strides[2] + within_x * tile_strides[3]
    )
    if TRANSFER:
        if LAB_INPUT:
            lab = lab_ptr + tile * lab_strides[0] + within_y * lab_strides[2]
            lab += within_x * lab_strides[3]
            lab_l = tl.load(lab, mask=mask, other=0.0)
            lab_a = tl.load(lab + lab_strides[1], mask=mask, other=0.0)
            lab_b = tl.load(lab + 2 * lab_strides[1], mask=mask, other=0.0)
        else:
            lab_l, lab_a, lab_b = linear_srgb_to_oklab(
                load_linear_srgb(pixel, mask, decode_table_ptr, True),
                load_linear_srgb(pixel + tile_strides[1], mask, decode_table_ptr, True),
                load_linear_srgb(pixel + 2 * tile_strides[1], mask, decode_table_ptr, True),
            )
        stats = (tile_mean_ptr, tile_std_ptr, cell_mean_ptr, cell_std_ptr)
        coefficients = (tile_stat_strides, cell_stat_strides, strength, max_gain, spread_floor)
        lab_l = _transferred(lab_l, tile, cell_row, cell_col, 0, mask, *stats, *coefficients)
        lab_a = _transferred(lab_a, tile, cell_row, cell_col, 1, mask, *stats, *coefficients)
        lab_b = _transferred(lab_b, tile, cell_row, cell_col, 2, mask, *stats, *coefficients)
        linear_r, linear_g, linear_b = oklab_to_linear_srgb(lab_l, lab_a, lab_b)
        red = encode_to_uint8(linear_r).to(tl.int32)
        green = encode_to_uint8(linear_g).to(tl.int32)
        blue = encode_to_uint8(linear_b).to(tl.int32)
    else:
        red = tl.load(pixel, mask=mask, other=0).to(tl.int32)
        green = tl.load(pixel + tile_strides[1], mask=mask, other=0).to(tl.int32)
        blue = tl.load(pixel + 2 * tile_strides[1], mask=mask, other=0).to(tl.int32)
    if BLEND:
        # Source coordinates as PyTorch's bilinear interpolation computes them (a strip's rows
        # offset to the whole picture's); every address is clamped into the source, so the
        # loads need no mask.
        row_in_picture = (ys + source_shape[4]).to(tl.float32)
        source_y = tl.maximum((row_in_picture + 0.5) * source_shape[2] - 0.5, 0.0)
        source_y -= source_shape[5]
        source_x = tl.maximum((xs.to(tl.float32) + 0.5) * source_shape[3] - 0.5, 0.0)
        row0 = tl.minimum(tl.maximum(tl.floor(source_y), 0.0), source_shape[0] - 1)
        col0 = tl.minimum(tl.floor(source_x), source_shape[1] - 1)
        weight_y = source_y - row0
        weight_x = source_x - col0
        rows0 = row0.to(tl.int64) * source_strides[1]
        rows1 = tl.minimum(row0 + 1, source_shape[0] - 1).to(tl.int64) * source_strides[1]
        cols0 = col0.to(tl.int64) * source_strides[2]
        cols1 = tl.minimum(col0 + 1, source_shape[1] - 1).to(tl.int64) * source_strides[2]
        corners = (rows0, rows1, cols0, cols1, weight_y, weight_x)
        red = _blended(red, _source_channel(source_ptr, *corners, 0), opacity)
        green = _blended(green, _source_channel(source_ptr, *corners, source_strides[0]), opacity)
        blue = _blended(blue, _source_channel(source_ptr, *corners, 2 * source_strides[0]), opacity)
    return red, green, blue


@triton.jit
def _weighted(
    red, green, blue, WEIGHT_R: tl.constexpr, WEIGHT_G: tl.constexpr, WEIGHT_B: tl.constexpr
):
    return WEIGHT_R * red + WEIGHT_G * green + WEIGHT_B * blue


# Only the output's row pitch is specialised on (16-divisible rows store as vectors): each other
# size or stride divisibility, and every int equal to 1, would compile the kernel once more.
_UNSPECIALISED = [
    "height",
    "out_rows",
    *(f"tile_stride_{d}" for d in "mchw"),
    *(f"lab_stride_{d}" for d in "mchw"),
    "choice_stride_r",
    "choice_stride_c",
    *(f"tile_{stat}_stride_{d}" for stat in ("mean", "std") for d in "mc"),
    *(f"cell_{stat}_stride_{d}" for stat in ("mean", "std") for d in "rck"),
    *(f"source_stride_{d}" for d in "chw"),
    "source_h",
    "source_w",
    "source_output_row",
    "source_row",
]


@triton.jit(do_not_specialize=_UNSPECIALISED)
def _composite_kernel(
    tiles_ptr,
    lab_ptr,
    choice_ptr,
    tile_mean_ptr,
    tile_std_ptr,
    cell_mean_ptr,
    cell_std_ptr,
    decode_table_ptr,
    source_ptr,
    out_ptr,
    height,
    width,
    out_rows,
    out_cols,
    tile_stride_m,
    tile_stride_c,
    tile_stride_h,
    tile_stride_w,
    lab_stride_m,
    lab_stride_c,
    lab_stride_h,
    lab_stride_w,
    choice_stride_r,
    choice_stride_c,
    tile_mean_stride_m,
    tile_mean_stride_c,
    tile_std_stride_m,
    tile_std_stride_c,
    cell_mean_stride_r,
    cell_mean_stride_c,
    cell_mean_stride_k,
    cell_std_stride_r,
    cell_std_stride_c,
    cell_std_stride_k,
    source_stride_c,
    source_stride_h,
    source_stride_w,
    source_h,
    source_w,
    source_scale_h,
    source_scale_w,
    source_output_row,
    source_row,
    strength,
    max_gain,
    spread_floor,
    opacity,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    TRANSFER: tl.constexpr,
    LAB_INPUT: tl.constexpr,
    BLEND: tl.constexpr,
    YUV: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """The mosaic of ``choice`` into ``out``.

    Pointers: ``tiles`` uint8 ``(M, 3, TILE_H, TILE_W)``; ``lab`` float32 of the same shape,
    read when ``LAB_INPUT``; ``choice`` int64 ``(rows, cols)``; ``tile_mean`` and ``tile_std``
    float32 ``(M, 3)``, ``cell_mean`` and ``cell_std`` float32 ``(rows, cols, 3)``, read when
    ``TRANSFER``; ``decode_table`` float32 ``(256,)`` (``srgb_decode_table``); ``source`` uint8
    ``(3, source_h, source_w)``, read when ``BLEND`` (``source_scale_*``, ``source_output_row``,
    ``source_row`` and ``opacity``: the ``Blend``'s); ``out``
    contiguous uint8: ``(3, height, width)``, or with ``YUV`` ``(3 * out_rows, 2 * out_cols)``,
    the I420 frame of the picture padded to ``2 * out_rows x 2 * out_cols``. Any input strides.

    Grid: ``(cdiv(out_cols, BLOCK_W), cdiv(out_rows, BLOCK_R))``, over the RGB output's pixels
    (``out_rows x out_cols = height x width``) or YUV's chroma samples. Along axis 0 programs
    walk a row of blocks, so neighbours read neighbouring cells.
    """
    block_rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    block_cols = tl.program_id(0) * BLOCK_W + tl.arange(0, BLOCK_W)
    inputs = (
        tiles_ptr,
        lab_ptr,
        choice_ptr,
        tile_mean_ptr,
        tile_std_ptr,
        cell_mean_ptr,
        cell_std_ptr,
        decode_table_ptr,
        source_ptr,
        (tile_stride_m, tile_stride_c, tile_stride_h, tile_stride_w),
        (lab_stride_m, lab_stride_c, lab_stride_h, lab_stride_w),
        (choice_stride_r, choice_stride_c),
        (tile_mean_stride_m, tile_mean_stride_c, tile_std_stride_m, tile_std_stride_c),
        (
            cell_mean_stride_r,
            cell_mean_stride_c,
            cell_mean_stride_k,
            cell_std_stride_r,
            cell_std_stride_c,
            cell_std_stride_k,
        ),
        (source_stride_c, source_stride_h, source_stride_w),
        (source_h, source_w, source_scale_h, source_scale_w, source_output_row, source_row),
        strength,
        max_gain,
        spread_floor,
        opacity,
    )
    mask = (block_rows < out_rows)[:, None] & (block_cols < out_cols)[None, :]
    if YUV:
        padded_w = 2 * out_cols
        plane = 2 * out_rows * padded_w
        # Two columns per chroma sample, stored interleaved: whole rows of the Y plane.
        luma_cols = tl.program_id(0) * 2 * BLOCK_W + tl.arange(0, 2 * BLOCK_W)
        luma_mask = (block_rows < out_rows)[:, None] & (luma_cols < padded_w)[None, :]
        left = (2 * block_cols)[None, :]
        right = tl.minimum(left + 1, width - 1)  # an odd width repeats its last column
        u_sum = tl.zeros((BLOCK_R, BLOCK_W), tl.int32)
        v_sum = tl.zeros((BLOCK_R, BLOCK_W), tl.int32)
        # The integers of _LUMA_WEIGHTS ... _V_ROUNDING (jit code reads no Python tuples); the
        # tests pin this frame to rgb_to_yuv420_reference bit for bit.
        for dy in tl.static_range(2):
            luma_rows = 2 * block_rows + dy
            ys = tl.minimum(luma_rows, height - 1)[:, None]  # an odd height repeats its last row
            red_l, green_l, blue_l = _mosaic_pixels(
                ys, left, mask, *inputs, TILE_H=TILE_H, TILE_W=TILE_W, TRANSFER=TRANSFER,
                LAB_INPUT=LAB_INPUT, BLEND=BLEND,
            )  # fmt: skip
            red_r, green_r, blue_r = _mosaic_pixels(
                ys, right, mask, *inputs, TILE_H=TILE_H, TILE_W=TILE_W, TRANSFER=TRANSFER,
                LAB_INPUT=LAB_INPUT, BLEND=BLEND,
            )  # fmt: skip
            luma = tl.interleave(
                (_weighted(red_l, green_l, blue_l, 2126, 7152, 722) * 73 + 14_025_000) // 850_000,
                (_weighted(red_r, green_r, blue_r, 2126, 7152, 722) * 73 + 14_025_000) // 850_000,
            )
            rows_offset = luma_rows.to(tl.int64)[:, None] * padded_w
            tl.store(out_ptr + rows_offset + luma_cols[None, :], luma.to(tl.uint8), mask=luma_mask)
            u_sum += _weighted(red_l, green_l, blue_l, -2126, -7152, 9278)
            u_sum += _weighted(red_r, green_r, blue_r, -2126, -7152, 9278)
            v_sum += _weighted(red_l, green_l, blue_l, 7874, -7152, -722)
            v_sum += _weighted(red_r, green_r, blue_r, 7874, -7152, -722)
        chroma = out_ptr + plane + block_rows.to(tl.int64)[:, None] * out_cols + block_cols[None, :]
        u = (u_sum * 28 + 304_016_865) // 2_365_890
        v = (v_sum * 28 + 258_011_295) // 2_007_870
        tl.store(chroma, u.to(tl.uint8), mask=mask)
        tl.store(chroma + plane // 4, v.to(tl.uint8), mask=mask)
    else:
        ys = block_rows[:, None]
        xs = block_cols[None, :]
        red, green, blue = _mosaic_pixels(
            ys, xs, mask, *inputs, TILE_H=TILE_H, TILE_W=TILE_W, TRANSFER=TRANSFER,
            LAB_INPUT=LAB_INPUT, BLEND=BLEND,
        )  # fmt: skip
        plane = height * width
        pixel = out_ptr + ys.to(tl.int64) * width + xs
        tl.store(pixel, red.to(tl.uint8), mask=mask)
        tl.store(pixel + plane, green.to(tl.uint8), mask=mask)
        tl.store(pixel + 2 * plane, blue.to(tl.uint8), mask=mask)


# On a GPU two block shapes are tuned once per tile size and variant (the best hardly depends on
# the frame size), at 2 and 4 elements a thread (pixels, or YUV chroma samples of four pixels):
# on sm_90 YUV takes 80 and 138 registers a thread at those, 244 at 8
# (tests/kernels/compile_sm90.py). The interpreter runs one.
_GPU_CONFIGS = [triton.Config({"BLOCK_R": rows, "BLOCK_W": 128}, num_warps=4) for rows in (2, 4)]
_composite_tuned = triton.autotune(
    _GPU_CONFIGS, key=["TILE_H", "TILE_W", "TRANSFER", "LAB_INPUT", "BLEND", "YUV"]
)(_composite_kernel)

# Interpreter time grows with the number of programs, hardly with their size.
_INTERPRETER_BLOCK_PIXELS = 8192


def _interpreter_block(out_rows: int, out_cols: int) -> tuple[int, int]:
    """``(BLOCK_R, BLOCK_W)`` in the interpreter: whole rows, as many as fit the budget."""
    block_w = min(triton.next_power_of_2(out_cols), _INTERPRETER_BLOCK_PIXELS)
    block_r = min(triton.next_power_of_2(out_rows), _INTERPRETER_BLOCK_PIXELS // block_w)
    return block_r, block_w


class _KernelCall(NamedTuple):
    """What one launch of ``_composite_kernel`` passes: its output, runtime arguments in order,
    variant constexprs and the extent ``(out_rows, out_cols)`` its grid covers."""

    out: torch.Tensor
    args: tuple
    variant: dict[str, object]
    extent: tuple[int, int]


def _kernel_call(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    transfer: ColourTransfer | None,
    tile_lab: torch.Tensor | None,
    size: tuple[int, int],
    pixel_format: str,
    blend: Blend | None = None,
) -> _KernelCall:
    """The launch of checked arguments, its output allocated (tensors may be on the meta device:
    ``tests/kernels/compile_sm90.py`` builds its launches here)."""
    height, width = size
    yuv = pixel_format == "yuv420p"
    if yuv:
        out_rows, out_cols = (height + 1) // 2, (width + 1) // 2
        out = empty_output((3 * out_rows, 2 * out_cols), torch.uint8, tiles.device)
    else:
        out_rows, out_cols = height, width
        out = empty_output((3, height, width), torch.uint8, tiles.device)
    lab_input = transfer is not None and tile_lab is not None
    lab = tile_lab if lab_input else tiles
    if transfer is not None:
        stats = (transfer.tile_mean, transfer.tile_std, transfer.cell_mean, transfer.cell_std)
        stat_strides = tuple(stride for tensor in stats for stride in tensor.stride())
        coefficients = (transfer.strength, transfer.max_gain, transfer.spread_floor)
    else:  # pointers never read get the tiles (any valid tensor), strides 0
        stats, stat_strides, coefficients = (tiles,) * 4, (0,) * 10, (0.0, 1.0, 1.0)
    if blend is not None:
        source, (_, source_h, source_w) = blend.source, blend.source.shape
        scales = tuple(map(float, blend.scales(size)))
        source_args = (*source.stride(), source_h, source_w, *scales, *blend.rows)
        opacity = float(blend.opacity)
    else:
        source, source_args, opacity = tiles, (0, 0, 0, 1, 1, 0.0, 0.0, 0, 0), 0.0
    args = (
        tiles,
        lab,
        choice,
        *stats,
        srgb_decode_table(tiles.device),
        source,
        out,
        height,
        width,
        out_rows,
        out_cols,
        *tiles.stride(),
        *(lab.stride() if lab_input else (0,) * 4),
        *choice.stride(),
        *stat_strides,
        *source_args,
        *map(float, coefficients),
        opacity,
    )
    variant = {
        "TILE_H": tiles.shape[-2],
        "TILE_W": tiles.shape[-1],
        "TRANSFER": transfer is not None,
        "LAB_INPUT": lab_input,
        "BLEND": blend is not None,
        "YUV": yuv,
    }
    return _KernelCall(out, args, variant, (out_rows, out_cols))


def _composite_triton(
    tiles: torch.Tensor,
    choice: torch.Tensor,
    transfer: ColourTransfer | None,
    tile_lab: torch.Tensor | None,
    size: tuple[int, int],
    pixel_format: str,
    blend: Blend | None,
) -> torch.Tensor:
    """Launch ``_composite_kernel`` on checked arguments."""
    call = _kernel_call(tiles, choice, transfer, tile_lab, size, pixel_format, blend)
    out_rows, out_cols = call.extent
    if tiles.device.type == "cuda" and not interpreting():
        grid = lambda meta: (
            triton.cdiv(out_cols, meta["BLOCK_W"]),
            triton.cdiv(out_rows, meta["BLOCK_R"]),
        )
        _composite_tuned[grid](*call.args, **call.variant)
    else:
        block_r, block_w = _interpreter_block(out_rows, out_cols)
        grid = (triton.cdiv(out_cols, block_w), triton.cdiv(out_rows, block_r))
        _composite_kernel[grid](*call.args, **call.variant, BLOCK_R=block_r, BLOCK_W=block_w)
    return call.out
