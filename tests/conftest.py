"""Test-wide setup.

``TRITON_INTERPRET=1`` must be in the environment before any ``@triton.jit`` decorator runs, so it
is set here, before anything imports ``kernels``: CPU tensors then run the real Triton kernels in
Triton's interpreter. Tests that want the pure-torch references at real sizes use the
``reference_path`` fixture, which sets it to ``0`` for their duration (see ``kernels/dispatch.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("KERNELS_POISON_OUTPUTS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The interpreter spends 0.1-0.7 s compiling on the first call of each kernel specialisation, so
# no per-example deadline; examples stay few and small because interpreter time grows with the
# number of programs.
settings.register_profile(
    "interpreter",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "interpreter"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Every available device: CPU always (interpreter), CUDA where present."""
    return request.param


@pytest.fixture
def reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send CPU tensors to the pure-torch references instead of the interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
