"""Pure colour math as small ``@triton.jit`` helpers: no loads, no stores.

The fused kernels (``oklab.py``, ``cell_analysis.py``, ``composite.py``) call these, so each
formula is written once for Triton, and each colour matrix once for Triton and torch alike: the
tuples below are what the pure-torch references in ``oklab.py`` multiply by, and what
``mix_channels`` applies in a kernel. The coefficients are Björn Ottosson's
(https://bottosson.github.io/posts/oklab/); the property tests pin kernels and references to each
other and to an independent colour library.

Triton's interpreter has no ``libdevice`` (``cbrt``, ``pow``), so powers go through
``exp2``/``log2``, which also compile everywhere.
"""

from __future__ import annotations

from kernels._triton import tl, triton
from kernels.dispatch import PTX_HELPERS

# On NVIDIA GPUs ``tl.log2`` compiles to libdevice's ``__nv_log2f`` (~17 instructions) while
# ``lg2.approx`` is one MUFU op (error 2**-22 absolute on [0.5, 2], 2 ulp elsewhere): it takes the
# uint8 -> Oklab kernel from ~148 to ~60 instructions per pixel. ``tl.exp2`` is ``ex2.approx``
# plus a rescaling for results below 2**-126; ``ex2.approx.ftz`` skips it. Inline PTX cannot run
# in the interpreter or on ROCm (``kernels.dispatch.PTX_HELPERS``).
_USE_PTX = tl.constexpr(PTX_HELPERS)

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
# The same matrices as Triton compile-time constants.
_M1 = tl.constexpr(LMS_FROM_LINEAR_SRGB)
_M2 = tl.constexpr(OKLAB_FROM_LMS_CBRT)
_M2_INVERSE = tl.constexpr(LMS_CBRT_FROM_OKLAB)
_M1_INVERSE = tl.constexpr(LINEAR_SRGB_FROM_LMS)

# exp2_fma: 2**f on [-0.5, 0.5] by a degree-5 polynomial, coefficients of the lowest power first,
# fitted for the least maximum relative error and rounded to float32. Its error, float32
# evaluation included, is at most 2.4e-7 relative (2 ulp): tests/kernels/test_math.py checks
# every float32 of [-0.5, -0.0625] and [0.0625, 0.5] and samples the rest.
EXP2_COEFFICIENTS = (
    1.0000001192092896,
    0.6931469440460205,
    0.24022120237350464,
    0.05550713092088699,
    0.009675541892647743,
    0.0013276472454890609,
)
_EXP2 = tl.constexpr(EXP2_COEFFICIENTS)
# Adding 1.5 * 2**23 to a float32 of magnitude below 2**22 rounds it to an integer, held in the
# low mantissa bits of the sum.
_ROUNDING_SHIFT = tl.constexpr(12582912.0)
_ROUNDING_SHIFT_BITS = tl.constexpr(0x4B400000)


@triton.jit
def mix_channels(x0, x1, x2, MATRIX: tl.constexpr):
    """``MATRIX`` (a 3x3 tuple, rows are outputs) applied to three float32 blocks."""
    y0 = MATRIX[0][0] * x0 + MATRIX[0][1] * x1 + MATRIX[0][2] * x2
    y1 = MATRIX[1][0] * x0 + MATRIX[1][1] * x1 + MATRIX[1][2] * x2
    y2 = MATRIX[2][0] * x0 + MATRIX[2][1] * x1 + MATRIX[2][2] * x2
    return y0, y1, y2


@triton.jit
def _approximate(x, PTX: tl.constexpr, IS_LOG2: tl.constexpr):
    """The MUFU instruction ``PTX`` on a float32 block on NVIDIA GPUs; elsewhere ``tl.log2`` or,
    unless ``IS_LOG2``, ``tl.exp2``."""
    if _USE_PTX:
        result = tl.inline_asm_elementwise(PTX, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)
    elif IS_LOG2:
        # lg2.approx's values at 0 (-inf) and below (NaN), without asking numpy for log2(0):
        # the interpreter would warn "divide by zero" where a GPU says nothing.
        positive = x > 0.0
        logarithm = tl.log2(tl.where(positive, x, 1.0))
        result = tl.where(positive, logarithm, tl.where(x == 0.0, float("-inf"), float("nan")))
    else:
        result = tl.exp2(x)
    return result


@triton.jit
def fast_log2(x):
    """``log2`` of a float32 block: ``lg2.approx`` on NVIDIA GPUs, ``tl.log2`` elsewhere."""
    return _approximate(x, "lg2.approx.ftz.f32 $0, $1;", True)


@triton.jit
def fast_exp2(x):
    """``2**x`` of a float32 block: ``ex2.approx.ftz`` on NVIDIA GPUs (results below 2**-126 are
    0), ``tl.exp2`` elsewhere."""
    return _approximate(x, "ex2.approx.ftz.f32 $0, $1;", False)


