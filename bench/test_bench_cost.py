"""Cost matrix and fused top-k microbenchmarks: the Triton kernels, the torch references and the
``torch.cdist`` baselines.

DESIGN.md target: ``cost_topk`` with N=8160 cells, M=20000 tiles, D=48, k=16 at >= 5x faster
than ``torch.cdist`` + ``torch.topk``. Each benchmark also times that baseline in the same run on
the same inputs and records ``baseline_ms`` and ``speedup_vs_baseline`` in ``extra_info``. On
CPU the sizes are those of the 720p CPU target (700 cells, 1000 tiles); the Triton benchmarks
need CUDA (on CPU the dispatch would run the references).

``flops`` is ``2 N M D`` (the distance products); ``bytes`` is the floor each call must move:
both inputs read once and the outputs written once (the N x M float32 matrix for
``cost_matrix``; float32 values and int64 indices for ``cost_topk``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conftest import median_seconds

from kernels.cost import cost_matrix, cost_matrix_reference, cost_topk, cost_topk_reference

FEATURES = 48  # 4 x 4 block means of the three Oklab channels
K = 16
GPU_SIZE = (8160, 20_000)  # 1080p in 16-pixel cells, a 20k-tile pool
CPU_SIZE = (700, 1000)  # 720p in ~40-pixel cells, a 1k-tile pool


def features(rows: int, device: torch.device, seed: int) -> torch.Tensor:
    """Oklab-like descriptors: float32 ``(rows, FEATURES)`` around L = 0.5, never all equal."""
    generator = torch.Generator().manual_seed(seed)
    return (0.5 + 0.15 * torch.randn((rows, FEATURES), generator=generator)).to(device)


def inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cells, tiles = GPU_SIZE if device.type == "cuda" else CPU_SIZE
    return features(cells, device, seed=0), features(tiles, device, seed=1)


def cdist_topk(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The DESIGN.md baseline: ``torch.cdist`` then ``torch.topk`` (distances, not squared)."""
    return torch.topk(torch.cdist(a, b), K, dim=1, largest=False)


def cdist_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).square_()


def measure_against(
    measure,
    benchmark,
    device: torch.device,
    fn: Callable[[], object],
    baseline: Callable[[], object],
    *,
    bytes: int,
    flops: int,
) -> None:
    """``measure(fn)``, then the baseline's median time and the speed-up in ``extra_info``."""
    measure(fn, bytes=bytes, flops=flops)
    baseline_seconds = median_seconds(baseline, device)
    benchmark.extra_info["baseline_ms"] = baseline_seconds * 1e3
    benchmark.extra_info["speedup_vs_baseline"] = baseline_seconds / benchmark.stats.stats.median


def topk_bytes(a: torch.Tensor, b: torch.Tensor) -> int:
    return (a.numel() + b.numel()) * 4 + a.shape[0] * K * (4 + 8)


def matrix_bytes(a: torch.Tensor, b: torch.Tensor) -> int:
    return (a.numel() + b.numel()) * 4 + a.shape[0] * b.shape[0] * 4


def flops(a: torch.Tensor, b: torch.Tensor) -> int:
    return 2 * a.shape[0] * b.shape[0] * FEATURES


@pytest.mark.cuda
@pytest.mark.benchmark(group="cost_topk")
def test_cost_topk_triton(measure, benchmark, device):
    a, b = inputs(device)
    measure_against(
        measure, benchmark, device, lambda: cost_topk(a, b, K), lambda: cdist_topk(a, b),
        bytes=topk_bytes(a, b), flops=flops(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_topk")
def test_cost_topk_reference(measure, benchmark, device):
    a, b = inputs(device)
    measure_against(
        measure, benchmark, device, lambda: cost_topk_reference(a, b, K), lambda: cdist_topk(a, b),
        bytes=topk_bytes(a, b), flops=flops(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_topk")
def test_cost_topk_cdist_baseline(measure, device):
    a, b = inputs(device)
    measure(lambda: cdist_topk(a, b), bytes=topk_bytes(a, b), flops=flops(a, b))


@pytest.mark.cuda
@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_triton(measure, benchmark, device):
    a, b = inputs(device)
    measure_against(
        measure, benchmark, device, lambda: cost_matrix(a, b), lambda: cdist_squared(a, b),
        bytes=matrix_bytes(a, b), flops=flops(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_reference(measure, benchmark, device):
    a, b = inputs(device)
    measure_against(
        measure, benchmark, device, lambda: cost_matrix_reference(a, b),
        lambda: cdist_squared(a, b), bytes=matrix_bytes(a, b), flops=flops(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_cdist_baseline(measure, device):
    a, b = inputs(device)
    measure(lambda: cdist_squared(a, b), bytes=matrix_bytes(a, b), flops=flops(a, b))
