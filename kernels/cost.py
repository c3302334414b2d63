"""Squared Euclidean cost matrix and its fused top-k: Triton kernels, launchers, references.

Distances use the expansion ``|a|^2 + |b|^2 - 2 a.b`` in float32 (the dot on tensor cores),
clamped at 0; kernel and reference compute the same formula. Its absolute error is at most about
``2 D u (|a|^2 + |b|^2)`` with ``u = 2^-24``, so small distances between long vectors are only
accurate to that much.

Non-finite inputs: a NaN coordinate makes every distance of its row (or column) NaN, in kernel
and reference alike; an infinite one gives NaN or +inf (``inf - inf`` in the expansion; which of
the two may differ between them). ``cost_topk`` ranks NaN after every number, as ``torch.sort``
does, so NaN values come back only when a row has fewer than ``k`` non-NaN distances. Inputs are
not scanned for non-finite values: that would cost a device sync on every call.

Top-k design (``_cost_topk_kernel``): each program owns ``BLOCK_N`` rows and a range of columns.
Every distance becomes one int64 *key*, ``(float32 bits << 32) | column``: for non-negative
floats the bit pattern orders like the value (+inf below NaN), and the column breaks ties, so all
keys of a row are distinct and "the k smallest keys" is one exact set whatever the tiling or the
split (results are deterministic, ties go to the lower column). Each row keeps its k best keys in
registers, unsorted; a column tile is merged by rounds, each inserting every row's smallest key
below that row's current k-th (``_merge_tile``). Once the lists hold good keys few elements of a
tile beat the k-th, so a tile costs a comparison and a reduction per element per round and takes
a few rounds, where a bitonic ``tl.sort``/``tl.topk`` of every tile costs ``log^2`` compare-swap
passes (and Triton 3.6's ``tl.topk`` only returns the largest values, without indices). When the
row blocks alone cannot fill the GPU, the columns are split across programs
(``_column_splits``) and a second small kernel merges the per-split top-k lists.
"""

from __future__ import annotations

import functools
import math

import torch

from kernels._launch import FLOAT_DTYPES, check_same_device, check_tensor, empty_output
from kernels._triton import tl, triton
from kernels.dispatch import use_triton

__all__ = ["cost_matrix", "cost_matrix_reference", "cost_topk", "cost_topk_reference"]

# The references work on chunks of rows of about this many distances (4 MB of float32), and at
# least _REFERENCE_CHUNK_ROWS rows, so a million tiles never need an N x M matrix. On a CPU,
# 64 MB chunks took twice as long for the nearest of 720 cells to each of 1M tiles, and chunks
# of one row of 1M distances twice as long as 16 rows.
_REFERENCE_CHUNK_ELEMENTS = 1 << 20
_REFERENCE_CHUNK_ROWS = 16

# Keys pack the column into the low 32 bits.
_MAX_COLUMNS = 2**31 - 1
# The kernel keeps each row's k best keys in registers; a larger k runs the reference instead.
_KERNEL_MAX_K = 64

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

# GPU launch configurations: block sizes come from the heuristics below (the grid and the split
# depend on them), so only warps and pipeline stages are tuned.
_GPU_CONFIGS = [
    triton.Config({}, num_warps=warps, num_stages=stages) for warps in (4, 8) for stages in (2, 3)
]

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

    The ``N x M`` matrix is never stored.

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
        int64 ``(N, k)`` rows of ``b``. Equal values may come back in any order (the kernel
        gives the lower index first). ``k > 64`` runs the pure-torch reference on the inputs'
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


