"""sRGB <-> Oklab: Triton kernels, launchers and pure-torch references.

Layout ``(..., 3, H, W)``; any leading dimensions, any strides. Both kernels are elementwise:
each program converts ``BLOCK`` pixels of one row of one frame, all three channels, so every
load and store is coalesced along W. Where the rows of an ``H x W`` plane follow each other at a
constant pixel stride (contiguous CHW, and HWC frames seen as CHW) the plane is walked as one
long row, so the only partial block is at the end of the frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from kernels._launch import (
    FLOAT_DTYPES,
    IMAGE_DTYPES,
    check_channels,
    check_tensor,
    empty_output,
)
from kernels._math import (
    LINEAR_SRGB_FROM_LMS,
    LMS_CBRT_FROM_OKLAB,
    LMS_FROM_LINEAR_SRGB,
    OKLAB_FROM_LMS_CBRT,
    linear_srgb_to_oklab,
    oklab_to_linear_srgb,
    round_half_even,
    srgb_decode,
    srgb_encode,
)
from kernels.dispatch import interpreting, use_triton

__all__ = [
    "oklab_to_srgb",
    "oklab_to_srgb_reference",
    "srgb_decode_table",
    "srgb_to_oklab",
    "srgb_to_oklab_reference",
]


# --------------------------------------------------------------------------- references


def _mix_channels(x: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel axis (dim -3) of a float tensor."""
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _srgb_decode_reference(c: torch.Tensor) -> torch.Tensor:
    curve = ((c.clamp_min(0) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= 0.04045, c / 12.92, curve)


def _srgb_encode_reference(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def srgb_to_oklab_reference(x: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``srgb_to_oklab``: uint8 or float ``(..., 3, H, W)`` -> contiguous float32."""
    x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
    lms = _mix_channels(_srgb_decode_reference(x), LMS_FROM_LINEAR_SRGB)
    lms = lms.sign() * lms.abs() ** (1 / 3)
    return _mix_channels(lms, OKLAB_FROM_LMS_CBRT).contiguous()


def oklab_to_srgb_reference(lab: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``oklab_to_srgb``: float ``(..., 3, H, W)`` -> contiguous uint8 (clamped)."""
    lms = _mix_channels(lab.to(torch.float32), LMS_CBRT_FROM_OKLAB) ** 3
    rgb = _srgb_encode_reference(_mix_channels(lms, LINEAR_SRGB_FROM_LMS))
    return (rgb * 255.0).round_().to(torch.uint8, memory_format=torch.contiguous_format)


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
def _load_linear_srgb(pointers, mask, decode_table_ptr, DECODE_FROM_TABLE: tl.constexpr):
    """Linear float32 values of one channel: uint8 codes through the table, floats decoded."""
    if DECODE_FROM_TABLE:
        codes = tl.load(pointers, mask=mask, other=0).to(tl.int32)
        linear = tl.load(decode_table_ptr + codes)
    else:
        linear = srgb_decode(tl.load(pointers, mask=mask, other=0.0).to(tl.float32))
    return linear


@triton.jit
def _srgb_to_oklab_kernel(
    x_ptr,
    out_ptr,
    rows,
    cols,
    stride_frame,
    stride_channel,
    stride_row,
    stride_col,
    decode_table_ptr,
    DECODE_FROM_TABLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    frame, row, columns, mask = _block_position(rows, cols, BLOCK)
    src = x_ptr + frame * stride_frame + row * stride_row + columns * stride_col
    red = _load_linear_srgb(src, mask, decode_table_ptr, DECODE_FROM_TABLE)
    green = _load_linear_srgb(src + stride_channel, mask, decode_table_ptr, DECODE_FROM_TABLE)
    blue = _load_linear_srgb(src + 2 * stride_channel, mask, decode_table_ptr, DECODE_FROM_TABLE)
    lab_l, lab_a, lab_b = linear_srgb_to_oklab(red, green, blue)
    dst, plane = _output_pointers(out_ptr, frame, row, columns, rows, cols)
    tl.store(dst, lab_l, mask=mask)
    tl.store(dst + plane, lab_a, mask=mask)
    tl.store(dst + 2 * plane, lab_b, mask=mask)


@triton.jit
def _encode_to_uint8(linear):
    """Linear float32 -> sRGB code: clamped to [0, 1], encoded, scaled, rounded half to even."""
    return round_half_even(srgb_encode(linear) * 255.0).to(tl.uint8)


@triton.jit
def _oklab_to_srgb_kernel(
    lab_ptr,
    out_ptr,
    rows,
    cols,
    stride_frame,
    stride_channel,
    stride_row,
    stride_col,
    BLOCK: tl.constexpr,
):
    frame, row, columns, mask = _block_position(rows, cols, BLOCK)
    src = lab_ptr + frame * stride_frame + row * stride_row + columns * stride_col
    lab_l = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    lab_a = tl.load(src + stride_channel, mask=mask, other=0.0).to(tl.float32)
    lab_b = tl.load(src + 2 * stride_channel, mask=mask, other=0.0).to(tl.float32)
    red, green, blue = oklab_to_linear_srgb(lab_l, lab_a, lab_b)
    dst, plane = _output_pointers(out_ptr, frame, row, columns, rows, cols)
    tl.store(dst, _encode_to_uint8(red), mask=mask)
    tl.store(dst + plane, _encode_to_uint8(green), mask=mask)
    tl.store(dst + 2 * plane, _encode_to_uint8(blue), mask=mask)


# On a GPU the best block depends on the part and on the layout (CHW planes load as 16-byte
# vectors, an HWC frame as bytes 3 apart), so a few are tuned once per shape and layout.
# Multi-config autotuning cannot run in the interpreter; there ``interpreter_block_size`` picks.
_GPU_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block, warps in ((1024, 4), (2048, 4), (2048, 8), (4096, 8))
]
_TUNING_KEY = ["rows", "cols", "stride_col"]
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
    if src.device.type == "cuda" and not interpreting():
        grid = lambda meta: (count * rows * triton.cdiv(cols, meta["BLOCK"]),)
        tuned_kernel[grid](*args, *extra_args, **constexprs)
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
