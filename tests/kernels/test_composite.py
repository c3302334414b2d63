"""Property tests for ``kernels/composite.py``: the mosaic frame, colour transfer, YUV 4:2:0.

The Triton kernel (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
beside it, against the unfused path the engine ran before (gather, ``srgb_to_oklab``, the affine
transfer, ``oklab_to_srgb``, arrange), and against independent oracles: numpy indexing for the
copy, the transfer in float64 numpy, and colour-science's BT.709 limited-range YCbCr.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import kernels.composite as composite_module
from kernels import composite_tiles, oklab_to_srgb, srgb_to_oklab
from kernels._math import (
    LINEAR_SRGB_FROM_LMS,
    LMS_CBRT_FROM_OKLAB,
    LMS_FROM_LINEAR_SRGB,
    OKLAB_FROM_LMS_CBRT,
)
from kernels.composite import (
    Blend,
    ColourTransfer,
    composite_tiles_reference,
    rgb_to_yuv420_reference,
    transfer_coefficients_reference,
)
from kernels.oklab import srgb_to_oklab_reference
from tests.kernels.compare import assert_close, needs_compiled_cuda, with_layout

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns on import that matplotlib is missing
    import colour

SEEDS = st.integers(0, 2**31 - 1)
MAX_GAIN, SPREAD_FLOOR = 2.0, 1e-4
# Kernel and reference may round a value within float32 error of a half apart (a decode table
# and exp2/log2 against exact tables; approximate MUFU ops and fused multiply-adds on GPUs).
MAX_ONE_LEVEL_FRACTION = 1e-3
# The reference's float32 Oklab against float64: a code may round the other way within this
# much of a half.
ORACLE_LEVELS = 0.5 + 0.02


@st.composite
def mosaic_specs(draw: st.DrawFn) -> dict:
    """A grid, a tile size (square, or not: 4:3 and 3:2 photos), a crop, memory layouts and a
    transfer: tails along both axes (1, odd, primes; 16-px tiles cross the GPU's 128-column
    blocks at 9 columns)."""
    side = draw(st.sampled_from([1, 2, 3, 5, 8, 16]))
    side_w = draw(st.sampled_from([side, side, 4 * side // 3 or 1, 3 * side // 2 or 1]))
    rows = draw(st.sampled_from([1, 2, 3, 5]))
    cols = draw(st.sampled_from([1, 2, 3, 7, 9] if side_w >= 16 else [1, 2, 3, 7, 11, 13]))
    crop = (draw(st.integers(0, side - 1)), draw(st.integers(0, side_w - 1)))
    return {
        "pool": draw(st.integers(1, 6)),
        "side": side,
        "side_w": side_w,
        "grid": (rows, cols),
        "size": (rows * side - crop[0], cols * side_w - crop[1]),
        "tile_layout": draw(st.sampled_from(("contiguous", "channels_last", "step_sliced"))),
        "strided": draw(st.booleans()),  # choice and statistics as non-contiguous views
        "strength": draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0]), st.floats(0.05, 0.95))),
        "lab": draw(st.booleans()),
        "seed": draw(SEEDS),
    }


def strided(x: torch.Tensor) -> torch.Tensor:
    """``x`` with the same values, its last two dimensions stored the other way round."""
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def make_inputs(spec: dict, device: str) -> tuple:
    """``(tiles, choice, transfer, tile_lab, size)`` of a spec: uint8 tiles over all codes,
    Oklab statistics in the ranges of real tiles and cells, some spreads 0 (flat)."""
    generator = torch.Generator().manual_seed(spec["seed"])
    pool, side, (rows, cols) = spec["pool"], spec["side"], spec["grid"]
    shape = (pool, 3, side, spec.get("side_w", side))
    tiles = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    choice = torch.randint(0, pool, (rows, cols), generator=generator)

    def oklab_means(*shape: int) -> torch.Tensor:
        low, span = torch.tensor([0.2, -0.15, -0.15]), torch.tensor([0.7, 0.3, 0.3])
        return torch.rand(*shape, 3, generator=generator) * span + low

    def spreads(*shape: int) -> torch.Tensor:
        values = torch.rand(*shape, 3, generator=generator) * 0.12
        return values * (torch.rand(*shape, 3, generator=generator) > 0.2)

    stats = (oklab_means(pool), spreads(pool), oklab_means(rows, cols), spreads(rows, cols))
    if spec["strided"]:
        choice, stats = strided(choice), tuple(map(strided, stats))
    tiles = with_layout(tiles.to(device), spec["tile_layout"])
    choice, stats = choice.to(device), tuple(s.to(device) for s in stats)
    transfer = None
    if spec["strength"] is not None:
        transfer = ColourTransfer(spec["strength"], *stats, MAX_GAIN, SPREAD_FLOOR)
    tile_lab = srgb_to_oklab_reference(tiles) if spec["lab"] else None
    return tiles, choice, transfer, tile_lab, spec["size"]


def composite_with_output_fill(*args, fill: int, **kwargs) -> torch.Tensor:
    """``composite_tiles`` with its output pre-filled with ``fill``: uint8 outputs cannot be
    NaN-poisoned, so two runs with different fills that agree prove every element was written."""
    filled = lambda shape, dtype, device: torch.full(shape, fill, dtype=dtype, device=device)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(composite_module, "empty_output", filled)
        return composite_tiles(*args, **kwargs)


def assert_within_one_level(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to one level, and off by one on a small fraction of values only."""
    assert_close(actual, expected, atol=1, name=name)
    off_by_one = int((actual.cpu() != expected.cpu()).sum())
    allowed = 1 + int(MAX_ONE_LEVEL_FRACTION * expected.numel())
    assert off_by_one <= allowed, f"{name}: {off_by_one} values off by one (allowed {allowed})"


