"""How the CPU references compute (the kernels' property tests check what they compute): the
sRGB encode tables are exact, and cutting the pixels into cache-sized chunks changes nothing but
float32 rounding (the 3x3 channel products of other shapes may round an ulp apart)."""

from __future__ import annotations

import pytest
import torch

import kernels.oklab as oklab
from kernels.oklab import oklab_to_srgb_reference, srgb_encode_tables, srgb_to_oklab_reference


def encode_float64(linear: torch.Tensor) -> torch.Tensor:
    """``round(255 * encode(c))`` of float32 linear values, the curve evaluated in float64."""
    c = linear.double().clamp(0, 1)
    encoded = torch.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
    return torch.round(encoded * 255).to(torch.int64)


def encode_by_tables(linear: torch.Tensor) -> torch.Tensor:
    first_code, next_code_from = srgb_encode_tables(torch.device("cpu"))
    bits = linear.view(torch.int32)
    bins = (bits >> 16).clamp(0, len(first_code) - 1)
    return first_code[bins].long() + (bits >= next_code_from[bins]).long()


def test_encode_tables_round_exactly():
    """Every code boundary and its float32 neighbours, a million random values weighted toward
    the dark end, and the edges: equal to the float64 curve rounded."""
    first_code, next_code_from = srgb_encode_tables(torch.device("cpu"))
    boundaries = next_code_from[next_code_from < torch.iinfo(torch.int32).max].view(torch.float32)
    starts = (torch.nonzero(first_code[1:] != first_code[:-1]).squeeze(1) + 1) << 16
    below = torch.nextafter(boundaries, torch.tensor(-1.0))
    generator = torch.Generator().manual_seed(0)
    values = torch.cat(
        [
            boundaries,
            below,
            starts.to(torch.int32).view(torch.float32),
            torch.rand(1_000_000, generator=generator) ** 3,
            torch.tensor([0.0, -0.0, 1.0, 1.5, -0.25, float("inf"), float("-inf"), 1e-30]),
        ]
    )
    assert torch.equal(encode_by_tables(values), encode_float64(values))


def chunked_and_whole(convert, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch):
    whole = convert(x)
    monkeypatch.setattr(oklab, "_CHUNK_PIXELS", 7)
    return convert(x), whole


@pytest.mark.parametrize(
    "shape", [(3, 5, 9), (2, 3, 4, 4), (40, 3, 2, 2)], ids=["frame", "frames", "tiles"]
)
@pytest.mark.parametrize("layout", ["contiguous", "hwc"])
def test_chunks_give_the_same_conversion(shape, layout, monkeypatch: pytest.MonkeyPatch):
    generator = torch.Generator().manual_seed(sum(shape))
    rgb = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    if layout == "hwc":
        rgb = rgb.movedim(-3, -1).contiguous().movedim(-1, -3)
    chunked, whole = chunked_and_whole(srgb_to_oklab_reference, rgb, monkeypatch)
    torch.testing.assert_close(chunked, whole, atol=5e-7, rtol=0)
    assert chunked.is_contiguous()
    lab = whole * 1.2 - 0.05  # partly out of gamut
    chunked, whole = chunked_and_whole(oklab_to_srgb_reference, lab, monkeypatch)
    assert (chunked.int() - whole.int()).abs().max() <= 1
    assert chunked.is_contiguous()
