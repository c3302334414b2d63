"""Property tests for ``kernels/cost.py``: ``cost_matrix`` and the fused ``cost_topk``.

The Triton kernels (in the interpreter on CPU, compiled on CUDA) against the pure-torch reference
and an independent float64 oracle (SciPy's ``cdist`` by exact differences, numpy sorting), over
shapes with tails, dtypes and strided views. Top-k results are checked by value, not by index
(ties may go either way): each returned index's exact distance matches its value, values ascend,
indices are distinct, and the values are the k smallest exact distances, all within the float32
expansion's error bound. Outputs start NaN-poisoned, so an unwritten value fails.

``cost_topk`` has two kernel paths (``kernels/cost.py``'s docstring); the ``topk_path`` fixture
runs a test on each whatever the sizes (the launcher picks the filtered one only for k <= 16 on
many column tiles), and on the filtered one with every survivor list re-ranked before each tile
("flushing", the path a list that could overflow takes). The filtered path's error bound on its
float16 distances is checked on its own against float64 distances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import kernels.cost as cost_module
from kernels import cost_matrix, cost_topk
from kernels._triton import tl, triton
from kernels.cost import cost_matrix_reference, cost_topk_reference
from kernels.dispatch import interpreting
from tests.kernels.compare import (
    assert_close_elementwise,
    needs_compiled_cuda,
    shares_device_fixture,
    sizes_around,
    squared_distance_atol,
    squared_distances_float64,
)
from tests.synthetic import image_like_instance

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


def use_topk_path(path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Send k <= 16 to the named top-k path whatever the sizes (larger k: always exact)."""
    filtered = path != "exact"
    monkeypatch.setattr(cost_module, "_FILTER_MIN_TILES", 0 if filtered else 2**40)
    monkeypatch.setattr(cost_module, "_FILTER_MIN_TILES_PER_K", 0)
    if path == "flushing":
        # Lists one tile long: every non-empty list is re-ranked before the next tile.
        monkeypatch.setattr(cost_module, "_CAPACITY_TILES", 1)
    return path


@pytest.fixture(params=["exact", "filtered"])
def topk_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each kernel path (for the hypothesis tests: the flushing one is the slowest)."""
    return use_topk_path(request.param, monkeypatch)


@pytest.fixture(params=["exact", "filtered", "flushing"])
def every_topk_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each kernel path, and the filtered one re-ranking before every tile."""
    return use_topk_path(request.param, monkeypatch)


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
def test_cost_topk_matches_float64_and_reference(device, topk_path, inputs):
    a, b, a_layout, b_layout, k = inputs
    a, b = with_matrix_layout(a.to(device), a_layout), with_matrix_layout(b.to(device), b_layout)
    name = f"cost_topk k={k} {a.dtype} a {tuple(a.shape)} {a_layout}, b {tuple(b.shape)} {b_layout}"
    assert_topk(a, b, k, name)


@pytest.mark.parametrize("d", [75, 192])  # cells of 5 x 5 and 8 x 8 block means
def test_descriptor_sizes_span_several_dot_chunks(device, every_topk_path, d):
    a = random_features((13, d), torch.float32, seed=d, scale=0.2, offset=0.5).to(device)
    b = random_features((70, d), torch.float32, seed=d + 1, scale=0.2, offset=0.5).to(device)
    assert_cost_matrix(a, b, f"cost_matrix D={d}")
    assert_topk(a, b, 9, f"cost_topk D={d}")


