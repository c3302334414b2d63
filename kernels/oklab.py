"""sRGB <-> Oklab: Triton kernels, launchers and pure-torch references.

Layout ``(..., 3, H, W)``; any leading dimensions, any strides. Both kernels are elementwise:
each program converts ``BLOCK`` pixels of one row of one frame, all three channels, so every
load and store is coalesced along W. Where the rows of an ``H x W`` plane follow each other at a
constant pixel stride (contiguous CHW, and HWC frames seen as CHW) the plane is walked as one
long row, so the only partial block is at the end of the frame.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from kernels._launch import (
    FLOAT_DTYPES,
    IMAGE_DTYPES,
    check_channels,
    check_tensor,
    empty_output,
    launch_tuned,
    size_class,
)
from kernels._math import (
    LINEAR_SRGB_FROM_LMS,
    LMS_CBRT_FROM_OKLAB,
    LMS_FROM_LINEAR_SRGB,
    OKLAB_FROM_LMS_CBRT,
    encode_to_uint8,
    linear_srgb_to_oklab,
    oklab_to_linear_srgb,
    srgb_decode,
)
from kernels._triton import tl, triton
from kernels.dispatch import runs_compiled, use_triton

__all__ = [
    "oklab_to_srgb",
    "oklab_to_srgb_reference",
    "srgb_decode_table",
    "srgb_encode_tables",
    "srgb_to_oklab",
    "srgb_to_oklab_reference",
]


# --------------------------------------------------------------------------- references

# The references are the CPU path for frames, so they avoid torch's slow elementwise operations:
# ``pow`` with a fractional exponent and ``where`` run unvectorised (``pow`` about 8x ``exp``
# plus ``log``). uint8 input decodes through ``srgb_decode_table`` (exact; float input keeps the
# formula), the cube root is ``exp(log(x) / 3)`` (within 4e-7 of float64 over every uint8
# colour), and the uint8 output encodes through ``srgb_encode_tables``, exactly as rounding the
# float64 curve would. On a CPU the pixels go in chunks whose temporaries stay in a core's L2
# cache: a 720p frame converted whole was 1.2-3x slower, the more so when other processes shared
# the memory bus.
_CHUNK_PIXELS = 1 << 16

# The encode tables are indexed by the float32 bits of a linear value shifted right by this much:
# 7 mantissa bits, fine enough that no bin holds two code boundaries (the curve's steepest part,
# just below 1, has 1.3 codes per bin at 6 bits).
_ENCODE_SHIFT = 16
_ENCODE_BINS = 1 << (31 - _ENCODE_SHIFT)  # every non-negative float32 bit pattern, NaN included


@functools.cache
def _channel_matrix(
    matrix: tuple[tuple[float, ...], ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    return torch.tensor(matrix, dtype=dtype, device=device)


def _mix_channels(
    x: torch.Tensor, matrix: tuple[tuple[float, ...], ...], out: torch.Tensor | None = None
) -> torch.Tensor:
    """The 3x3 ``matrix`` applied to the channels of float ``(n, 3, P)``: a contiguous result,
    or written into ``out`` (any strides; on a CPU 3x faster than a copy afterwards)."""
    # An explicit bmm: matmul broadcasting a 2-D matrix over a batch of one copies the batch.
    weights = _channel_matrix(matrix, x.dtype, x.device).expand(x.shape[0], 3, 3)
    return torch.bmm(weights, x, out=out)


def _by_chunks(
    x: torch.Tensor, dtype: torch.dtype, convert: Callable[[torch.Tensor, torch.Tensor], None]
) -> torch.Tensor:
    """Contiguous ``dtype`` ``(..., 3, H, W)``: ``convert(piece, out_piece)`` writes the result
    of each ``(n, 3, P)`` piece of ``x`` ``(..., 3, H, W)``, of about ``_CHUNK_PIXELS`` pixels
    (whole frames off the CPU), into the same piece of the output."""
    *leading, channels, height, width = x.shape
    count, pixels = math.prod(leading), height * width
    frames = x.reshape(count, channels, pixels)
    out = torch.empty((count, channels, pixels), dtype=dtype, device=x.device)
    if x.device.type != "cpu" or count * pixels <= _CHUNK_PIXELS:
        chunks = [(slice(None), slice(None))]
    elif pixels >= _CHUNK_PIXELS:  # slices of one frame
        chunks = [
            (slice(i, i + 1), slice(start, start + _CHUNK_PIXELS))
            for i in range(count)
            for start in range(0, pixels, _CHUNK_PIXELS)
        ]
    else:  # several small frames (tiles) together
        step = _CHUNK_PIXELS // pixels
        chunks = [(slice(i, i + step), slice(None)) for i in range(0, count, step)]
    for items, pixel_range in chunks:
        convert(frames[items, :, pixel_range], out[items, :, pixel_range])
    return out.view(x.shape)


def _srgb_decode_reference(c: torch.Tensor) -> torch.Tensor:
    curve = ((c.clamp_min(0) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= 0.04045, c / 12.92, curve)


def _srgb_encode_reference(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _cube_root_(x: torch.Tensor, *, signed: bool) -> torch.Tensor:
    """Cube root in place; ``signed=False`` when ``x >= 0`` is known (saves two passes)."""
    if not signed:
        return x.log_().mul_(1 / 3).exp_()
    return torch.copysign(x.abs().log_().mul_(1 / 3).exp_(), x)


def _srgb_chunk_to_oklab(x: torch.Tensor, out: torch.Tensor) -> None:
    """float32 Oklab of uint8 or float sRGB ``(n, 3, P)``, written into ``out``."""
    if x.dtype == torch.uint8:
        codes = x.to(torch.int32, memory_format=torch.contiguous_format).view(-1)
        linear = srgb_decode_table(x.device).index_select(0, codes).view(x.shape)
    else:
        linear = _srgb_decode_reference(x.to(torch.float32))
    # M1 has no negative entry, so uint8 colours (linear values in [0, 1]) give LMS >= 0.
    lms = _cube_root_(_mix_channels(linear, LMS_FROM_LINEAR_SRGB), signed=x.dtype != torch.uint8)
    _mix_channels(lms, OKLAB_FROM_LMS_CBRT, out=out)


def _oklab_chunk_to_srgb(lab: torch.Tensor, out: torch.Tensor) -> None:
    """uint8 sRGB of float Oklab ``(n, 3, P)``, clamped to the gamut, written into ``out``."""
    lms = _mix_channels(lab.to(torch.float32), LMS_CBRT_FROM_OKLAB).pow_(3)
    linear = _mix_channels(lms, LINEAR_SRGB_FROM_LMS).view(-1)
    first_code, next_code_from = srgb_encode_tables(lab.device)
    # Non-negative floats order like their int32 bits, which compare faster; negative values
    # have negative bits, clamped into bin 0 (code 0) and below every boundary.
    bits = linear.view(torch.int32)
    bins = (bits >> _ENCODE_SHIFT).clamp_(0, _ENCODE_BINS - 1)
    codes = first_code.index_select(0, bins)
    codes += (bits >= next_code_from.index_select(0, bins)).view(torch.uint8)
    out.copy_(codes.view(lab.shape))


def srgb_to_oklab_reference(x: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``srgb_to_oklab``: uint8 or float ``(..., 3, H, W)`` -> contiguous float32."""
    return _by_chunks(x, torch.float32, _srgb_chunk_to_oklab)


