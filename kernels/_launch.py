"""What every launcher needs: argument checks (one clear line, raised before any launch) and
output allocation.

With ``KERNELS_POISON_OUTPUTS=1`` (the tests set it) float outputs are allocated filled with NaN
instead of left uninitialised, so an element a kernel forgets to write fails the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
IMAGE_DTYPES = (torch.uint8, *FLOAT_DTYPES)


def check_tensor(
    x: object,
    name: str,
    *,
    dtypes: Iterable[torch.dtype],
    ndim: int | None = None,
    min_ndim: int | None = None,
) -> torch.Tensor:
    """Return ``x`` if it is a tensor of an allowed dtype and rank, else raise one clear line."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    dtypes = tuple(dtypes)
    if x.dtype not in dtypes:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} has dtype {x.dtype}, expected one of: {allowed}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    return x


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise if the named tensors are not all on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors must be on one device: {listed}")


def check_channels(x: torch.Tensor, name: str, channels: int = 3) -> None:
    """Raise unless dim -3 of ``x`` (the channel axis of ``(..., C, H, W)``) is ``channels``."""
    if x.shape[-3] != channels:
        raise ValueError(
            f"{name} must have {channels} channels at dim -3 (layout (..., C, H, W)), "
            f"got shape {tuple(x.shape)}"
        )


def empty_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A new output tensor; NaN-filled (float dtypes) when ``KERNELS_POISON_OUTPUTS=1``."""
    if os.environ.get("KERNELS_POISON_OUTPUTS", "0") == "1" and dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
