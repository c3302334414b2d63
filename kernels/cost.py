"""Squared Euclidean cost matrix and its fused top-k: Triton kernels, launchers, references.

Distances use the expansion ``|a|^2 + |b|^2 - 2 a.b`` in float32 (the dot on tensor cores),
clamped at 0; kernel and reference compute the same formula. Its absolute error is at most about
``2 D u (|a|^2 + |b|^2)`` with ``u = 2^-24``, so small distances between long vectors are only
accurate to that much. ``cost_topk``'s filtered path (below) returns float32 sums of squared
differences instead, which are more accurate still.

Non-finite inputs: a NaN coordinate makes every distance of its row (or column) NaN, in kernel
and reference alike; an infinite one gives NaN or +inf (``inf - inf`` in the expansion; which of
the two may differ between them). ``cost_topk`` ranks NaN after every number, as ``torch.sort``
does, so NaN values come back only when a row has fewer than ``k`` non-NaN distances. Inputs are
not scanned for non-finite values: that would cost a device sync on every call.

Keys. Both top-k paths rank int64 *keys*, ``(float32 bits << 32) | column``: for non-negative
floats the bit pattern orders like the value (+inf below NaN), and the column breaks ties, so all
keys of a row are distinct and "the k smallest keys" is one exact set whatever the tiling or the
split (results are deterministic, ties go to the lower column). Each program owns ``BLOCK_N``
rows and a range of columns; when the row blocks alone cannot fill the GPU, the columns are split
across programs and a second small kernel merges the per-split top-k lists
(``_merge_splits_kernel``).

Exact path (``_cost_topk_kernel``; k > 16 and narrow problems). Every distance is computed in
float32 (tf32x3 dots) and turned into a key. Each row keeps its k best keys in registers,
unsorted; a column tile is merged by rounds, each inserting every row's smallest key below that
row's current k-th (``_merge_tile``). A round costs a comparison and a reduction per element, and
a tile needs as many rounds as its row with the most insertions, so selection, not arithmetic,
is what this path spends its time on.

Filtered path (``_filtered_topk_kernel``; k <= 16 on problems of at least 32 column tiles and
``2 k`` per program). Selection is paid for only on the few columns that can be among the k nearest:

1. ``_prepare_candidates_kernel`` rounds centred copies of the rows of ``a`` and ``b`` to
   float16 (centre: the mean of 64 rows of ``b`` spread over it; scaled by a power of two that
   keeps 64 rows of each far from float16's limits) and measures, for each row, how far its
   float16 copy lies from the float32 original: ``e`` (a Euclidean length), with its squared
   norm ``n``. A row whose copy leaves float16's range gets a NaN norm and survives every test.
2. A first pass over the row block's columns computes float16 distances ``w`` (tensor cores at
   twice the tf32 rate, one dot instead of three) and keeps, for each row, the k smallest
   *upper bounds* of the tiles' nearest columns: each tile's smallest ``w`` is a column whose
   exact distance is at most ``U = (sqrt(w + delta) + e_row + e_tile)^2`` (the triangle
   inequality bounds how far the rounding moved the distance; ``delta`` bounds the float32
   arithmetic of ``w``). k distinct columns lie within the k-th smallest ``U``, so it bounds
   the row's exact k-th distance from above: the row's threshold ``T``.
3. A second pass keeps only the columns whose ``w`` could still reach ``T``:
   ``w <= (sqrt(T) + e_row + e_tile)^2 + delta`` (``_survival_limit``), one comparison per
   element. Survivors (about 1.2 k per row and column split, on Gaussian and image-like
   descriptors alike: bench/README.md) are appended to a per-row list in global memory.
4. Survivors are re-ranked exactly: their float32 distances (sums of squared differences of the
   inputs) become keys and are merged into the row's top-k (``_rank_survivors``). When a list
   could overflow its fixed buffer (``_CAPACITY_TILES`` tiles) at the next tile, the lists are
   re-ranked at once and each threshold lowered to its row's exact k-th key so far; nothing is
   dropped, so the result is exact whatever the data (only slower when survivors are many).

With a bias (distance + bias ranked, bias >= 0) every bound above holds with the bias added to
``w``, because ``(sqrt(x) + e)^2 + b <= (sqrt(x + b) + e)^2``. The constants that make the bounds
rigorous in float32 arithmetic (every rounding of ``w``, ``U``, the limit, the keys and the
tensor cores' accumulation) are ``_rounding_margins``.
"""

from __future__ import annotations

import functools
import math

import torch

from kernels._launch import (
    FLOAT_DTYPES,
    check_same_device,
    check_tensor,
    empty_output,
    launch_tuned,
    size_class,
)
from kernels._triton import tl, triton
from kernels.dispatch import runs_compiled, use_triton

__all__ = ["cost_matrix", "cost_matrix_reference", "cost_topk", "cost_topk_reference"]

# The references work on chunks of rows of about this many distances (4 MB of float32), and at
# least _REFERENCE_CHUNK_ROWS rows, so a million tiles never need an N x M matrix. On a CPU,
# 64 MB chunks took twice as long for the nearest of 720 cells to each of 1M tiles, and chunks
# of one row of 1M distances twice as long as 16 rows.
_REFERENCE_CHUNK_ELEMENTS = 1 << 20
_REFERENCE_CHUNK_ROWS = 16

# Keys pack the column into the low 32 bits.
_MAX_COLUMNS = 2**31 - 1
# The kernels keep each row's k best keys in registers; a larger k runs the reference instead.
_KERNEL_MAX_K = 64
# The filtered path takes k up to this (its lists of witnesses and keys are k wide).
_FILTER_MAX_K = 16
# ... on column ranges of at least this many tiles per k: the k-th smallest of n tile minima
# bounds the k-th distance of a row within about n ln(n / (n - k)) columns (1.4 k at n = 2k).
_FILTER_MIN_TILES_PER_K = 2
# ... and of at least this many tiles in all. Narrower problems cost the exact path a few tiles
# per row block; the filtered one collects every column of its first tiles when they tie (the
# auction's searches over 1024 tiles, almost all excluded by the same 1e30 price).
_FILTER_MIN_TILES = 32

# float32 dot on tensor cores: "tf32" rounds inputs to 10 mantissa bits (~1e-3 relative error on
# a.b, which swamps the gaps between near neighbours after the expansion's cancellation); "ieee"
# is exact float32 but runs on the FMA units at a fraction of the rate; "tf32x3" splits each
# input into two tf32 halves and keeps float32-level accuracy on tensor cores. fp16/bf16 inputs
# are exact in tf32, so their products are exact. Available in Triton 3.6 and 3.9 on NVIDIA.
_DOT_PRECISION = "tf32x3"

# Key of a masked element, and of an empty slot in the split partials: larger than every real
# key. Empty slots of a running list are EMPTY - slot, distinct so that a row's worst slot is the
# one slot equal to its maximum. Real keys are at most REAL_MAX (NaN bits, column 2**31 - 1).
_EMPTY = tl.constexpr(2**63 - 1)
_REAL_MAX = tl.constexpr((0x7FFFFFFF << 32) | 0x7FFFFFFF)
# Key of a padding slot (slots k .. K_PAD - 1 when k is not a power of two): smaller than every
# real key, so it is never the worst of a row and never replaced.
_PADDING = tl.constexpr(-1)
# Column of no survivor in the filtered path's int32 candidate tiles: above every column.
_NO_COLUMN = tl.constexpr(2**31 - 1)
# The largest float32: the filtered path's survival limits stop there, below its sentinels.
_FLOAT32_MAX = tl.constexpr(3.4028234663852886e38)

# Features per tl.dot: 16 is the smallest K GPU dots accept, and larger chunks spilled registers
# in the top-k kernel (ptxas for sm_90, Triton 3.9, 64 x 64 tile, k = 16, D = 12, 4 warps, 2
# stages: K = 16 takes 240 registers; K = 32 and 64 spill); the feature loop walks D in such
# chunks, zero-padded.
_BLOCK_D = 16
# Rows per program of the split merge: at 64 rows each thread holds 32 keys of a 64-column tile,
# and 4 warps spilled; 16 rows take at most 128 registers (ptxas for sm_90, Triton 3.9).
_MERGE_BLOCK_N = 16
# Rows per program of the top-k kernel for k > 16 (_topk_blocks): the fewest tl.dot accepts.
_NARROW_BLOCK_N = 16

