"""``triton`` and ``triton.language`` for the kernel files, or inert stand-ins where no kernel
can run (``kernels.dispatch.TRITON_LOADED``).

Importing Triton loads its compiler library: about 70 MiB resident, an eighth of a CPU video
pipeline's peak, for kernels that a CPU-only torch build never launches (every call runs the
pure-torch references there). The stand-ins cover what the kernel files use while they are
imported, so each kernel stays a plain function that nothing calls: ``@triton.jit``,
``triton.autotune``, ``triton.heuristics``, ``triton.Config`` and ``tl.constexpr``. Kernel
signatures may name ``tl.constexpr`` freely: with ``from __future__ import annotations`` their
annotations are never evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kernels.dispatch import TRITON_LOADED

__all__ = ["tl", "triton"]


def _unchanged(fn: Callable | None = None, **_options: Any) -> Callable:
    """A decorator (used bare or with options) that returns the function as it is."""
    return fn if fn is not None else _unchanged


def _decorator_factory(*_args: Any, **_options: Any) -> Callable:
    """``triton.autotune(...)`` and ``triton.heuristics(...)``: the decorator above. Also stands
    for ``triton.Config``, whose objects nothing reads here."""
    return _unchanged


if TRITON_LOADED:
    import triton
    import triton.language as tl
else:
    triton = SimpleNamespace(
        jit=_unchanged,
        autotune=_decorator_factory,
        heuristics=_decorator_factory,
        Config=_decorator_factory,
    )
    tl = SimpleNamespace(constexpr=lambda value: value)
