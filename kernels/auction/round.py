"""``auction_round``: one round of bids and awards (see ``kernels.auction``)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _CELL_BITS,
    _EMPTY_KEY,
    _block_n,
    _check_lists,
    _check_state,
    _choice_hash,
    _hash_kernel_side,
    _holds_key,
    _insert_key,
    _key,
    _largest_keys_per_tile,
    _list_values,
    _list_values_reference,
    bid_of_key,
    make_keys,
)
from kernels.dispatch import use_triton

# The largest bid: a cell with a single possible tile bids "infinitely", kept finite so that
# prices plus costs never overflow to inf - inf.
_BID_LIMIT = 1e30
_BID_MAX = tl.constexpr(_BID_LIMIT)
# Priority of an entry that may not be chosen: above every 32-bit hash.
_NO_PRIORITY = tl.constexpr(1 << 40)


# --- a round: bids and awards -------------------------------------------------------------------


@triton.jit(do_not_specialize=["round_index", "count_index", "N", "L", "capacity"])
def _bid_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, assigned_ptr, slots_ptr,
    target_ptr, bid_key_ptr, dropped_ptr, stale_ptr, counts_ptr, eps_ptr,
    round_index, count_index, N, L, capacity, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Every cell without a tile bids for one entry of its list and inserts its key.

    Pointers: ``candidates`` int64 and ``cost`` float32 ``(N, L)`` (row strides ``stride_cn``,
    ``stride_kn``, unit stride along L); ``outside`` float32, ``assigned`` int64 ``(N,)``;
    ``price`` float32 ``(M,)``; ``slots`` int64 ``(M, capacity)`` contiguous; outputs per cell:
    ``target`` int64 (tile bid on, -1 none), ``bid_key`` int64 (the bid's key), ``dropped``
    int64 (the key that fell off the tile's slots during this cell's insertion), ``stale`` uint8
    (1: no entry near its best, needs a new list); ``counts`` int32, this round's at
    ``count_index``; ``eps`` float32 scalar; ``round_index`` seeds the choice hash. Grid:
    ``(cdiv(N, BLOCK_N),)``; ``BLOCK_L >= L``.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    # Every lane reads the round's count (one broadcast load): 0 turns the launch into a no-op.
    live = tl.load(counts_ptr + count_index + tl.zeros_like(rows)) > 0
    row_mask = (rows < N) & live
    bidding = row_mask & (tl.load(assigned_ptr + rows, mask=row_mask, other=0) < 0)
    tiles, cost, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, bidding, L, stride_cn, stride_kn, BLOCK_L
    )
    eps = tl.load(eps_ptr)
    outside = tl.load(outside_ptr + rows, mask=bidding, other=float("inf"))
    best = tl.min(value, axis=1)
    near = (tiles >= 0) & (value <= (best + eps * 0.5)[:, None])
    # No entry (an empty list with no bound) is no choice: there is no tile to bid on.
    has_choice = (best <= outside) & (best < float("inf"))
    priority = tl.where(near, _hash_kernel_side(rows[:, None], round_index, tiles), _NO_PRIORITY)
    position = tl.argmin(priority, axis=1, tie_break_left=True)
    chosen = tl.arange(0, BLOCK_L)[None, :] == position[:, None]
    chosen_cost = tl.sum(tl.where(chosen, cost, 0.0), axis=1)
    chosen_tile = tl.sum(tl.where(chosen, tiles, 0), axis=1)
    alternative = tl.minimum(tl.min(tl.where(chosen, float("inf"), value), axis=1), outside)
    bid = tl.minimum(alternative - chosen_cost + eps, _BID_MAX)
    key = _key(bid, rows)
    active = bidding & has_choice
    dropped = _insert_key(slots_ptr + chosen_tile * capacity, key, active, capacity)
    tl.store(target_ptr + rows, tl.where(active, chosen_tile, -1), mask=row_mask)
    tl.store(bid_key_ptr + rows, key, mask=active)
    tl.store(dropped_ptr + rows, dropped, mask=active)
    tl.store(stale_ptr + rows, (bidding & ~has_choice).to(tl.uint8), mask=row_mask)


@triton.jit(do_not_specialize=["count_index", "N", "capacity"])
def _award_kernel(
    assigned_ptr, held_key_ptr, slots_ptr, price_ptr, target_ptr, bid_key_ptr, dropped_ptr,
    stale_ptr, counts_ptr, count_index, N, capacity,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """After ``_bid_kernel``: each bidder whose key is in its tile's slots takes the tile; the
    holder whose key fell off (``dropped``, if it was a holder of that tile) loses it; the tile's
    price rises to its lowest key when it is full; the cells still without a tile are added to
    ``counts[count_index + 1]``. Same pointers as ``_bid_kernel``, plus ``held_key`` int64
    ``(N,)``. Grid: ``(cdiv(N, BLOCK_N),)``.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    # Every lane reads the round's count (one broadcast load): 0 turns the launch into a no-op.
    live = tl.load(counts_ptr + count_index + tl.zeros_like(rows)) > 0
    row_mask = (rows < N) & live
    tile = tl.load(target_ptr + rows, mask=row_mask, other=-1)
    bidder = tile >= 0
    key = tl.load(bid_key_ptr + rows, mask=bidder, other=_EMPTY_KEY)
    slot_row = slots_ptr + tile * capacity
    won = _holds_key(slot_row, key, bidder, capacity, capacity)
    lowest = tl.load(slot_row + capacity - 1, mask=bidder, other=_EMPTY_KEY)
    lowest_bid = (lowest >> 32).to(tl.int32).to(tl.float32, bitcast=True)
    old_price = tl.load(price_ptr + tile, mask=bidder, other=0.0)
    tl.store(
        price_ptr + tile,
        tl.where(lowest >= 0, tl.maximum(old_price, lowest_bid), old_price),
        mask=bidder,
    )
    tl.store(assigned_ptr + rows, tl.where(won, tile, -1), mask=bidder)
    tl.store(held_key_ptr + rows, tl.where(won, key, -1), mask=bidder)
    tl.store(target_ptr + rows, -1, mask=bidder)
    # The key that fell off: a holder of this tile (not a bidder, which holds nothing) loses it.
    dropped = tl.load(dropped_ptr + rows, mask=bidder, other=_EMPTY_KEY)
    dropped_cell = _CELL_BITS - (dropped & _CELL_BITS)
    maybe_holder = bidder & (dropped >= 0) & (dropped_cell < N)
    holder_tile = tl.load(assigned_ptr + dropped_cell, mask=maybe_holder, other=-1)
    evicted = maybe_holder & (holder_tile == tile)
    tl.store(assigned_ptr + dropped_cell, -1, mask=evicted)
    tl.store(held_key_ptr + dropped_cell, -1, mask=evicted)
    stale = tl.load(stale_ptr + rows, mask=row_mask, other=0) != 0
    left = (bidder & ~won).to(tl.int32) + evicted.to(tl.int32) + stale.to(tl.int32)
    tl.atomic_add(counts_ptr + count_index + 1, tl.sum(left, axis=0))


