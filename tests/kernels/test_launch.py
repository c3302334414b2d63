"""Tests for ``kernels/_launch.py``'s autotuning helpers: size classes, the tuning key, and
launches that never benchmark inside a CUDA graph capture.

An autotuner whose cache already holds a launch's key runs its config without timing anything,
so these run in the interpreter: a key that did not match Triton's own would make it benchmark,
which fails without a GPU.
"""

from __future__ import annotations

import pytest
import torch

import kernels._launch as launch_module
from kernels._launch import launch_tuned, size_class, tuning_key
from kernels._triton import tl, triton
from kernels.dispatch import interpreting

pytestmark = pytest.mark.skipif(
    not interpreting(), reason="runs autotuned kernels on CPU tensors in the interpreter"
)


@triton.jit
def _fill_kernel(out_ptr, n, size_class, VALUE: tl.constexpr, BLOCK: tl.constexpr):
    """Write ``VALUE`` to float32 ``out (n,)``; ``size_class`` only keys the tuning.
    Grid: (cdiv(n, BLOCK),)."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offsets, tl.full((BLOCK,), VALUE, tl.float32), mask=offsets < n)


CONFIGS = [triton.Config({"BLOCK": block}, num_warps=4) for block in (16, 32)]


def fill_tuned():
    """A fresh autotuner (its cache empty) over ``_fill_kernel``, keyed on ``size_class``."""
    return triton.autotune(CONFIGS, key=["size_class"])(_fill_kernel)


def grid(meta: dict) -> tuple[int]:
    return (triton.cdiv(40, meta["BLOCK"]),)


def test_size_classes_are_powers_of_four():
    sizes = [0, 1, 2, 4, 5, 16, 17, 8160, 20_000, 4**8, 4**8 + 1]
    assert [size_class(n) for n in sizes] == [0, 0, 1, 1, 2, 2, 3, 7, 8, 8, 9]


def test_tuning_key_is_the_autotuners_own():
    """With the key filled in beforehand, the autotuner launches without benchmarking (which
    needs a GPU): the key is the one it looks up."""
    tuned = fill_tuned()
    out = torch.zeros(40)
    args, kwargs = (out, 40, 3), {"VALUE": 2.0}
    tuned.cache[tuning_key(tuned, args, kwargs)] = CONFIGS[1]
    tuned[grid](*args, **kwargs)
    assert bool((out == 2.0).all())
    assert tuned.best_config is CONFIGS[1]


@pytest.mark.parametrize("tuned_before", [True, False])
def test_a_capture_never_benchmarks(monkeypatch, tuned_before):
    """Inside a capture a tuned key launches its config and an untuned one the first config,
    without timing; outside one, launch_tuned is the autotuner itself."""
    monkeypatch.setattr(launch_module, "capturing", lambda: True)
    tuned = fill_tuned()
    out = torch.zeros(40)
    args = (out, 40, 5)
    if tuned_before:
        tuned.cache[tuning_key(tuned, args, {"VALUE": 7.0})] = CONFIGS[1]

    def refuse(*_args, **_kwargs):
        raise AssertionError("benchmarked inside a capture")

    monkeypatch.setattr(tuned, "_bench", refuse)
    launched = []
    run = tuned.fn.run
    monkeypatch.setattr(
        tuned.fn, "run", lambda *a, **k: launched.append(k["BLOCK"]) or run(*a, **k)
    )
    launch_tuned(tuned, grid, *args, VALUE=7.0)
    assert bool((out == 7.0).all())
    assert launched == [CONFIGS[1 if tuned_before else 0].kwargs["BLOCK"]]
