"""``dual_values`` and ``auction_dual_bound``: each cell's best ``cost + price`` and the
certified lower bound (see ``kernels.auction``)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _block_n,
    _check_lists,
    _levels,
    _list_values,
    _list_values_reference,
    _pairwise_sum,
    _pairwise_sums_reference,
    _squared_distances,
    _squared_distances_reference,
    cell_programs,
)
from kernels.dispatch import use_triton

# Fallen tiles the dual bound searches at a time, against each program's cells.
_FALLEN_BLOCK = 32


# --- the dual values ------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "L"])
def _dual_values_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, out_ptr, N, L, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """``out[i] = min(min over the list of cost + price, outside[i])``, float32 ``(N,)``.
    Pointers as ``_bid_kernel``. Grid: ``(cdiv(N, BLOCK_N),)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    _, _, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, row_mask, L, stride_cn, stride_kn, BLOCK_L
    )
    outside = tl.load(outside_ptr + rows, mask=row_mask, other=float("inf"))
    tl.store(out_ptr + rows, tl.minimum(tl.min(value, axis=1), outside), mask=row_mask)


def dual_values(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
) -> torch.Tensor:
    """float32 ``(N,)``: each cell's best ``cost + price`` over every tile, its list's or the
    outside bound. With prices ``p >= 0`` and capacity ``R``, ``sum(dual_values) - R * sum(p)`` is
    a lower bound on the optimal total cost (weak duality)."""
    _check_lists(candidates, candidate_cost, outside)
    check_tensor(price, "price", dtypes=(torch.float32,), ndim=1)
    check_same_device(candidates=candidates, price=price)
    if not use_triton(candidates):
        return dual_values_reference(candidates, candidate_cost, outside, price)
    n = candidates.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=candidates.device)
    if n == 0:
        return out
    block_n = _block_n(candidates.device)
    _dual_values_kernel[(triton.cdiv(n, block_n),)](
        candidates, candidate_cost, outside, price, out, n, candidates.shape[1],
        candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
    )  # fmt: skip
    return out


def dual_values_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
) -> torch.Tensor:
    """Pure-torch ``dual_values``."""
    value = _list_values_reference(candidates, candidate_cost, price)
    return torch.minimum(value.amin(1), outside)