def unfused_composite(tiles, choice, transfer, tile_lab, size) -> torch.Tensor:
    """The engine's path before the fused kernel, each step its own ``kernels`` call: the chosen
    tiles gathered, to Oklab, the affine transfer, back to sRGB, arranged, cropped."""
    rows, cols = choice.shape
    side_h, side_w = tiles.shape[-2:]
    index = choice.reshape(-1)
    picked = tiles.index_select(0, index)
    if transfer is not None:
        lab = srgb_to_oklab(picked) if tile_lab is None else tile_lab.index_select(0, index)
        scale, offset = transfer_coefficients_reference(transfer, index)
        picked = oklab_to_srgb(lab * scale[:, :, None, None] + offset[:, :, None, None])
    frame = picked.view(rows, cols, 3, side_h, side_w).permute(2, 0, 3, 1, 4)
    return frame.reshape(3, rows * side_h, cols * side_w)[:, : size[0], : size[1]]


# --------------------------------------------------------------------------- RGB


@example(
    spec={
        "pool": 3, "side": 16, "grid": (2, 9), "size": (31, 143), "tile_layout": "channels_last",
        "strided": True, "strength": 0.6, "lab": False, "seed": 0,
    }
)  # fmt: skip
@given(spec=mosaic_specs())
def test_rgb_matches_reference_and_the_unfused_path(spec):
    assert_rgb_matches(*make_inputs(spec, "cpu"), name=str(spec))


def assert_rgb_matches(tiles, choice, transfer, tile_lab, size, name: str) -> None:
    """The kernel's RGB frame against the reference and the unfused path: every element
    written, bit-exact for a copy, else within one level."""
    frame = composite_with_output_fill(
        tiles, choice, transfer, tile_lab=tile_lab, size=size, fill=0
    )
    again = composite_with_output_fill(
        tiles, choice, transfer, tile_lab=tile_lab, size=size, fill=255
    )
    assert torch.equal(frame, again), "unwritten output"
    assert frame.shape == (3, *size) and frame.dtype == torch.uint8
    assert frame.device == tiles.device and frame.is_contiguous()

    expected = composite_tiles_reference(tiles, choice, transfer, tile_lab=tile_lab, size=size)
    unfused = unfused_composite(tiles, choice, transfer, tile_lab, size)
    if transfer is None:  # a plain copy: bit-exact everywhere
        assert torch.equal(frame, expected) and torch.equal(frame, unfused)
    else:
        assert_within_one_level(frame, expected, f"kernel vs reference {name}")
        assert_within_one_level(frame, unfused, f"kernel vs unfused {name}")


