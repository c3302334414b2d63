"""Cost matrix and fused top-k microbenchmarks: the Triton kernels, the torch references and the
``torch.cdist`` baselines, each kernel and its baseline timed by the same timer in one run.

Target (bench/README.md, Targets): ``cost_topk`` with N=8160 cells, M=20000 tiles, D=48, k=16 at
>= 5x faster (goal 10x) than ``torch.cdist`` + ``torch.topk``, and ``cost_matrix`` at >= 3x
``torch.cdist``. On CPU the sizes are those of the 720p CPU workload (700 cells, 1000 tiles);
the Triton benchmarks need CUDA (on CPU the dispatch would run the references).

Descriptors: Gaussian (every feature ``0.5 + 0.15 N(0, 1)``), and image-like ones
(``tests.synthetic``: a sky, a building, objects, and a pool of photo-like tiles), where near
neighbours are close together and many more columns survive ``cost_topk``'s filter. The top-k
benchmarks also run the auction's search (a price bias) and the nearest tile (k = 1).

What each must move and compute, stated as ``bytes`` and ``flops`` in ``extra_info``:
``cost_matrix`` reads both inputs and writes the N x M float32 matrix (658 MB at the GPU size):
it is memory-bound, judged by ``pct_of_copy_bandwidth``. ``cost_topk`` reads both inputs and
writes float32 values and int64 indices (7 MB); its floor is arithmetic, ``2 N M D`` (15.7
GFLOP: the distance products), judged by ``pct_of_matmul_rate`` (a float16 matmul's rate
measured in the same run; the filtered path's float16 dots run twice, so 50 % would be its
tensor cores' limit, before any selection).
"""

from __future__ import annotations

import pytest
import torch

from kernels.cost import cost_matrix, cost_matrix_reference, cost_topk, cost_topk_reference
from tests.synthetic import image_like_instance

FEATURES = 48  # 4 x 4 block means of the three Oklab channels
K = 16
GPU_GRID, GPU_TILES = (68, 120), 20_000  # 1080p in 16-pixel cells: 8160 cells; a 20k-tile pool
CPU_GRID, CPU_TILES = (20, 35), 1000  # 720p in ~36-pixel cells: 700 cells; a 1k-tile pool
DESCRIPTORS = ("gaussian", "image-like")
# The auction's prices: a bias of up to this, against distances of ~0.05-2.
PRICE_SCALE = 0.05


def features(rows: int, seed: int) -> torch.Tensor:
    """Gaussian descriptors: float32 ``(rows, FEATURES)`` around L = 0.5, never all equal."""
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + 0.15 * torch.randn((rows, FEATURES), generator=generator)


def inputs(device: torch.device, descriptors: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells ``(N, D)`` and tiles ``(M, D)`` of the device's workload, on ``device``."""
    (rows, cols), tiles = (GPU_GRID, GPU_TILES) if device.type == "cuda" else (CPU_GRID, CPU_TILES)
    if descriptors == "gaussian":
        cells, pool = features(rows * cols, seed=0), features(tiles, seed=1)
    else:
        cells, pool = image_like_instance(rows, cols, tiles, FEATURES, seed=0)
    return cells.to(device), pool.to(device)


def prices(tiles: torch.Tensor) -> torch.Tensor:
    """A bias per tile, as the auction's prices: uniform in ``[0, PRICE_SCALE)``."""
    generator = torch.Generator().manual_seed(2)
    return (torch.rand(tiles.shape[0], generator=generator) * PRICE_SCALE).to(tiles.device)


def cdist_topk(
    a: torch.Tensor, b: torch.Tensor, k: int, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline: ``torch.cdist`` then ``torch.topk`` (distances, not squared; with a bias,
    squared distances plus the bias)."""
    distances = torch.cdist(a, b)
    if bias is not None:
        distances = distances.square_().add_(bias)
    return torch.topk(distances, k, dim=1, largest=False)


def cdist_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).square_()


def topk_bytes(a: torch.Tensor, b: torch.Tensor, k: int) -> int:
    return (a.numel() + b.numel()) * 4 + a.shape[0] * k * (4 + 8)


def matrix_bytes(a: torch.Tensor, b: torch.Tensor) -> int:
    return (a.numel() + b.numel()) * 4 + a.shape[0] * b.shape[0] * 4


def flops(a: torch.Tensor, b: torch.Tensor) -> int:
    return 2 * a.shape[0] * b.shape[0] * FEATURES


TOPK_CASES = [  # descriptors, k, with prices
    ("gaussian", K, False),
    ("image-like", K, False),
    ("image-like", K, True),
    ("image-like", 1, False),
]


@pytest.mark.cuda
@pytest.mark.benchmark(group="cost_topk")
@pytest.mark.parametrize(("descriptors", "k", "priced"), TOPK_CASES)
def test_cost_topk_triton(measure, benchmark, device, descriptors, k, priced):
    a, b = inputs(device, descriptors)
    bias = prices(b) if priced else None
    benchmark.extra_info.update(descriptors=descriptors, k=k, priced=priced)
    measure(
        lambda: cost_topk(a, b, k, bias=bias), bytes=topk_bytes(a, b, k), flops=flops(a, b),
        baseline=lambda: cdist_topk(a, b, k, bias),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_topk")
@pytest.mark.parametrize("descriptors", DESCRIPTORS)
def test_cost_topk_reference(measure, benchmark, device, descriptors):
    a, b = inputs(device, descriptors)
    benchmark.extra_info.update(descriptors=descriptors, k=K)
    measure(
        lambda: cost_topk_reference(a, b, K), bytes=topk_bytes(a, b, K), flops=flops(a, b),
        baseline=lambda: cdist_topk(a, b, K),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_topk")
def test_cost_topk_cdist_baseline(measure, benchmark, device):
    a, b = inputs(device, "gaussian")
    benchmark.extra_info.update(descriptors="gaussian", k=K)
    measure(lambda: cdist_topk(a, b, K), bytes=topk_bytes(a, b, K), flops=flops(a, b))


@pytest.mark.cuda
@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_triton(measure, device):
    a, b = inputs(device, "gaussian")
    measure(
        lambda: cost_matrix(a, b), bytes=matrix_bytes(a, b), flops=flops(a, b),
        baseline=lambda: cdist_squared(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_reference(measure, device):
    a, b = inputs(device, "gaussian")
    measure(
        lambda: cost_matrix_reference(a, b), bytes=matrix_bytes(a, b), flops=flops(a, b),
        baseline=lambda: cdist_squared(a, b),
    )  # fmt: skip


@pytest.mark.benchmark(group="cost_matrix")
def test_cost_matrix_cdist_baseline(measure, device):
    a, b = inputs(device, "gaussian")
    measure(lambda: cdist_squared(a, b), bytes=matrix_bytes(a, b), flops=flops(a, b))