# The filtered path's float16 copies: rows padded to a multiple of 16 features (the smallest K of
# a GPU dot), walked in chunks of at most _HALF_MAX_CHUNK features (one chunk up to D = 64, held
# in registers for the whole column loop).
_HALF_ROW_MULTIPLE = 16
_HALF_MAX_CHUNK = 64
# Rows of b whose mean is the centre, spread evenly over b (a pool ordered by colour still
# gives a central centre), and rows of a and of b that set the scale; every program computes
# both the same way from the same rows.
_CENTRE_SAMPLE = 64
# The scale brings the sample's largest centred value into [2^9, 2^10): rows up to 64x larger
# still fit float16 (65504), and values down to 2^-24 of it stay normal (float16's subnormals,
# below 2^-14, are flushed to 0 so no tensor core can treat them differently).
_SCALED_MAGNITUDE_EXPONENT = tl.constexpr(10)
# Survivor list length per row and column split, in column tiles: when a list holds more than
# (_CAPACITY_TILES - 1) tiles' worth, the lists are re-ranked before the next tile is read.
_CAPACITY_TILES = 2

# Programs that keep a GPU busy: this many per SM. The interpreter runs programs one after
# another, so on CPU a small count that still exercises the split path.
_PROGRAMS_PER_SM = 4
_INTERPRETER_PROGRAMS = 2
# A split pays the fill of its top-k lists (about k insertion rounds) once, so it spans at least
# this many column tiles.
_MIN_TILES_PER_SPLIT = 4


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor(a, "a", dtypes=FLOAT_DTYPES, ndim=2)
    check_tensor(b, "b", dtypes=FLOAT_DTYPES, ndim=2)
    check_same_device(a=a, b=b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same feature size D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# --- references ------------------------------------------------------------------------------


def cost_matrix_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``cost_matrix``: float32 ``(N, M)``, ``|a|^2 + |b|^2 - 2 a.b`` clamped at 0.

    One ``N x M`` allocation (the result); deterministic for a given BLAS and thread count.
    """
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    return _distances(a32, b32, (b32 * b32).sum(dim=1))


def _distances(a32: torch.Tensor, b32: torch.Tensor, b_squared: torch.Tensor) -> torch.Tensor:
    """``cost_matrix_reference`` of float32 rows, ``|b|^2`` (``(M,)``) given."""
    cost = torch.addmm(b_squared.unsqueeze(0), a32, b32.T, alpha=-2.0)
    cost.add_((a32 * a32).sum(dim=1, keepdim=True))
    # clamp_min_ keeps NaN (torch propagates it), as the kernel does.
    return cost.clamp_min_(0.0)


def cost_topk_reference(
    a: torch.Tensor,
    b: torch.Tensor,
    k: int,
    *,
    bias: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch ``cost_topk`` (same arguments): float32 ``(N, k)`` ascending values, int64
    ``(N, k)`` indices.

    Chunked over rows (``_REFERENCE_CHUNK_ELEMENTS``, ``_REFERENCE_CHUNK_ROWS``); ``|b|^2`` is
    computed once for all chunks. Every row is computed; with ``rows`` the unselected
    ones are then taken back from ``out``, so shapes never depend on the data.
    """
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    b_squared = (b32 * b32).sum(dim=1)
    bias32 = None if bias is None else bias.to(torch.float32)
    rows_per_chunk = max(_REFERENCE_CHUNK_ROWS, _REFERENCE_CHUNK_ELEMENTS // max(1, b.shape[0]))
    values, indices = [], []
    for start in range(0, a.shape[0], rows_per_chunk):
        # The distance is clamped at 0 first, then the bias added, as in the kernel.
        cost = _distances(a32[start : start + rows_per_chunk], b32, b_squared)
        if bias32 is not None:
            cost.add_(bias32)
        chunk_values, chunk_indices = _smallest(cost, k)
        values.append(chunk_values)
        indices.append(chunk_indices)
    if not values:
        values = [a.new_empty((0, k), dtype=torch.float32)]
        indices = [a.new_empty((0, k), dtype=torch.int64)]
    values, indices = torch.cat(values), torch.cat(indices)
    if out is None:
        return values, indices
    if rows is not None:
        keep = ~rows[:, None]
        values = torch.where(keep, out[0], values)
        indices = torch.where(keep, out[1], indices)
    out[0].copy_(values)
    out[1].copy_(indices)
    return out


def _smallest(cost: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest values of each row of ``cost`` and their columns, ascending.

    ``k = 1`` (the nearest tile) takes ``min``, about twice as fast as ``topk``; it returns the
    first of equal values, the kernel's tie rule. Only rows whose minimum is NaN go to ``topk``,
    which ranks NaN after every number.
    """
    if k != 1:
        return torch.topk(cost, k, dim=1, largest=False, sorted=True)
    values, indices = cost.min(dim=1, keepdim=True)
    nan_rows = values.isnan().squeeze(1)
    if nan_rows.any():
        values[nan_rows], indices[nan_rows] = torch.topk(cost[nan_rows], 1, dim=1, largest=False)
    return values, indices


# --- public functions ------------------------------------------------------------------------


def cost_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` and ``b``.

    Args:
        a: ``(N, D)`` float (fp16, bf16, fp32 or fp64; any strides). b: ``(M, D)`` float, same
            device.

    Returns:
        float32 ``(N, M)``, accumulated in float32. See the module docstring for accuracy and NaN.
    """
    _check_pair(a, b)
    if use_triton(a):
        return _cost_matrix_triton(a, b)
    return cost_matrix_reference(a, b)


def cost_topk(
    a: torch.Tensor,
    b: torch.Tensor,
    k: int,
    *,
    bias: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest squared distances of each row of ``a`` to the rows of ``b``.

    The ``N x M`` matrix is never stored. Each value is within the expansion's error bound (the
    module docstring) of the exact distance of the float32 inputs, and its index is a row whose
    distance it is (the kernels' filtered path returns float32 sums of squared differences,
    the exact path and the reference the expansion).

    Args:
        a: ``(N, D)`` float (any strides). b: ``(M, D)`` float, same device. k: ``1 <= k <= M``.
        bias: optional float ``(M,)``, added to every distance to row ``j`` of ``b`` before the
            selection (an assignment's tile prices): the result ranks ``distance + bias``. Must
            be non-negative and finite (not checked: that would read it back from the device);
            other values rank wrongly.
        rows: optional bool ``(N,)``: compute only these rows of ``a``; the others keep what
            ``out`` holds (a fixed-shape update of a few rows, no gather). Needs ``out``.
        out: optional ``(values, indices)``, float32 and int64 ``(N, k)`` with unit stride along
            k, written in place and returned.

    Returns:
        ``(values, indices)``: float32 ``(N, k)`` ascending (``distance + bias`` with a bias),
        int64 ``(N, k)`` rows of ``b``. Equal values may come back in any order (the kernels
        give the lower index first). ``k > 64`` runs the pure-torch reference on the inputs'
        device.
    """
    _check_pair(a, b)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= b.shape[0]:
        raise ValueError(f"k must be in [1, M={b.shape[0]}], got {k}")
    _check_topk_options(a, b, k, bias, rows, out)
    if use_triton(a) and k <= _KERNEL_MAX_K:
        return _cost_topk_triton(a, b, k, bias, rows, out)
    return cost_topk_reference(a, b, k, bias=bias, rows=rows, out=out)


def _check_topk_options(
    a: torch.Tensor,
    b: torch.Tensor,
    k: int,
    bias: torch.Tensor | None,
    rows: torch.Tensor | None,
    out: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """One clear line for a ``bias``, ``rows`` or ``out`` that ``cost_topk`` cannot take."""
    n, m = a.shape[0], b.shape[0]
    if bias is not None:
        check_tensor(bias, "bias", dtypes=FLOAT_DTYPES, ndim=1)
        check_same_device(a=a, bias=bias)
        if bias.shape[0] != m:
            raise ValueError(f"bias must have one value per row of b ({m}), got {bias.shape[0]}")
    if rows is not None:
        if out is None:
            raise ValueError("rows needs out: the unselected rows keep what out holds")
        check_tensor(rows, "rows", dtypes=(torch.bool,), ndim=1)
        check_same_device(a=a, rows=rows)
        if rows.shape[0] != n:
            raise ValueError(f"rows must have one flag per row of a ({n}), got {rows.shape[0]}")
    if out is not None:
        values, indices = out
        check_tensor(values, "out values", dtypes=(torch.float32,), ndim=2)
        check_tensor(indices, "out indices", dtypes=(torch.int64,), ndim=2)
        check_same_device(a=a, values=values, indices=indices)
        for name, x in (("values", values), ("indices", indices)):
            if x.shape != (n, k) or (k > 1 and x.stride(1) != 1):
                raise ValueError(
                    f"out {name} must be ({n}, {k}) with unit stride along k, got shape "
                    f"{tuple(x.shape)} and strides {x.stride()}"
                )


# --- Triton helpers: distances and keys --------------------------------------------------------


@triton.jit
def _squared_distances(
    a_ptr, b_ptr, rows, cols, row_mask, col_mask, D,
    stride_an, stride_ad, stride_bm, stride_bd,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """float32 ``(BLOCK_N, BLOCK_M)`` tile of ``|a|^2 + |b|^2 - 2 a.b`` clamped at 0 (NaN kept).

    ``rows``/``cols`` are int64 indices; masked rows and columns read zeros. ``D`` is walked in
    chunks of ``BLOCK_D`` with masked zero padding, so every ``tl.dot`` has K = BLOCK_D >= 16.
    """
    tl.static_assert(BLOCK_D >= 16, "GPU tl.dot needs K >= 16")
    dot = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    a_squared = tl.zeros((BLOCK_N,), dtype=tl.float32)
    b_squared = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for d_start in range(0, D, BLOCK_D):
        dims = d_start + tl.arange(0, BLOCK_D)
        dim_mask = dims < D
        a_tile = tl.load(
            a_ptr + rows[:, None] * stride_an + dims[None, :] * stride_ad,
            mask=row_mask[:, None] & dim_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        b_tile_t = tl.load(
            b_ptr + cols[None, :] * stride_bm + dims[:, None] * stride_bd,
            mask=col_mask[None, :] & dim_mask[:, None],
            other=0.0,
        ).to(tl.float32)
        dot = tl.dot(a_tile, b_tile_t, dot, input_precision=DOT_PRECISION)
        a_squared += tl.sum(a_tile * a_tile, axis=1)
        b_squared += tl.sum(b_tile_t * b_tile_t, axis=0)
    distances = a_squared[:, None] + b_squared[None, :] - 2.0 * dot
    # Not tl.maximum: its NaN handling is unspecified by default, and 0 for NaN would make a NaN
    # distance the best match.
    return tl.where(distances < 0.0, 0.0, distances)


@triton.jit
def _distance_keys(distances, cols, mask):
    """int64 keys ``(float32 bits << 32) | column`` of non-negative distances, any shape (``cols``
    int64, broadcast against ``distances``); masked -> EMPTY.

    Clearing the sign bit maps -0.0 to 0.0 and gives NaN one sign, so NaN sorts above +inf.
    """
    bits = distances.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    keys = (bits.to(tl.int64) << 32) | cols
    return tl.where(mask, keys, _EMPTY)


@triton.jit
def _key_values(keys):
    """The float32 distances that int64 ``keys`` hold (their high 32 bits)."""
    return (keys >> 32).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _empty_top(BLOCK_N: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr):
    """int64 ``(BLOCK_N, K_PAD)`` running top-k: ``K`` distinct empty slots, then padding slots."""
    slots = tl.arange(0, K_PAD)
    empty = tl.full((BLOCK_N, K_PAD), _EMPTY, dtype=tl.int64) - slots[None, :]
    return tl.where(slots[None, :] < K, empty, _PADDING)


@triton.jit
def _merge_tile(top, keys):
    """Merge a ``(BLOCK_N, BLOCK_M)`` tile of distinct keys (or EMPTY) into the running ``top``.

    Each round, every row takes its smallest key that lies above the previous round's key and
    below the row's current worst, and replaces its worst slot. Rounds stop when no row has such
    a key, so a tile with nothing better than the k-th costs a single reduction.
    """
    worst = tl.max(top, axis=1)
    best = tl.min(tl.where(keys < worst[:, None], keys, _EMPTY), axis=1)
    while tl.min(best) != _EMPTY:
        replace = (top == worst[:, None]) & (best != _EMPTY)[:, None]
        top = tl.where(replace, best[:, None], top)
        worst = tl.max(top, axis=1)
        # Keys are distinct and taken in ascending order, so the remaining candidates are those
        # between the key just taken and the new worst.
        candidate = (keys > best[:, None]) & (keys < worst[:, None])
        best = tl.min(tl.where(candidate, keys, _EMPTY), axis=1)
    return top


@triton.jit
def _insert_key(top, key):
    """Put each row's ``key`` (int64 ``(BLOCK_N,)``, distinct from the row's keys, or EMPTY) in
    place of its worst key in ``top`` when it is smaller."""
    worst = tl.max(top, axis=1)
    replace = (top == worst[:, None]) & (key < worst)[:, None]
    return tl.where(replace, key[:, None], top)


@triton.jit
def _store_top(
    top, rows, row_mask, values_ptr, indices_ptr, stride_vn, stride_in,
    K: tl.constexpr, K_PAD: tl.constexpr,
):  # fmt: skip
    """Store each row's keys, ascending, as float32 values and int64 indices ``(BLOCK_N, K)``.

    K rounds of "take the smallest key" rather than a bitonic ``tl.sort`` of the keys: the
    interpreter runs its compare-swaps as a per-element Python loop (6 s for one 16 x 64 sort).
    """
    top = tl.where(tl.arange(0, K_PAD)[None, :] < K, top, _EMPTY)  # padding slots out
    for slot in range(K):
        smallest = tl.min(top, axis=1)
        index = smallest & 0x7FFFFFFF  # columns fit in 31 bits (_MAX_COLUMNS)
        tl.store(values_ptr + rows * stride_vn + slot, _key_values(smallest), mask=row_mask)
        tl.store(indices_ptr + rows * stride_in + slot, index, mask=row_mask)
        top = tl.where(top == smallest[:, None], _EMPTY, top)


@triton.jit
def _store_partial(top, rows, row_mask, partial_ptr, K: tl.constexpr, K_PAD: tl.constexpr):
    """Store a split's k keys, unsorted, in its slice of int64 ``partial (N, splits, K)`` for
    ``_merge_splits_kernel``; a short split's empty slots become EMPTY."""
    slots = tl.arange(0, K_PAD)  # padding slots stay where they started, at slots >= K
    offsets = (rows[:, None] * tl.num_programs(1) + tl.program_id(1)) * K + slots[None, :]
    # The merge must never take the distinct EMPTY - slot values of empty slots as keys.
    partial = tl.where(top > _REAL_MAX, _EMPTY, top)
    tl.store(partial_ptr + offsets, partial, mask=row_mask[:, None] & (slots < K)[None, :])


@triton.jit
def _program_rows_and_columns(N, M, cols_per_split, selected_ptr, BLOCK_N: tl.constexpr,
                              HAS_ROWS: tl.constexpr):  # fmt: skip
    """This program's int64 rows and their mask, and its int32 range ``[begin, end)`` of the
    ``M`` columns (or column tiles), ``cols_per_split`` per split.

    Grid: (row blocks, column splits). With ``HAS_ROWS`` only rows whose uint8 ``selected (N,)``
    flag is set are in the mask, and a program with none gets an empty column range.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    col_begin = tl.program_id(1) * cols_per_split
    col_end = tl.minimum(col_begin + cols_per_split, M)
    if HAS_ROWS:
        row_mask &= tl.load(selected_ptr + rows, mask=row_mask, other=0) != 0
        col_end = tl.where(tl.max(row_mask.to(tl.int32), axis=0) > 0, col_end, col_begin)
    return rows, row_mask, col_begin, col_end


# --- Triton helpers: the filtered path ----------------------------------------------------------


@triton.jit
def _sample_rows(x_ptr, rows_total, dims, dim_mask, stride_r, stride_d, SAMPLE: tl.constexpr):
    """float32 ``(SAMPLE, BLOCK_D)`` features ``dims`` of ``SAMPLE`` rows spread evenly over the
    ``rows_total`` rows of ``x``, with NaN and infinities replaced by 0, and a mask of the finite
    ones."""
    sample = (tl.arange(0, SAMPLE).to(tl.int64) * rows_total) // SAMPLE
    x = tl.load(
        x_ptr + sample[:, None] * stride_r + dims[None, :] * stride_d,
        mask=dim_mask[None, :],
        other=0.0,
    ).to(tl.float32)
    finite = tl.abs(x) < float("inf")  # False for NaN too
    return tl.where(finite, x, 0.0), finite


@triton.jit
def _sample_centre(b_ptr, M, dims, dim_mask, stride_bm, stride_bd, SAMPLE: tl.constexpr):
    """The centre of features ``dims`` (float32 ``(BLOCK_D,)``): the mean of the finite values
    of ``SAMPLE`` rows of ``b`` (0 where none is finite)."""
    x, finite = _sample_rows(b_ptr, M, dims, dim_mask, stride_bm, stride_bd, SAMPLE)
    return tl.sum(x, axis=0) / tl.maximum(tl.sum(finite.to(tl.float32), axis=0), 1.0)


@triton.jit
def _sample_spread(
    a_ptr, b_ptr, N, M, D, stride_an, stride_ad, stride_bm, stride_bd,
    D_PAD: tl.constexpr, BLOCK_D: tl.constexpr, SAMPLE: tl.constexpr,
):  # fmt: skip
    """The magnitude the float16 copies are scaled for (float32 scalar): the largest distance of
    a finite feature of ``SAMPLE`` rows of ``a`` and of ``b`` from the centre, and at least
    ``2^-12`` of the centre's largest feature (so identical sampled rows do not scale the
    others out of float16's range)."""
    largest = 0.0
    for d_start in range(0, D_PAD, BLOCK_D):
        dims = d_start + tl.arange(0, BLOCK_D)
        dim_mask = dims < D
        centre = _sample_centre(b_ptr, M, dims, dim_mask, stride_bm, stride_bd, SAMPLE)
        a_rows, a_finite = _sample_rows(a_ptr, N, dims, dim_mask, stride_an, stride_ad, SAMPLE)
        b_rows, b_finite = _sample_rows(b_ptr, M, dims, dim_mask, stride_bm, stride_bd, SAMPLE)
        a_spread = tl.max(tl.where(a_finite, tl.abs(a_rows - centre[None, :]), 0.0), axis=0)
        b_spread = tl.max(tl.where(b_finite, tl.abs(b_rows - centre[None, :]), 0.0), axis=0)
        chunk = tl.maximum(tl.maximum(a_spread, b_spread), 2.0**-12 * tl.abs(centre))
        largest = tl.maximum(largest, tl.max(chunk, axis=0))
    return largest


@triton.jit
def _power_of_two_scale(magnitude):
    """``(2^p, 2^-p)`` (float32 scalars) with ``magnitude * 2^p`` in ``[2^9, 2^10)``, ``p``
    clamped to ``[-100, 24]`` (a zero ``magnitude`` gets ``2^24``)."""
    exponent = (magnitude.to(tl.int32, bitcast=True) >> 23) & 0xFF
    power = tl.minimum(tl.maximum(_SCALED_MAGNITUDE_EXPONENT + 126 - exponent, -100), 24)
    scale = ((power + 127) << 23).to(tl.float32, bitcast=True)
    inverse = ((127 - power) << 23).to(tl.float32, bitcast=True)
    return scale, inverse


@triton.jit
def _prepare_rows(
    x_ptr, stride_r, stride_d, block, rows_total, first_output_row,
    b_ptr, M, D, stride_bm, stride_bd, scale, inverse_scale, error_margin,
    half_ptr, norms_ptr, errors_ptr, tile_bounds_ptr,
    D_PAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, SAMPLE: tl.constexpr,
    COLUMNS: tl.constexpr,
):  # fmt: skip
    """Float16 copies, squared norms and rounding errors of rows ``block * BLOCK_R + i`` of ``x``
    (``rows_total`` rows, any float dtype), written at output rows ``first_output_row + ...``.

    The copy of a row is ``h = fp16((x - centre) * scale)``, subnormals flushed to 0, padded with
    zeros to ``D_PAD`` features. Its norm is ``n = |h / scale|^2`` (float32 sum, original units),
    NaN when the copy or its error is not finite (an input too large for float16, or not finite:
    such rows survive every filter). Its error bounds ``|h / scale - (x - centre)|`` (a
    Euclidean length, real numbers): the measured float32 length, plus the float32 rounding of
    ``x - centre`` (``2^-23 sqrt(n)``), times ``error_margin`` for the rounding of the measurement.

    With ``COLUMNS`` (rows of ``b``: a block is one column tile of the top-k kernel) rows past
    ``rows_total`` up to the end of the block are written too, as sentinel columns that no
    distance reaches (zero copy, norm +inf), and the block's largest norm and error go to
    ``tile_bounds[block]`` (+inf where a norm is NaN).
    """
    rows = block.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < rows_total
    norm = tl.zeros((BLOCK_R,), dtype=tl.float32)
    squared_error = tl.zeros((BLOCK_R,), dtype=tl.float32)
    written = row_mask | COLUMNS
    for d_start in range(0, D_PAD, BLOCK_D):
        dims = d_start + tl.arange(0, BLOCK_D)
        dim_mask = dims < D
        centre = _sample_centre(b_ptr, M, dims, dim_mask, stride_bm, stride_bd, SAMPLE)
        x = tl.load(
            x_ptr + rows[:, None] * stride_r + dims[None, :] * stride_d,
            mask=row_mask[:, None] & dim_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        centred = tl.where(row_mask[:, None] & dim_mask[None, :], x - centre[None, :], 0.0)
        half = (centred * scale).to(tl.float16).to(tl.float32)
        half = tl.where(tl.abs(half) < 2.0**-14, 0.0, half)  # NaN stays NaN
        restored = half * inverse_scale
        error = restored - centred
        norm += tl.sum(restored * restored, axis=1)
        squared_error += tl.sum(error * error, axis=1)
        tl.store(
            half_ptr + (first_output_row + rows)[:, None] * D_PAD + dims[None, :],
            half.to(tl.float16),
            mask=written[:, None] & (dims < D_PAD)[None, :],
        )
    error_bound = (tl.sqrt(squared_error) + 2.0**-23 * tl.sqrt(norm)) * error_margin
    norm = tl.where((norm < float("inf")) & (error_bound < float("inf")), norm, float("nan"))
    tl.store(
        norms_ptr + first_output_row + rows, tl.where(row_mask, norm, float("inf")), mask=written
    )
    tl.store(errors_ptr + first_output_row + rows, error_bound, mask=written)
    if COLUMNS:
        finite_norm = tl.where(norm == norm, norm, float("inf"))
        tl.store(tile_bounds_ptr + 2 * block, tl.max(tl.where(row_mask, finite_norm, 0.0), axis=0))
        largest_error = tl.max(tl.where(row_mask, error_bound, 0.0), axis=0)
        tl.store(tile_bounds_ptr + 2 * block + 1, largest_error)


@triton.jit
def _column_copies(half_ptr, first_column, cols, d_start, D_PAD: tl.constexpr,
                   BLOCK_D: tl.constexpr):  # fmt: skip
    """float16 ``(BLOCK_D, BLOCK_M)``: features ``d_start ...`` of the copies of columns ``cols``
    (int32, one whole tile; rows ``first_column + col`` of the copies), transposed for a dot."""
    dims = d_start + tl.arange(0, BLOCK_D)
    col_rows = first_column + cols.to(tl.int64)
    return tl.load(
        half_ptr + col_rows[None, :] * D_PAD + dims[:, None],
        mask=(dims < D_PAD)[:, None],
        other=0.0,
    )


@triton.jit
def _candidate_distances(
    half_ptr, norms_ptr, a_half, first_copies, rows, cols, row_mask, dot_factor, first_column,
    bias_ptr, stride_bias, M,
    D_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):  # fmt: skip
    """float32 ``(BLOCK_N, BLOCK_M)`` float16 distances of a tile less the rows' norms:
    ``n_col - 2 h_row.h_col / scale^2`` (``+ bias``); sentinel columns give +inf.

    ``cols`` int32, one whole tile (sentinels past ``M``); ``first_copies`` their first chunk of
    features (``_column_copies``, loaded ahead by the caller). ``a_half`` is the rows' float16
    ``(BLOCK_N, BLOCK_D)`` copy when ``D_PAD <= BLOCK_D`` (loaded once per program), else unused
    and the rows are read chunk by chunk.
    """
    dot = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for d_start in range(0, D_PAD, BLOCK_D):
        if D_PAD > BLOCK_D:
            dims = d_start + tl.arange(0, BLOCK_D)
            rows_half = tl.load(
                half_ptr + rows[:, None] * D_PAD + dims[None, :],
                mask=row_mask[:, None] & (dims < D_PAD)[None, :],
                other=0.0,
            )
            copies = first_copies
            if d_start > 0:
                copies = _column_copies(half_ptr, first_column, cols, d_start, D_PAD, BLOCK_D)
        else:
            rows_half, copies = a_half, first_copies
        # float16 products are exact in float32; the tensor cores accumulate in float32.
        dot = tl.dot(rows_half, copies, dot)
    partial = dot * dot_factor + tl.load(norms_ptr + first_column + cols.to(tl.int64))[None, :]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cols.to(tl.int64) * stride_bias, mask=cols < M, other=0.0)
        partial += bias.to(tl.float32)[None, :]
    return partial


@triton.jit
def _tile_bounds(tile_bounds_ptr, tile):
    """Column tile ``tile``'s largest norm and largest error (float32 scalars)."""
    return tl.load(tile_bounds_ptr + 2 * tile), tl.load(tile_bounds_ptr + 2 * tile + 1)


@triton.jit
def _witness_bound(nearest, row_norm, row_error, col_norm, col_error, rounding, dot_rounding):
    """Upper bound (float32 ``(BLOCK_N,)``) of the exact key value of each row's witness, the
    column where ``nearest`` (its smallest ``w``, bias included) was reached:
    ``(sqrt(w + delta) + e_row + e_col)^2`` inflated by ``rounding``, with ``delta =
    dot_rounding * (n_row + n_col)`` and the column terms the tile's largest.

    A NaN ``nearest`` gives NaN, never taken as a witness (``tl.maximum`` could clamp it to 0).
    """
    clamped = tl.where(nearest < 0.0, 0.0, nearest)
    reach = tl.sqrt(clamped + dot_rounding * (row_norm + col_norm)) + row_error + col_error
    return reach * reach * rounding


@triton.jit
def _survival_limit(threshold, row_norm, row_error, col_norm, col_error, rounding, dot_rounding):
    """The largest ``w`` (bias included) of a column whose exact key value may be at most
    ``threshold`` (float32 ``(BLOCK_N,)``): ``(sqrt(T) + e_row + e_col)^2 + delta``, inflated by
    ``rounding``, and at most the largest float32, so that sentinel columns (+inf) never pass;
    a NaN limit (from NaN inputs) becomes that largest float too.
    """
    reach = tl.sqrt(threshold * rounding) + row_error + col_error
    limit = reach * reach * rounding + dot_rounding * (row_norm + col_norm)
    return tl.where(limit < _FLOAT32_MAX, limit, _FLOAT32_MAX)


@triton.jit
def _insert_witness(witnesses, bound):
    """Put each row's ``bound`` in place of its largest witness bound when smaller. Slots
    ``>= K`` hold -inf and are never the largest."""
    largest = tl.max(witnesses, axis=1)
    slot = tl.argmax(witnesses, axis=1)  # the first of equal values
    slots = tl.arange(0, witnesses.shape[1])
    replace = (slots[None, :] == slot[:, None]) & (bound < largest)[:, None]
    return tl.where(replace, bound[:, None], witnesses)


@triton.jit
def _exact_distances(
    a_ptr, b_ptr, rows, cols, mask, D, stride_an, stride_ad, stride_bm, stride_bd,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    """float32 ``(BLOCK_N,)`` sums of squared differences of row ``rows[i]`` of ``a`` and row
    ``cols[i]`` of ``b`` (any float dtypes, converted to float32); masked pairs give 0."""
    total = tl.zeros(rows.shape, dtype=tl.float32)
    for d_start in range(0, D, BLOCK_D):
        dims = d_start + tl.arange(0, BLOCK_D)
        pair_mask = mask[:, None] & (dims < D)[None, :]
        x = tl.load(
            a_ptr + rows[:, None] * stride_an + dims[None, :] * stride_ad, mask=pair_mask, other=0.0
        ).to(tl.float32)
        y = tl.load(
            b_ptr + cols[:, None] * stride_bm + dims[None, :] * stride_bd, mask=pair_mask, other=0.0
        ).to(tl.float32)
        difference = x - y
        total += tl.sum(difference * difference, axis=1)
    return total


@triton.jit
def _rank_survivors(
    top, threshold, count, survivor_ptrs, a_ptr, b_ptr, bias_ptr, rows, M, D,
    stride_an, stride_ad, stride_bm, stride_bd, stride_bias,
    BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
):  # fmt: skip
    """Merge the exact keys of each row's ``count`` survivors (int32 columns below ``M`` at
    ``survivor_ptrs[i] + s``) into ``top``; returns ``top`` and the threshold, lowered to the
    row's exact k-th key value once its k slots hold real keys.

    The barriers: the survivor lists were written by other threads of the program, and are
    written again after this returns.
    """
    tl.debug_barrier()
    for s in range(0, tl.max(count, axis=0)):
        cols = tl.load(survivor_ptrs + s, mask=s < count, other=0).to(tl.int64)
        # A row of a whose distances are all NaN also keeps sentinel columns.
        valid = (s < count) & (cols < M)
        distances = _exact_distances(
            a_ptr, b_ptr, rows, cols, valid, D, stride_an, stride_ad, stride_bm, stride_bd,
            BLOCK_D,
        )  # fmt: skip
        if HAS_BIAS:
            bias = tl.load(bias_ptr + cols * stride_bias, mask=valid, other=0.0)
            distances += bias.to(tl.float32)
        top = _insert_key(top, _distance_keys(distances, cols, valid))
    tl.debug_barrier()
    worst = tl.max(top, axis=1)
    kth = _key_values(worst)
    # NaN compares False: a NaN k-th value leaves the threshold as it was.
    return top, tl.where((worst <= _REAL_MAX) & (kth < threshold), kth, threshold)


# --- kernels ---------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "M", "size_class"])
def _cost_matrix_kernel(
    a_ptr, b_ptr, out_ptr, N, M, D, size_class,
    stride_an, stride_ad, stride_bm, stride_bd, stride_on,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One ``(BLOCK_N, BLOCK_M)`` tile of the float32 cost matrix.

    ``a`` float ``(N, D)`` and ``b`` float ``(M, D)`` (strides ``stride_an, stride_ad`` and
    ``stride_bm, stride_bd``); ``out`` float32 ``(N, M)`` with unit column stride and row stride
    ``stride_on``. ``BLOCK_D`` features per ``tl.dot`` (>= 16), at ``DOT_PRECISION``.
    ``size_class`` is unused: it puts the problem's size class in the autotuning key.

    Grid: (column tiles, row blocks); columns go on axis 0, which has no 65535 limit.
    """
    rows = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask, col_mask = rows < N, cols < M
    distances = _squared_distances(
        a_ptr, b_ptr, rows, cols, row_mask, col_mask, D,
        stride_an, stride_ad, stride_bm, stride_bd,
        BLOCK_N, BLOCK_M, BLOCK_D, DOT_PRECISION,
    )  # fmt: skip
    tl.store(
        out_ptr + rows[:, None] * stride_on + cols[None, :],
        distances,
        mask=row_mask[:, None] & col_mask[None, :],
    )


@triton.jit(do_not_specialize=["N", "M", "cols_per_split", "size_class"])
def _cost_topk_kernel(
    a_ptr, b_ptr, values_ptr, indices_ptr, partial_ptr, bias_ptr, selected_ptr,
    N, M, D, cols_per_split, size_class,
    stride_an, stride_ad, stride_bm, stride_bd, stride_vn, stride_in, stride_bias,
    K: tl.constexpr, K_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, WRITE_PARTIAL: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_ROWS: tl.constexpr,
):  # fmt: skip
    """The exact path: top-k of ``BLOCK_N`` rows over one column split of ``cols_per_split``
    columns, every distance computed in float32 (``_squared_distances``) and merged by rounds.

    ``a`` float ``(N, D)`` and ``b`` float ``(M, D)``, any strides. With ``HAS_BIAS``, float
    ``bias (M,)`` (stride ``stride_bias``) is added to each column's distances before the
    selection. With ``HAS_ROWS``, only rows whose uint8 ``selected (N,)`` flag is set are
    computed and written; a program without one skips its column loop. With ``WRITE_PARTIAL`` the
    split's k keys go, unsorted, to ``partial`` int64 ``(N, splits, K)`` for
    ``_merge_splits_kernel``; otherwise the final float32 values and int64 indices ``(N, K)``
    (row strides ``stride_vn``, ``stride_in``). ``K_PAD`` is ``K`` rounded up to a power of two;
    ``BLOCK_D`` features per dot at ``DOT_PRECISION``; ``size_class`` is unused (autotuning key).

    Grid: (row blocks, splits).
    """
    rows, row_mask, col_begin, col_end = _program_rows_and_columns(
        N, M, cols_per_split, selected_ptr, BLOCK_N, HAS_ROWS
    )
    top = _empty_top(BLOCK_N, K, K_PAD)
    for col_start in range(col_begin, col_end, BLOCK_M):
        cols = col_start + tl.arange(0, BLOCK_M).to(tl.int64)
        col_mask = cols < col_end
        distances = _squared_distances(
            a_ptr, b_ptr, rows, cols, row_mask, col_mask, D,
            stride_an, stride_ad, stride_bm, stride_bd,
            BLOCK_N, BLOCK_M, BLOCK_D, DOT_PRECISION,
        )  # fmt: skip
        if HAS_BIAS:
            bias = tl.load(bias_ptr + cols * stride_bias, mask=col_mask, other=0.0)
            distances += bias.to(tl.float32)[None, :]
        keys = _distance_keys(distances, cols[None, :], row_mask[:, None] & col_mask[None, :])
        top = _merge_tile(top, keys)
    if WRITE_PARTIAL:
        _store_partial(top, rows, row_mask, partial_ptr, K, K_PAD)
    else:
        _store_top(top, rows, row_mask, values_ptr, indices_ptr, stride_vn, stride_in, K, K_PAD)


@triton.jit(do_not_specialize=["N", "candidates_per_row", "size_class"])
def _merge_splits_kernel(
    partial_ptr, values_ptr, indices_ptr, selected_ptr, N, candidates_per_row, size_class,
    stride_vn, stride_in,
    K: tl.constexpr, K_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
    HAS_ROWS: tl.constexpr,
):  # fmt: skip
    """Final top-k of ``BLOCK_N`` rows from their ``splits * K`` partial keys (int64
    ``partial (N, splits * K)``), written as float32 values and int64 indices ``(N, K)`` (row
    strides ``stride_vn``, ``stride_in``); with ``HAS_ROWS`` only the rows whose uint8
    ``selected (N,)`` flag is set. Keys are read ``BLOCK_M`` at a time; ``size_class`` is unused
    (autotuning key).

    Grid: (row blocks,).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    if HAS_ROWS:
        row_mask &= tl.load(selected_ptr + rows, mask=row_mask, other=0) != 0
    top = _empty_top(BLOCK_N, K, K_PAD)
    for start in range(0, candidates_per_row, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        mask = row_mask[:, None] & (cols < candidates_per_row)[None, :]
        keys = tl.load(
            partial_ptr + rows[:, None] * candidates_per_row + cols[None, :],
            mask=mask,
            other=_EMPTY,
        )
        top = _merge_tile(top, keys)
    _store_top(top, rows, row_mask, values_ptr, indices_ptr, stride_vn, stride_in, K, K_PAD)


@triton.jit(do_not_specialize=["N", "M"])
def _prepare_candidates_kernel(
    a_ptr, b_ptr, half_ptr, norms_ptr, errors_ptr, tile_bounds_ptr, dot_factor_ptr, N, M, D,
    stride_an, stride_ad, stride_bm, stride_bd, error_margin,
    D_PAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, SAMPLE: tl.constexpr,
):  # fmt: skip
    """The filtered path's float16 copies of the rows of ``a`` then ``b`` (``_prepare_rows``).

    ``a`` float ``(N, D)``, ``b`` float ``(M, D)``, any strides. With ``N_PAD`` and ``M_PAD`` the
    rows of ``a`` and ``b`` rounded up to whole blocks of ``BLOCK_R`` (the top-k kernel's column
    tiles), writes ``half`` float16 ``(N_PAD + M_PAD, D_PAD)`` contiguous (rows of ``a`` from row
    0, rows of ``b`` then sentinels from row ``N_PAD``), ``norms`` and ``errors`` float32
    ``(N_PAD + M_PAD,)``, ``tile_bounds`` float32 ``(M_PAD / BLOCK_R, 2)`` (each column tile's
    largest norm and error) and ``dot_factor`` float32 ``(1,)``:
    ``-2 / scale^2``, what turns a dot of two copies into the ``-2 a.b`` term of a distance. The
    centre comes from ``SAMPLE`` rows of ``b``, the scale from as many rows of ``a`` and ``b``
    (``_sample_spread``), computed the same way by every program;
    ``BLOCK_D`` features at a time; ``error_margin`` is ``_rounding_margins``' first value.

    Grid: (``cdiv(N, BLOCK_R) + M_PAD / BLOCK_R``,): the first programs take ``BLOCK_R`` rows of
    ``a`` each, the others a column tile of ``b``.
    """
    largest = _sample_spread(
        a_ptr, b_ptr, N, M, D, stride_an, stride_ad, stride_bm, stride_bd, D_PAD, BLOCK_D, SAMPLE
    )
    scale, inverse_scale = _power_of_two_scale(largest)
    pid = tl.program_id(0)
    tl.store(dot_factor_ptr, -2.0 * inverse_scale * inverse_scale, mask=pid == 0)
    a_blocks = tl.cdiv(N, BLOCK_R)
    if pid < a_blocks:
        _prepare_rows(
            a_ptr, stride_an, stride_ad, pid, N, 0,
            b_ptr, M, D, stride_bm, stride_bd, scale, inverse_scale, error_margin,
            half_ptr, norms_ptr, errors_ptr, tile_bounds_ptr, D_PAD, BLOCK_R, BLOCK_D, SAMPLE,
            COLUMNS=False,
        )  # fmt: skip
    else:
        _prepare_rows(
            b_ptr, stride_bm, stride_bd, pid - a_blocks, M, a_blocks * BLOCK_R,
            b_ptr, M, D, stride_bm, stride_bd, scale, inverse_scale, error_margin,
            half_ptr, norms_ptr, errors_ptr, tile_bounds_ptr, D_PAD, BLOCK_R, BLOCK_D, SAMPLE,
            COLUMNS=True,
        )  # fmt: skip


@triton.jit(do_not_specialize=["N", "M", "tiles_per_split", "size_class"])
def _filtered_topk_kernel(
    a_ptr, b_ptr, half_ptr, norms_ptr, errors_ptr, tile_bounds_ptr, dot_factor_ptr,
    survivors_ptr, values_ptr, indices_ptr, partial_ptr, bias_ptr, selected_ptr,
    N, M, D, first_column, tiles_per_split, size_class,
    stride_an, stride_ad, stride_bm, stride_bd, stride_vn, stride_in, stride_bias,
    rounding, dot_rounding,
    K: tl.constexpr, K_PAD: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    CAPACITY: tl.constexpr, WRITE_PARTIAL: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_ROWS: tl.constexpr,
):  # fmt: skip
    """The filtered path (module docstring): top-k of ``BLOCK_N`` rows over one column split of
    ``tiles_per_split`` tiles of ``BLOCK_M`` columns.

    ``a`` float ``(N, D)`` and ``b`` float ``(M, D)``, any strides (read for the exact re-rank);
    ``half``, ``norms``, ``errors``, ``tile_bounds``, ``dot_factor``: the outputs of
    ``_prepare_candidates_kernel`` (its blocks of ``b`` are this kernel's column tiles, from row
    ``first_column``, a multiple of 16 so that column data loads as vectors; ``half`` rows
    ``D_PAD`` wide, read ``BLOCK_D`` features at a time). ``survivors``: int32 scratch
    ``(N, splits, CAPACITY)``, each row's list of survivors of this split. ``rounding`` and
    ``dot_rounding``: ``_rounding_margins``' second and third values. Bias, row selection,
    outputs, ``K``, ``K_PAD``, ``WRITE_PARTIAL`` and ``size_class``: as in
    ``_cost_topk_kernel``. A row's list is re-ranked before a tile when it holds more than
    ``CAPACITY - BLOCK_M`` columns, so a tile always fits.

    Grid: (row blocks, splits).
    """
    rows, row_mask, tile_begin, tile_end = _program_rows_and_columns(
        N, tl.cdiv(M, BLOCK_M), tiles_per_split, selected_ptr, BLOCK_N, HAS_ROWS
    )
    dot_factor = tl.load(dot_factor_ptr)
    row_norm = tl.load(norms_ptr + rows, mask=row_mask, other=0.0)
    row_error = tl.load(errors_ptr + rows, mask=row_mask, other=0.0)
    a_half = 0.0  # the rows' copy when it fits one chunk, else read per tile
    if D_PAD <= BLOCK_D:
        dims = tl.arange(0, BLOCK_D)
        a_half = tl.load(
            half_ptr + rows[:, None] * D_PAD + dims[None, :],
            mask=row_mask[:, None] & (dims < D_PAD)[None, :],
            other=0.0,
        )
    slots = tl.arange(0, K_PAD)

    # Pass 1: each row's K smallest witness bounds; the largest of them is its threshold.
    witnesses = tl.where(slots[None, :] < K, float("inf"), -float("inf")) + tl.zeros(
        (BLOCK_N, K_PAD), dtype=tl.float32
    )
    for tile in range(tile_begin, tile_end):
        cols = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        copies = _column_copies(half_ptr, first_column, cols, 0, D_PAD, BLOCK_D)
        partial = _candidate_distances(
            half_ptr, norms_ptr, a_half, copies, rows, cols, row_mask, dot_factor, first_column,
            bias_ptr, stride_bias, M, D_PAD, BLOCK_N, BLOCK_M, BLOCK_D, HAS_BIAS,
        )  # fmt: skip
        col_norm, col_error = _tile_bounds(tile_bounds_ptr, tile)
        # The row's norm is added after the minimum: rounding is monotonic.
        nearest = tl.min(partial, axis=1) + row_norm
        bound = _witness_bound(
            nearest, row_norm, row_error, col_norm, col_error, rounding, dot_rounding
        )
        witnesses = _insert_witness(witnesses, bound)
    threshold = tl.max(witnesses, axis=1)

    # Pass 2: survivors of the threshold, re-ranked exactly.
    top = _empty_top(BLOCK_N, K, K_PAD)
    exact_kth = tl.full((BLOCK_N,), float("inf"), dtype=tl.float32)
    count = tl.zeros((BLOCK_N,), dtype=tl.int32)
    survivor_ptrs = survivors_ptr + (rows * tl.num_programs(1) + tl.program_id(1)) * CAPACITY
    # Each tile's copies are loaded while the previous tile's survivors are collected: the
    # rounds keep this loop from being software-pipelined.
    next_cols = tile_begin * BLOCK_M + tl.arange(0, BLOCK_M)
    next_copies = _column_copies(half_ptr, first_column, next_cols, 0, D_PAD, BLOCK_D)
    for tile in range(tile_begin, tile_end):
        if tl.max(count, axis=0) > CAPACITY - BLOCK_M:
            top, exact_kth = _rank_survivors(
                top, exact_kth, count, survivor_ptrs, a_ptr, b_ptr, bias_ptr, rows, M, D,
                stride_an, stride_ad, stride_bm, stride_bd, stride_bias, BLOCK_D, HAS_BIAS,
            )  # fmt: skip
            threshold = tl.minimum(threshold, exact_kth)  # neither is NaN
            count = tl.zeros((BLOCK_N,), dtype=tl.int32)
        cols = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        partial = _candidate_distances(
            half_ptr, norms_ptr, a_half, next_copies, rows, cols, row_mask, dot_factor,
            first_column, bias_ptr, stride_bias, M, D_PAD, BLOCK_N, BLOCK_M, BLOCK_D, HAS_BIAS,
        )  # fmt: skip
        next_cols = tl.minimum(tile + 1, tile_end - 1) * BLOCK_M + tl.arange(0, BLOCK_M)
        next_copies = _column_copies(half_ptr, first_column, next_cols, 0, D_PAD, BLOCK_D)
        col_norm, col_error = _tile_bounds(tile_bounds_ptr, tile)
        limit = _survival_limit(
            threshold, row_norm, row_error, col_norm, col_error, rounding, dot_rounding
        )
        # NaN distances survive: the exact re-rank ranks them after every number.
        keep = ~(partial + row_norm[:, None] > limit[:, None]) & row_mask[:, None]
        if HAS_BIAS:
            # Every column here comes after those in ``top``, so one whose bias alone reaches
            # the exact k-th value ranks after the k-th (the auction's excluded tiles).
            bias = tl.load(bias_ptr + cols.to(tl.int64) * stride_bias, mask=cols < M, other=0.0)
            keep &= ~(bias.to(tl.float32)[None, :] >= exact_kth[:, None])
        candidates = tl.where(keep, cols[None, :], _NO_COLUMN)
        taken = tl.min(candidates, axis=1)
        # One survivor per row and round, in column order; a row's list never overflows (above).
        while tl.min(taken, axis=0) != _NO_COLUMN:
            found = taken != _NO_COLUMN
            tl.store(survivor_ptrs + count, taken, mask=found)
            count += found.to(tl.int32)
            candidates = tl.where(candidates == taken[:, None], _NO_COLUMN, candidates)
            taken = tl.min(candidates, axis=1)
    top, _ = _rank_survivors(
        top, exact_kth, count, survivor_ptrs, a_ptr, b_ptr, bias_ptr, rows, M, D,
        stride_an, stride_ad, stride_bm, stride_bd, stride_bias, BLOCK_D, HAS_BIAS,
    )  # fmt: skip
    if WRITE_PARTIAL:
        _store_partial(top, rows, row_mask, partial_ptr, K, K_PAD)
    else:
        _store_top(top, rows, row_mask, values_ptr, indices_ptr, stride_vn, stride_in, K, K_PAD)


# --- autotuning ----------------------------------------------------------------------------------

# GPU launch configurations. Every key holds the problem's size class (``size_class``: a power of
# four of N and of M), so a configuration tuned on one size is not kept for sizes far from it.
# cache_results: tuning timings persist on disk, so a new process does not re-tune. The first
# config of each list suits every variant: it is what a CUDA graph capture launches for a size
# class never tuned (``launch_tuned``).
_TOPK_CONFIGS = [
    triton.Config({}, num_warps=warps, num_stages=stages) for warps in (8, 4) for stages in (2, 3)
]
# cost_matrix tiles its output; larger tiles amortise the loads of a and b and each program's
# set-up over more of the 4 bytes per distance it must write. 64 x 128 at 4 warps spilled
# registers when rows of a and b are not 16-element aligned (ptxas for sm_90, Triton 3.9).
_MATRIX_CONFIGS = [
    triton.Config({"BLOCK_N": n, "BLOCK_M": m}, num_warps=warps, num_stages=stages)
    for n, m, warps in ((64, 64, 4), (64, 128, 8), (128, 128, 8))
    for stages in (2, 3)
]


def _topk_configs(
    configs: list[triton.Config], named_args: dict[str, object], **constexprs: object
) -> list[triton.Config]:
    """The autotune configs of an exact top-k launch (``early_config_prune``): every config for
    64-row tiles; for ``_NARROW_BLOCK_N``-row tiles only 8 warps and 2 stages.

    ptxas for sm_90 may lower its register target to fit one more block per SM (168 or 128
    registers at 4 warps, 128 at 8) and spill a few words to reach it. On 16-row tiles it did so
    at 4 warps (Triton 3.9 and 3.6) and at 3 stages (3.6); 8 warps and 2 stages take 76-124
    registers on 3.9, at most 128 on 3.6, in every dtype and layout. 32-row tiles spilled
    somewhere at every (warps, stages) pair.
    """
    if constexprs["BLOCK_N"] != _NARROW_BLOCK_N:
        return configs
    return [config for config in configs if (config.num_warps, config.num_stages) == (8, 2)]


# The filtered kernel also tries 4 warps held to 168 registers: three programs per SM instead of
# two hide more of each tile's load and barrier latency. ptxas for sm_90 (Triton 3.9) spilled at
# that limit with a bias (8-18 words) or features read in several chunks (16-40), and not in
# the other variants (133-162 registers).
_FILTERED_CONFIGS = [*_TOPK_CONFIGS, triton.Config({}, num_warps=4, num_stages=2, maxnreg=168)]


def _filtered_configs(
    configs: list[triton.Config], named_args: dict[str, object], **constexprs: object
) -> list[triton.Config]:
    """The autotune configs of a filtered top-k launch (``early_config_prune``): the register
    limit only without a bias and with the rows' features in one chunk."""
    limited = constexprs["HAS_BIAS"] or constexprs["D_PAD"] > constexprs["BLOCK_D"]
    return [config for config in configs if not (limited and config.maxnreg is not None)]


_cost_matrix_kernel_tuned = triton.autotune(
    _MATRIX_CONFIGS, key=["D", "size_class"], cache_results=True
)(_cost_matrix_kernel)
_cost_topk_kernel_tuned = triton.autotune(
    _TOPK_CONFIGS,
    key=["D", "size_class", "K_PAD", "WRITE_PARTIAL", "HAS_BIAS", "HAS_ROWS"],
    prune_configs_by={"early_config_prune": _topk_configs},
    cache_results=True,
)(_cost_topk_kernel)
_merge_splits_kernel_tuned = triton.autotune(
    _TOPK_CONFIGS, key=["size_class", "K_PAD", "HAS_ROWS"], cache_results=True
)(_merge_splits_kernel)
_filtered_topk_kernel_tuned = triton.autotune(
    _FILTERED_CONFIGS,
    key=["D_PAD", "size_class", "K_PAD", "WRITE_PARTIAL", "HAS_BIAS", "HAS_ROWS"],
    prune_configs_by={"early_config_prune": _filtered_configs},
    cache_results=True,
)(_filtered_topk_kernel)


# --- launch heuristics -----------------------------------------------------------------------


def _size_key(rows: int, columns: int) -> int:
    """The autotuning keys' ``size_class`` argument: the power-of-four classes of both sizes."""
    return size_class(rows) * 16 + size_class(columns)


def _interpreter_matrix_blocks() -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_M)`` of ``cost_matrix`` in the interpreter: few, large programs, since
    interpreter time grows with the program count. On a GPU the tile is autotuned."""
    return 32, 32


def _topk_blocks(k_pad: int, compiled: bool) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_M)`` for both top-k paths.

    GPU: up to k = 16, a 64 x 64 tile: its fp32 distances, their int64 keys and the top-k lists
    fit in registers in every config, dtype and layout (ptxas for sm_90, Triton 3.9: 108-252
    registers). A wider top-k list takes up to as many registers again as the key tile, so the
    row block drops to ``_NARROW_BLOCK_N``, run at 8 warps (``_topk_configs``). Fewer rows also
    means fewer merge rounds per tile (a round is needed while *any* row has an insertion).
    Interpreter: small tiles, so tests cover several tiles with few elements.
    """
    if not compiled:
        return 16, 32
    return (64 if k_pad <= 16 else _NARROW_BLOCK_N), 64


def _parallel_programs(device: torch.device, compiled: bool) -> int:
    """Programs that keep ``device`` busy (see ``_PROGRAMS_PER_SM``)."""
    if not compiled:
        return _INTERPRETER_PROGRAMS
    return _PROGRAMS_PER_SM * _multiprocessor_count(device.index)


@functools.cache
def _multiprocessor_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _column_splits(
    row_blocks: int, col_tiles: int, block_m: int, k_pad: int, programs: int
) -> tuple[int, int]:
    """``(splits, tiles_per_split)`` of the exact path: how many programs share each row
    block's columns.

    Enough splits that ``row_blocks * splits`` reaches ``programs``; each split at least
    ``_MIN_TILES_PER_SPLIT`` tiles; and at most ``sqrt(col_tiles * block_m / k_pad)`` splits,
    where the serial merge of ``splits * k_pad`` keys per row costs about as many tiles as a
    split does (the balance point for few rows and a million columns).
    """
    wanted = min(-(-programs // row_blocks), math.isqrt(col_tiles * block_m // k_pad))
    tiles_per_split = max(_MIN_TILES_PER_SPLIT, -(-col_tiles // max(1, wanted)))
    return -(-col_tiles // tiles_per_split), tiles_per_split


def _filtered_splits(
    row_blocks: int, col_tiles: int, k: int, programs: int
) -> tuple[int, int] | None:
    """``(splits, tiles_per_split)`` of the filtered path, or None where it does not apply:
    k above ``_FILTER_MAX_K``, fewer than ``_FILTER_MIN_TILES`` column tiles, or fewer than
    ``_FILTER_MIN_TILES_PER_K * k_pad``, where the thresholds of the witnesses would be loose.

    Splits fill the GPU as in the exact path, each with at least ``_FILTER_MIN_TILES_PER_K *
    k_pad`` tiles (each split has its own threshold, from its own tiles).
    """
    k_pad = triton.next_power_of_2(k)
    tiles_per_k = max(1, _FILTER_MIN_TILES_PER_K * k_pad)
    if k > _FILTER_MAX_K or col_tiles < max(_FILTER_MIN_TILES, tiles_per_k):
        return None
    wanted = min(-(-programs // row_blocks), col_tiles // tiles_per_k)
    tiles_per_split = -(-col_tiles // max(1, wanted))
    return -(-col_tiles // tiles_per_split), tiles_per_split


def _rounding_margins(d: int) -> tuple[float, float, float]:
    """``(error_margin, rounding, dot_rounding)``: the float32 constants that keep the filtered
    path's bounds rigorous for ``d`` features, each about 3 times what its rounding errors need.

    - ``error_margin`` (factor on a row's measured rounding error ``e``): the float32 sum of its
      ``d`` squared differences (``(d + 4) 2^-25`` relative on ``e``) and an approximate square
      root (``2^-21``).
    - ``rounding`` (factor on the bounds ``U`` and the limit): the exact re-rank's own float32
      error (a sum of ``d`` squares, ``(d + 2) 2^-24``), the rounding of a key value plus bias
      (``2^-24``), and the square root and five operations that compute a bound.
    - ``dot_rounding`` (``delta = dot_rounding * (n_row + n_col)`` bounds the error of ``w``):
      both norms (``(d + 2) 2^-24`` each), the tensor cores' float32 accumulation of up to
      ``d + 15`` exact products, taken as ``2^-23`` of their magnitudes per addition (truncating
      accumulators), and the two additions that form ``w``.
    """
    return 1.0 + (d + 8) * 2.0**-22, 1.0 + (d + 64) * 2.0**-22, (d + 16) * 2.0**-21


# --- launchers -------------------------------------------------------------------------------


def _cost_matrix_triton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    out = empty_output((n, m), torch.float32, a.device)
    if n == 0 or m == 0:
        return out
    args = (a, b, out, n, m, d, _size_key(n, m), *a.stride(), *b.stride())
    args += (out.stride(0),)
    dots = {"BLOCK_D": _BLOCK_D, "DOT_PRECISION": _DOT_PRECISION}
    if runs_compiled(a):
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))
        launch_tuned(_cost_matrix_kernel_tuned, grid, *args, **dots)
    else:
        block_n, block_m = _interpreter_matrix_blocks()
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
        _cost_matrix_kernel[grid](*args, BLOCK_N=block_n, BLOCK_M=block_m, **dots)
    return out


def _launch(kernel, tuned, grid, compiled: bool, *args: object, **constexprs: object) -> None:
    """``tuned`` (autotuned) on a GPU, ``kernel`` with Triton's defaults in the interpreter."""
    if compiled:
        launch_tuned(tuned, grid, *args, **constexprs)
    else:
        kernel[grid](*args, **constexprs)


def _cost_topk_triton(
    a: torch.Tensor,
    b: torch.Tensor,
    k: int,
    bias: torch.Tensor | None,
    rows: torch.Tensor | None,
    out: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    if m > _MAX_COLUMNS:
        raise ValueError(f"cost_topk supports at most {_MAX_COLUMNS} rows in b, got {m}")
    if out is None:
        out = (
            empty_output((n, k), torch.float32, a.device),
            empty_output((n, k), torch.int64, a.device),
        )
    values, indices = out
    if n == 0:
        return out
    compiled = runs_compiled(a)
    k_pad = triton.next_power_of_2(k)
    block_n, block_m = _topk_blocks(k_pad, compiled)
    row_blocks, col_tiles = triton.cdiv(n, block_n), triton.cdiv(m, block_m)
    programs = _parallel_programs(a.device, compiled)
    filtered = _filtered_splits(row_blocks, col_tiles, k, programs)
    if filtered is None:
        splits, tiles_per_split = _column_splits(row_blocks, col_tiles, block_m, k_pad, programs)
    else:
        splits, tiles_per_split = filtered
    # Without a split the kernel writes the outputs itself and never touches `partial`; an
    # absent bias or row selection passes a tensor the kernel never reads.
    partial = (
        torch.empty((n, splits, k), dtype=torch.int64, device=a.device) if splits > 1 else indices
    )
    selected = indices if rows is None else rows.view(torch.uint8)
    bias_values = b if bias is None else bias
    bias_stride = 0 if bias is None else bias.stride(0)
    sizes = _size_key(n, m)
    variant = {
        "K": k, "K_PAD": k_pad, "BLOCK_N": block_n, "BLOCK_M": block_m,
        "WRITE_PARTIAL": splits > 1, "HAS_BIAS": bias is not None, "HAS_ROWS": rows is not None,
    }  # fmt: skip
    grid = (row_blocks, splits)
    strides = (*a.stride(), *b.stride(), values.stride(0), indices.stride(0), bias_stride)
    if filtered is None:
        _launch(
            _cost_topk_kernel, _cost_topk_kernel_tuned, grid, compiled,
            a, b, values, indices, partial, bias_values, selected,
            n, m, d, tiles_per_split * block_m, sizes, *strides,
            BLOCK_D=_BLOCK_D, DOT_PRECISION=_DOT_PRECISION, **variant,
        )  # fmt: skip
    else:
        d_pad, block_d = _half_layout(d)
        capacity = _CAPACITY_TILES * block_m
        survivors = torch.empty((n, splits, capacity), dtype=torch.int32, device=a.device)
        _launch(
            _filtered_topk_kernel, _filtered_topk_kernel_tuned, grid, compiled,
            a, b, *_prepare_candidates(a, b, block_m), survivors, values, indices, partial,
            bias_values, selected, n, m, d, triton.cdiv(n, block_m) * block_m, tiles_per_split,
            sizes, *strides,
            *_rounding_margins(d)[1:],
            D_PAD=d_pad, BLOCK_D=block_d, CAPACITY=capacity, **variant,
        )  # fmt: skip
    if splits > 1:
        _launch(
            _merge_splits_kernel, _merge_splits_kernel_tuned,
            (triton.cdiv(n, _MERGE_BLOCK_N),), compiled,
            partial, values, indices, selected, n, splits * k, _size_key(n, splits * k),
            values.stride(0), indices.stride(0),
            K=k, K_PAD=k_pad, BLOCK_N=_MERGE_BLOCK_N, BLOCK_M=block_m, HAS_ROWS=rows is not None,
        )  # fmt: skip
    return out


def _half_layout(d: int) -> tuple[int, int]:
    """``(D_PAD, BLOCK_D)`` of the filtered path's float16 copies of ``d`` features."""
    d_pad = -(-d // _HALF_ROW_MULTIPLE) * _HALF_ROW_MULTIPLE
    return d_pad, min(triton.next_power_of_2(d_pad), _HALF_MAX_CHUNK)


def _prepare_candidates(a: torch.Tensor, b: torch.Tensor, block_m: int) -> tuple[torch.Tensor, ...]:
    """``_prepare_candidates_kernel``'s outputs ``(half, norms, errors, tile_bounds,
    dot_factor)`` for column tiles of ``block_m``. One configuration everywhere: it reads each
    input row once."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    d_pad, block_d = _half_layout(d)
    col_tiles = triton.cdiv(m, block_m)
    rows = (triton.cdiv(n, block_m) + col_tiles) * block_m
    half = torch.empty((rows, d_pad), dtype=torch.float16, device=a.device)
    norms, errors = torch.empty((2, rows), dtype=torch.float32, device=a.device)
    tile_bounds = torch.empty((col_tiles, 2), dtype=torch.float32, device=a.device)
    dot_factor = torch.empty(1, dtype=torch.float32, device=a.device)
    grid = (triton.cdiv(n, block_m) + col_tiles,)
    _prepare_candidates_kernel[grid](
        a, b, half, norms, errors, tile_bounds, dot_factor, n, m, d, *a.stride(), *b.stride(),
        _rounding_margins(d)[0],
        D_PAD=d_pad, BLOCK_R=block_m, BLOCK_D=block_d, SAMPLE=_CENTRE_SAMPLE,
    )  # fmt: skip
    return half, norms, errors, tile_bounds, dot_factor