def auction_round(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    stale: torch.Tensor,
    counts: torch.Tensor,
    eps: torch.Tensor,
    round_index: int,
    work: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    count_index: int | None = None,
) -> None:
    """One round of bids and awards, in place (see the module docstring for every tensor).

    Updates ``assigned``, ``held_key``, ``slots``, ``price`` and ``stale`` (uint8 ``(N,)``) and
    adds the cells left without a tile to ``counts[count_index + 1]``. Does nothing when
    ``counts[count_index]`` is 0. ``count_index`` defaults to ``round_index``, which also seeds
    the choice hash. ``work``: the three int64 ``(N,)`` scratch tensors of ``round_work``, kept
    by the caller for every round of a solve (the kernels leave them ready for the next round).
    """
    _check_lists(candidates, candidate_cost, outside)
    n, device = candidates.shape[0], candidates.device
    _check_state(n, device, assigned=assigned, held_key=held_key, price=price, slots=slots)
    check_tensor(stale, "stale", dtypes=(torch.uint8,), ndim=1)
    check_tensor(counts, "counts", dtypes=(torch.int32,), ndim=1)
    check_tensor(eps, "eps", dtypes=(torch.float32,), ndim=0)
    check_same_device(candidates=candidates, stale=stale, counts=counts, eps=eps)
    if count_index is None:
        count_index = round_index
    if not 0 <= count_index < counts.shape[0] - 1:
        raise ValueError(f"count_index {count_index} needs counts of more than {count_index + 1}")
    if any(x.shape != (n,) or x.dtype != torch.int64 or x.device != device for x in work):
        raise ValueError(f"work must be round_work({n}, {device})")
    if n == 0:
        return
    if not use_triton(candidates):
        auction_round_reference(
            candidates, candidate_cost, outside, price, assigned, held_key, slots, stale,
            counts, eps, round_index, count_index,
        )  # fmt: skip
        return
    target, bid_key, dropped = work
    block_n = _block_n(device)
    block_l = triton.next_power_of_2(candidates.shape[1])
    capacity = slots.shape[1]
    grid = (triton.cdiv(n, block_n),)
    _bid_kernel[grid](
        candidates, candidate_cost, outside, price, assigned, slots, target, bid_key, dropped,
        stale, counts, eps, round_index, count_index, n, candidates.shape[1], capacity,
        candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=block_l,
    )  # fmt: skip
    _award_kernel[grid](
        assigned, held_key, slots, price, target, bid_key, dropped, stale, counts,
        count_index, n, capacity, BLOCK_N=block_n,
    )  # fmt: skip


