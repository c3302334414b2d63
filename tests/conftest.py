"""Test-wide setup.

Triton decides when a ``@triton.jit`` decorator runs whether the kernel is compiled or
interpreted, so ``TRITON_INTERPRET`` is set here, before anything imports ``kernels``:

- without a GPU (CI), ``1``: CPU tensors run the real Triton kernels in Triton's interpreter;
- with a GPU, ``0``: CUDA tensors run the compiled kernels at real sizes (CPU tensors then run the
  references, so the kernel-versus-reference checks are the CUDA ones).

An explicit ``TRITON_INTERPRET`` in the environment wins. Tests that want the pure-torch
references at real sizes on CPU use the ``reference_path`` fixture, which sets it to ``0`` for
their duration (see ``kernels/dispatch.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")
os.environ.setdefault("KERNELS_POISON_OUTPUTS", "1")

import pytest
from hypothesis import HealthCheck, settings

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
# On a GPU an example costs little to run but about a second to compile whenever it needs a new
# kernel specialisation: few examples, drawn from few shapes (``tests.kernels.compare.FEW_SHAPES``).
settings.register_profile("cuda", settings.get_profile("interpreter"), max_examples=6)
COMPILED_ON_GPU = torch.cuda.is_available() and os.environ["TRITON_INTERPRET"] != "1"
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "cuda" if COMPILED_ON_GPU else "interpreter")
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Every available device: CPU always (interpreter), CUDA where present."""
    return request.param


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's stand-in for the user's cache folder (``XDG_CACHE_HOME``)."""
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def _private_cache_home(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tile caches written by tests (and the processes they start) go to ``cache_home``, never
    to the user's own cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


@pytest.fixture(autouse=True)
def _not_left_real_time() -> Iterator[None]:
    """A test that leaves this thread at a real-time scheduling policy fails: every thread
    started after would inherit it, and a later test's busy threads, never preempted, could
    starve the very threads it waits for (``adapters.scheduling``)."""
    yield
    if hasattr(os, "sched_getscheduler"):
        assert os.sched_getscheduler(0) not in (os.SCHED_FIFO, os.SCHED_RR), (
            "this thread was left at a real-time scheduling policy"
        )


@pytest.fixture
def reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send CPU tensors to the pure-torch references instead of the interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def pytest_configure(config: pytest.Config) -> None:
    """The interpreter evaluates ``log2(0) = -inf`` (a black pixel's cube root) with numpy, which
    warns; that value is intended."""
    config.addinivalue_line("filterwarnings", "ignore:divide by zero encountered in log2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` on a machine without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