@pytest.mark.parametrize("n", [5, 40])  # 5 rows: the columns split over two programs; 40: not
@pytest.mark.parametrize("k", [1, 7, 16, 64])
def test_ties_go_to_the_lower_index(device, every_topk_path, n, k):
    """Small integer features make every distance exact and most of them tied: the kernel's
    (distance, index) order is then fully determined and matches a float64 lexicographic sort,
    whether or not the columns were split."""
    if device == "cpu" and not interpreting():
        pytest.skip("the reference (torch.topk) returns equal values in any order")
    generator = torch.Generator().manual_seed(n * k)
    a = torch.randint(-2, 3, (n, 6), generator=generator).float().to(device)
    b = torch.randint(-2, 3, (300, 6), generator=generator).float().to(device)
    values, indices = cost_topk(a, b, k)
    exact = squared_distances_float64(a, b).numpy()
    columns = np.broadcast_to(np.arange(b.shape[0]), exact.shape)
    order = np.lexsort((columns, exact), axis=1)[:, :k]
    assert torch.equal(indices.cpu(), torch.from_numpy(order))
    assert torch.equal(values.cpu().double(), torch.from_numpy(np.take_along_axis(exact, order, 1)))


# The interpreter's reductions over a NaN row warn; the kernels mean them.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_nan_ranks_after_every_number(device, every_topk_path):
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
def test_infinite_features_give_non_finite_distances(device, every_topk_path):
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
@pytest.mark.parametrize("k", [16, 64])
def test_cuda_million_tiles(k):
    """Few rows and a million columns: the columns split over many programs, then merge (k = 16
    on the filtered path, 64 on the exact one)."""
    a = random_features((8, 48), torch.float32, seed=14, scale=0.15, offset=0.4).cuda()
    b = random_features((1_000_000, 48), torch.float32, seed=15, scale=0.15, offset=0.4).cuda()
    assert_topk(a, b, k, f"cost_topk cuda 8 x 1e6 k={k}")


@needs_compiled_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("k", [1, 16])
def test_cuda_image_like_frame_with_prices(k):
    """A 1080p frame of image-like descriptors against 20000 tiles (near neighbours close
    together, so many survive the filter), plain and with the auction's prices on selected
    rows."""
    cells, pool = image_like_instance(68, 120, 20_000, 48)
    a, b = cells.cuda(), pool.cuda()
    rows = torch.randperm(8160, generator=torch.Generator().manual_seed(2))[:256]
    assert_topk(a, b, k, f"cost_topk cuda image-like k={k}", rows=rows)
    bias = torch.rand(20_000, generator=torch.Generator().manual_seed(3)).cuda() * 0.05
    selected = torch.zeros(8160, dtype=torch.bool)
    selected[rows] = True
    values = torch.full((8160, k), -1.0, device="cuda")
    indices = torch.full((8160, k), -7, dtype=torch.int64, device="cuda")
    cost_topk(a, b, k, bias=bias, rows=selected.cuda(), out=(values, indices))
    assert bool((values.cpu()[~selected] == -1.0).all())
    exact = squared_distances_float64(a[rows], b) + bias.cpu().double()
    atol = squared_distance_atol(a[rows], b)
    got = values.cpu()[rows].double()
    assert_close_elementwise(
        got, exact.gather(1, indices.cpu()[rows]), atol.gather(1, indices.cpu()[rows]),
        name="image-like with prices: value vs its index",
    )  # fmt: skip
    row_atol = atol.max(dim=1, keepdim=True).values.expand(-1, k)
    smallest = exact.sort(dim=1).values[:, :k]
    assert_close_elementwise(got, smallest, row_atol, name="image-like with prices: k smallest")


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
def test_cost_topk_ranks_distance_plus_bias_on_selected_rows(device, topk_path, inputs):
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
    assert_biased_topk(got_values, got_indices, exact, atol, reference[0].cpu()[picked])


def assert_biased_topk(
    values: torch.Tensor,
    indices: torch.Tensor,
    exact: torch.Tensor,
    atol: torch.Tensor,
    reference: torch.Tensor,
) -> None:
    """float64 ``values`` ``(n, k)`` at int64 ``indices`` are the k smallest of ``exact``
    ``(n, m)`` (float64 distance + bias, within ``atol`` ``(n, m)``) and match the reference's
    ``(n, k)`` values."""
    assert_close_elementwise(
        values, exact.gather(1, indices), atol.gather(1, indices),
        name="value vs its index's float64 distance + bias",
    )  # fmt: skip
    k = values.shape[1]
    smallest = exact.sort(dim=1).values[:, :k]
    row_atol = atol.max(dim=1, keepdim=True).values.expand(-1, k)
    assert_close_elementwise(values, smallest, row_atol, name="vs k smallest float64")
    assert_close_elementwise(values, reference, 2 * row_atol, name="vs reference")


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