# --- Triton helpers --------------------------------------------------------------------------


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
    """int64 keys ``(float32 bits << 32) | column`` of non-negative distances; masked -> EMPTY.

    Clearing the sign bit maps -0.0 to 0.0 and gives NaN one sign, so NaN sorts above +inf.
    """
    bits = distances.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    keys = (bits.to(tl.int64) << 32) | cols[None, :]
    return tl.where(mask, keys, _EMPTY)


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
        value = (smallest >> 32).to(tl.int32).to(tl.float32, bitcast=True)
        index = smallest & 0x7FFFFFFF  # columns fit in 31 bits (_MAX_COLUMNS)
        tl.store(values_ptr + rows * stride_vn + slot, value, mask=row_mask)
        tl.store(indices_ptr + rows * stride_in + slot, index, mask=row_mask)
        top = tl.where(top == smallest[:, None], _EMPTY, top)


# --- kernels ---------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "M"])
def _cost_matrix_kernel(
    a_ptr, b_ptr, out_ptr, N, M, D,
    stride_an, stride_ad, stride_bm, stride_bd, stride_on,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One ``(BLOCK_N, BLOCK_M)`` tile of the float32 cost matrix.

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


@triton.jit(do_not_specialize=["N", "M", "cols_per_split"])
def _cost_topk_kernel(
    a_ptr, b_ptr, values_ptr, indices_ptr, partial_ptr, bias_ptr, selected_ptr,
    N, M, D, cols_per_split,
    stride_an, stride_ad, stride_bm, stride_bd, stride_vn, stride_in, stride_bias,
    K: tl.constexpr, K_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, WRITE_PARTIAL: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_ROWS: tl.constexpr,
):  # fmt: skip
    """Top-k of ``BLOCK_N`` rows over one column split. Grid: (row blocks, splits).

    ``a`` float ``(N, D)`` and ``b`` float ``(M, D)``, any strides. With ``HAS_BIAS``, float
    ``bias (M,)`` (stride ``stride_bias``) is added to each column's distances before the
    selection. With ``HAS_ROWS``, only rows whose uint8 ``selected (N,)`` flag is set are
    computed and written; a program without one skips its column loop. With ``WRITE_PARTIAL`` the
    split's k keys go, unsorted, to ``partial`` int64 ``(N, splits, K)`` for
    ``_merge_splits_kernel``; otherwise the final float32 values and int64 indices ``(N, K)``
    (row strides ``stride_vn``, ``stride_in``).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    col_begin = tl.program_id(1).to(tl.int64) * cols_per_split
    col_end = tl.minimum(col_begin + cols_per_split, M)
    if HAS_ROWS:
        row_mask &= tl.load(selected_ptr + rows, mask=row_mask, other=0) != 0
        # No selected row: an empty column range, and every store below is masked off.
        col_end = tl.where(tl.max(row_mask.to(tl.int32), axis=0) > 0, col_end, col_begin)
    top = _empty_top(BLOCK_N, K, K_PAD)
    for col_start in range(col_begin, col_end, BLOCK_M):
        cols = col_start + tl.arange(0, BLOCK_M)
        col_mask = cols < col_end
        distances = _squared_distances(
            a_ptr, b_ptr, rows, cols, row_mask, col_mask, D,
            stride_an, stride_ad, stride_bm, stride_bd,
            BLOCK_N, BLOCK_M, BLOCK_D, DOT_PRECISION,
        )  # fmt: skip
        if HAS_BIAS:
            bias = tl.load(bias_ptr + cols * stride_bias, mask=col_mask, other=0.0)
            distances += bias.to(tl.float32)[None, :]
        keys = _distance_keys(distances, cols, row_mask[:, None] & col_mask[None, :])
        top = _merge_tile(top, keys)
    if WRITE_PARTIAL:
        slots = tl.arange(0, K_PAD)  # padding slots stay where they started, at slots >= K
        offsets = (rows[:, None] * tl.num_programs(1) + tl.program_id(1)) * K + slots[None, :]
        # A short last split leaves empty slots; the merge must never take their distinct
        # EMPTY - slot values as keys, so they become EMPTY.
        partial = tl.where(top > _REAL_MAX, _EMPTY, top)
        tl.store(partial_ptr + offsets, partial, mask=row_mask[:, None] & (slots < K)[None, :])
    else:
        _store_top(top, rows, row_mask, values_ptr, indices_ptr, stride_vn, stride_in, K, K_PAD)


@triton.jit(do_not_specialize=["N", "candidates_per_row"])
def _merge_splits_kernel(
    partial_ptr, values_ptr, indices_ptr, selected_ptr, N, candidates_per_row, stride_vn,
    stride_in,
    K: tl.constexpr, K_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
    HAS_ROWS: tl.constexpr,
):  # fmt: skip
    """Final top-k of ``BLOCK_N`` rows from their ``splits * K`` partial keys (int64
    ``partial (N, splits * K)``), written as float32 values and int64 indices ``(N, K)``; with
    ``HAS_ROWS`` only the rows whose uint8 ``selected (N,)`` flag is set.

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


def _topk_configs(
    configs: list[triton.Config], named_args: dict[str, object], **constexprs: object
) -> list[triton.Config]:
    """The autotune configs of a top-k launch (``early_config_prune``): every config for 64-row
    tiles; for ``_NARROW_BLOCK_N``-row tiles only 8 warps and 2 stages.

    ptxas for sm_90 may lower its register target to fit one more block per SM (168 or 128
    registers at 4 warps, 128 at 8) and spill a few words to reach it. On 16-row tiles it did so
    at 4 warps (Triton 3.9 and 3.6) and at 3 stages (3.6); 8 warps and 2 stages take 76-124
    registers on 3.9, at most 128 on 3.6, in every dtype and layout. 32-row tiles spilled
    somewhere at every (warps, stages) pair.
    """
    if constexprs["BLOCK_N"] != _NARROW_BLOCK_N:
        return configs
    return [config for config in configs if (config.num_warps, config.num_stages) == (8, 2)]


# cache_results: tuning timings persist on disk, so a new process does not re-tune.
_cost_matrix_kernel_tuned = triton.autotune(_GPU_CONFIGS, key=["D"], cache_results=True)(
    _cost_matrix_kernel
)
_cost_topk_kernel_tuned = triton.autotune(
    _GPU_CONFIGS,
    key=["D", "K_PAD", "WRITE_PARTIAL", "HAS_BIAS", "HAS_ROWS"],
    prune_configs_by={"early_config_prune": _topk_configs},
    cache_results=True,
)(_cost_topk_kernel)
_merge_splits_kernel_tuned = triton.autotune(
    _GPU_CONFIGS, key=["K_PAD", "HAS_ROWS"], cache_results=True
)(_merge_splits_kernel)


# --- launch heuristics -----------------------------------------------------------------------


def _matrix_blocks(device: torch.device) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_M)`` for ``cost_matrix``.

    GPU: 64 x 64. A tile row is 256 bytes of float32, two full 128-byte lines, so stores
    coalesce. 64 x 128 spilled at 4 warps when rows of ``a`` and ``b`` are not 16-element
    aligned (D = 12: no vector loads, each element has its own address); 64 x 64 takes 98-200
    registers in every config, dtype and layout (ptxas for sm_90, Triton 3.9; 92-198 on 3.6).
    CPU (interpreter): few, large programs, since interpreter time grows with the program count.
    """
    return (64, 64) if device.type == "cuda" else (32, 32)


def _topk_blocks(k_pad: int, device: torch.device) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_M)`` for ``cost_topk``.

    GPU: up to k = 16, a 64 x 64 tile: its fp32 distances, their int64 keys and the top-k lists
    fit in registers in every config, dtype and layout (ptxas for sm_90, Triton 3.9: 108-252
    registers). A wider top-k list takes up to as many registers again as the key tile, so the
    row block drops to ``_NARROW_BLOCK_N``, run at 8 warps (``_topk_configs``). Fewer rows also
    means fewer merge rounds per tile (a round is needed while *any* row has an insertion).
    CPU (interpreter): small tiles, so tests cover several tiles with few elements.
    """
    if device.type != "cuda":
        return 16, 32
    return (64 if k_pad <= 16 else _NARROW_BLOCK_N), 64