def round_work(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scratch for ``auction_round``: three int64 ``(N,)`` tensors, the bid target of each cell
    (-1 between rounds), its key and the key it pushed out."""
    work = torch.empty((3, n), dtype=torch.int64, device=device)
    work[0].fill_(-1)
    return work[0], work[1], work[2]


def auction_round_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    stale: torch.Tensor,
    counts: torch.Tensor,
    eps: torch.Tensor,
    round_index: int,
    count_index: int | None = None,
) -> None:
    """Pure-torch ``auction_round``. A tile's new slots are the ``R`` largest of its old keys and
    new bids, found by one sort of all keys (what the kernels' atomic cascade leaves)."""
    n, length = candidates.shape
    m, capacity = slots.shape
    if count_index is None:
        count_index = round_index
    cells = torch.arange(n, device=candidates.device)
    live = counts[count_index] > 0
    bidding = live & (assigned < 0)
    value = _list_values_reference(candidates, candidate_cost, price)
    best = value.amin(1)
    near = (candidates >= 0) & (value <= (best + eps * 0.5)[:, None])
    # No entry (an empty list with no bound) is no choice: there is no tile to bid on.
    has_choice = (best <= outside) & (best < float("inf"))
    priority = torch.where(near, _choice_hash(cells[:, None], round_index, candidates), 1 << 40)
    position = priority.argmin(1, keepdim=True)
    chosen_cost = candidate_cost.gather(1, position).squeeze(1)
    chosen_tile = candidates.gather(1, position).squeeze(1)
    chosen = torch.arange(length, device=candidates.device) == position
    alternative = torch.minimum(torch.where(chosen, float("inf"), value).amin(1), outside)
    bid = (alternative - chosen_cost + eps).clamp_max(_BID_LIMIT)
    key = make_keys(bid, cells)
    active = bidding & has_choice
    target = torch.where(active, chosen_tile, m)  # m: a row for the cells that do not bid

    # Every key with its tile: the old slots, then the bids (the cells that do not bid in row m).
    slot_tiles = torch.arange(m, device=slots.device).repeat_interleave(capacity)
    all_keys = torch.cat([slots.reshape(-1), torch.where(active, key, -1)])
    new_slots, kept = _largest_keys_per_tile(torch.cat([slot_tiles, target]), all_keys, m, capacity)
    slots.copy_(new_slots)

    won = active & kept[slots.numel() :]
    old_keys = all_keys[: slots.numel()]
    fell_off = (old_keys >= 0) & ~kept[: slots.numel()]
    fallen_cells = (0xFFFFFFFF - (old_keys & 0xFFFFFFFF)).clamp(0, n)  # n: a scratch row
    evicted_cells = torch.zeros(n + 1, dtype=torch.bool, device=slots.device)
    evicted_cells[torch.where(fell_off, fallen_cells, n)] = True
    evicted = evicted_cells[:n] & (assigned >= 0)

    lowest = slots[:, capacity - 1]
    bid_on = torch.zeros(m + 1, dtype=torch.bool, device=slots.device)
    bid_on[target] = True
    raised = bid_on[:m] & (lowest >= 0)
    price.copy_(torch.where(raised, torch.maximum(price, bid_of_key(lowest)), price))
    assigned.copy_(torch.where(won, chosen_tile, torch.where(active | evicted, -1, assigned)))
    held_key.copy_(torch.where(won, key, torch.where(active | evicted, -1, held_key)))
    now_stale = bidding & ~has_choice
    stale.copy_(torch.where(live, now_stale.to(torch.uint8), stale))
    left = ((active & ~won) | evicted | now_stale).sum(dtype=torch.int32)
    counts[count_index + 1] += torch.where(live, left, 0)