def test_excluded_columns_rank_last_in_column_order(device, every_topk_path):
    """The auction keeps tiles out of a search with a bias of 1e30: float32 ``distance + 1e30``
    is ``1e30`` for every such column, so they rank after the others, lowest column first, even
    when fewer than k columns are left."""
    if device == "cpu" and not interpreting():
        pytest.skip("the reference (torch.topk) returns equal values in any order")
    a = random_features((7, 12), torch.float32, seed=20, scale=0.2, offset=0.5).to(device)
    b = random_features((150, 12), torch.float32, seed=21, scale=0.2, offset=0.5).to(device)
    open_columns = torch.tensor([4, 77, 140])
    bias = torch.full((150,), 1e30)
    bias[open_columns] = torch.tensor([0.0, 0.01, 0.2])
    values, indices = cost_topk(a, b, 8, bias=bias.to(device))
    exact = squared_distances_float64(a, b)[:, open_columns] + bias[open_columns].double()
    nearest, order = exact.sort(dim=1)
    atol = squared_distance_atol(a, b)[:, open_columns].max(dim=1, keepdim=True).values
    assert_close_elementwise(
        values.cpu()[:, :3], nearest, atol.expand(-1, 3), name="open columns first"
    )
    assert torch.equal(indices.cpu()[:, :3], open_columns[order])
    excluded = torch.tensor([0, 1, 2, 3, 5]).expand(7, -1)
    assert torch.equal(indices.cpu()[:, 3:], excluded)
    assert bool((values.cpu()[:, 3:] == torch.tensor(1e30, dtype=torch.float32)).all())


# The interpreter's numpy warns about float16 copies that overflow, and their dots (inf * 0).
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")
@pytest.mark.parametrize(
    ("scale", "offset"),
    [(1e-7, 0.5), (2e3, -7e3), (1.0, 3e5)],
    ids=["tiny-spread", "large", "beyond-float16"],
)
def test_filtered_path_is_exact_at_extreme_magnitudes(device, every_topk_path, scale, offset):
    """Descriptors spread over a millionth of their magnitude, thousands, or centred values past
    float16's range (its copies overflow, so every column survives): still the exact top-k."""
    a = random_features((9, 12), torch.float32, seed=22, scale=scale, offset=offset).to(device)
    b = random_features((200, 12), torch.float32, seed=23, scale=scale, offset=offset).to(device)
    b[17] = b[17] * 64  # one tile far from the rest: its copy leaves float16 in the last case
    assert_topk(a, b, 6, f"cost_topk {every_topk_path} scale {scale} offset {offset}")


# --------------------------------------------------------------------------- the filtered bound