@given(spec=mosaic_specs())
def test_reference_matches_a_float64_oracle(spec):
    """A copy against numpy indexing; a transfer against the float64 numpy conversion."""
    tiles, choice, transfer, tile_lab, size = make_inputs(spec, "cpu")
    frame = composite_tiles_reference(tiles, choice, transfer, tile_lab=tile_lab, size=size)
    oracle = float64_mosaic(tiles, choice, transfer)[:, : size[0], : size[1]]
    if transfer is None:
        assert torch.equal(frame, oracle.to(torch.uint8))
    else:
        assert_close(frame, oracle, atol=ORACLE_LEVELS, name=f"reference vs float64 {spec}")


def float64_mosaic(tiles, choice, transfer) -> torch.Tensor:
    """float64 ``(3, rows * t, cols * t)`` sRGB codes before rounding: tiles by numpy indexing,
    and for a transfer the sRGB curve and Ottosson's published matrices (``kernels._math``,
    pinned to colour-science in ``test_oklab.py``) in float64, the coefficients too."""
    rows, cols = choice.shape
    side_h, side_w = tiles.shape[-2:]
    picked = tiles.cpu().numpy()[choice.cpu().numpy()].astype(np.float64)  # (rows, cols, 3, h, w)
    if transfer is not None:
        mix = lambda matrix, x: np.einsum("ij,rcjhw->rcihw", np.array(matrix), x)
        encoded = picked / 255
        linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
        lab = mix(OKLAB_FROM_LMS_CBRT, np.cbrt(mix(LMS_FROM_LINEAR_SRGB, linear)))
        s = transfer.strength
        tile_mean, tile_std, cell_mean, cell_std = (x.cpu().double().numpy() for x in transfer[1:5])
        index = choice.cpu().numpy()
        gain = np.minimum(cell_std / np.maximum(tile_std[index], SPREAD_FLOOR), MAX_GAIN)
        scale = 1 - s + s * gain
        offset = tile_mean[index] * (1 - scale) + s * (cell_mean - tile_mean[index])
        lab = lab * scale[..., None, None] + offset[..., None, None]
        linear = np.clip(mix(LINEAR_SRGB_FROM_LMS, mix(LMS_CBRT_FROM_OKLAB, lab) ** 3), 0, 1)
        curve = 1.055 * linear ** (1 / 2.4) - 0.055
        picked = 255 * np.where(linear <= 0.0031308, linear * 12.92, curve)
    frame = picked.transpose(2, 0, 3, 1, 4).reshape(3, rows * side_h, cols * side_w)
    return torch.from_numpy(np.ascontiguousarray(frame))


# --------------------------------------------------------------------------- blend


def with_blend(spec: dict, opacity: float, source_size: tuple[int, int], device: str) -> tuple:
    """``make_inputs`` of ``spec`` and a ``Blend`` of a random source of ``source_size`` (a
    transposed view: any strides)."""
    inputs = make_inputs(spec, device)
    generator = torch.Generator().manual_seed(spec["seed"] + 1)
    height, width = source_size
    source = torch.randint(0, 256, (3, width, height), dtype=torch.uint8, generator=generator)
    return inputs, Blend(source.to(device).transpose(1, 2), opacity)


