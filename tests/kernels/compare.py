"""Comparison and shape helpers shared by the kernel property tests."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kernels.dispatch import interpreting

# Tails around a block size: 1, primes, and block - 1, block, block + 1 for the usual blocks.
SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17)

FEW_SHAPES = torch.cuda.is_available() and not interpreting()
"""Compiled kernels on a GPU: every new block size, tile shape or argument divisibility compiles a
kernel again (about a second each), so there the strategies draw from a few fixed sizes, the
same in every test, and most examples reuse a compiled kernel (with the ``cuda`` hypothesis
profile of ``tests/conftest.py``, few examples). The interpreter keeps every tail."""
GPU_SIZES = (1, 5, 16, 33)  # one, a prime, a multiple of 16, and past two 16s
GPU_BLOCKS = (2, 3)


def sizes_around(block: int) -> st.SearchStrategy[int]:
    """Sizes that exercise tails: 1, small primes and ``block - 1 .. block + 1`` (at least 1);
    with ``FEW_SHAPES``, ``GPU_SIZES``, ``block`` and ``2 * block + 1``."""
    if FEW_SHAPES:
        return st.sampled_from(sorted({*GPU_SIZES, block, 2 * block + 1}))
    candidates = {1, *SMALL_PRIMES, max(1, block - 1), block, block + 1, 2 * block + 1}
    return st.sampled_from(sorted(candidates))


def block_sizes(max_block: int) -> st.SearchStrategy[int]:
    """Block sides ``1 .. max_block``; with ``FEW_SHAPES``, ``GPU_BLOCKS``."""
    return st.sampled_from(GPU_BLOCKS) if FEW_SHAPES else st.integers(1, max_block)


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    atol: float,
    rtol: float = 0.0,
    name: str = "output",
) -> None:
    """``torch.testing``-style check that reports what a kernel engineer needs on failure.

    Reports the mismatch count, the first bad index, the max abs error and the relative RMS;
    NaN anywhere in ``actual`` (an unwritten, poisoned element) is a mismatch.
    """
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    actual64 = actual.detach().to("cpu", torch.float64)
    expected64 = expected.detach().to("cpu", torch.float64)
    error = (actual64 - expected64).abs()
    bad = ~(error <= atol + rtol * expected64.abs())  # NaN compares False, so it counts as bad
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        rms = (error.nan_to_num(float("inf")).square().mean().sqrt()) / (
            expected64.square().mean().sqrt() + 1e-30
        )
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements differ "
            f"(atol={atol}, rtol={rtol}); first at {first}: {actual64[first].item()} vs "
            f"{expected64[first].item()}; max abs error {error.nan_to_num(float('inf')).max()}; "
            f"relative RMS {rms.item():.3g}"
        )


# Memory layouts of a (..., C, H, W) image that the launchers must handle without a copy, except
# "leading_transposed", whose leading dimensions no view can merge (it needs two of them).
LAYOUTS = ("contiguous", "channels_last", "step_sliced", "leading_transposed")


@st.composite
def strided_image_specs(
    draw: st.DrawFn, block: int, channels: int = 3
) -> tuple[tuple[int, ...], str]:
    """``(shape, layout)`` of a ``(..., C, H, W)`` image with zero, one or two leading dims.

    Either a small plane with tails around 8, or one or two long rows with tails around
    ``block`` (a kernel's largest block), so rows span several blocks.
    """
    leading = draw(st.lists(st.integers(1, 3), max_size=2))
    if draw(st.booleans()):
        height, width = draw(sizes_around(8)), draw(sizes_around(8))
    else:
        height, width = draw(st.integers(1, 2)), draw(sizes_around(block))
    layouts = LAYOUTS if len(leading) == 2 else LAYOUTS[:-1]
    return (*leading, channels, height, width), draw(st.sampled_from(layouts))


def with_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """``values`` ``(..., C, H, W)`` copied into the memory layout ``layout`` (see ``LAYOUTS``).

    Same shape, dtype, device and values. ``step_sliced`` pads with NaN (float) or 255 (uint8),
    so a kernel that reads between the sampled pixels shows it.
    """
    if layout == "contiguous":
        return values.contiguous()
    if layout == "channels_last":  # an HWC frame seen as CHW, the way decoders deliver frames
        return values.movedim(-3, -1).contiguous().movedim(-1, -3)
    if layout == "step_sliced":  # every other row and column of a larger image
        *leading, channels, height, width = values.shape
        fill = float("nan") if values.dtype.is_floating_point else 255
        padded = torch.full(
            (*leading, channels, 2 * height, 2 * width + 1),
            fill,
            dtype=values.dtype,
            device=values.device,
        )
        sampled = padded[..., ::2, 1::2]
        sampled.copy_(values)
        return sampled
    if layout == "leading_transposed":
        if values.ndim < 5:
            raise ValueError(f"{layout} needs two leading dimensions, got {tuple(values.shape)}")
        return values.transpose(0, 1).contiguous().transpose(0, 1)
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


# --------------------------------------------------------------------------- block means

# Layouts of an (N, C, H, W) batch for the grid kernels: the 4-D ones of LAYOUTS, and
# "planes_transposed" (planes stored channel-major), whose N and C strides no single plane
# stride can describe.
GRID_LAYOUTS = ("contiguous", "channels_last", "step_sliced", "planes_transposed")


def with_grid_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """``values`` ``(N, C, H, W)`` copied into the layout ``layout`` (see ``GRID_LAYOUTS``)."""
    if layout == "planes_transposed":
        return values.transpose(0, 1).contiguous().transpose(0, 1)
    return with_layout(values, layout)


@st.composite
def grid_specs(
    draw: st.DrawFn, max_block: int = 9, channels: int | None = None
) -> tuple[tuple[int, int, int, int], tuple[int, int], str]:
    """``(shape, (bh, bw), layout)``: an ``(N, C, H, W)`` batch, a block that fits it, a layout.

    Blocks are square or not; each image side is 1, a small prime or ``block - 1 .. 2 * block + 1``
    (at least the block), so most images have remainder rows or columns and some equal the block.
    """
    block_h = draw(block_sizes(max_block))
    block_w = block_h if draw(st.booleans()) else draw(block_sizes(max_block))
    height = draw(sizes_around(block_h).filter(lambda side: side >= block_h))
    width = draw(sizes_around(block_w).filter(lambda side: side >= block_w))
    batch = draw(st.integers(1, 3))
    planes = channels if channels is not None else draw(st.integers(1, 4))
    layout = draw(st.sampled_from(GRID_LAYOUTS))
    return (batch, planes, height, width), (block_h, block_w), layout


def random_pixels(
    shape: tuple[int, ...], dtype: torch.dtype, seed: int, *, extremes: bool = False
) -> torch.Tensor:
    """Random CPU pixels: uint8 over all codes (0 and 255 if ``extremes``), floats in [0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    if dtype != torch.uint8:
        return torch.rand(shape, generator=generator).to(dtype)
    if extremes:
        return (torch.randint(0, 2, shape, generator=generator) * 255).to(torch.uint8)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def block_means_numpy(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Independent oracle: float64 means of every ``bh x bw`` block of ``x`` ``(N, C, H, W)``,
    by numpy reshape and mean; remainder rows and columns cropped. On the CPU."""
    values = x.detach().to("cpu", torch.float64).numpy()
    batch, planes, height, width = values.shape
    out_h, out_w = height // block_h, width // block_w
    cropped = values[:, :, : out_h * block_h, : out_w * block_w]
    blocks = cropped.reshape(batch, planes, out_h, block_h, out_w, block_w)
    return torch.from_numpy(blocks.mean(axis=(3, 5)))


def block_mean_atol(scale: float, block_h: int, block_w: int) -> float:
    """Tolerance of a float32 mean of ``bh x bw`` values up to ``scale`` in magnitude.

    The worst case of a sequential float32 sum, one rounding per term, plus the division: kernels
    sum a row of a block as a tree and rows one after another, ``avg_pool2d`` in its own order.
    """
    return scale * 2.0**-24 * (block_h * block_w + 2)


# The ``device`` fixture only names a device, so hypothesis examples may share it.
shares_device_fixture = settings(
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture]
)

needs_compiled_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or interpreting(),
    reason="needs a CUDA device and compiled kernels (run with TRITON_INTERPRET=0)",
)


# --------------------------------------------------------------------------- distances


def squared_distances_float64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Independent oracle: float64 ``(N, M)`` squared distances by exact differences (SciPy's
    ``cdist``, ``sqeuclidean``) of the rows of ``a`` ``(N, D)`` and ``b`` ``(M, D)``. On the CPU."""
    from scipy.spatial.distance import cdist

    a64 = a.detach().to("cpu", torch.float64).numpy()
    b64 = b.detach().to("cpu", torch.float64).numpy()
    return torch.from_numpy(cdist(a64, b64, "sqeuclidean"))


def squared_distance_atol(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float64 ``(N, M)`` tolerance of float32 ``|a|^2 + |b|^2 - 2 a.b`` against exact distances.

    With ``u = 2^-24``, the three length-D float32 sums err by at most ``D u |a|^2``, ``D u |b|^2``
    and ``2 D u |a||b| <= D u (|a|^2 + |b|^2)``; the input rounding to float32, the final
    additions and the GPU's tf32x3 dot (it drops the product of the two low halves, about
    ``2^-22`` of each product) add about ``32 u (|a|^2 + |b|^2)``.
    """
    a64 = a.detach().to("cpu", torch.float64)
    b64 = b.detach().to("cpu", torch.float64)
    magnitude = a64.square().sum(dim=1, keepdim=True) + b64.square().sum(dim=1)
    return ((2 * a.shape[1] + 32) * 2.0**-24 * magnitude).clamp_min(1e-30)


def assert_close_elementwise(
    actual: torch.Tensor, expected: torch.Tensor, atol: torch.Tensor, *, name: str
) -> None:
    """``assert_close`` with a tolerance per element: compared in units of ``atol``."""
    actual64 = actual.detach().to("cpu", torch.float64)
    expected64 = expected.detach().to("cpu", torch.float64)
    assert_close(actual64 / atol, expected64 / atol, atol=1.0, name=f"{name} (in units of atol)")
