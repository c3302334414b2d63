"""``auction_lower_prices``: the prices of the tiles with a free slot lowered, to 0 or to ties
(see ``kernels.auction``)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _LOWER_BLOCK_M,
    _block_n,
    _check_lists,
    _levels,
    _list_values,
    _pairwise_sum,
    _pairwise_sums_reference,
    tile_programs,
)
from kernels.auction.dual import dual_values
from kernels.dispatch import use_triton


def floored_prices(slots: torch.Tensor, price: torch.Tensor) -> torch.Tensor:
    """float32 ``(M,)``: ``price``, with every tile that has a free slot at 0.

    With more slots than cells, an assignment is only optimal at prices where every tile with a
    free slot sits at the lowest price (0): a solve floors them whenever holders leave.
    """
    return torch.where(slots[:, -1] >= 0, price, 0.0)


def tie_prices(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """float32 ``(M,)``: ``price``, with every tile that has a free slot lowered to the highest
    price at which a cell that lists it would take it as readily as its best option, ``max(0,
    max_i (dual_values[i] - cost[i, j]))`` (0 when no list holds it).

    A gentler ``floored_prices``: no listed cell's best value changes, so no holder that lists
    the tile leaves for it, and the bound ``sum(dual_values) - R * sum(price)`` rises by ``R``
    times each fall. Fixed shapes, no host reads (a scatter maximum, the same in any order).
    """
    values = dual_values(candidates, candidate_cost, outside, price)
    listed = candidates >= 0
    gain = torch.where(listed, values[:, None] - candidate_cost, -torch.inf)
    best_gain = torch.full_like(price, -torch.inf).scatter_reduce(
        0, candidates.clamp_min(0).reshape(-1), gain.reshape(-1), "amax"
    )
    lowered = torch.minimum(best_gain.clamp_min(0), price)
    return torch.where(slots[:, -1] >= 0, price, lowered)


# --- lowering the prices of tiles with a free slot ------------------------------------------------


@triton.jit(do_not_specialize=["N", "L"])
def _tie_gain_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, gain_ptr, N, L, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """``gain[j] = max(gain[j], dual_values[i] - cost[i, j])`` over every listed (i, j) with a
    positive gain (a scatter maximum: the same in any order). Pointers as ``_bid_kernel``, plus
    ``gain`` float32 ``(M,)``. Grid: ``(cdiv(N, BLOCK_N),)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tiles, cost, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, row_mask, L, stride_cn, stride_kn, BLOCK_L
    )
    outside = tl.load(outside_ptr + rows, mask=row_mask, other=float("inf"))
    best = tl.minimum(tl.min(value, axis=1), outside)
    gain = best[:, None] - cost
    tl.atomic_max(gain_ptr + tiles, gain, mask=(tiles >= 0) & (gain > 0))


@triton.jit(do_not_specialize=["M", "capacity", "S", "index"])
def _lower_kernel(
    price_ptr, gain_ptr, slots_ptr, fallen_ptr, fallen_price_ptr, fell_ptr, lowest_ptr,
    price_sums_ptr, M, capacity, S, index, BLOCK_M: tl.constexpr, LEVELS: tl.constexpr,
):  # fmt: skip
    """Per tile: a tile with a free slot falls to ``min(gain, price)`` (``gain`` float32 ``(M,)``,
    cleared to 0 once read); each tile that fell is
    counted in ``fell[index]`` (int32), taken into ``lowest[index]`` (float32, a minimum) and,
    while fewer than ``S`` have been taken, written at the next free place of ``fallen`` (int64
    ``(S,)``) with its new price in ``fallen_price`` (float32 ``(S,)``); each program writes the
    sum of its tiles' new prices at ``price_sums[index, program]`` (float64). Grid:
    ``(cdiv(M, BLOCK_M),)``, ``BLOCK_M = 2^LEVELS``."""
    program = tl.program_id(0)
    tiles = program.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = tiles < M
    full = tl.load(slots_ptr + tiles * capacity + capacity - 1, mask=mask, other=0) >= 0
    price = tl.load(price_ptr + tiles, mask=mask, other=0.0)
    gain = tl.load(gain_ptr + tiles, mask=mask, other=0.0)
    tl.store(gain_ptr + tiles, tl.zeros_like(gain), mask=mask)  # ready for the next lowering
    lowered = tl.where(full, price, tl.minimum(gain, price))
    fell = mask & (lowered < price)
    tl.store(price_ptr + tiles, lowered, mask=mask)
    price_sum = _pairwise_sum(lowered.to(tl.float64), LEVELS)
    tl.store(price_sums_ptr + index * tl.num_programs(0) + program, price_sum)
    order = tl.cumsum(fell.to(tl.int32), axis=0) - 1
    start = tl.atomic_add(fell_ptr + index, tl.sum(fell.to(tl.int32), axis=0))
    place = start + order
    taken = fell & (place < S)
    tl.store(fallen_ptr + place, tiles, mask=taken)
    tl.store(fallen_price_ptr + place, lowered, mask=taken)
    tl.atomic_min(lowest_ptr + index, tl.min(tl.where(fell, lowered, float("inf")), axis=0))