def bilinear_float64(source: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """float64 ``(3, H, W)``: ``source`` stretched by bilinear sampling, written out in numpy:
    source coordinate ``(y + 0.5) * Hs / H - 0.5`` clamped at 0, between its two nearest rows
    and columns (the last one repeated)."""
    values = source.cpu().numpy().astype(np.float64)
    (_, source_h, source_w), (height, width) = values.shape, size

    def axis(count: int, source_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.maximum((np.arange(count) + 0.5) * source_count / count - 0.5, 0)
        low = np.minimum(np.floor(position).astype(int), source_count - 1)
        return low, np.minimum(low + 1, source_count - 1), position - low

    top, bottom, weight_y = axis(height, source_h)
    left, right, weight_x = axis(width, source_w)
    rows = values[:, top] * (1 - weight_y[:, None]) + values[:, bottom] * weight_y[:, None]
    return rows[:, :, left] * (1 - weight_x) + rows[:, :, right] * weight_x


@given(
    spec=mosaic_specs(),
    opacity=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.05, 0.95)),
    source_size=st.tuples(st.integers(1, 13), st.integers(1, 17)),
)
def test_blend_matches_reference_and_a_float64_oracle(spec, opacity, source_size):
    """The source laid over the mosaic: the kernel against the reference within one level (and
    every element written), the reference against numpy's float64 bilinear blend."""
    (tiles, choice, transfer, tile_lab, size), blend = with_blend(spec, opacity, source_size, "cpu")
    options = {"tile_lab": tile_lab, "size": size, "blend": blend}
    frame = composite_with_output_fill(tiles, choice, transfer, **options, fill=0)
    assert torch.equal(
        frame, composite_with_output_fill(tiles, choice, transfer, **options, fill=255)
    )
    expected = composite_tiles_reference(tiles, choice, transfer, **options)
    assert_close(frame, expected, atol=1, name=f"kernel vs reference {spec}")
    mosaic = composite_tiles_reference(tiles, choice, transfer, tile_lab=tile_lab, size=size)
    base = mosaic.double().numpy()
    oracle = base + opacity * (bilinear_float64(blend.source, size) - base)
    assert_close(expected, torch.from_numpy(oracle), atol=0.5 + 1e-3, name=f"vs float64 {spec}")
    if opacity == 0:
        assert torch.equal(expected, mosaic)


@given(spec=mosaic_specs(), source_size=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_blend_in_yuv_is_the_conversion_of_the_blended_rgb(spec, source_size):
    (tiles, choice, transfer, tile_lab, size), blend = with_blend(spec, 0.4, source_size, "cpu")
    options = {"tile_lab": tile_lab, "size": size, "blend": blend}
    yuv = composite_tiles(tiles, choice, transfer, **options, pixel_format="yuv420p")
    rgb = composite_tiles(tiles, choice, transfer, **options)
    assert torch.equal(yuv, rgb_to_yuv420_reference(rgb))


@pytest.mark.parametrize("transfer", [False, True])
def test_blend_strips_equal_the_whole_picture(transfer):
    """A picture drawn in strips of cell rows (the last cropped), each with the source rows it
    samples and the whole picture's scale and rows: the rows of the whole, kernel and
    reference alike."""
    spec = {
        "pool": 4, "side": 5, "side_w": 6, "grid": (5, 7), "size": (23, 40),
        "tile_layout": "contiguous", "strided": False, "strength": 0.6 if transfer else None,
        "lab": False, "seed": 3,
    }  # fmt: skip
    (tiles, choice, colour, _, size), blend = with_blend(spec, 0.6, (13, 9), "cpu")
    scale = (13 / size[0], 9 / size[1])
    for draw in (composite_tiles, composite_tiles_reference):
        whole = draw(tiles, choice, colour, size=size, blend=blend)
        pieces = []
        for cells in (slice(0, 2), slice(2, 3), slice(3, 5)):
            first, last = cells.start * 5, min(size[0], cells.stop * 5)
            top = int(max((first + 0.5) * scale[0] - 0.5, 0))
            bottom = min(13, int((last - 0.5) * scale[0] - 0.5) + 2)
            strip_blend = Blend(blend.source[:, top:bottom], 0.6, scale, (first, top))
            part = colour
            if colour is not None:
                part = colour._replace(
                    cell_mean=colour.cell_mean[cells], cell_std=colour.cell_std[cells]
                )
            strip_size = (last - first, size[1])
            pieces.append(draw(tiles, choice[cells], part, size=strip_size, blend=strip_blend))
        assert torch.equal(torch.cat(pieces, 1), whole), draw.__name__


def test_blend_refuses_bad_arguments():
    tiles, choice = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.int64)
    source = torch.zeros(3, 5, 5, dtype=torch.uint8)
    for blend, message in (
        (Blend(source, 1.5), "opacity must be a number in"),
        (Blend(source.float(), 0.5), "blend.source"),
        (Blend(source[:2], 0.5), r"must be \(3, H, W\)"),
        ((source, 0.5), "must be a Blend"),
    ):
        with pytest.raises((ValueError, TypeError), match=message):
            composite_tiles(tiles, choice, blend=blend)