def oklab_to_srgb_reference(lab: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``oklab_to_srgb``: float ``(..., 3, H, W)`` -> contiguous uint8 (clamped)."""
    return _by_chunks(lab, torch.uint8, _oklab_chunk_to_srgb)


# --------------------------------------------------------------------------- public


def srgb_to_oklab(x: torch.Tensor) -> torch.Tensor:
    """sRGB -> Oklab.

    Args:
        x: ``(..., 3, H, W)`` uint8, or float in [0, 1]; any strides.

    Returns:
        contiguous float32 ``(..., 3, H, W)`` Oklab (L in [0, 1]) on ``x``'s device.
    """
    check_tensor(x, "x", dtypes=IMAGE_DTYPES, min_ndim=3)
    check_channels(x, "x")
    if use_triton(x):
        return _srgb_to_oklab_triton(x)
    return srgb_to_oklab_reference(x)


def oklab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """Oklab -> sRGB, clamped to the gamut and rounded.

    Args:
        lab: float ``(..., 3, H, W)`` Oklab; any strides.

    Returns:
        contiguous uint8 ``(..., 3, H, W)`` on ``lab``'s device.
    """
    check_tensor(lab, "lab", dtypes=FLOAT_DTYPES, min_ndim=3)
    check_channels(lab, "lab")
    if use_triton(lab):
        return _oklab_to_srgb_triton(lab)
    return oklab_to_srgb_reference(lab)


# --------------------------------------------------------------------------- Triton kernels


@triton.jit
def _block_position(rows, cols, BLOCK: tl.constexpr):
    """This program's frame (int64), row, ``BLOCK`` column indices and their in-bounds mask.

    Programs walk frames, then rows, then ``ceil(cols / BLOCK)`` column blocks per row.
    """
    col_blocks = tl.cdiv(cols, BLOCK)
    pid = tl.program_id(0)
    frame_row = pid // col_blocks
    # Contiguity 4 (true, if understated) gives uint8 and float32 accesses one register layout,
    # 4 values per thread: without it uint8 loads take 16 and every block is reshuffled through
    # shared memory between the loads and the stores.
    columns = tl.max_contiguous((pid % col_blocks) * BLOCK + tl.arange(0, BLOCK), 4)
    # int64 frame offsets: a batch may pass 2**31 elements, a single frame never does.
    return (frame_row // rows).to(tl.int64), frame_row % rows, columns, columns < cols


@triton.jit
def _output_pointers(out_ptr, frame, row, columns, rows, cols):
    """Channel-0 pointers of a contiguous ``(frames, 3, rows, cols)`` output, and its plane size."""
    plane = rows * cols
    return out_ptr + frame * 3 * plane + row * cols + columns, plane


@triton.jit
def load_linear_srgb(pointers, mask, decode_table_ptr, DECODE_FROM_TABLE: tl.constexpr):
    """Linear float32 values of one channel: uint8 codes through the table, floats decoded
    (also the composite kernel's tile read)."""
    if DECODE_FROM_TABLE:
        codes = tl.load(pointers, mask=mask, other=0).to(tl.int32)
        linear = tl.load(decode_table_ptr + codes)
    else:
        linear = srgb_decode(tl.load(pointers, mask=mask, other=0.0).to(tl.float32))
    return linear


@triton.jit(do_not_specialize=["size_class"])
def _srgb_to_oklab_kernel(
    x_ptr,
    out_ptr,
    rows,
    cols,
    stride_frame,
    stride_channel,
    stride_row,
    stride_col,
    size_class,
    decode_table_ptr,
    DECODE_FROM_TABLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """sRGB -> Oklab of ``BLOCK`` pixels of one row.

    ``x``: frames of 3 channels of ``rows x cols`` pixels (uint8, or float in [0, 1]), strides
    ``stride_frame``, ``stride_channel``, ``stride_row``, ``stride_col`` in elements (a plane
    walked as one long row has ``rows = 1``, ``_plane_walk``). ``out``: float32 ``(frames, 3,
    rows, cols)`` contiguous. ``decode_table``: float32 ``(256,)``, read when
    ``DECODE_FROM_TABLE`` (uint8 input), else the curve is evaluated. ``size_class`` is unused:
    it puts the size classes of the pixel count and the row length in the autotuning key.

    Grid: (frames * rows * cdiv(cols, BLOCK),).
    """
    frame, row, columns, mask = _block_position(rows, cols, BLOCK)
    src = x_ptr + frame * stride_frame + row * stride_row + columns * stride_col
    red = load_linear_srgb(src, mask, decode_table_ptr, DECODE_FROM_TABLE)
    green = load_linear_srgb(src + stride_channel, mask, decode_table_ptr, DECODE_FROM_TABLE)
    blue = load_linear_srgb(src + 2 * stride_channel, mask, decode_table_ptr, DECODE_FROM_TABLE)
    lab_l, lab_a, lab_b = linear_srgb_to_oklab(red, green, blue)
    dst, plane = _output_pointers(out_ptr, frame, row, columns, rows, cols)
    tl.store(dst, lab_l, mask=mask)
    tl.store(dst + plane, lab_a, mask=mask)
    tl.store(dst + 2 * plane, lab_b, mask=mask)


@triton.jit(do_not_specialize=["size_class"])
def _oklab_to_srgb_kernel(
    lab_ptr,
    out_ptr,
    rows,
    cols,
    stride_frame,
    stride_channel,
    stride_row,
    stride_col,
    size_class,
    BLOCK: tl.constexpr,
):
    """Oklab -> sRGB codes of ``BLOCK`` pixels of one row, clamped to the gamut.

    ``lab``: float frames of 3 channels of ``rows x cols`` pixels, strides as in
    ``_srgb_to_oklab_kernel``; ``out``: uint8 ``(frames, 3, rows, cols)`` contiguous.
    ``size_class`` is unused (autotuning key).

    Grid: (frames * rows * cdiv(cols, BLOCK),).
    """
    frame, row, columns, mask = _block_position(rows, cols, BLOCK)
    src = lab_ptr + frame * stride_frame + row * stride_row + columns * stride_col
    lab_l = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    lab_a = tl.load(src + stride_channel, mask=mask, other=0.0).to(tl.float32)
    lab_b = tl.load(src + 2 * stride_channel, mask=mask, other=0.0).to(tl.float32)
    red, green, blue = oklab_to_linear_srgb(lab_l, lab_a, lab_b)
    dst, plane = _output_pointers(out_ptr, frame, row, columns, rows, cols)
    tl.store(dst, encode_to_uint8(red), mask=mask)
    tl.store(dst + plane, encode_to_uint8(green), mask=mask)
    tl.store(dst + 2 * plane, encode_to_uint8(blue), mask=mask)


# On a GPU the best block depends on the part and on the layout (CHW planes load as 16-byte
# vectors, an HWC frame as bytes 3 apart), so a few are tuned once per size class (powers of
# four of the pixel count and of the row length) and layout. Multi-config autotuning cannot run
# in the interpreter; there ``interpreter_block_size`` picks.
_GPU_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block, warps in ((1024, 4), (2048, 4), (2048, 8), (4096, 8))
]
_TUNING_KEY = ["size_class", "stride_col"]
_srgb_to_oklab_tuned = triton.autotune(_GPU_CONFIGS, key=_TUNING_KEY)(_srgb_to_oklab_kernel)
_oklab_to_srgb_tuned = triton.autotune(_GPU_CONFIGS, key=_TUNING_KEY)(_oklab_to_srgb_kernel)

# Interpreter time grows with the number of programs (~10 ms each), hardly with their size.
INTERPRETER_MAX_BLOCK = 16384


def interpreter_block_size(cols: int) -> int:
    """Pixels per program in the interpreter: the row rounded up to a power of two, capped."""
    return min(triton.next_power_of_2(cols), INTERPRETER_MAX_BLOCK)


# --------------------------------------------------------------------------- launchers


@functools.cache
def srgb_decode_table(device: torch.device) -> torch.Tensor:
    """float32 ``(256,)`` on ``device``: the linear value of every uint8 sRGB code.

    Decoded in float64, so each entry is the exactly rounded float32 value. The uint8 kernels
    gather from it instead of evaluating the curve: the 1 KiB table stays in L1, and it saves
    two of the four transcendental ops per channel (the cube root keeps the other two), which
    keeps an 8 x 1080p batch memory-bound on an H200 (~1.2 pixels per SM per clock at copy
    bandwidth would otherwise need ~15 of the 16 MUFU results per clock).
    """
    codes = torch.arange(256, dtype=torch.float64) / 255.0
    return _srgb_decode_reference(codes).to(device=device, dtype=torch.float32)


@functools.cache
def srgb_encode_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 sRGB code of a linear float32 value ``c >= 0``, as two tables on ``device``.

    Bin ``i = bits(c) >> 16`` (``_ENCODE_BINS`` bins covering every non-negative float32, so
    values above 1 and +inf land in bins of code 255) starts at code ``first_code[i]`` (uint8)
    and, where one code boundary falls inside it, reaches the next code from the float32 whose
    bits are ``next_code_from[i]`` (int32, else the largest int32):
    ``code = first_code[i] + (bits(c) >= next_code_from[i])``. NaN gives an unspecified code.

    The boundaries are the smallest float32 values whose float64 encode rounds (half to even) up
    to each code, so the tables give exactly ``round(255 * encode(c))`` evaluated in float64.
    """
    levels = torch.arange(1, 256, dtype=torch.float64)
    # Where 255 * encode(c) crosses k - 0.5, found in float64, then settled on float32 values.
    boundaries = _srgb_decode_reference((levels - 0.5) / 255).to(torch.float32)
    below, above = torch.tensor(-1.0), torch.tensor(2.0)
    for k, boundary in enumerate(boundaries, start=1):
        value = boundary.reshape(1)
        while _encoded_code(value) >= k:
            value = torch.nextafter(value, below)
        while _encoded_code(value) < k:
            value = torch.nextafter(value, above)
        boundaries[k - 1] = value
    starts = (torch.arange(_ENCODE_BINS, dtype=torch.int32) << _ENCODE_SHIFT).view(torch.float32)
    first_code = torch.searchsorted(boundaries, starts.nan_to_num(nan=2.0), right=True)
    next_code_from = torch.full((_ENCODE_BINS,), torch.iinfo(torch.int32).max, dtype=torch.int32)
    owner = boundaries.view(torch.int32).long() >> _ENCODE_SHIFT
    assert owner.unique().numel() == len(boundaries), "two code boundaries share a bin"
    inside = boundaries > starts[owner]  # a boundary on a bin's start is in first_code already
    next_code_from[owner[inside]] = boundaries[inside].view(torch.int32)
    return first_code.to(device, torch.uint8), next_code_from.to(device)


def _encoded_code(linear: torch.Tensor) -> torch.Tensor:
    """float64 ``round(255 * encode(c))`` of float32 linear values (ties to even)."""
    return torch.round(_srgb_encode_reference(linear.double()) * 255)


def _as_frames(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` view of ``(..., 3, H, W)``.

    Falls back to one copy only when no view can merge the leading dimensions (for example a
    batch of videos transposed to ``(T, B, ...)`` order); H and W keep their strides either way.
    """
    try:
        return x.view(-1, *x.shape[-3:])
    except RuntimeError:
        return x.reshape(-1, *x.shape[-3:])


def _plane_walk(height: int, width: int, stride_h: int, stride_w: int) -> tuple[int, int, int, int]:
    """``(rows, cols, stride_row, stride_col)`` visiting an ``H x W`` plane in row-major order.

    One row of ``H * W`` pixels when a single stride reaches every pixel in order, else H rows.
    """
    if width == 1:
        return 1, height, 0, stride_h
    if height == 1 or stride_h == width * stride_w:
        return 1, height * width, 0, stride_w
    return height, width, stride_h, stride_w


def _launch_pixelwise(
    kernel: Callable,
    tuned_kernel: Callable,
    src: torch.Tensor,
    out: torch.Tensor,
    *extra_args: object,
    **constexprs: object,
) -> torch.Tensor:
    """Run an elementwise ``(..., 3, H, W)`` kernel from ``src`` into contiguous ``out``."""
    if out.numel() == 0:
        return out
    frames = _as_frames(src)
    count, _, height, width = frames.shape
    stride_frame, stride_channel, stride_h, stride_w = frames.stride()
    rows, cols, stride_row, stride_col = _plane_walk(height, width, stride_h, stride_w)
    args = (frames, out, rows, cols, stride_frame, stride_channel, stride_row, stride_col)
    args += (size_class(count * rows * cols) * 16 + size_class(cols),)
    if runs_compiled(src):
        grid = lambda meta: (count * rows * triton.cdiv(cols, meta["BLOCK"]),)
        launch_tuned(tuned_kernel, grid, *args, *extra_args, **constexprs)
    else:
        block = interpreter_block_size(cols)
        grid = (count * rows * triton.cdiv(cols, block),)
        kernel[grid](*args, *extra_args, **constexprs, BLOCK=block)
    return out


def _srgb_to_oklab_triton(x: torch.Tensor) -> torch.Tensor:
    out = empty_output(tuple(x.shape), torch.float32, x.device)
    return _launch_pixelwise(
        _srgb_to_oklab_kernel,
        _srgb_to_oklab_tuned,
        x,
        out,
        srgb_decode_table(x.device),
        DECODE_FROM_TABLE=x.dtype == torch.uint8,
    )


def _oklab_to_srgb_triton(lab: torch.Tensor) -> torch.Tensor:
    out = empty_output(tuple(lab.shape), torch.uint8, lab.device)
    return _launch_pixelwise(_oklab_to_srgb_kernel, _oklab_to_srgb_tuned, lab, out)
