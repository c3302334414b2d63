"""sRGB <-> Oklab: Triton kernels, launchers and pure-torch references.

Layout ``(..., 3, H, W)``; any leading dimensions, any strides.
"""

from __future__ import annotations

import torch

from kernels._launch import FLOAT_DTYPES, IMAGE_DTYPES, check_channels, check_tensor
from kernels._math import (
    LINEAR_SRGB_FROM_LMS,
    LMS_CBRT_FROM_OKLAB,
    LMS_FROM_LINEAR_SRGB,
    OKLAB_FROM_LMS_CBRT,
)
from kernels.dispatch import use_triton

__all__ = [
    "oklab_to_srgb",
    "oklab_to_srgb_reference",
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
    """Pure-torch ``srgb_to_oklab``: uint8 or float ``(..., 3, H, W)`` -> float32 Oklab."""
    x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
    lms = _mix_channels(_srgb_decode_reference(x), LMS_FROM_LINEAR_SRGB)
    lms = lms.sign() * lms.abs() ** (1 / 3)
    return _mix_channels(lms, OKLAB_FROM_LMS_CBRT)


def oklab_to_srgb_reference(lab: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``oklab_to_srgb``: float Oklab ``(..., 3, H, W)`` -> uint8 sRGB (clamped)."""
    lms = _mix_channels(lab.to(torch.float32), LMS_CBRT_FROM_OKLAB) ** 3
    rgb = _srgb_encode_reference(_mix_channels(lms, LINEAR_SRGB_FROM_LMS))
    return (rgb * 255.0).round_().to(torch.uint8)


# --------------------------------------------------------------------------- public


def srgb_to_oklab(x: torch.Tensor) -> torch.Tensor:
    """sRGB -> Oklab.

    Args:
        x: ``(..., 3, H, W)`` uint8, or float in [0, 1]; any strides.

    Returns:
        float32 ``(..., 3, H, W)`` Oklab (L in [0, 1]) on ``x``'s device.
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
        uint8 ``(..., 3, H, W)`` on ``lab``'s device.
    """
    check_tensor(lab, "lab", dtypes=FLOAT_DTYPES, min_ndim=3)
    check_channels(lab, "lab")
    if use_triton(lab):
        return _oklab_to_srgb_triton(lab)
    return oklab_to_srgb_reference(lab)


def _srgb_to_oklab_triton(x: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError("Triton srgb_to_oklab is being written")


def _oklab_to_srgb_triton(lab: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError("Triton oklab_to_srgb is being written")