@triton.jit(do_not_specialize=["N", "L", "D", "S", "index"])
def _dual_bound_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, bound_ptr, bonus_ptr, stale_ptr, cells_ptr,
    tiles_ptr, fallen_ptr, fallen_price_ptr, fell_ptr, lowest_ptr, value_sums_ptr, N, L, D, S,
    index, stride_cn, stride_kn, stride_bonus, stride_xn, stride_xd, stride_yn, stride_yd,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, LEVELS: tl.constexpr,
):  # fmt: skip
    """``auction_dual_bound`` on ``cdiv(N, BLOCK_N)`` programs (``BLOCK_N = 2^LEVELS``).
    Pointers as ``_bid_kernel``, plus ``bound`` float32, ``bonus`` float32 (stride
    ``stride_bonus``), ``stale`` uint8 ``(N,)``; ``cells`` float32 ``(N, D)`` and ``tiles``
    float32 ``(M, D)`` (strides ``stride_x*``, ``stride_y*``); ``fallen`` int64 and
    ``fallen_price`` float32 ``(S,)``, contiguous; ``fell`` int32 and ``lowest`` float32, read at
    ``index``; ``value_sums`` float64 ``(C, programs)``. The fallen places are searched
    ``BLOCK_S`` at a time, as many blocks as ``fell[index]`` needs (none when it is 0 or more
    than ``S``)."""
    program = tl.program_id(0)
    rows = program.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    fell = tl.load(fell_ptr + index)
    overflow = fell > S
    searched = tl.where(overflow, 0, fell)
    nearest = tl.full((BLOCK_N,), float("inf"), dtype=tl.float32)
    for first in range(0, searched, BLOCK_S):
        places = first + tl.arange(0, BLOCK_S)
        taken = places < searched
        tiles = tl.load(fallen_ptr + places, mask=taken, other=0)
        distance = _squared_distances(
            cells_ptr, tiles_ptr, rows, row_mask, tiles[None, :], taken[None, :], D, stride_xn,
            stride_xd, stride_yn, stride_yd, BLOCK_N, BLOCK_S,
        )  # fmt: skip
        fallen_price = tl.load(fallen_price_ptr + places, mask=taken, other=0.0)
        value = tl.where(taken[None, :], distance + fallen_price[None, :], float("inf"))
        nearest = tl.minimum(nearest, tl.min(value, axis=1))
    below = tl.where(overflow, tl.load(lowest_ptr + index), nearest)
    bound = tl.minimum(tl.load(bound_ptr + rows, mask=row_mask, other=0.0), below)
    tl.store(bound_ptr + rows, bound, mask=row_mask)
    outside = bound + tl.load(bonus_ptr + rows * stride_bonus, mask=row_mask, other=0.0)
    tl.store(outside_ptr + rows, outside, mask=row_mask)
    stale = tl.load(stale_ptr + rows, mask=row_mask, other=0)
    tl.store(stale_ptr + rows, stale | overflow.to(tl.uint8), mask=row_mask)
    _, _, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, row_mask, L, stride_cn, stride_kn, BLOCK_L
    )
    best = tl.where(row_mask, tl.minimum(tl.min(value, axis=1), outside), 0.0)
    tl.store(value_sums_ptr + index * tl.num_programs(0) + program,
             _pairwise_sum(best.to(tl.float64), LEVELS))  # fmt: skip


