"""Where a kernel call runs, and how its kernels were built. This is the only module that
decides either.

| tensors on | ``TRITON_INTERPRET`` | runs                                             |
|------------|----------------------|--------------------------------------------------|
| CUDA       | any                  | the Triton kernel (compiled for the GPU)         |
| CPU        | ``1``                | the Triton kernel, in Triton's CPU interpreter   |
| CPU        | unset or ``0``       | the pure-torch ``*_reference`` beside the kernel |

Triton reads ``TRITON_INTERPRET`` when a ``@triton.jit`` decorator runs, so it must be set
before ``kernels`` is first imported for the interpreter to work. This module reads it again at
every call, so a process that imported ``kernels`` with it set can still send CPU tensors to the
references by setting it to ``0`` (the engine tests do that to run at real sizes).

How the ``@triton.jit`` kernels themselves run is fixed once, when ``kernels`` is first imported
(``KERNELS_INTERPRETED``): Triton reads ``TRITON_INTERPRET`` as each decorator runs. Kernel files
ask here rather than reading the variable: ``KERNELS_INTERPRETED`` for what they decide while
being imported (autotune configs, inline PTX), ``runs_compiled(tensor)`` at launch (GPU tile sizes
and autotuned kernels, or the interpreter's single config).

Whether Triton is loaded at all is decided once, when ``kernels`` is first imported
(``TRITON_LOADED``): a CPU-only torch build without the interpreter can never run a kernel, so
there ``kernels._triton`` hands the kernel files an inert stand-in instead of Triton, and every
call runs the references.

Nothing here touches CUDA at import time: ``torch.version`` is a constant of the build.
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = [
    "KERNELS_INTERPRETED",
    "PTX_HELPERS",
    "TRITON_LOADED",
    "interpreting",
    "runs_compiled",
    "use_triton",
]


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: CPU tensors then run the Triton kernels themselves."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_can_run() -> bool:
    """Whether a Triton kernel could ever run in this process: torch was built for a GPU, or
    the interpreter is on, or Triton is loaded already (importing it again costs nothing)."""
    gpu_build = torch.version.cuda is not None or torch.version.hip is not None
    return gpu_build or interpreting() or "triton" in sys.modules


TRITON_LOADED = _triton_can_run()

KERNELS_INTERPRETED = interpreting()
"""Whether this process's ``@triton.jit`` kernels run in Triton's interpreter
(``TRITON_INTERPRET=1`` when ``kernels`` was first imported) rather than compiled for a GPU."""

PTX_HELPERS = not KERNELS_INTERPRETED and torch.version.hip is None
"""Whether kernels may use inline NVIDIA PTX (``kernels._math``): compiled, and not for ROCm."""


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether a call whose inputs live on ``tensor.device`` runs Triton (else the reference)."""
    if tensor.device.type == "cuda":
        return True
    return tensor.device.type == "cpu" and interpreting() and TRITON_LOADED


def runs_compiled(tensor: torch.Tensor) -> bool:
    """Whether a Triton kernel launched on ``tensor``'s device runs compiled GPU code, where GPU
    tile sizes and autotuning apply, rather than in the interpreter (one config, small tiles)."""
    return tensor.device.type == "cuda" and not KERNELS_INTERPRETED
