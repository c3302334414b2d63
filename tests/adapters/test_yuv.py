"""rgb_to_yuv420 against colour-science's BT.709 YCbCr, on drawn sizes, batches and strides."""

from __future__ import annotations

import colour
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adapters.yuv import rgb_to_yuv420, yuv420_planes
from tests.kernels.compare import shares_device_fixture

BT709 = colour.WEIGHTS_YCBCR["ITU-R BT.709"]
# Even sides with tails: the smallest, primes doubled, around a power of two.
SIDES = st.sampled_from([2, 4, 6, 14, 22, 30, 32, 34, 62])


def oracle(rgb: np.ndarray) -> np.ndarray:
    """Unrounded Y, Cb, Cr code values (limited range, 8 bits) of float RGB ``(..., 3)`` in
    0..255, by colour-science."""
    ycbcr = colour.RGB_to_YCbCr(rgb / 255, K=BT709, out_bits=8, out_legal=True, out_int=False)
    return ycbcr * 255


def planes_of(frame: np.ndarray, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Y, U and V of one I420 frame ``(H * 3 // 2, W)``, cut by byte offset as FFmpeg reads
    them (independent of ``yuv420_planes``)."""
    flat = frame.reshape(-1)
    luma, quarter = height * width, height * width // 4
    chroma = (height // 2, width // 2)
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + quarter].reshape(chroma),
        flat[luma + quarter :].reshape(chroma),
    )


@shares_device_fixture
@given(
    batch=st.sampled_from([None, 1, 3]),
    height=SIDES,
    width=SIDES,
    layout=st.sampled_from(["contiguous", "nhwc", "cropped"]),
    seed=st.integers(0, 2**16),
)
def test_matches_colour_science(
    device: str, batch: int | None, height: int, width: int, layout: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    count = batch or 1
    if layout == "nhwc":  # a decoder's (B, H, W, 3) batch seen as (B, 3, H, W)
        rgb = torch.randint(256, (count, height, width, 3), generator=generator).permute(0, 3, 1, 2)
    elif layout == "cropped":  # every other column of a wider frame
        rgb = torch.randint(256, (count, 3, height, 2 * width), generator=generator)[..., ::2]
    else:
        rgb = torch.randint(256, (count, 3, height, width), generator=generator)
    rgb = rgb.to(torch.uint8).to(device)
    out = rgb_to_yuv420(rgb if batch else rgb[0])
    assert out.dtype == torch.uint8 and out.is_contiguous()
    assert out.shape == ((count,) if batch else ()) + (height * 3 // 2, width)
    frames = out.reshape(count, height * 3 // 2, width).cpu().numpy().astype(float)
    pixels = rgb.cpu().numpy().transpose(0, 2, 3, 1).astype(float)  # (B, H, W, 3)
    blocks = pixels.reshape(count, height // 2, 2, width // 2, 2, 3).mean(axis=(2, 4))
    for frame, image, block in zip(frames, pixels, blocks, strict=True):
        y, u, v = planes_of(frame, height, width)
        # Rounded to nearest: within half a level of the exact value (float32 on our side).
        assert np.abs(y - oracle(image)[..., 0]).max() <= 0.5 + 1e-3
        expected = oracle(block)  # chroma of the 2x2 block's mean colour
        assert np.abs(u - expected[..., 1]).max() <= 0.5 + 1e-3
        assert np.abs(v - expected[..., 2]).max() <= 0.5 + 1e-3


def test_limited_range_extremes() -> None:
    colours = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]])
    rgb = colours.to(torch.uint8).view(4, 3, 1, 1).expand(4, 3, 2, 2)
    y, u, v = (plane.flatten(1)[:, 0].tolist() for plane in yuv420_planes(rgb_to_yuv420(rgb)))
    assert y[:2] == [16, 235] and u[:2] == v[:2] == [128, 128]
    assert v[2] == 240 and u[3] == 240  # full red, full blue: the chroma extremes


def test_planes_are_views_in_ffmpeg_order() -> None:
    frames = torch.arange(2 * 6 * 4, dtype=torch.int32).view(2, 6, 4).to(torch.uint8)
    y, u, v = yuv420_planes(frames)
    assert y.shape == (2, 4, 4) and u.shape == v.shape == (2, 2, 2)
    assert u[0].flatten().tolist() == list(range(16, 20))
    assert v[1].flatten().tolist() == list(range(44, 48))
    y[0, 0, 0] = 99
    assert frames[0, 0, 0] == 99


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="even width and height"):
        rgb_to_yuv420(torch.zeros(3, 4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="contiguous"):
        yuv420_planes(torch.zeros(6, 8, dtype=torch.uint8)[:, ::2])
    with pytest.raises(ValueError, match="not I420"):
        yuv420_planes(torch.zeros(5, 4, dtype=torch.uint8))
