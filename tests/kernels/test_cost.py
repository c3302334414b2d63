"""Property tests for ``kernels/cost.py``: ``cost_matrix`` and the fused ``cost_topk``.

The Triton kernels (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
and an independent float64 oracle (SciPy's ``cdist`` by exact differences, numpy sorting), over
shapes with tails, dtypes and strided views. Top-k results are checked by value, not by index
(ties may go either way): each returned index's exact distance matches its value, values ascend,
indices are distinct, and the values are the k smallest exact distances, all within the float32
expansion's error bound. Outputs start NaN-poisoned, so an unwritten value fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernels import cost_matrix, cost_topk
from kernels.cost import cost_matrix_reference, cost_topk_reference
from tests.kernels.compare import (
    assert_close_elementwise,
    needs_compiled_cuda,
    shares_device_fixture,
    sizes_around,
    squared_distance_atol,
    squared_distances_float64,
)

SEEDS = st.integers(0, 2**31 - 1)
COST_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Feature sizes around the kernels' 16-wide dot chunks, and the descriptor sizes 3 s^2.
FEATURE_SIZES = st.sampled_from([1, 2, 3, 12, 15, 16, 17, 27, 33, 48])
# Interpreter blocks are 16 rows and 32 columns; 129 and 300 columns give several tiles and,
# with at most 16 rows, a split of the columns over two programs and the merge pass.
ROW_COUNTS = sizes_around(16)
COLUMN_COUNTS = st.one_of(sizes_around(32), st.sampled_from([129, 300]))
# "transposed": column-major (N, D); "step_sliced": every other row and column of a larger
# NaN-filled matrix, so a kernel that reads between them shows it.
MATRIX_LAYOUTS = ("contiguous", "transposed", "step_sliced")


def random_features(
    shape: tuple[int, int],
    dtype: torch.dtype,
    seed: int,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
) -> torch.Tensor:
    """Normal random features on the CPU, ``offset + scale * N(0, 1)``, rounded to ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    return (offset + scale * torch.randn(shape, generator=generator)).to(dtype)