@triton.jit
def _candidates_kernel(
    half_ptr, norms_ptr, dot_factor_ptr, out_ptr, N, first_column, stride_on,
    D_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """The filtered path's float16 distances ``w`` (float32 ``out (N, M_PAD)``) of one tile,
    computed by its own helpers. Grid: (row blocks, column tiles)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    a_half = tl.load(
        half_ptr + rows[:, None] * D_PAD + dims[None, :],
        mask=row_mask[:, None] & (dims < D_PAD)[None, :],
        other=0.0,
    )
    copies = cost_module._column_copies(half_ptr, first_column, cols, 0, D_PAD, BLOCK_D)
    partial = cost_module._candidate_distances(
        half_ptr, norms_ptr, a_half, copies, rows, cols, row_mask, tl.load(dot_factor_ptr),
        first_column, out_ptr, 0, 0, D_PAD, BLOCK_N, BLOCK_M, BLOCK_D, False,
    )  # fmt: skip
    distances = partial + tl.load(norms_ptr + rows, mask=row_mask, other=0.0)[:, None]
    tl.store(out_ptr + rows[:, None] * stride_on + cols[None, :], distances, mask=row_mask[:, None])


def candidate_distances(a: torch.Tensor, b: torch.Tensor, block: int):
    """``(w (N, M_PAD), norms (N + M,), errors (N + M,), tile_bounds, dot_rounding)`` of the
    filtered path for column tiles of ``block``, rows of ``a`` then of ``b`` in the vectors."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    half, norms, errors, tile_bounds, dot_factor = cost_module._prepare_candidates(a, b, block)
    d_pad, block_d = cost_module._half_layout(d)
    first_column = triton.cdiv(n, block) * block
    tiles = triton.cdiv(m, block)
    out = torch.full((n, tiles * block), float("nan"), device=a.device)
    _candidates_kernel[(triton.cdiv(n, block), tiles)](
        half, norms, dot_factor, out, n, first_column, out.stride(0),
        D_PAD=d_pad, BLOCK_N=block, BLOCK_M=block, BLOCK_D=block_d,
    )  # fmt: skip
    columns = slice(first_column, first_column + m)
    vectors = [torch.cat([x[:n], x[columns]]).cpu().double() for x in (norms, errors)]
    dot_rounding = cost_module._rounding_margins(d)[2]
    return out.cpu().double(), *vectors, tile_bounds.cpu().double(), dot_rounding


@st.composite
def bound_inputs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of any float dtype, with the offsets and spreads the bound depends on."""
    n, m = draw(ROW_COUNTS), draw(COLUMN_COUNTS)
    d = draw(st.sampled_from([3, 12, 17, 48, 64]))
    dtype = draw(st.sampled_from(COST_DTYPES))
    scale, offset = draw(st.sampled_from([(1.0, 0.0), (0.15, 0.5), (20.0, -3.0), (1e-4, 1.0)]))
    seed = draw(SEEDS)
    # Cells may lie far from the tiles (the centre is the tiles'): up to 30 of their spreads.
    shift = draw(st.sampled_from([0.0, 30 * scale]))
    a = random_features((n, d), dtype, seed, scale=scale, offset=offset + shift)
    b = random_features((m, d), dtype, seed + 1, scale=scale, offset=offset)
    return a, b


@shares_device_fixture
@given(inputs=bound_inputs())
def test_float16_distances_are_within_their_bound(device, inputs):
    """The filtered path's error model, element by element: the exact distance ``s^2`` of the
    float32 inputs satisfies ``sqrt(w - delta) - e_row - e_col <= s <= sqrt(w + delta) + e_row +
    e_col``, with ``delta = dot_rounding * (n_row + n_col)``; on a GPU this also checks the
    tensor cores' accumulation against it. Sentinel columns give +inf, and each tile's bounds
    are the largest of its columns'."""
    if device == "cpu" and not interpreting():
        pytest.skip("CPU tensors run Triton only in the interpreter")
    a, b = (x.to(device) for x in inputs)
    n, m = a.shape[0], b.shape[0]
    block = cost_module._topk_blocks(16, compiled=device == "cuda")[1]
    w, norms, errors, tile_bounds, dot_rounding = candidate_distances(a, b, block)
    assert not norms.isnan().any(), "a copy left float16's range"
    assert bool(torch.isinf(w[:, m:]).all()), "sentinel columns"
    w = w[:, :m]
    exact = squared_distances_float64(a.float(), b.float()).sqrt()
    delta = dot_rounding * (norms[:n, None] + norms[None, n:])
    reach = errors[:n, None] + errors[None, n:]
    upper = (w + delta).sqrt() + reach
    lower = (w - delta).clamp_min(0).sqrt() - reach
    assert bool((exact <= upper).all()), f"above: {(exact - upper).max()}"
    assert bool((exact >= lower).all()), f"below: {(lower - exact).max()}"
    pad = tile_bounds.shape[0] * block - m
    for column, bound in ((norms[n:], tile_bounds[:, 0]), (errors[n:], tile_bounds[:, 1])):
        tiles = torch.nn.functional.pad(column, (0, pad)).view(-1, block).amax(dim=1)
        assert torch.equal(tiles.float(), bound.float())