def auction_dual_bound(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    bound: torch.Tensor,
    bonus: torch.Tensor,
    stale: torch.Tensor,
    cells: torch.Tensor,
    tiles: torch.Tensor,
    fallen: torch.Tensor,
    fallen_price: torch.Tensor,
    fell: torch.Tensor,
    lowest: torch.Tensor,
    value_sums: torch.Tensor,
    index: int,
) -> None:
    """After ``auction_lower_prices`` (call ``index``): take the tiles whose price fell into every
    bound, then sum the dual values, in place, in one pass over the cells.

    Each ``bound`` (float32 ``(N,)``) falls to the cell's smallest ``distance + new price`` over
    the ``fell[index]`` places of ``fallen`` (int64 ``(S,)``, new prices in ``fallen_price``
    float32 ``(S,)``, both contiguous; the squared distance of float32 ``cells (N, D)`` to
    ``tiles (M, D)``, any strides, summed over ``D`` in order as ``auction_lists`` sums a list's
    costs) or, when more than ``S`` tiles fell, to ``lowest[index]`` (a distance is never
    negative) without a search, and every cell is flagged in ``stale`` (uint8, or-ed in) for a
    new list. The search's work follows ``fell[index]``, read on the device (none when no tile
    fell). Then ``outside = bound + bonus`` (``bonus`` float32 ``(N,)``, any stride) and row
    ``index`` of ``value_sums`` (float64 ``(C, cell_programs(N))``) gets the sums, per program, of
    ``dual_values`` at these bounds: ``sum(value_sums[index]) - R * sum(price_sums[index])`` is
    the lower bound of the module docstring."""
    _check_lists(candidates, candidate_cost, outside)
    n, device = candidates.shape[0], candidates.device
    for name, x, dtype, ndim in (
        ("price", price, torch.float32, 1), ("bound", bound, torch.float32, 1),
        ("bonus", bonus, torch.float32, 1), ("stale", stale, torch.uint8, 1),
        ("cells", cells, torch.float32, 2), ("tiles", tiles, torch.float32, 2),
        ("fallen", fallen, torch.int64, 1), ("fallen_price", fallen_price, torch.float32, 1),
        ("fell", fell, torch.int32, 1), ("lowest", lowest, torch.float32, 1),
    ):  # fmt: skip
        check_tensor(x, name, dtypes=(dtype,), ndim=ndim)
    check_tensor(value_sums, "value_sums", dtypes=(torch.float64,), ndim=2)
    check_same_device(
        candidates=candidates, price=price, bound=bound, bonus=bonus, stale=stale, cells=cells,
        tiles=tiles, fallen=fallen, fallen_price=fallen_price, fell=fell, lowest=lowest,
        value_sums=value_sums,
    )  # fmt: skip
    for name, x in (("bound", bound), ("bonus", bonus), ("stale", stale)):
        if x.shape != (n,):
            raise ValueError(f"{name} must be ({n},), got {tuple(x.shape)}")
    if not (bound.is_contiguous() and stale.is_contiguous() and price.is_contiguous()):
        raise ValueError("bound, stale and price must be contiguous")
    if cells.shape[0] != n or tiles.shape[1] != cells.shape[1]:
        raise ValueError(f"cells and tiles must be ({n}, D) and (M, D)")
    if fallen.shape != fallen_price.shape or fallen.stride(0) != 1 or fallen_price.stride(0) != 1:
        raise ValueError("fallen and fallen_price must be contiguous (S,) tensors")
    calls = fell.shape[0]
    if lowest.shape != (calls,) or not 0 <= index < calls:
        raise ValueError(f"fell and lowest must be (C,) with index {index} below C")
    programs = cell_programs(n, device)
    if value_sums.shape != (calls, programs) or not value_sums.is_contiguous():
        raise ValueError(f"value_sums must be a contiguous ({calls}, {programs}) tensor")
    if n == 0:
        return
    if not use_triton(candidates):
        auction_dual_bound_reference(
            candidates, candidate_cost, outside, price, bound, bonus, stale, cells, tiles, fallen,
            fallen_price, fell, lowest, value_sums, index,
        )  # fmt: skip
        return
    block_n = _block_n(device)
    _dual_bound_kernel[(programs,)](
        candidates, candidate_cost, outside, price, bound, bonus, stale, cells, tiles, fallen,
        fallen_price, fell, lowest, value_sums, n, candidates.shape[1], cells.shape[1],
        fallen.shape[0], index, candidates.stride(0), candidate_cost.stride(0), bonus.stride(0),
        cells.stride(0), cells.stride(1), tiles.stride(0), tiles.stride(1),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
        BLOCK_S=_FALLEN_BLOCK, LEVELS=_levels(block_n),
        enable_fp_fusion=False,  # the distances rounded as the reference rounds them
    )  # fmt: skip


def auction_dual_bound_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    bound: torch.Tensor,
    bonus: torch.Tensor,
    stale: torch.Tensor,
    cells: torch.Tensor,
    tiles: torch.Tensor,
    fallen: torch.Tensor,
    fallen_price: torch.Tensor,
    fell: torch.Tensor,
    lowest: torch.Tensor,
    value_sums: torch.Tensor,
    index: int,
) -> None:
    """Pure-torch ``auction_dual_bound``: every place of ``fallen`` is searched, those past the
    count masked (fixed shapes, no host reads)."""
    size = fallen.shape[0]
    overflow = fell[index] > size
    taken = torch.arange(size, device=fallen.device) < torch.where(overflow, 0, fell[index])
    chosen = tiles[torch.where(taken, fallen, 0)]
    value = _squared_distances_reference(cells, chosen[None]) + fallen_price
    value = torch.where(taken, value, torch.inf)
    nearest = value.amin(1) if size else torch.full_like(bound, torch.inf)
    torch.minimum(bound, torch.where(overflow, lowest[index], nearest), out=bound)
    outside.copy_(bound + bonus)
    stale |= overflow.to(torch.uint8)
    values = dual_values_reference(candidates, candidate_cost, outside, price)
    value_sums[index] = _pairwise_sums_reference(values, _block_n(candidates.device))