@triton.jit
def exp2_fma(x, SCALE: tl.constexpr):
    """``2**(x * SCALE)`` of a float32 block with ``-126 < x * SCALE < 128``, on the FMA units
    only (no MUFU op): ``x * SCALE = n + f``, ``n`` the nearest integer, ``2**f`` by the
    polynomial ``EXP2_COEFFICIENTS`` (at most 2.4e-7 relative error), ``n`` added to its
    exponent bits. 10 instructions; a GPU issues them 8x as fast as MUFU ops, so a kernel bound
    by MUFU throughput moves work here.
    """
    rounded = tl.fma(x, SCALE, _ROUNDING_SHIFT)
    whole = rounded - _ROUNDING_SHIFT
    fraction = tl.fma(x, SCALE, -whole)
    power = _EXP2[5] * fraction + _EXP2[4]
    power = power * fraction + _EXP2[3]
    power = power * fraction + _EXP2[2]
    power = power * fraction + _EXP2[1]
    power = power * fraction + _EXP2[0]
    # The low bits of ``rounded`` hold ``whole`` (two's complement); shifted left by 23 they add
    # it to the exponent of ``power``, which stays normal for -126 < x * SCALE < 128.
    exponent = rounded.to(tl.int32, bitcast=True) << 23
    return (power.to(tl.int32, bitcast=True) + exponent).to(tl.float32, bitcast=True)


@triton.jit
def cube_root(x):
    """Cube root of a float32 block ``x >= 0``: two MUFU ops (``lg2``, ``ex2``); 0 gives 0."""
    return fast_exp2(fast_log2(x) * (1.0 / 3.0))


@triton.jit
def cube_root_fma(x):
    """Cube root of a float32 block ``x >= 0`` with one MUFU op (``lg2``) and ``exp2_fma``.

    Relative error below 4e-7 more than ``cube_root``'s for ``x >= 2**-126`` (``exp2_fma``'s
    2.4e-7, and the rounding of ``log2(x) / 3``); below that, and for 0, about 1e-30 rather than
    0.
    """
    return exp2_fma(tl.maximum(fast_log2(x), -300.0), 1.0 / 3.0)


@triton.jit
def signed_cbrt(x):
    """Cube root that keeps the sign (resampled pixels can give slightly negative LMS).

    ``|x|`` is floored at 1e-30 (cube root 1e-10) so the logarithm never sees 0.
    """
    magnitude = cube_root(tl.maximum(tl.abs(x), 1e-30))
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
def rounded_int(x):
    """Nearest integer (int32, ties to even as ``torch.round``) of a float32 block with
    ``|x| < 2**22``: ``x + 1.5 * 2**23`` holds it in its low mantissa bits. An add and an integer
    subtraction, where ``floor`` and a float-to-int conversion would take the conversion pipe
    that the MUFU ops of a colour conversion share (16 results per SM and clock on sm_90)."""
    return (x + _ROUNDING_SHIFT).to(tl.int32, bitcast=True) - _ROUNDING_SHIFT_BITS


@triton.jit
def encode_to_uint8(linear):
    """Linear float32 -> sRGB code: clamped to [0, 1], encoded, scaled, rounded half to even."""
    return rounded_int(srgb_encode(linear) * 255.0).to(tl.uint8)


@triton.jit
def linear_srgb_to_oklab(r, g, b):
    """Linear sRGB -> Oklab (L, a, b), elementwise on three float32 blocks."""
    lms_l, lms_m, lms_s = mix_channels(r, g, b, _M1)
    return mix_channels(signed_cbrt(lms_l), signed_cbrt(lms_m), signed_cbrt(lms_s), _M2)


@triton.jit
def linear_srgb_to_lms_cbrt(r, g, b, FMA_CUBE_ROOTS: tl.constexpr):
    """Cube-rooted LMS (l', m', s') of linear sRGB in [0, 1], elementwise on float32 blocks:
    ``Oklab = mix_channels(l', m', s', OKLAB_FROM_LMS_CBRT)``, and the mix commutes with sums.

    LMS is never negative here, so the cube roots skip the sign. ``FMA_CUBE_ROOTS`` (0 or 1) of
    them, s' first, take ``cube_root_fma`` (one MUFU op and 11 FMA-pipe instructions instead of
    two MUFU ops): a kernel that is bound by MUFU throughput balances its pipes with it.
    """
    lms_l, lms_m, lms_s = mix_channels(r, g, b, _M1)
    lms_s = cube_root_fma(lms_s) if FMA_CUBE_ROOTS > 0 else cube_root(lms_s)
    return cube_root(lms_l), cube_root(lms_m), lms_s


@triton.jit
def lms_cbrt_to_oklab(lms_l, lms_m, lms_s):
    """Cube-rooted LMS -> Oklab (L, a, b), elementwise on three float32 blocks."""
    return mix_channels(lms_l, lms_m, lms_s, _M2)


@triton.jit
def oklab_to_linear_srgb(lab_l, lab_a, lab_b):
    """Oklab -> linear sRGB (r, g, b), elementwise on three float32 blocks; not clamped."""
    lms_l, lms_m, lms_s = mix_channels(lab_l, lab_a, lab_b, _M2_INVERSE)
    lms_l = lms_l * lms_l * lms_l
    lms_m = lms_m * lms_m * lms_m
    lms_s = lms_s * lms_s * lms_s
    return mix_channels(lms_l, lms_m, lms_s, _M1_INVERSE)
