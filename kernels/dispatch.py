"""Where a kernel call runs. This is the only module that decides it.

| tensors on | ``TRITON_INTERPRET`` | runs                                             |
|------------|----------------------|--------------------------------------------------|
| CUDA       | any                  | the Triton kernel (compiled for the GPU)         |
| CPU        | ``1``                | the Triton kernel, in Triton's CPU interpreter   |
| CPU        | unset or ``0``       | the pure-torch ``*_reference`` beside the kernel |

Triton reads ``TRITON_INTERPRET`` when a ``@triton.jit`` decorator runs, so it must be set
before ``kernels`` is first imported for the interpreter to work. This module reads it again at
every call, so a process that imported ``kernels`` with it set can still send CPU tensors to the
references by setting it to ``0`` (the engine tests do that to run at real sizes).

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

__all__ = ["TRITON_LOADED", "interpreting", "use_triton"]


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: CPU tensors then run the Triton kernels themselves."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_can_run() -> bool:
    """Whether a Triton kernel could ever run in this process: torch was built for a GPU, or
    the interpreter is on, or Triton is loaded already (importing it again costs nothing)."""
    gpu_build = torch.version.cuda is not None or torch.version.hip is not None
    return gpu_build or interpreting() or "triton" in sys.modules


TRITON_LOADED = _triton_can_run()


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether a call whose inputs live on ``tensor.device`` runs Triton (else the reference)."""
    if tensor.device.type == "cuda":
        return True
    return tensor.device.type == "cpu" and interpreting() and TRITON_LOADED