def _parallel_programs(device: torch.device) -> int:
    """Programs that keep ``device`` busy (see ``_PROGRAMS_PER_SM``)."""
    if device.type != "cuda":
        return _INTERPRETER_PROGRAMS
    return _PROGRAMS_PER_SM * _multiprocessor_count(device.index)


@functools.cache
def _multiprocessor_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _column_splits(
    row_blocks: int, col_tiles: int, block_m: int, k_pad: int, programs: int
) -> tuple[int, int]:
    """``(splits, tiles_per_split)``: how many programs share each row block's columns.

    Enough splits that ``row_blocks * splits`` reaches ``programs``; each split at least
    ``_MIN_TILES_PER_SPLIT`` tiles; and at most ``sqrt(col_tiles * block_m / k_pad)`` splits,
    where the serial merge of ``splits * k_pad`` keys per row costs about as many tiles as a
    split does (the balance point for few rows and a million columns).
    """
    wanted = min(-(-programs // row_blocks), math.isqrt(col_tiles * block_m // k_pad))
    tiles_per_split = max(_MIN_TILES_PER_SPLIT, -(-col_tiles // max(1, wanted)))
    return -(-col_tiles // tiles_per_split), tiles_per_split


# --- launchers -------------------------------------------------------------------------------


def _for_device(kernel, tuned, device: torch.device):
    """The autotuned kernel on CUDA; the one-config kernel in the interpreter."""
    return tuned if device.type == "cuda" else kernel


def _cost_matrix_triton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    out = empty_output((n, m), torch.float32, a.device)
    if n == 0 or m == 0:
        return out
    block_n, block_m = _matrix_blocks(a.device)
    kernel = _for_device(_cost_matrix_kernel, _cost_matrix_kernel_tuned, a.device)
    kernel[(triton.cdiv(m, block_m), triton.cdiv(n, block_n))](
        a, b, out, n, m, d, *a.stride(), *b.stride(), out.stride(0),
        BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_D=_BLOCK_D, DOT_PRECISION=_DOT_PRECISION,
    )  # fmt: skip
    return out


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
    k_pad = triton.next_power_of_2(k)
    block_n, block_m = _topk_blocks(k_pad, a.device)
    row_blocks = triton.cdiv(n, block_n)
    splits, tiles_per_split = _column_splits(
        row_blocks, triton.cdiv(m, block_m), block_m, k_pad, _parallel_programs(a.device)
    )
    # Without a split the kernel writes the outputs itself and never touches `partial`; an
    # absent bias or row selection passes a tensor the kernel never reads.
    partial = (
        torch.empty((n, splits, k), dtype=torch.int64, device=a.device) if splits > 1 else indices
    )
    selected = indices if rows is None else rows.view(torch.uint8)
    bias_values = b if bias is None else bias
    bias_stride = 0 if bias is None else bias.stride(0)
    kernel = _for_device(_cost_topk_kernel, _cost_topk_kernel_tuned, a.device)
    kernel[(row_blocks, splits)](
        a, b, values, indices, partial, bias_values, selected, n, m, d, tiles_per_split * block_m,
        *a.stride(), *b.stride(), values.stride(0), indices.stride(0), bias_stride,
        K=k, K_PAD=k_pad, BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_D=_BLOCK_D,
        DOT_PRECISION=_DOT_PRECISION, WRITE_PARTIAL=splits > 1, HAS_BIAS=bias is not None,
        HAS_ROWS=rows is not None,
    )  # fmt: skip
    if splits > 1:
        merge = _for_device(_merge_splits_kernel, _merge_splits_kernel_tuned, a.device)
        merge[(triton.cdiv(n, _MERGE_BLOCK_N),)](
            partial, values, indices, selected, n, splits * k, values.stride(0),
            indices.stride(0),
            K=k, K_PAD=k_pad, BLOCK_N=_MERGE_BLOCK_N, BLOCK_M=block_m,
            HAS_ROWS=rows is not None,
        )  # fmt: skip
    return out
