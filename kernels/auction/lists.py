"""``auction_lists``: each cell's candidate list, its costs and outside bound (see
``kernels.auction``)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _block_n,
    _check_lists,
    _check_state,
    _squared_distances,
    _squared_distances_reference,
)
from kernels.dispatch import use_triton

# --- building lists ------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "K", "D", "M"])
def _lists_kernel(
    cells_ptr, tiles_ptr, incumbent_ptr, bonus_ptr, nearest_ptr, assigned_ptr, rows_ptr,
    bound_ptr, candidates_ptr, cost_ptr, outside_ptr, searched_values_ptr,
    N, K, D, M, stride_xn, stride_xd, stride_yn, stride_yd, stride_bonus, stride_nn, stride_cn,
    stride_kn, stride_vn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, RENEW: tl.constexpr,
):  # fmt: skip
    """``auction_lists`` on ``cdiv(N, BLOCK_N)`` programs; ``BLOCK_L >= K + 2``. ``RENEW``: the
    selected rows' bounds become the last of their ``searched_values`` (float32 ``(N, K)``, row
    stride ``stride_vn``; +inf when ``K == M``) and their flags in ``rows`` are cleared."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    selected = row_mask & (tl.load(rows_ptr + rows, mask=row_mask, other=0) != 0)
    bonus = tl.load(bonus_ptr + rows * stride_bonus, mask=row_mask, other=0.0)
    bound = tl.load(bound_ptr + rows, mask=row_mask, other=0.0)
    if RENEW:
        last = tl.load(searched_values_ptr + rows * stride_vn + K - 1, mask=selected, other=0.0)
        bound = tl.where(selected, tl.where(K == M, float("inf"), last), bound)
        tl.store(bound_ptr + rows, bound, mask=selected)
        tl.store(rows_ptr + rows, tl.zeros_like(rows).to(tl.uint8), mask=selected)
    tl.store(outside_ptr + rows, bound + bonus, mask=row_mask)
    entries = tl.arange(0, BLOCK_L)
    searched = selected[:, None] & (entries < K)[None, :]
    nearest = tl.load(nearest_ptr + rows[:, None] * stride_nn + entries[None, :], mask=searched,
                      other=-1)  # fmt: skip
    held = tl.load(assigned_ptr + rows, mask=selected, other=-1)
    incumbent = tl.load(incumbent_ptr + rows, mask=selected, other=-1)
    held_listed = tl.max((nearest == held[:, None]).to(tl.int32), axis=1) > 0
    incumbent_listed = tl.max((nearest == incumbent[:, None]).to(tl.int32), axis=1) > 0
    extra_held = tl.where(held_listed | (held < 0), -1, held)
    extra_incumbent = tl.where(incumbent_listed | (incumbent < 0) | (incumbent == held), -1,
                               incumbent)  # fmt: skip
    column = entries[None, :]
    tiles = tl.where(column == K, extra_held[:, None], nearest)
    tiles = tl.where(column == K + 1, extra_incumbent[:, None], tiles)
    valid = selected[:, None] & (tiles >= 0)
    distance = _squared_distances(
        cells_ptr, tiles_ptr, rows, selected, tiles, valid, D, stride_xn, stride_xd, stride_yn,
        stride_yd, BLOCK_N, BLOCK_L,
    )  # fmt: skip
    cost = distance + tl.where(tiles == incumbent[:, None], 0.0, bonus[:, None])
    written = selected[:, None] & (column < K + 2)
    tl.store(candidates_ptr + rows[:, None] * stride_cn + column, tiles, mask=written)
    tl.store(cost_ptr + rows[:, None] * stride_kn + column, tl.where(valid, cost, 0.0),
             mask=written)  # fmt: skip


