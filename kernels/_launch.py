"""What every launcher needs: argument checks (one clear line, raised before any launch), output
allocation, and autotuned launches that are safe inside a CUDA graph capture.

With ``KERNELS_POISON_OUTPUTS=1`` (the tests set it) float outputs are allocated filled with NaN
instead of left uninitialised, so an element a kernel forgets to write fails the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

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


def size_class(n: int) -> int:
    """Power-of-four class of a problem size for autotuning keys: ``ceil(log4(n))``, 0 for
    ``n <= 1``.

    An autotuned kernel keyed on its sizes' classes is tuned once per class, so a size that
    changes from call to call (the cells still unassigned in a frame) does not tune every
    call, and one size's best configuration is not kept for sizes 100x larger.
    """
    return ((max(n, 1) - 1).bit_length() + 1) // 2


def tuning_key(tuned: Any, args: tuple, kwargs: dict) -> tuple:
    """The key under which ``triton.autotune`` caches its choice for a launch: the values of
    the ``key`` arguments, then the dtype of every tensor argument (Triton 3.x)."""
    named = {**dict(zip(tuned.arg_names, args, strict=False)), **kwargs}
    named = {name: value for name, value in named.items() if name in tuned.arg_names}
    key = [named[name] for name in tuned.keys if name in named]
    key += [str(value.dtype) for value in named.values() if hasattr(value, "dtype")]
    return tuple(key)


def capturing() -> bool:
    """Whether the current CUDA stream is capturing a CUDA graph."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def launch_tuned(tuned: Any, grid: Any, *args: object, **kwargs: object) -> None:
    """Launch ``tuned`` (a ``triton.autotune`` kernel) on a GPU, never benchmarking inside a
    CUDA graph capture.

    Outside a capture the autotuner works as usual: the first launch of each tuning key times
    every configuration (synchronising the device) and keeps the fastest. That first launch is
    how a launcher is tuned before a capture: call the operation once on inputs of the same
    size class. Inside a capture, where a synchronisation is an error, a key already tuned
    launches its configuration and an untuned one the first of ``tuned.configs`` (every
    launcher lists a configuration that suits all its variants first), without timing anything.
    """
    if not capturing():
        tuned[grid](*args, **kwargs)
        return
    config = tuned.cache.get(tuning_key(tuned, args, kwargs), tuned.configs[0])
    tuned.fn[grid](*args, **kwargs, **config.all_kwargs())
