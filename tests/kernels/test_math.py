"""``kernels/_math.py``: the error bounds its helpers state, checked.

``exp2_fma`` evaluates ``2**f`` on ``[-0.5, 0.5]`` by a polynomial: its stated bound (2.4e-7
relative, float32 evaluation included) is checked on every float32 of the three binades nearest
±0.5, where the error is largest, and on a sample of the rest, both as the interpreter evaluates
it (a rounding after each product and sum) and as a GPU does (fused multiply-adds). Then the
helpers themselves, in a kernel (the interpreter on CPU, compiled on CUDA, where ``lg2``/``ex2``
are the approximate MUFU ops), against float64.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from kernels._math import (
    EXP2_COEFFICIENTS,
    LMS_FROM_LINEAR_SRGB,
    cube_root,
    cube_root_fma,
    exp2_fma,
)
from kernels.dispatch import use_triton
from kernels.oklab import srgb_decode_table

EXP2_BOUND = 2.4e-7
# log2 on a GPU is lg2.approx: 2**-22 absolute error on [0.5, 2], 2 ulp elsewhere; a third of it
# moves the cube root by 2**(error / 3). In the interpreter both are exact to float32.
CUBE_ROOT_RTOL = 6e-7


def polynomial_float32(fraction: np.ndarray, fused: bool) -> np.ndarray:
    """``exp2_fma``'s polynomial at float32 ``fraction``, rounded to float32 after each product
    and sum, or once per multiply-add (``fused``: float64 holds a float32 product exactly)."""
    coefficients = [np.float32(c) for c in EXP2_COEFFICIENTS]
    power = np.full_like(fraction, coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        if fused:
            exact = power.astype(np.float64) * fraction + np.float64(coefficient)
            power = exact.astype(np.float32)
        else:
            power = (power * fraction).astype(np.float32) + coefficient
    return power


def float32_range(low: float, high: float) -> np.ndarray:
    """Every float32 in ``[low, high)``, ``0 < low < high``."""
    start, stop = np.array([low, high], dtype=np.float32).view(np.int32)
    return np.arange(start, stop, dtype=np.int32).view(np.float32)


def test_exp2_polynomial_stays_within_its_bound():
    generator = np.random.default_rng(0)
    binades = [float32_range(2.0 ** (-k - 1), 2.0**-k) for k in (1, 2, 3)]
    sample = generator.uniform(-0.0625, 0.0625, 1_000_000).astype(np.float32)
    worst = 0.0
    for magnitudes in [*binades, np.array([0.5], dtype=np.float32), sample]:
        for chunk in np.array_split(magnitudes, max(1, magnitudes.size // 2_000_000)):
            for fraction in (chunk, -chunk):
                exact = np.exp2(fraction.astype(np.float64))
                for fused in (False, True):
                    error = np.abs(polynomial_float32(fraction, fused) / exact - 1).max()
                    worst = max(worst, float(error))
    assert worst <= EXP2_BOUND, worst


@triton.jit
def _helpers_kernel(x_ptr, lms_ptr, exp2_ptr, cbrt_ptr, cbrt_fma_ptr, n, BLOCK: tl.constexpr):
    """Apply the helpers to ``x`` (``exp2_fma``) and ``lms`` (both cube roots), float32 ``(n,)``."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    lms = tl.load(lms_ptr + offsets, mask=mask, other=1.0)
    tl.store(exp2_ptr + offsets, exp2_fma(x, 1.0), mask=mask)
    tl.store(cbrt_ptr + offsets, cube_root(lms), mask=mask)
    tl.store(cbrt_fma_ptr + offsets, cube_root_fma(lms), mask=mask)


def test_helpers_in_a_kernel_match_float64(device):
    """``exp2_fma`` over its whole range and both cube roots over LMS values of random colours
    (the cube roots' inputs in ``cell_analysis``), 0 included."""
    generator = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(20_000, generator=generator) * 250 - 125, torch.tensor([0.0, 127.0])])
    codes = torch.randint(0, 256, (3, x.numel() - 2), generator=generator)
    linear = srgb_decode_table(torch.device("cpu"))[codes]
    lms = (torch.tensor(LMS_FROM_LINEAR_SRGB) @ linear).flatten()[: x.numel()]
    lms[:2] = torch.tensor([0.0, 1.0])
    inputs = [x.to(device), lms.to(device)]
    if not use_triton(inputs[0]):
        return  # a CPU without the interpreter: no kernel to run
    outputs = [torch.empty_like(inputs[0]) for _ in range(3)]
    block = 4096
    _helpers_kernel[(triton.cdiv(x.numel(), block),)](*inputs, *outputs, x.numel(), BLOCK=block)
    exp2, cbrt, cbrt_fma = (out.cpu().double() for out in outputs)
    relative = (exp2 / torch.exp2(x.double()) - 1).abs().max()
    assert relative <= EXP2_BOUND, relative
    exact = lms.double() ** (1 / 3)
    assert cbrt[0] == 0 and cbrt_fma[0] <= 1e-30  # a black pixel
    for name, root in (("cube_root", cbrt), ("cube_root_fma", cbrt_fma)):
        relative = (root[1:] / exact[1:] - 1).abs().max()
        assert relative <= CUBE_ROOT_RTOL, f"{name}: {relative}"
