"""YUV 4:2:0 frames as the video sinks take them: FFmpeg's ``yuv420p`` (I420) bytes, BT.709,
limited range.

A sink opened with ``pixel_format="yuv420p"`` takes each frame as one uint8 tensor
``(H * 3 // 2, W)`` (or a batch ``(B, H * 3 // 2, W)``) holding the three planes one after the
other, exactly as FFmpeg lays them out:

- Y: ``H`` rows of ``W`` bytes;
- U (Cb): ``H / 2`` rows of ``W / 2`` bytes, packed with no padding (so it starts at byte
  ``H * W`` and need not start on a row of the tensor);
- V (Cr): the same, from byte ``H * W * 5 / 4``.

``H`` and ``W`` are even. The colours are those of ``rgb_to_yuv420``; a sink converts RGB frames
the same way (FFmpeg's swscale with an area filter and accurate rounding, which agrees with it
to within one level), so RGB and YUV input give the same picture.
"""

from __future__ import annotations

import torch

__all__ = ["KB", "KR", "rgb_to_yuv420", "yuv420_planes", "yuv420_to_rgb"]

# BT.709 luma weights of R and B (G's is 1 - KR - KB).
KR, KB = 0.2126, 0.0722
_KG = 1.0 - KR - KB
# Limited ("tv") range: Y spans 16..235 (219 levels), Cb and Cr 16..240 (224 around 128).
_Y_SCALE, _C_SCALE = 219 / 255, 224 / 255


def rgb_to_yuv420(rgb: torch.Tensor) -> torch.Tensor:
    """Convert uint8 RGB to I420 bytes, BT.709 limited range, on the tensor's device.

    Args:
        rgb: uint8 ``(3, H, W)`` or ``(B, 3, H, W)``, ``H`` and ``W`` even, any strides.

    Returns:
        uint8 ``(H * 3 // 2, W)`` or ``(B, H * 3 // 2, W)``, contiguous (layout in the module
        docstring).

    The arithmetic, in float32, with ``E' = Kr R + Kg G + Kb B`` (0..255):

    - ``Y = 16 + 219 / 255 * E'`` for every pixel;
    - ``Cb = 128 + 224 / 255 * (B - E') / (2 (1 - Kb))`` and
      ``Cr = 128 + 224 / 255 * (R - E') / (2 (1 - Kr))`` of each 2x2 block's mean R, G and B,
      which is the mean of its four pixels' Cb and Cr (the conversion is linear): chroma sited at
      the block's centre;
    - each value rounded half up, ``floor(x + 0.5)``. Exact ties cannot occur for integer RGB,
      but a value within float32 rounding of a half may round the other way in another
      implementation: compare with a tolerance of one level.

    Pure torch, written for clarity (about 25 ms a 720p frame on one CPU core; FFmpeg's swscale
    does it in about 2): the sinks convert RGB themselves, and a GPU kernel can write these bytes
    directly.
    """
    if rgb.dtype != torch.uint8 or rgb.ndim not in (3, 4) or rgb.shape[-3] != 3:
        raise ValueError(
            f"rgb must be uint8 (3, H, W) or (B, 3, H, W), got {rgb.dtype} {rgb.shape}"
        )
    height, width = rgb.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs an even width and height, got {width}x{height}")
    batch = rgb.reshape(-1, 3, height, width).float()
    red, green, blue = batch.unbind(1)
    luma = red * KR + green * _KG + blue * KB
    out = torch.empty(batch.shape[0], height * 3 // 2, width, dtype=torch.uint8, device=rgb.device)
    y_plane, u_plane, v_plane = yuv420_planes(out)
    y_plane.copy_(luma.mul_(_Y_SCALE).add_(16.5).floor_())
    # Block sums of R, G, B: (B, 3, H/2, W/2); a quarter of them is the block mean.
    sums = batch.unflatten(2, (height // 2, 2)).unflatten(4, (width // 2, 2)).sum((3, 5))
    red, green, blue = sums.unbind(1)
    luma = red * KR + green * _KG + blue * KB
    u_plane.copy_((blue - luma).mul_(_C_SCALE / (8 * (1 - KB))).add_(128.5).floor_())
    v_plane.copy_((red - luma).mul_(_C_SCALE / (8 * (1 - KR))).add_(128.5).floor_())
    return out if rgb.ndim == 4 else out[0]


def yuv420_planes(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views of the Y, U and V planes of contiguous I420 frames.

    Args:
        frames: ``(..., H * 3 // 2, W)``, contiguous (the chroma planes are found by offset).

    Returns:
        ``(Y (..., H, W), U (..., H/2, W/2), V (..., H/2, W/2))``, views sharing its memory.
    """
    rows, width = frames.shape[-2:]
    height = rows * 2 // 3
    if rows * 2 % 3 or height % 2 or width % 2:
        raise ValueError(f"not I420 bytes of an even-sized frame: {rows} rows of {width}")
    if not frames.is_contiguous():
        raise ValueError("I420 frames must be contiguous to find their chroma planes")
    lead = frames.shape[:-2]
    flat = frames.reshape(*lead, rows * width)
    luma, quarter = height * width, height * width // 4
    chroma = (height // 2, width // 2)
    return (
        flat[..., :luma].unflatten(-1, (height, width)),
        flat[..., luma : luma + quarter].unflatten(-1, chroma),
        flat[..., luma + quarter :].unflatten(-1, chroma),
    )


def yuv420_to_rgb(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(3, H, W)`` (or ``(B, 3, H, W)``) of contiguous I420 bytes ``(H * 3 // 2, W)``
    (or a batch): the inverse of ``rgb_to_yuv420``'s matrix, each 2x2 block taking its block's
    chroma (what a player shows, give or take its chroma filter), rounded and clamped. For
    measuring what an encoder receives, not for speed."""
    y_plane, u_plane, v_plane = yuv420_planes(frames)
    luma = (y_plane.float() - 16) / _Y_SCALE
    blue_difference = (u_plane.float() - 128) * (2 * (1 - KB) / _C_SCALE)
    red_difference = (v_plane.float() - 128) * (2 * (1 - KR) / _C_SCALE)
    blue_difference = blue_difference.repeat_interleave(2, -1).repeat_interleave(2, -2)
    red_difference = red_difference.repeat_interleave(2, -1).repeat_interleave(2, -2)
    red = luma + red_difference
    blue = luma + blue_difference
    green = (luma - KR * red - KB * blue) / _KG
    rgb = torch.stack([red, green, blue], -3)
    return rgb.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)