def auction_lists(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    incumbent: torch.Tensor,
    bonus: torch.Tensor,
    nearest: torch.Tensor,
    assigned: torch.Tensor,
    rows: torch.Tensor,
    bound: torch.Tensor,
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    searched_values: torch.Tensor | None = None,
) -> None:
    """Write, in place, the lists of the cells flagged in ``rows`` (uint8 ``(N,)``): entry ``e <
    K`` is ``nearest[i, e]``, entry ``K`` the held tile ``assigned[i]`` and ``K + 1`` the
    ``incumbent[i]``, each -1 where absent or already listed; the cost of an entry is the squared
    distance of float32 ``cells (N, D)`` to ``tiles (M, D)`` (summed over ``D`` in order) plus
    ``bonus[i]`` (float32 ``(N,)``, any stride) unless the tile is the incumbent, 0 for an empty
    entry. Every row's ``outside`` becomes ``bound + bonus`` (float32 ``(N,)``).

    ``nearest`` int64 ``(N, K)``; ``candidates`` int64 and ``candidate_cost`` float32 ``(N, K +
    2)``, unit stride along the list; other rows keep what they hold.

    ``searched_values`` (float32 ``(N, K)``, unit stride along K: the values of the searches in
    ``nearest``) renews the flagged rows: first their ``bound`` becomes the last searched value
    (a lower bound on every tile the search left out; +inf when ``K`` is the number of tiles),
    and their flags in ``rows`` are cleared."""
    check_tensor(cells, "cells", dtypes=(torch.float32,), ndim=2)
    check_tensor(tiles, "tiles", dtypes=(torch.float32,), ndim=2)
    check_tensor(nearest, "nearest", dtypes=(torch.int64,), ndim=2)
    check_tensor(rows, "rows", dtypes=(torch.uint8,), ndim=1)
    check_tensor(bonus, "bonus", dtypes=(torch.float32,), ndim=1)
    check_tensor(bound, "bound", dtypes=(torch.float32,), ndim=1)
    _check_lists(candidates, candidate_cost, outside)
    n, k = nearest.shape
    device = cells.device
    _check_state(n, device, assigned=assigned, held_key=incumbent)
    check_same_device(
        cells=cells, tiles=tiles, nearest=nearest, rows=rows, bonus=bonus, bound=bound,
        candidates=candidates,
    )  # fmt: skip
    if cells.shape[0] != n or tiles.shape[1] != cells.shape[1]:
        raise ValueError(
            f"cells {tuple(cells.shape)}, tiles {tuple(tiles.shape)} and nearest "
            f"{tuple(nearest.shape)} must be (N, D), (M, D) and (N, K)"
        )
    if candidates.shape != (n, k + 2) or nearest.stride(1) != 1:
        raise ValueError(f"candidates must be ({n}, {k + 2}) and nearest unit-stride along K")
    for name, x in (("rows", rows), ("bonus", bonus), ("bound", bound)):
        if x.shape != (n,):
            raise ValueError(f"{name} must be ({n},), got {tuple(x.shape)}")
    if searched_values is not None:
        check_tensor(searched_values, "searched_values", dtypes=(torch.float32,), ndim=2)
        check_same_device(cells=cells, searched_values=searched_values)
        if searched_values.shape != (n, k) or searched_values.stride(1) != 1:
            raise ValueError(f"searched_values must be ({n}, {k}) with unit stride along K")
        if not rows.is_contiguous() or not bound.is_contiguous():
            raise ValueError("rows and bound must be contiguous to be renewed")
    if n == 0:
        return
    if not use_triton(cells):
        auction_lists_reference(
            cells, tiles, incumbent, bonus, nearest, assigned, rows, bound, candidates,
            candidate_cost, outside, searched_values,
        )  # fmt: skip
        return
    block_n = _block_n(device)
    renew = searched_values is not None
    values = searched_values if renew else candidate_cost  # read by no program without renewal
    _lists_kernel[(triton.cdiv(n, block_n),)](
        cells, tiles, incumbent, bonus, nearest, assigned, rows, bound, candidates,
        candidate_cost, outside, values,
        n, k, cells.shape[1], tiles.shape[0], cells.stride(0), cells.stride(1), tiles.stride(0),
        tiles.stride(1), bonus.stride(0), nearest.stride(0), candidates.stride(0),
        candidate_cost.stride(0), values.stride(0),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(k + 2), RENEW=renew,
        enable_fp_fusion=False,  # a multiply and an add, rounded as the reference rounds them
    )  # fmt: skip


def auction_lists_reference(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    incumbent: torch.Tensor,
    bonus: torch.Tensor,
    nearest: torch.Tensor,
    assigned: torch.Tensor,
    rows: torch.Tensor,
    bound: torch.Tensor,
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    searched_values: torch.Tensor | None = None,
) -> None:
    """Pure-torch ``auction_lists`` (the distance summed over ``D`` in order, as the kernel)."""
    selected = rows.bool()[:, None]
    if searched_values is not None:
        last = searched_values[:, -1]
        if searched_values.shape[1] == tiles.shape[0]:
            last = torch.full_like(last, torch.inf)
        bound.copy_(torch.where(selected[:, 0], last, bound))
    extra = torch.stack([assigned, incumbent], 1)
    listed = (extra[:, :, None] == nearest[:, None, :]).any(2)
    listed[:, 1] |= incumbent == assigned
    extra = torch.where(listed | (extra < 0), -1, extra)
    fresh = torch.cat([nearest, extra], 1)
    valid = fresh >= 0
    distance = _squared_distances_reference(cells, tiles[fresh.clamp_min(0)])
    cost = distance + torch.where(fresh == incumbent[:, None], 0.0, bonus[:, None])
    candidates.copy_(torch.where(selected, fresh, candidates))
    candidate_cost.copy_(torch.where(selected, torch.where(valid, cost, 0.0), candidate_cost))
    outside.copy_(bound + bonus)
    if searched_values is not None:
        rows.zero_()