# --------------------------------------------------------------------------- YUV 4:2:0


@given(spec=mosaic_specs())
def test_yuv_is_exactly_the_conversion_of_the_rgb_frame(spec):
    assert_yuv_matches(*make_inputs(spec, "cpu"), name=str(spec))


def assert_yuv_matches(tiles, choice, transfer, tile_lab, size, name: str) -> None:
    """The kernel's I420 frame equals the reference conversion of its own RGB frame, bit for bit
    (exact integer arithmetic on both sides), and the reference's within one level."""
    options = {"tile_lab": tile_lab, "size": size}
    yuv = composite_with_output_fill(
        tiles, choice, transfer, **options, fill=0, pixel_format="yuv420p"
    )
    again = composite_with_output_fill(
        tiles, choice, transfer, **options, fill=255, pixel_format="yuv420p"
    )
    assert torch.equal(yuv, again), "unwritten output"
    height, width = size[0] + size[0] % 2, size[1] + size[1] % 2
    assert yuv.shape == (height * 3 // 2, width) and yuv.dtype == torch.uint8
    assert yuv.is_contiguous()

    rgb = composite_tiles(tiles, choice, transfer, **options)
    assert torch.equal(yuv, rgb_to_yuv420_reference(rgb))
    expected = composite_tiles_reference(tiles, choice, transfer, **options, pixel_format="yuv420p")
    if transfer is None:
        assert torch.equal(yuv, expected)
    else:
        assert_close(yuv, expected, atol=1, name=f"kernel vs reference {name}")


@given(
    height=st.sampled_from([1, 2, 3, 7, 16, 17]),
    width=st.sampled_from([1, 2, 5, 8, 13]),
    seed=SEEDS,
    extremes=st.booleans(),
)
def test_rgb_to_yuv420_follows_bt709_limited_range(height, width, seed, extremes):
    """Against colour-science's BT.709 YCbCr (float64): luma per pixel, chroma averaged over each
    2 x 2 block, odd sizes padded by repeating the last row or column, then rounded."""
    generator = torch.Generator().manual_seed(seed)
    if extremes:
        rgb = (torch.randint(0, 2, (3, height, width), generator=generator) * 255).to(torch.uint8)
    else:
        rgb = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    yuv = rgb_to_yuv420_reference(rgb).numpy().astype(np.float64).reshape(-1)

    padded = torch.nn.functional.pad(rgb[None].float(), (0, width % 2, 0, height % 2), "replicate")
    pixels = padded[0].permute(1, 2, 0).numpy()
    ycbcr = 255 * colour.RGB_to_YCbCr(
        pixels,
        K=colour.WEIGHTS_YCBCR["ITU-R BT.709"],
        in_bits=8,
        in_int=True,
        in_legal=False,
        out_bits=8,
        out_legal=True,
        out_int=False,
    )
    rows, cols = pixels.shape[:2]
    chroma = ycbcr[..., 1:].reshape(rows // 2, 2, cols // 2, 2, 2).mean(axis=(1, 3))
    planes = (ycbcr[..., 0], chroma[..., 0], chroma[..., 1])
    expected = np.concatenate([plane.reshape(-1) for plane in planes])
    # Exact ties (a few colours' luma) round up in the reference; elsewhere float64 decides.
    away_from_ties = np.abs(expected - np.floor(expected) - 0.5) > 1e-6
    np.testing.assert_array_equal(yuv[away_from_ties], np.round(expected)[away_from_ties])
    assert np.all(np.abs(yuv - expected) <= 0.5 + 1e-6)
    assert yuv[: rows * cols].min() >= 16 and yuv[: rows * cols].max() <= 235
    assert yuv[rows * cols :].min() >= 16 and yuv[rows * cols :].max() <= 240


def test_yuv_of_primaries_and_greys():
    """Published BT.709 limited-range values: black 16/128/128, white 235/128/128, red and blue
    at the chroma extremes (V = 240, U = 240)."""
    colours = {
        (0, 0, 0): (16, 128, 128),
        (255, 255, 255): (235, 128, 128),
        (255, 0, 0): (63, 102, 240),
        (0, 255, 0): (173, 42, 26),
        (0, 0, 255): (32, 240, 118),
    }
    for (red, green, blue), expected in colours.items():
        rgb = torch.tensor([red, green, blue], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
        yuv = rgb_to_yuv420_reference(rgb.contiguous())
        assert tuple(yuv.flatten()[[0, 4, 5]].tolist()) == expected, (red, green, blue)


# --------------------------------------------------------------------------- compiled, on CUDA

# The engine's 1080p frame (68 x 120 cells of 16 px, cropped) with the tiles in Oklab and as a
# plain copy, and tails: 5-px tiles, an odd crop, channels-last tiles and strided statistics.
# Few distinct variants: each (tile size, transfer, Oklab input, YUV) compiles twice (autotune).
CUDA_CASES = {
    "1080p transfer": {"side": 16, "grid": (68, 120), "size": (1080, 1920), "strength": 0.6},
    "1080p copy": {"side": 16, "grid": (68, 120), "size": (1080, 1920), "strength": None},
    "tails": {
        "side": 5,
        "grid": (7, 27),
        "size": (33, 131),
        "strength": 1.0,
        "lab": False,
        "tile_layout": "channels_last",
        "strided": True,
    },
}


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_cuda_frames_match_the_reference(case):
    spec = {
        "pool": 300,
        "tile_layout": "contiguous",
        "strided": False,
        "lab": True,
        "seed": 7,
        **CUDA_CASES[case],
    }
    inputs = make_inputs(spec, "cuda")
    assert_rgb_matches(*inputs, name=f"cuda {case}")
    assert_yuv_matches(*inputs, name=f"cuda {case}")


# --------------------------------------------------------------------------- the CPU hint


@given(spec=mosaic_specs(), seed=SEEDS)
def test_reference_copies_unchanged_cells_from_the_previous_frame(spec, seed):
    """With ``previous`` and ``changed`` the reference converts only the changed cells and gives
    what it gives without the hint; the kernel ignores the hint."""
    if spec["strength"] is None:
        spec["strength"] = 0.5
    tiles, choice, transfer, tile_lab, size = make_inputs(spec, "cpu")
    generator = torch.Generator().manual_seed(seed)
    changed = torch.rand(choice.shape, generator=generator) < 0.5
    # The previous frame: these cells' tiles and statistics, the changed ones' tiles differing.
    earlier_choice = torch.where(changed, (choice + 1) % spec["pool"], choice)
    earlier = transfer._replace(cell_mean=torch.where(changed[..., None], 0.5, transfer.cell_mean))
    options = {"tile_lab": tile_lab, "size": size}
    previous = composite_tiles_reference(tiles, earlier_choice, earlier, **options)

    converted = []
    original = composite_module.oklab_to_srgb_reference
    spy = lambda lab: converted.append(len(lab)) or original(lab)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(composite_module, "oklab_to_srgb_reference", spy)
        hinted = composite_tiles_reference(
            tiles, choice, transfer, **options, previous=previous, changed=changed
        )
    assert converted == [int(changed.sum())]
    fresh = composite_tiles_reference(tiles, choice, transfer, **options)
    assert torch.equal(hinted, fresh)
    kernel = composite_tiles(tiles, choice, transfer, **options, previous=previous, changed=changed)
    assert_within_one_level(kernel, fresh, "kernel with the hint")


# --------------------------------------------------------------------------- arguments


def _bad_calls() -> dict:
    tiles = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    choice = torch.zeros(2, 3, dtype=torch.int64)
    stats = (torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(2, 3, 3), torch.zeros(2, 3, 3))
    transfer = ColourTransfer(0.5, *stats, MAX_GAIN, SPREAD_FLOOR)
    previous = torch.zeros(3, 4, 6, dtype=torch.uint8)
    changed = torch.ones(2, 3, dtype=torch.bool)
    return {
        "tiles float": (TypeError, lambda: composite_tiles(tiles.float(), choice)),
        "tiles without columns": (ValueError, lambda: composite_tiles(tiles[..., :0], choice)),
        "tiles not RGB": (ValueError, lambda: composite_tiles(tiles[:, :2], choice)),
        "empty pool": (ValueError, lambda: composite_tiles(tiles[:0], choice)),
        "choice int32": (TypeError, lambda: composite_tiles(tiles, choice.int())),
        "choice 1-D": (ValueError, lambda: composite_tiles(tiles, choice.flatten())),
        "empty choice": (ValueError, lambda: composite_tiles(tiles, choice[:0])),
        "size too large": (ValueError, lambda: composite_tiles(tiles, choice, size=(5, 6))),
        "size zero": (ValueError, lambda: composite_tiles(tiles, choice, size=(0, 6))),
        "size not ints": (ValueError, lambda: composite_tiles(tiles, choice, size=(4.0, 6))),
        "pixel format": (ValueError, lambda: composite_tiles(tiles, choice, pixel_format="nv12")),
        "transfer type": (TypeError, lambda: composite_tiles(tiles, choice, stats)),
        "strength": (
            ValueError,
            lambda: composite_tiles(tiles, choice, transfer._replace(strength=1.5)),
        ),
        "max gain": (
            ValueError,
            lambda: composite_tiles(tiles, choice, transfer._replace(max_gain=0)),
        ),
        "floor NaN": (
            ValueError,
            lambda: composite_tiles(tiles, choice, transfer._replace(spread_floor=float("nan"))),
        ),
        "cell stats grid": (
            ValueError,
            lambda: composite_tiles(
                tiles, choice, transfer._replace(cell_mean=torch.zeros(3, 2, 3))
            ),
        ),
        "tile stats float64": (
            TypeError,
            lambda: composite_tiles(tiles, choice, transfer._replace(tile_std=stats[1].double())),
        ),
        "tile_lab shape": (
            ValueError,
            lambda: composite_tiles(tiles, choice, transfer, tile_lab=torch.zeros(4, 3, 1, 1)),
        ),
        "previous alone": (
            ValueError,
            lambda: composite_tiles(tiles, choice, transfer, previous=previous),
        ),
        "previous without transfer": (
            ValueError,
            lambda: composite_tiles(tiles, choice, previous=previous, changed=changed),
        ),
        "previous with yuv": (
            ValueError,
            lambda: composite_tiles(
                tiles, choice, transfer, pixel_format="yuv420p", previous=previous, changed=changed
            ),
        ),
        "previous size": (
            ValueError,
            lambda: composite_tiles(
                tiles, choice, transfer, previous=previous[:, :3], changed=changed
            ),
        ),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_one_clear_line(case):
    error, call = _bad_calls()[case]
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) and "\n" not in str(raised.value)