def with_matrix_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` ``(N, D)`` copied into the memory layout ``layout`` (see ``MATRIX_LAYOUTS``)."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "transposed":
        return x.T.contiguous().T
    if layout == "step_sliced":
        padded = torch.full(
            (2 * x.shape[0], 2 * x.shape[1] + 1), float("nan"), dtype=x.dtype, device=x.device
        )
        sampled = padded[::2, 1::2]
        sampled.copy_(x)
        return sampled
    raise ValueError(f"unknown layout {layout!r}; expected one of {MATRIX_LAYOUTS}")


@st.composite
def cost_inputs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, str, str, int]:
    """``(a, b, a_layout, b_layout, k)``: CPU features with tail shapes, any float dtype, offsets
    and scales (the expansion's error grows with them), two layouts and ``1 <= k <= min(M, 64)``.
    """
    n, m, d = draw(ROW_COUNTS), draw(COLUMN_COUNTS), draw(FEATURE_SIZES)
    dtype = draw(st.sampled_from(COST_DTYPES))
    scale, offset = draw(st.sampled_from([(1.0, 0.0), (0.1, 0.5), (20.0, -3.0)]))
    seed = draw(SEEDS)
    a = random_features((n, d), dtype, seed, scale=scale, offset=offset)
    b = random_features((m, d), dtype, seed + 1, scale=scale, offset=offset)
    layouts = st.sampled_from(MATRIX_LAYOUTS)
    top = min(m, 64)
    k = draw(st.one_of(st.just(1), st.just(top), st.integers(1, top)))
    return a, b, draw(layouts), draw(layouts), k


def assert_cost_matrix(
    a: torch.Tensor, b: torch.Tensor, name: str, *, rows: torch.Tensor | None = None
) -> None:
    """``cost_matrix(a, b)`` against the reference on ``a``'s device and the float64 oracle
    (on the row subsample ``rows`` if given)."""
    cost = cost_matrix(a, b)
    assert cost.dtype == torch.float32
    assert cost.device == a.device
    assert cost.shape == (a.shape[0], b.shape[0])
    reference = cost_matrix_reference(a, b)
    if rows is not None:
        picked = rows.to(a.device)
        a, cost, reference = a[picked], cost[picked], reference[picked]
    atol = squared_distance_atol(a, b)
    # Kernel and reference each err by at most atol from the exact distance.
    assert_close_elementwise(cost, reference, 2 * atol, name=f"{name} vs reference")
    assert_close_elementwise(cost, squared_distances_float64(a, b), atol, name=f"{name} vs float64")


def assert_topk(
    a: torch.Tensor, b: torch.Tensor, k: int, name: str, *, rows: torch.Tensor | None = None
) -> None:
    """``cost_topk(a, b, k)`` checked by value against the float64 oracle and the reference
    (on the row subsample ``rows`` if given)."""
    values, indices = cost_topk(a, b, k)
    n, m = a.shape[0], b.shape[0]
    assert values.shape == (n, k) and indices.shape == (n, k), name
    assert values.dtype == torch.float32 and indices.dtype == torch.int64, name
    assert values.device == a.device and indices.device == a.device, name
    reference_values = cost_topk_reference(a, b, k)[0]
    if rows is not None:
        picked = rows.to(a.device)
        a, values, indices, reference_values = (
            a[picked],
            values[picked],
            indices[picked],
            reference_values[picked],
        )
    values, indices = values.cpu().double(), indices.cpu()
    assert not values.isnan().any(), f"{name}: NaN (unwritten) values"
    assert bool(((indices >= 0) & (indices < m)).all()), f"{name}: index out of [0, {m})"
    assert bool((indices.sort(dim=1).values.diff(dim=1) > 0).all()), f"{name}: repeated index"
    assert bool((values.diff(dim=1) >= 0).all()), f"{name}: values not ascending"
    exact = squared_distances_float64(a, b)
    atol = squared_distance_atol(a, b)
    assert_close_elementwise(
        values, exact.gather(1, indices), atol.gather(1, indices),
        name=f"{name}: value vs its index's float64 distance",
    )  # fmt: skip
    # The j-th smallest of numbers that each err by at most t is within t of the exact j-th
    # smallest, so the values match the sorted exact distances within the row's largest atol.
    smallest = torch.from_numpy(np.sort(exact.numpy(), axis=1)[:, :k])
    row_atol = atol.max(dim=1, keepdim=True).values.expand(-1, k)
    assert_close_elementwise(values, smallest, row_atol, name=f"{name}: vs k smallest float64")
    assert_close_elementwise(values, reference_values, 2 * row_atol, name=f"{name}: vs reference")


# --------------------------------------------------------------------------- properties


@shares_device_fixture
@given(inputs=cost_inputs())
def test_cost_matrix_matches_reference_and_float64(device, inputs):
    a, b, a_layout, b_layout, _ = inputs
    a, b = with_matrix_layout(a.to(device), a_layout), with_matrix_layout(b.to(device), b_layout)
    name = f"cost_matrix {a.dtype} a {tuple(a.shape)} {a_layout}, b {tuple(b.shape)} {b_layout}"
    assert_cost_matrix(a, b, name)


@shares_device_fixture
@given(inputs=cost_inputs())
def test_cost_topk_matches_float64_and_reference(device, inputs):
    a, b, a_layout, b_layout, k = inputs
    a, b = with_matrix_layout(a.to(device), a_layout), with_matrix_layout(b.to(device), b_layout)
    name = f"cost_topk k={k} {a.dtype} a {tuple(a.shape)} {a_layout}, b {tuple(b.shape)} {b_layout}"
    assert_topk(a, b, k, name)


@pytest.mark.parametrize("d", [75, 192])  # cells of 5 x 5 and 8 x 8 block means
def test_descriptor_sizes_span_several_dot_chunks(device, d):
    a = random_features((13, d), torch.float32, seed=d, scale=0.2, offset=0.5).to(device)
    b = random_features((70, d), torch.float32, seed=d + 1, scale=0.2, offset=0.5).to(device)
    assert_cost_matrix(a, b, f"cost_matrix D={d}")
    assert_topk(a, b, 9, f"cost_topk D={d}")


@pytest.mark.parametrize("n", [5, 40])  # 5 rows: the columns split over two programs; 40: not
@pytest.mark.parametrize("k", [1, 7, 16, 64])
def test_ties_go_to_the_lower_index(device, n, k):
    """Small integer features make every distance exact and most of them tied: the kernel's
    (distance, index) order is then fully determined and matches a float64 lexicographic sort,
    whether or not the columns were split."""
    generator = torch.Generator().manual_seed(n * k)
    a = torch.randint(-2, 3, (n, 6), generator=generator).float().to(device)
    b = torch.randint(-2, 3, (300, 6), generator=generator).float().to(device)
    values, indices = cost_topk(a, b, k)
    exact = squared_distances_float64(a, b).numpy()
    columns = np.broadcast_to(np.arange(b.shape[0]), exact.shape)
    order = np.lexsort((columns, exact), axis=1)[:, :k]
    assert torch.equal(indices.cpu(), torch.from_numpy(order))
    assert torch.equal(values.cpu().double(), torch.from_numpy(np.take_along_axis(exact, order, 1)))


def test_nan_ranks_after_every_number(device):
    """A NaN in a row of ``a`` makes that row NaN; NaN rows of ``b`` come last in every row, as
    ``torch.sort`` orders them; kernel and reference agree."""
    a = random_features((6, 12), torch.float32, seed=1).to(device)
    b = random_features((40, 12), torch.float32, seed=2).to(device)
    a[2, 5] = float("nan")
    nan_columns = [3, 17, 39]
    b[nan_columns, 0] = float("nan")
    cost = cost_matrix(a, b)
    assert torch.equal(cost.isnan(), cost_matrix_reference(a, b).isnan())
    assert bool(cost[2].isnan().all()) and bool(cost[:, nan_columns].isnan().all())
    for k in (5, 37, 40):
        values, indices = cost_topk(a, b, k)
        reference_values = cost_topk_reference(a, b, k)[0]
        assert torch.equal(values.isnan(), reference_values.isnan()), k
        finite_rows = [0, 1, 3, 4, 5]
        assert bool(values[2].isnan().all()), k
        assert not values[finite_rows, : min(k, 37)].isnan().any(), k
        assert bool(values[finite_rows, 37:].isnan().all()), k
        returned = set(indices[finite_rows, : min(k, 37)].flatten().tolist())
        assert returned.isdisjoint(nan_columns), k


# The interpreter's numpy matmul warns about inf * 0.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_infinite_features_give_non_finite_distances(device):
    a = random_features((3, 16), torch.float32, seed=3).to(device)
    b = random_features((20, 16), torch.float32, seed=4).to(device)
    a[1, 4] = float("inf")
    assert not cost_matrix(a, b)[1].isfinite().any()
    assert not cost_topk(a, b, 4)[0][1].isfinite().any()


def test_k_above_64_runs_the_reference(device):
    a = random_features((5, 3), torch.float32, seed=5).to(device)
    b = random_features((90, 3), torch.float32, seed=6).to(device)
    for k in (65, 90):
        assert_topk(a, b, k, f"cost_topk k={k}")


def test_empty_inputs_give_empty_outputs(device):
    a = torch.ones((0, 12), device=device)
    b = torch.ones((7, 12), device=device)
    assert cost_matrix(a, b).shape == (0, 7)
    assert cost_matrix(b, a).shape == (7, 0)
    values, indices = cost_topk(a, b, 3)
    assert values.shape == indices.shape == (0, 3)
    assert (values.dtype, indices.dtype) == (torch.float32, torch.int64)


FEATURES = torch.zeros(4, 3)
BAD_PAIRS = [
    (FEATURES.int(), FEATURES, TypeError, "a has dtype torch.int32"),
    (FEATURES, FEATURES.to(torch.uint8), TypeError, "b has dtype torch.uint8"),
    (FEATURES.numpy(), FEATURES, TypeError, "a must be a torch.Tensor"),
    (FEATURES[0], FEATURES, ValueError, "a must have 2 dimensions"),
    (FEATURES, FEATURES[None], ValueError, "b must have 2 dimensions"),
    (FEATURES, torch.zeros(4, 5), ValueError, "same feature size D"),
    (FEATURES, FEATURES.to("meta"), ValueError, "must be on one device"),
]


@pytest.mark.parametrize(("a", "b", "error", "message"), BAD_PAIRS)
def test_invalid_pairs_raise_one_clear_error(a, b, error, message):
    with pytest.raises(error, match=message):
        cost_matrix(a, b)
    with pytest.raises(error, match=message):
        cost_topk(a, b, 1)


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (0, ValueError, r"k must be in \[1, M=4\], got 0"),
        (5, ValueError, r"k must be in \[1, M=4\], got 5"),
        (-1, ValueError, "k must be in"),
        (2.0, TypeError, "k must be an int, got float"),
        (True, TypeError, "k must be an int, got bool"),
        (torch.tensor(2), TypeError, "k must be an int, got Tensor"),
    ],
)
def test_invalid_k_raises_one_clear_error(k, error, message):
    with pytest.raises(error, match=message):
        cost_topk(FEATURES, FEATURES, k)


# --------------------------------------------------------------------------- real sizes


def test_reference_at_real_size_matches_float64(reference_path):
    """The CPU production path: 2000 cells x 20000 tiles of 4 x 4 descriptors, checked against
    the float64 oracle on a row subsample; its row chunks keep memory bounded."""
    a = random_features((2000, 48), torch.float32, seed=8, scale=0.15, offset=0.4)
    b = random_features((20_000, 48), torch.float32, seed=9, scale=0.15, offset=0.4)
    rows = torch.randperm(2000, generator=torch.Generator().manual_seed(0))[:64]
    assert_topk(a, b, 16, "cost_topk reference 2000 x 20000", rows=rows)
    assert_cost_matrix(a[:700], b[:1000], "cost_matrix reference 700 x 1000")


def test_reference_topk_equals_sorted_reference_matrix(reference_path, monkeypatch):
    """Both references compute one formula, so the top-k values are the matrix's sorted values:
    exactly in one chunk, within the bound when the rows are split into chunks of 7."""
    a = random_features((100, 48), torch.float32, seed=10)
    b = random_features((300, 48), torch.float32, seed=11)
    sorted_matrix = cost_matrix_reference(a, b).sort(dim=1).values[:, :20]
    assert torch.equal(cost_topk_reference(a, b, 20)[0], sorted_matrix)
    monkeypatch.setattr("kernels.cost._REFERENCE_CHUNK_ELEMENTS", 7 * 300)
    row_atol = squared_distance_atol(a, b).max(dim=1, keepdim=True).values.expand(-1, 20)
    chunked = cost_topk_reference(a, b, 20)[0]
    assert_close_elementwise(chunked, sorted_matrix, 2 * row_atol, name="chunked reference")


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_frame_of_8160_cells_and_20000_tiles(dtype):
    a = random_features((8160, 48), dtype, seed=12, scale=0.15, offset=0.4).cuda()
    b = random_features((20_000, 48), dtype, seed=13, scale=0.15, offset=0.4).cuda()
    rows = torch.randperm(8160, generator=torch.Generator().manual_seed(1))[:256]
    assert_topk(a, b, 16, f"cost_topk cuda 8160 x 20000 {dtype}", rows=rows)
    assert_cost_matrix(a, b, f"cost_matrix cuda 8160 x 20000 {dtype}", rows=rows)


@needs_compiled_cuda
@pytest.mark.cuda
def test_cuda_million_tiles_k_64():
    """Few rows and a million columns: the columns split over many programs, then merge."""
    a = random_features((8, 48), torch.float32, seed=14, scale=0.15, offset=0.4).cuda()
    b = random_features((1_000_000, 48), torch.float32, seed=15, scale=0.15, offset=0.4).cuda()
    assert_topk(a, b, 64, "cost_topk cuda 8 x 1e6")


# --------------------------------------------------------------------------- bias and rows


@st.composite
def biased_topk_inputs(draw: st.DrawFn):
    """Features, a non-negative column bias (some zero, some as large as the distances), a row
    selection, and k."""
    n, m = draw(ROW_COUNTS), draw(COLUMN_COUNTS)
    d = draw(st.sampled_from([3, 12, 17]))
    seed = draw(SEEDS)
    a = random_features((n, d), torch.float32, seed, scale=0.2, offset=0.5)
    b = random_features((m, d), torch.float32, seed + 1, scale=0.2, offset=0.5)
    generator = torch.Generator().manual_seed(seed + 2)
    bias = torch.rand(m, generator=generator) * draw(st.sampled_from([0.0, 0.01, 1.0]))
    rows = torch.rand(n, generator=generator) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    return a, b, bias, rows, draw(st.integers(1, min(m, 20)))


@shares_device_fixture
@given(inputs=biased_topk_inputs())
def test_cost_topk_ranks_distance_plus_bias_on_selected_rows(device, inputs):
    """With ``bias``, the values are the k smallest ``distance + bias`` (float64 oracle, same
    tolerance as plain distances); with ``rows`` and ``out``, only the selected rows change."""
    a, b, bias, rows, k = (x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)
    n = a.shape[0]
    values = torch.full((n, k), -1.0, device=device)
    indices = torch.full((n, k), -7, dtype=torch.int64, device=device)
    returned = cost_topk(a, b, k, bias=bias, rows=rows, out=(values, indices))
    assert returned[0] is values and returned[1] is indices
    reference = cost_topk_reference(a, b, k, bias=bias)
    kept = ~rows.cpu()
    assert bool((values.cpu()[kept] == -1.0).all()) and bool((indices.cpu()[kept] == -7).all())
    picked = rows.cpu()
    if not picked.any():
        return
    exact = squared_distances_float64(a, b)[picked] + bias.cpu().double()
    atol = squared_distance_atol(a, b)[picked]
    got_values, got_indices = values.cpu()[picked].double(), indices.cpu()[picked]
    assert bool((got_values.diff(dim=1) >= 0).all()), "values not ascending"
    assert_close_elementwise(
        got_values, exact.gather(1, got_indices), atol.gather(1, got_indices),
        name="value vs its index's float64 distance + bias",
    )  # fmt: skip
    smallest = exact.sort(dim=1).values[:, :k]
    row_atol = atol.max(dim=1, keepdim=True).values.expand(-1, k)
    assert_close_elementwise(got_values, smallest, row_atol, name="vs k smallest float64")
    assert_close_elementwise(
        got_values, reference[0].cpu()[picked], 2 * row_atol, name="vs reference"
    )


def test_bias_rows_and_out_are_checked(device):
    a, b = torch.rand(4, 3, device=device), torch.rand(9, 3, device=device)
    with pytest.raises(ValueError, match="one value per row of b"):
        cost_topk(a, b, 2, bias=torch.zeros(8, device=device))
    with pytest.raises(ValueError, match="rows needs out"):
        cost_topk(a, b, 2, rows=torch.ones(4, dtype=torch.bool, device=device))
    indices = torch.empty(4, 2, dtype=torch.int64, device=device)
    with pytest.raises(TypeError, match="rows has dtype"):
        out = (torch.empty(4, 2, device=device), indices)
        cost_topk(a, b, 2, rows=torch.ones(4, device=device), out=out)
    with pytest.raises(ValueError, match=r"out values must be \(4, 2\)"):
        cost_topk(a, b, 2, out=(torch.empty(4, 3, device=device), indices))
