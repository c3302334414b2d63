"""``auction_release``: a stage's opening, which frees the holders that no longer satisfy
epsilon-complementary slackness (see ``kernels.auction``)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _block_n,
    _check_lists,
    _check_state,
    _levels,
    _list_values,
    _list_values_reference,
    _pairwise_sum,
    _pairwise_sums_reference,
)
from kernels.auction.slots import StageBest, _check_stage_best
from kernels.dispatch import use_triton


@triton.jit(do_not_specialize=["count_index", "stage", "N", "L"])
def _release_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, assigned_ptr, held_key_ptr, stale_ptr,
    counts_ptr, tolerance_ptr, opened_tiles_ptr, opened_keys_ptr, cost_sums_ptr,
    count_index, stage, N, L, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, LEVELS: tl.constexpr,
):  # fmt: skip
    """``auction_release`` on ``cdiv(N, BLOCK_N)`` programs. Pointers as ``_bid_kernel``, plus
    ``held_key`` int64, ``stale`` uint8, ``opened_tiles``/``opened_keys`` int64 ``(N,)`` and
    ``cost_sums`` float64 ``(stages, programs)``; ``BLOCK_N = 2^LEVELS``."""
    program = tl.program_id(0)
    rows = program.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tile = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    holding = tile >= 0
    key = tl.load(held_key_ptr + rows, mask=row_mask, other=-1)
    tl.store(opened_tiles_ptr + rows, tile, mask=row_mask)
    tl.store(opened_keys_ptr + rows, key, mask=row_mask)
    tiles, cost, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, holding, L, stride_cn, stride_kn, BLOCK_L
    )
    outside = tl.load(outside_ptr + rows, mask=holding, other=float("inf"))
    tolerance = tl.load(tolerance_ptr)
    held = (tiles == tile[:, None]) & holding[:, None]
    held_value = tl.min(tl.where(held, value, float("inf")), axis=1)
    list_best = tl.min(value, axis=1)
    bound_limited = (
        holding & (held_value <= list_best + tolerance) & (held_value > outside + tolerance)
    )
    release = holding & (held_value > tl.minimum(list_best, outside) + tolerance) & ~bound_limited
    held_cost = tl.min(tl.where(held, cost, float("inf")), axis=1)
    held_cost = tl.where(row_mask, held_cost, 0.0).to(tl.float64)
    tl.store(cost_sums_ptr + stage * tl.num_programs(0) + program, _pairwise_sum(held_cost, LEVELS))
    stale = tl.load(stale_ptr + rows, mask=row_mask, other=0)
    tl.store(stale_ptr + rows, stale | bound_limited.to(tl.uint8), mask=row_mask)
    tl.store(assigned_ptr + rows, -1, mask=release)
    tl.store(held_key_ptr + rows, -1, mask=release)
    left = row_mask & (~holding | release)
    tl.atomic_add(counts_ptr + count_index, tl.sum(left.to(tl.int32), axis=0))


def auction_release(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    stale: torch.Tensor,
    counts: torch.Tensor,
    tolerance: torch.Tensor,
    count_index: int,
    best: StageBest,
    stage: int,
) -> None:
    """Open stage ``stage``, in place, in one pass over the cells.

    - ``best.opened_tiles`` and ``best.opened_keys`` get the holders as the stage opens, and
      ``best.cost_sums[stage]`` the sums, per program, of their list costs (+inf for a cell
      without a tile or whose tile is not in its list), so the stage's total prices the
      holders, complete or not (inf); ``auction_rebuild_slots`` keeps them if the cheapest.
    - A holder whose tile's ``cost + price`` is within ``tolerance`` (float32 scalar) of its
      list's best but not of its outside bound is flagged in ``stale`` (uint8 ``(N,)``, or-ed
      in) and keeps its tile: only a new list can tell whether it should leave (bounds loosen as
      descriptors move and prices fall, and a loose bound is no reason to leave).
    - Every other holder whose tile is more than ``tolerance`` above its best option (its
      list's and the outside bound), or not in its list, is freed.
    - The cells without a tile are then added to ``counts[count_index]``.

    Call ``auction_rebuild_slots`` afterwards. A winner's tile is exactly ``eps`` above its best
    alternative when it wins; float rounding can put it a hair above, so releasing at exactly
    ``eps`` would free winners at once and cycle: pass a tolerance above ``eps``."""
    _check_lists(candidates, candidate_cost, outside)
    n, device = candidates.shape[0], candidates.device
    _check_state(n, device, assigned=assigned, held_key=held_key, price=price)
    check_tensor(stale, "stale", dtypes=(torch.uint8,), ndim=1)
    check_tensor(counts, "counts", dtypes=(torch.int32,), ndim=1)
    check_tensor(tolerance, "tolerance", dtypes=(torch.float32,), ndim=0)
    check_same_device(candidates=candidates, stale=stale, counts=counts, tolerance=tolerance)
    if stale.shape != (n,) or not stale.is_contiguous():
        raise ValueError(f"stale must be a contiguous ({n},) tensor")
    if not 0 <= count_index < counts.shape[0]:
        raise ValueError(f"count_index {count_index} is outside counts of {counts.shape[0]}")
    _check_stage_best(best, n, device, stage)
    if n == 0:
        return
    if not use_triton(candidates):
        auction_release_reference(
            candidates, candidate_cost, outside, price, assigned, held_key, stale, counts,
            tolerance, count_index, best, stage,
        )  # fmt: skip
        return
    block_n = _block_n(device)
    _release_kernel[(triton.cdiv(n, block_n),)](
        candidates, candidate_cost, outside, price, assigned, held_key, stale, counts, tolerance,
        best.opened_tiles, best.opened_keys, best.cost_sums,
        count_index, stage, n, candidates.shape[1], candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
        LEVELS=_levels(block_n),
    )  # fmt: skip


def auction_release_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    stale: torch.Tensor,
    counts: torch.Tensor,
    tolerance: torch.Tensor,
    count_index: int,
    best: StageBest,
    stage: int,
) -> None:
    """Pure-torch ``auction_release``."""
    best.opened_tiles.copy_(assigned)
    best.opened_keys.copy_(held_key)
    value = _list_values_reference(candidates, candidate_cost, price)
    holding = assigned >= 0
    held = (candidates == assigned[:, None]) & holding[:, None]
    held_value = torch.where(held, value, float("inf")).amin(1)
    list_best = value.amin(1)
    bound_limited = (
        holding & (held_value <= list_best + tolerance) & (held_value > outside + tolerance)
    )
    release = holding & (held_value > torch.minimum(list_best, outside) + tolerance)
    release &= ~bound_limited
    held_cost = torch.where(held, candidate_cost, float("inf")).amin(1)
    best.cost_sums[stage] = _pairwise_sums_reference(held_cost, _block_n(candidates.device))
    stale |= bound_limited.to(torch.uint8)
    assigned.masked_fill_(release, -1)
    held_key.masked_fill_(release, -1)
    counts[count_index] += (assigned < 0).sum(dtype=torch.int32)
