"""Pure colour math as small ``@triton.jit`` helpers: no loads, no stores.

The fused kernels (``oklab.py``, ``features.py``) call these, so each formula is written once for
Triton. The coefficients are Björn Ottosson's (https://bottosson.github.io/posts/oklab/); the
pure-torch references in ``oklab.py`` use the matrices below, and the property tests pin the two
to each other and to an independent colour library.

Triton's interpreter has no ``libdevice`` (``cbrt``, ``pow``), so powers go through
``exp2``/``fast_log2``, which also compile everywhere.
"""

from __future__ import annotations

import torch

from kernels._triton import tl, triton
from kernels.dispatch import interpreting

# On NVIDIA GPUs ``tl.log2`` compiles to libdevice's ``__nv_log2f`` (~17 instructions) while
# ``tl.exp2`` is one ``ex2.approx``. ``lg2.approx`` is one MUFU op (error 2**-22 absolute on
# [0.5, 2], 2 ulp elsewhere) and takes the uint8 -> Oklab kernel from ~148 to ~60 instructions
# per pixel, well inside an H200's issue rate at copy bandwidth. Inline PTX cannot run in the
# interpreter; kernels decorated under TRITON_INTERPRET=1 only ever run there, so the choice is
# made once, when the decorators run.
_USE_PTX_LOG2 = tl.constexpr(not interpreting() and torch.version.hip is None)

# Linear sRGB -> LMS (M1) and cube-rooted LMS -> Oklab (M2), rows are output channels.
LMS_FROM_LINEAR_SRGB = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
OKLAB_FROM_LMS_CBRT = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)
# And back: Oklab -> cube-rooted LMS, LMS -> linear sRGB.
LMS_CBRT_FROM_OKLAB = (
    (1.0, 0.3963377774, 0.2158037573),
    (1.0, -0.1055613458, -0.0638541728),
    (1.0, -0.0894841775, -1.2914855480),
)
LINEAR_SRGB_FROM_LMS = (
    (4.0767416621, -3.3077115913, 0.2309699292),
    (-1.2684380046, 2.6097574011, -0.3413193965),
    (-0.0041960863, -0.7034186147, 1.7076147010),
)


@triton.jit
def fast_log2(x):
    """``log2`` of a float32 block: ``lg2.approx`` on NVIDIA GPUs, ``tl.log2`` elsewhere."""
    if _USE_PTX_LOG2:
        result = tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        result = tl.log2(x)
    return result


@triton.jit
def signed_cbrt(x):
    """Cube root that keeps the sign (resampled pixels can give slightly negative LMS).

    ``|x|`` is floored at 1e-30 (cube root 1e-10) so the logarithm never sees 0.
    """
    magnitude = tl.exp2(fast_log2(tl.maximum(tl.abs(x), 1e-30)) * (1.0 / 3.0))
    return tl.where(x < 0, -magnitude, magnitude)


@triton.jit
def srgb_decode(c):
    """sRGB transfer function, encoded [0, 1] -> linear [0, 1], float32."""
    curve = tl.exp2(2.4 * fast_log2((tl.maximum(c, 0.0) + 0.055) * (1.0 / 1.055)))
    return tl.where(c <= 0.04045, c * (1.0 / 12.92), curve)


@triton.jit
def srgb_encode(c):
    """Inverse of ``srgb_decode``: linear [0, 1] -> encoded [0, 1] (input clamped first)."""
    c = tl.minimum(tl.maximum(c, 0.0), 1.0)
    curve = 1.055 * tl.exp2(fast_log2(tl.maximum(c, 1e-30)) * (1.0 / 2.4)) - 0.055
    return tl.where(c <= 0.0031308, c * 12.92, curve)


@triton.jit
def round_half_even(x):
    """Nearest integer, ties to even (``torch.round``, C ``rint``), float32 in and out.

    ``x - floor(x)`` is exact, so unlike ``floor(x + 0.5)`` this never rounds a value just below
    a half up. Valid for ``|x| < 2**22``.
    """
    whole = tl.floor(x)
    fraction = x - whole
    whole_is_odd = (whole - 2.0 * tl.floor(whole * 0.5)) == 1.0
    round_up = (fraction > 0.5) | ((fraction == 0.5) & whole_is_odd)
    return tl.where(round_up, whole + 1.0, whole)


@triton.jit
def linear_srgb_to_oklab(r, g, b):
    """Linear sRGB -> Oklab (L, a, b), elementwise on three float32 blocks."""
    lms_l = signed_cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b)
    lms_m = signed_cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b)
    lms_s = signed_cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b)
    lab_l = 0.2104542553 * lms_l + 0.7936177850 * lms_m - 0.0040720468 * lms_s
    lab_a = 1.9779984951 * lms_l - 2.4285922050 * lms_m + 0.4505937099 * lms_s
    lab_b = 0.0259040371 * lms_l + 0.7827717662 * lms_m - 0.8086757660 * lms_s
    return lab_l, lab_a, lab_b


@triton.jit
def oklab_to_linear_srgb(lab_l, lab_a, lab_b):
    """Oklab -> linear sRGB (r, g, b), elementwise on three float32 blocks; not clamped."""
    lms_l = lab_l + 0.3963377774 * lab_a + 0.2158037573 * lab_b
    lms_m = lab_l - 0.1055613458 * lab_a - 0.0638541728 * lab_b
    lms_s = lab_l - 0.0894841775 * lab_a - 1.2914855480 * lab_b
    lms_l = lms_l * lms_l * lms_l
    lms_m = lms_m * lms_m * lms_m
    lms_s = lms_s * lms_s * lms_s
    r = 4.0767416621 * lms_l - 3.3077115913 * lms_m + 0.2309699292 * lms_s
    g = -1.2684380046 * lms_l + 2.6097574011 * lms_m - 0.3413193965 * lms_s
    b = -0.0041960863 * lms_l - 0.7034186147 * lms_m + 1.7076147010 * lms_s
    return r, g, b
