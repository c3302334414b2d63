"""Shared benchmark machinery: device, measured copy bandwidth and matmul rate, and timing with
GB/s reporting.

Every benchmark reports, in ``benchmark.extra_info``: the device name, the median time (ms), the
throughput it achieved (GB/s from an explicit byte count) and that throughput as a percentage of
the copy bandwidth measured on the same device in the same run; with a FLOP count, GFLOP/s and
their percentage of a dense matmul's rate measured the same way; with a baseline, its median
time by the same timer and the speed-up.

On CUDA the reported times come from CUDA events (``triton.testing.do_bench``: warm-up, L2
flushed before every run, median), so the Python launch overhead of a sub-millisecond kernel and
a warm L2 do not count; pytest-benchmark's own table still shows synchronised wall-clock times.
Tests marked ``@pytest.mark.cuda`` are skipped without a CUDA device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import torch

T = TypeVar("T")
COPY_BYTES = 1 << 30  # 1 GiB: far larger than any L2, so the copy measures DRAM bandwidth
# The matmul whose rate compute-bound kernels are compared with: square, large enough to run at
# the device's dense rate. float16 on CUDA (tensor cores), float32 on a CPU.
MATMUL_SIDE = {"cuda": 8192, "cpu": 1024}


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Timed calls per measurement on a CPU (pytest-benchmark's rounds, and median_seconds' repeats).
ROUNDS = 10
# Slower calls are not timed again with CUDA events: do_bench runs a call at least 8 times (a
# cold auction solve launched one by one takes seconds), and at that length neither the launch
# overhead nor a warm L2 changes the synchronised wall-clock median.
EVENTS_MAX_SECONDS = 0.1


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int = ROUNDS) -> float:
    """Median time of ``fn`` after warm-up: CUDA events on CUDA (L2 flushed before each run,
    ``repeats`` unused), else wall time of ``repeats`` runs."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, return_mode="median") / 1e3
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def timed_rounds(
    benchmark, device: torch.device, fn: Callable[[], T], rounds: int
) -> tuple[T, float | None]:
    """Run ``fn`` (synchronised) ``rounds`` times under pytest-benchmark after one warm-up round.

    Returns its last result and its median seconds, ``None`` under ``--benchmark-disable`` (one
    smoke run, nothing measured); ``extra_info`` gets the ``device`` and the ``timer`` used: CUDA
    events on CUDA (``median_seconds``) for calls under ``EVENTS_MAX_SECONDS``, else
    pytest-benchmark's synchronised wall-clock median.
    """

    def timed() -> T:
        result = fn()
        synchronize(device)
        return result

    result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.disabled:
        return result, None
    info = benchmark.extra_info
    if device.type == "cuda" and benchmark.stats.stats.median < EVENTS_MAX_SECONDS:
        seconds = median_seconds(fn, device)
        info["timer"] = "CUDA events (triton.testing.do_bench, L2 flushed), median"
    else:
        seconds = benchmark.stats.stats.median
        info["timer"] = f"wall clock, synchronised, median of {rounds}"
    info["device"] = device_name(device)
    return result, seconds


@pytest.fixture(scope="session")
def device() -> torch.device:
    return bench_device()


@pytest.fixture(scope="session")
def copy_bandwidth(device: torch.device) -> float:
    """Measured device copy bandwidth in bytes/s (read + write of a 1 GiB clone)."""
    nbytes = COPY_BYTES if device.type == "cuda" else COPY_BYTES // 4
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device)
    return 2 * nbytes / seconds


@pytest.fixture(scope="session")
def matmul_rate(device: torch.device) -> float:
    """Measured dense matmul rate in FLOP/s: ``MATMUL_SIDE`` cubed, float16 on CUDA (the tensor
    cores' rate, what a compute-bound kernel there is held to), float32 on a CPU."""
    side = MATMUL_SIDE[device.type]
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    x = torch.randn((side, side), device=device).to(dtype)
    y = torch.randn((side, side), device=device).to(dtype)
    out = torch.empty_like(x)
    return 2 * side**3 / median_seconds(lambda: torch.mm(x, y, out=out), device)


@pytest.fixture
def measure(benchmark, device: torch.device, copy_bandwidth: float, request):
    """``measure(fn, bytes=..., flops=..., baseline=...)``: time ``fn`` with pytest-benchmark
    and report; returns the median seconds (None under ``--benchmark-disable``).

    ``fn`` is synchronised inside the timed call so GPU work is counted. ``bytes`` is the number
    of bytes the operation must move at minimum (its floor); ``flops`` its arithmetic, reported
    against the matmul rate (``matmul_rate``) when given. ``baseline`` is timed by the same timer
    as ``fn`` (CUDA events on CUDA, the wall-clock median of as many synchronised calls on a
    CPU): ``baseline_ms`` and ``speedup_vs_baseline``.
    """

    def run(
        fn: Callable[[], object],
        *,
        bytes: int,
        flops: int | None = None,
        baseline: Callable[[], object] | None = None,
    ) -> float | None:
        fn()  # warm-up (Triton compiles on the first call)
        synchronize(device)
        _, seconds = timed_rounds(benchmark, device, fn, rounds=ROUNDS)
        if seconds is None:
            return None
        info = benchmark.extra_info
        info["median_ms"] = seconds * 1e3
        info["bytes"] = bytes
        info["GB/s"] = bytes / seconds / 1e9
        info["copy_GB/s"] = copy_bandwidth / 1e9
        info["pct_of_copy_bandwidth"] = 100.0 * bytes / seconds / copy_bandwidth
        if flops is not None:
            rate = request.getfixturevalue("matmul_rate")
            info["flops"] = flops
            info["GFLOP/s"] = flops / seconds / 1e9
            info["matmul_GFLOP/s"] = rate / 1e9
            info["pct_of_matmul_rate"] = 100.0 * flops / seconds / rate
        if baseline is not None:
            baseline_seconds = median_seconds(baseline, device, repeats=ROUNDS)
            info["baseline_ms"] = baseline_seconds * 1e3
            info["speedup_vs_baseline"] = baseline_seconds / seconds
        return seconds

    return run


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="Triton kernels need CUDA")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.cuda`` benchmarks without a CUDA device (no conftest import needed)."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(cuda_only)