def auction_lower_prices(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    slots: torch.Tensor,
    to_ties: bool,
    fallen: torch.Tensor,
    fallen_price: torch.Tensor,
    fell: torch.Tensor,
    lowest: torch.Tensor,
    price_sums: torch.Tensor,
    index: int,
    gain: torch.Tensor,
) -> None:
    """Lower, in place, the ``price`` of every tile with a free slot: to 0 (``floored_prices``)
    or, ``to_ties``, only as far as its best listed taker (``tie_prices``), and say which fell.

    ``fell`` int32 and ``lowest`` float32 ``(C,)``, 0 and +inf at ``index`` on entry (one entry
    per call of a solve, set once, as ``counts``): ``fell[index]`` gets how many tiles fell,
    ``lowest[index]`` the lowest new price among them (+inf when none); ``fallen`` int64 and
    ``fallen_price`` float32 ``(S,)``: ``min(fell, S)`` of them and their new prices (which ones
    and in what order is free when more than ``S`` fell); the other places keep what they held.
    ``price_sums`` float64 ``(C, tile_programs(M))``: row ``index`` gets the new prices' sums
    per program (``sum(row)`` is the prices' sum, for the dual bound). ``gain``: float32
    ``(M,)`` scratch, all 0, which the kernels leave so for the next call (the reference never
    reads it). Fixed shapes, no host reads."""
    _check_lists(candidates, candidate_cost, outside)
    device = candidates.device
    check_tensor(price, "price", dtypes=(torch.float32,), ndim=1)
    check_tensor(slots, "slots", dtypes=(torch.int64,), ndim=2)
    check_tensor(fallen, "fallen", dtypes=(torch.int64,), ndim=1)
    check_tensor(fallen_price, "fallen_price", dtypes=(torch.float32,), ndim=1)
    check_tensor(fell, "fell", dtypes=(torch.int32,), ndim=1)
    check_tensor(lowest, "lowest", dtypes=(torch.float32,), ndim=1)
    check_tensor(price_sums, "price_sums", dtypes=(torch.float64,), ndim=2)
    check_tensor(gain, "gain", dtypes=(torch.float32,), ndim=1)
    check_same_device(
        candidates=candidates, price=price, slots=slots, fallen=fallen,
        fallen_price=fallen_price, fell=fell, lowest=lowest, price_sums=price_sums, gain=gain,
    )  # fmt: skip
    m = price.shape[0]
    if slots.shape[0] != m or not slots.is_contiguous() or not price.is_contiguous():
        raise ValueError(f"price ({m},) and slots (M, R) must be contiguous, for the same tiles")
    if gain.shape != (m,) or not gain.is_contiguous():
        raise ValueError(f"gain must be a contiguous ({m},) tensor")
    calls = fell.shape[0]
    if fallen.shape != fallen_price.shape or lowest.shape != (calls,):
        raise ValueError("fallen and fallen_price must be (S,), fell and lowest (C,)")
    if price_sums.shape != (calls, tile_programs(m)) or not price_sums.is_contiguous():
        raise ValueError(f"price_sums must be a contiguous ({calls}, {tile_programs(m)}) tensor")
    if not 0 <= index < calls:
        raise ValueError(f"index {index} is outside fell and lowest of {calls}")
    if not use_triton(candidates):
        auction_lower_prices_reference(
            candidates, candidate_cost, outside, price, slots, to_ties, fallen, fallen_price,
            fell, lowest, price_sums, index,
        )  # fmt: skip
        return
    n = candidates.shape[0]
    if to_ties and n:
        block_n = _block_n(device)
        _tie_gain_kernel[(triton.cdiv(n, block_n),)](
            candidates, candidate_cost, outside, price, gain, n, candidates.shape[1],
            candidates.stride(0), candidate_cost.stride(0),
            BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
        )  # fmt: skip
    if m:
        block_m = _LOWER_BLOCK_M
        _lower_kernel[(triton.cdiv(m, block_m),)](
            price, gain, slots, fallen, fallen_price, fell, lowest, price_sums, m,
            slots.shape[1], fallen.shape[0], index, BLOCK_M=block_m, LEVELS=_levels(block_m),
        )  # fmt: skip


def auction_lower_prices_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    slots: torch.Tensor,
    to_ties: bool,
    fallen: torch.Tensor,
    fallen_price: torch.Tensor,
    fell: torch.Tensor,
    lowest: torch.Tensor,
    price_sums: torch.Tensor,
    index: int,
) -> None:
    """Pure-torch ``auction_lower_prices``: the tiles that fell are taken in index order."""
    if to_ties:
        lowered = tie_prices(candidates, candidate_cost, outside, price, slots)
    else:
        lowered = floored_prices(slots, price)
    fallen_tiles = lowered < price
    size = fallen.shape[0]
    rank = torch.cumsum(fallen_tiles, 0) - 1
    place = torch.where(fallen_tiles & (rank < size), rank, size)  # `size`: a place for the rest
    every_tile = torch.arange(price.shape[0], device=price.device)
    taken = torch.cat([fallen, fallen.new_zeros(1)])
    taken_price = torch.cat([fallen_price, fallen_price.new_zeros(1)])
    fallen.copy_(taken.scatter_(0, place, every_tile)[:size])
    fallen_price.copy_(taken_price.scatter_(0, place, lowered)[:size])
    fell[index] += fallen_tiles.sum(dtype=torch.int32)
    lowest[index] = torch.minimum(
        lowest[index], torch.where(fallen_tiles, lowered, torch.inf).amin()
    )
    price_sums[index] = _pairwise_sums_reference(lowered, _LOWER_BLOCK_M)
    price.copy_(lowered)
