"""An auction for assignment under a capacity (Bertsekas): Triton kernels, launchers, references.

Cells bid for tiles; each tile holds at most ``R`` cells (the reuse cap). Every cell sees only a
short candidate list (its nearest tiles at the current prices, plus the tile it holds and its
incumbent) and a lower bound on every tile outside it. All of it lives in fixed-shape tensors on
one device, so a whole solve is a fixed sequence of launches with no host reads (a CUDA graph can
replay it); work that is done turns the later launches into no-ops through an on-device counter.

State (``N`` cells, ``M`` tiles, list length ``L``, capacity ``R``):

- ``candidates`` int64 ``(N, L)``: tile of each list entry, -1 for an empty entry; no tile twice
  in a row. ``candidate_cost`` float32 ``(N, L)``: its cost (read only where the entry is not
  empty). ``outside`` float32 ``(N,)``: a lower bound on ``cost + price`` of every tile not in the
  row's list (+inf when the list holds every tile). Prices never fall during a solve, so a bound
  taken when the list was built stays valid.
- ``assigned`` int64 ``(N,)``: the tile each cell holds, -1 none. ``held_key`` int64 ``(N,)``:
  the key it holds it with, -1 none.
- ``slots`` int64 ``(M, R)``: the keys of each tile's holders, descending, -1 for a free slot.
  ``price`` float32 ``(M,)``: what a bid must beat; it never falls during a solve.
- ``counts`` int32 ``(rounds + 1,)``, zeroed by the caller: ``counts[t]`` is the number of cells
  without a tile when round ``t`` starts; a round that sees 0 does nothing.
- ``eps`` float32 ``()``: the bid increment (epsilon of epsilon-complementary slackness).

A **key** packs a bid and a cell into one int64, ``(float32 bits of bid) << 32 | (2^32 - 1 -
cell)``: bids are positive, so keys order like bids, and equal bids go to the lower cell index.
All keys differ, so "a tile's ``R`` best keys" is one exact set whatever the order of events.

**A round** (``auction_round``): every cell without a tile looks at ``cost + price`` over its
list. If none is within ``eps / 2`` of ``min(best in list, outside)`` the list is stale (a tile
outside it may now be better): the cell is flagged in ``stale`` and waits for a new list.
Otherwise it picks one of the entries within ``eps / 2`` (by a hash of cell, round and tile: cells
that want the same tiles spread over them instead of all bidding for one), and bids
``alternative - cost + eps``, where ``alternative`` is the best value of every other entry and of
the outside bound: after winning, the tile is within ``eps`` of the cell's best option
(epsilon-complementary slackness). The bid is inserted into the tile's slots by a cascade of
``R`` atomic maxima (slot 0 takes the larger of its key and the bid and passes the smaller on to
slot 1, ...), which leaves every tile with the ``R`` largest of its old keys and new bids
whatever the order of the atomics; each bidder keeps the key that fell off the end. A second
kernel then gives each winner its tile, frees the holder whose key fell off, raises each bid-on
tile's price to its lowest key when the tile is full, and counts the cells still without a tile.

**A stage's bookkeeping**, one launch each: ``auction_release`` opens a stage (frees every
holder that no longer satisfies epsilon-complementary slackness, flags for a new list those
that only their outside bound would free, and writes the list cost of every holder, the
stage's primal); ``auction_rebuild_slots`` then rebuilds ``slots`` from the holders' keys;
``auction_lists`` writes the lists of the flagged cells (searched tiles, held tile, incumbent,
their costs); ``auction_lower_prices`` lowers the prices of the tiles with a free slot (with
more slots than cells, a tile that is not full must sit at the lowest price): to 0
(``floored_prices``) or only as far as some listed cell would take them (``tie_prices``, which
frees no holder that lists them), and compacts the tiles that fell so that a search over just
those keeps every outside bound valid. ``dual_values`` gives each cell's best ``cost + price``
(the outside bound included), the per-cell part of the certified lower bound.

Every op has a pure-torch reference that gives the same results (the kernels and references do
the same float32 operations in the same order), with the same fixed shapes and no host reads.
"""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.dispatch import use_triton

__all__ = [
    "auction_lists",
    "auction_lists_reference",
    "auction_lower_prices",
    "auction_lower_prices_reference",
    "auction_rebuild_slots",
    "auction_rebuild_slots_reference",
    "auction_release",
    "auction_release_reference",
    "auction_round",
    "auction_round_reference",
    "bid_of_key",
    "dual_values",
    "dual_values_reference",
    "floored_prices",
    "make_keys",
    "round_work",
    "tie_prices",
]

# The largest bid: a cell with a single possible tile bids "infinitely", kept finite so that
# prices plus costs never overflow to inf - inf.
_BID_LIMIT = 1e30
_BID_MAX = tl.constexpr(_BID_LIMIT)
# Low 32 bits of a key: 2^32 - 1 - cell.
_CELL_BITS = tl.constexpr(0xFFFFFFFF)
_EMPTY_KEY = tl.constexpr(-1)
# Priority of an entry that may not be chosen: above every 32-bit hash.
_NO_PRIORITY = tl.constexpr(1 << 40)
# Multipliers of the choice hash (odd 32-bit constants; products stay below 2^63 in int64).
_HASH_CELL = tl.constexpr(0x9E3779B1)
_HASH_ROUND = tl.constexpr(0x85EBCA6B)
_HASH_TILE = tl.constexpr(0xC2B2AE35)
_HASH_MIX = tl.constexpr(0x045D9F3B)

# Cells per program. GPU: the bid kernel over lists of up to 32 entries (int64 tiles, float32
# costs) takes 255 registers at 4 warps for 128 rows and 168 for 64 (ptxas for sm_90, Triton
# 3.9), so 64; 8160 cells are then one wave of 128 programs. The interpreter runs programs one
# after another: few, larger programs.
_GPU_BLOCK_N = 64
_INTERPRETER_BLOCK_N = 64
# Tiles per program of the price lowering (one load of each per tile).
_LOWER_BLOCK_M = 1024


# --- keys and hashes (shared by kernels and references) ----------------------------------------


def make_keys(bids: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """int64 keys of float32 ``bids`` (> 0) held by int64 ``cells`` (same shape)."""
    bits = bids.to(torch.float32).view(torch.int32).to(torch.int64)
    return (bits << 32) | (0xFFFFFFFF - cells)


def bid_of_key(keys: torch.Tensor) -> torch.Tensor:
    """float32 bid of each int64 key (0 for a free slot, -1)."""
    bids = (keys >> 32).to(torch.int32).view(torch.float32)
    return torch.where(keys >= 0, bids, 0.0)


def _choice_hash(cells: torch.Tensor, round_index: int, tiles: torch.Tensor) -> torch.Tensor:
    """int64 hash in [0, 2^32) of (cell, round, tile): the order in which a cell prefers tiles
    that are all within ``eps / 2`` of its best (see the module docstring)."""
    mixed = (cells * 0x9E3779B1) ^ (round_index * 0x85EBCA6B) ^ (tiles * 0xC2B2AE35)
    mixed &= 0xFFFFFFFF
    mixed ^= mixed >> 16
    mixed = (mixed * 0x045D9F3B) & 0xFFFFFFFF
    return mixed ^ (mixed >> 16)


@triton.jit
def _hash_kernel_side(cells, round_index, tiles):
    """``_choice_hash`` in Triton, on int64 tensors (``round_index`` an int, taken to int64)."""
    rounds = tl.zeros_like(cells) + round_index
    mixed = (cells * _HASH_CELL) ^ (rounds * _HASH_ROUND) ^ (tiles * _HASH_TILE)
    mixed = mixed & 0xFFFFFFFF
    mixed = mixed ^ (mixed >> 16)
    mixed = (mixed * _HASH_MIX) & 0xFFFFFFFF
    return mixed ^ (mixed >> 16)


# --- argument checks -------------------------------------------------------------------------


def _check_lists(
    candidates: torch.Tensor, candidate_cost: torch.Tensor, outside: torch.Tensor
) -> None:
    check_tensor(candidates, "candidates", dtypes=(torch.int64,), ndim=2)
    check_tensor(candidate_cost, "candidate_cost", dtypes=(torch.float32,), ndim=2)
    check_tensor(outside, "outside", dtypes=(torch.float32,), ndim=1)
    check_same_device(candidates=candidates, candidate_cost=candidate_cost, outside=outside)
    n = candidates.shape[0]
    if candidate_cost.shape != candidates.shape or outside.shape != (n,):
        raise ValueError(
            f"candidates {tuple(candidates.shape)}, candidate_cost {tuple(candidate_cost.shape)} "
            f"and outside {tuple(outside.shape)} must be (N, L), (N, L) and (N,)"
        )
    for name, x in (("candidates", candidates), ("candidate_cost", candidate_cost)):
        if x.stride(1) != 1:
            raise ValueError(f"{name} must have unit stride along L, got strides {x.stride()}")


def _check_state(
    n: int,
    device: torch.device,
    *,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    price: torch.Tensor | None = None,
    slots: torch.Tensor | None = None,
) -> None:
    for name, x in (("assigned", assigned), ("held_key", held_key)):
        check_tensor(x, name, dtypes=(torch.int64,), ndim=1)
        if x.shape != (n,) or not x.is_contiguous() or x.device != device:
            raise ValueError(f"{name} must be a contiguous ({n},) tensor on {device}")
    if price is not None:
        check_tensor(price, "price", dtypes=(torch.float32,), ndim=1)
        if not price.is_contiguous() or price.device != device:
            raise ValueError(f"price must be a contiguous (M,) tensor on {device}")
    if slots is not None:
        check_tensor(slots, "slots", dtypes=(torch.int64,), ndim=2)
        if not slots.is_contiguous() or slots.device != device or slots.shape[1] < 1:
            raise ValueError(f"slots must be a contiguous (M, R >= 1) tensor on {device}")
        if price is not None and price.shape[0] != slots.shape[0]:
            raise ValueError(f"price has {price.shape[0]} tiles but slots {slots.shape[0]}")


def _block_n(device: torch.device) -> int:
    return _GPU_BLOCK_N if device.type == "cuda" else _INTERPRETER_BLOCK_N


# --- the list values (shared helper of every kernel that reads a list) -----------------------


@triton.jit
def _list_values(
    candidates_ptr, cost_ptr, price_ptr, rows, row_mask, L, stride_cn, stride_kn,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    """``(tiles, cost, value)`` of the list entries of ``rows``, each ``(BLOCK_N, BLOCK_L)``:
    tile (-1 empty or masked), cost, and ``cost + price`` (+inf for empty entries)."""
    entries = tl.arange(0, BLOCK_L)
    mask = row_mask[:, None] & (entries < L)[None, :]
    tiles = tl.load(
        candidates_ptr + rows[:, None] * stride_cn + entries[None, :], mask=mask, other=-1
    )
    valid = tiles >= 0
    cost = tl.load(cost_ptr + rows[:, None] * stride_kn + entries[None, :], mask=valid, other=0.0)
    price = tl.load(price_ptr + tiles, mask=valid, other=0.0)
    value = tl.where(valid, cost + price, float("inf"))
    return tiles, cost, value


def _list_values_reference(
    candidates: torch.Tensor, candidate_cost: torch.Tensor, price: torch.Tensor
) -> torch.Tensor:
    """float32 ``(N, L)``: ``cost + price`` of each entry, +inf for empty entries."""
    valid = candidates >= 0
    value = candidate_cost + price[candidates.clamp_min(0)]
    return torch.where(valid, value, float("inf"))


# --- building lists ------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "K", "D"])
def _lists_kernel(
    cells_ptr, tiles_ptr, incumbent_ptr, bonus_ptr, nearest_ptr, assigned_ptr, rows_ptr,
    bound_ptr, candidates_ptr, cost_ptr, outside_ptr,
    N, K, D, stride_xn, stride_xd, stride_yn, stride_yd, stride_bonus, stride_nn, stride_cn,
    stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """``auction_lists`` on ``cdiv(N, BLOCK_N)`` programs; ``BLOCK_L >= K + 2``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    bonus = tl.load(bonus_ptr + rows * stride_bonus, mask=row_mask, other=0.0)
    bound = tl.load(bound_ptr + rows, mask=row_mask, other=0.0)
    tl.store(outside_ptr + rows, bound + bonus, mask=row_mask)
    selected = row_mask & (tl.load(rows_ptr + rows, mask=row_mask, other=0) != 0)
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
    distance = tl.zeros((BLOCK_N, BLOCK_L), dtype=tl.float32)
    for d in range(0, D):
        x = tl.load(cells_ptr + rows * stride_xn + d * stride_xd, mask=selected, other=0.0)
        y = tl.load(tiles_ptr + tiles * stride_yn + d * stride_yd, mask=valid, other=0.0)
        difference = x[:, None] - y
        distance += difference * difference
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
) -> None:
    """Write, in place, the lists of the cells flagged in ``rows`` (uint8 ``(N,)``): entry ``e <
    K`` is ``nearest[i, e]``, entry ``K`` the held tile ``assigned[i]`` and ``K + 1`` the
    ``incumbent[i]``, each -1 where absent or already listed; the cost of an entry is the squared
    distance of float32 ``cells (N, D)`` to ``tiles (M, D)`` (summed over ``D`` in order) plus
    ``bonus[i]`` (float32 ``(N,)``, any stride) unless the tile is the incumbent, 0 for an empty
    entry. Every row's ``outside`` becomes ``bound + bonus`` (float32 ``(N,)``).

    ``nearest`` int64 ``(N, K)``; ``candidates`` int64 and ``candidate_cost`` float32 ``(N, K +
    2)``, unit stride along the list; other rows keep what they hold."""
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
    if n == 0:
        return
    if not use_triton(cells):
        auction_lists_reference(
            cells, tiles, incumbent, bonus, nearest, assigned, rows, bound, candidates,
            candidate_cost, outside,
        )  # fmt: skip
        return
    block_n = _block_n(device)
    _lists_kernel[(triton.cdiv(n, block_n),)](
        cells, tiles, incumbent, bonus, nearest, assigned, rows, bound, candidates,
        candidate_cost, outside,
        n, k, cells.shape[1], cells.stride(0), cells.stride(1), tiles.stride(0), tiles.stride(1),
        bonus.stride(0), nearest.stride(0), candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(k + 2),
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
) -> None:
    """Pure-torch ``auction_lists`` (the distance summed over ``D`` in order, as the kernel)."""
    extra = torch.stack([assigned, incumbent], 1)
    listed = (extra[:, :, None] == nearest[:, None, :]).any(2)
    listed[:, 1] |= incumbent == assigned
    extra = torch.where(listed | (extra < 0), -1, extra)
    fresh = torch.cat([nearest, extra], 1)
    valid = fresh >= 0
    chosen = tiles[fresh.clamp_min(0)]
    distance = torch.zeros(fresh.shape, dtype=torch.float32, device=cells.device)
    for d in range(cells.shape[1]):
        distance += (cells[:, None, d] - chosen[:, :, d]).square()
    cost = distance + torch.where(fresh == incumbent[:, None], 0.0, bonus[:, None])
    selected = rows.bool()[:, None]
    candidates.copy_(torch.where(selected, fresh, candidates))
    candidate_cost.copy_(torch.where(selected, torch.where(valid, cost, 0.0), candidate_cost))
    outside.copy_(bound + bonus)


# --- a round: bids and awards -------------------------------------------------------------------


@triton.jit(do_not_specialize=["round_index", "N", "L", "capacity"])
def _bid_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, assigned_ptr, slots_ptr,
    target_ptr, bid_key_ptr, dropped_ptr, stale_ptr, counts_ptr, eps_ptr,
    round_index, N, L, capacity, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Every cell without a tile bids for one entry of its list and inserts its key.

    Pointers: ``candidates`` int64 and ``cost`` float32 ``(N, L)`` (row strides ``stride_cn``,
    ``stride_kn``, unit stride along L); ``outside`` float32, ``assigned`` int64 ``(N,)``;
    ``price`` float32 ``(M,)``; ``slots`` int64 ``(M, capacity)`` contiguous; outputs per cell:
    ``target`` int64 (tile bid on, -1 none), ``bid_key`` int64 (the bid's key), ``dropped``
    int64 (the key that fell off the tile's slots during this cell's insertion), ``stale`` uint8
    (1: no entry near its best, needs a new list); ``counts`` int32, this round's at
    ``round_index``; ``eps`` float32 scalar. Grid: ``(cdiv(N, BLOCK_N),)``; ``BLOCK_L >= L``.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    # Every lane reads the round's count (one broadcast load): 0 turns the launch into a no-op.
    live = tl.load(counts_ptr + round_index + tl.zeros_like(rows)) > 0
    row_mask = (rows < N) & live
    bidding = row_mask & (tl.load(assigned_ptr + rows, mask=row_mask, other=0) < 0)
    tiles, cost, value = _list_values(
        candidates_ptr, cost_ptr, price_ptr, rows, bidding, L, stride_cn, stride_kn, BLOCK_L
    )
    eps = tl.load(eps_ptr)
    outside = tl.load(outside_ptr + rows, mask=bidding, other=float("inf"))
    best = tl.min(value, axis=1)
    near = (tiles >= 0) & (value <= (best + eps * 0.5)[:, None])
    has_choice = best <= outside
    priority = tl.where(near, _hash_kernel_side(rows[:, None], round_index, tiles), _NO_PRIORITY)
    position = tl.argmin(priority, axis=1, tie_break_left=True)
    chosen = tl.arange(0, BLOCK_L)[None, :] == position[:, None]
    chosen_cost = tl.sum(tl.where(chosen, cost, 0.0), axis=1)
    chosen_tile = tl.sum(tl.where(chosen, tiles, 0), axis=1)
    alternative = tl.minimum(tl.min(tl.where(chosen, float("inf"), value), axis=1), outside)
    bid = tl.minimum(alternative - chosen_cost + eps, _BID_MAX)
    key = (bid.to(tl.int32, bitcast=True).to(tl.int64) << 32) | (_CELL_BITS - rows)
    active = bidding & has_choice
    carry = key
    slot_row = slots_ptr + chosen_tile * capacity
    for slot in range(0, capacity):
        previous = tl.atomic_max(slot_row + slot, carry, mask=active)
        carry = tl.where(active, tl.minimum(previous, carry), carry)
    tl.store(target_ptr + rows, tl.where(active, chosen_tile, -1), mask=row_mask)
    tl.store(bid_key_ptr + rows, key, mask=active)
    tl.store(dropped_ptr + rows, carry, mask=active)
    tl.store(stale_ptr + rows, (bidding & ~has_choice).to(tl.uint8), mask=row_mask)


@triton.jit(do_not_specialize=["round_index", "N", "capacity"])
def _award_kernel(
    assigned_ptr, held_key_ptr, slots_ptr, price_ptr, target_ptr, bid_key_ptr, dropped_ptr,
    stale_ptr, counts_ptr, round_index, N, capacity,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """After ``_bid_kernel``: each bidder whose key is in its tile's slots takes the tile; the
    holder whose key fell off (``dropped``, if it was a holder of that tile) loses it; the tile's
    price rises to its lowest key when it is full; the cells still without a tile are added to
    ``counts[round_index + 1]``. Same pointers as ``_bid_kernel``, plus ``held_key`` int64
    ``(N,)``. Grid: ``(cdiv(N, BLOCK_N),)``.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    # Every lane reads the round's count (one broadcast load): 0 turns the launch into a no-op.
    live = tl.load(counts_ptr + round_index + tl.zeros_like(rows)) > 0
    row_mask = (rows < N) & live
    tile = tl.load(target_ptr + rows, mask=row_mask, other=-1)
    bidder = tile >= 0
    key = tl.load(bid_key_ptr + rows, mask=bidder, other=_EMPTY_KEY)
    slot_row = slots_ptr + tile * capacity
    won = tl.zeros((BLOCK_N,), dtype=tl.int1)
    for slot in range(0, capacity):
        won |= bidder & (tl.load(slot_row + slot, mask=bidder, other=_EMPTY_KEY) == key)
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
    tl.atomic_add(counts_ptr + round_index + 1, tl.sum(left, axis=0))


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
) -> None:
    """One round of bids and awards, in place (see the module docstring for every tensor).

    Updates ``assigned``, ``held_key``, ``slots``, ``price`` and ``stale`` (uint8 ``(N,)``) and
    adds the cells left without a tile to ``counts[round_index + 1]``. Does nothing when
    ``counts[round_index]`` is 0. ``work``: the three int64 ``(N,)`` scratch tensors of
    ``round_work``, kept by the caller for every round of a solve (the kernels leave them ready
    for the next round).
    """
    _check_lists(candidates, candidate_cost, outside)
    n, device = candidates.shape[0], candidates.device
    _check_state(n, device, assigned=assigned, held_key=held_key, price=price, slots=slots)
    check_tensor(stale, "stale", dtypes=(torch.uint8,), ndim=1)
    check_tensor(counts, "counts", dtypes=(torch.int32,), ndim=1)
    check_tensor(eps, "eps", dtypes=(torch.float32,), ndim=0)
    check_same_device(candidates=candidates, stale=stale, counts=counts, eps=eps)
    if not 0 <= round_index < counts.shape[0] - 1:
        raise ValueError(f"round_index {round_index} needs counts of more than {round_index + 1}")
    if any(x.shape != (n,) or x.dtype != torch.int64 or x.device != device for x in work):
        raise ValueError(f"work must be round_work({n}, {device})")
    if n == 0:
        return
    if not use_triton(candidates):
        auction_round_reference(
            candidates, candidate_cost, outside, price, assigned, held_key, slots, stale,
            counts, eps, round_index,
        )  # fmt: skip
        return
    target, bid_key, dropped = work
    block_n = _block_n(device)
    block_l = triton.next_power_of_2(candidates.shape[1])
    capacity = slots.shape[1]
    grid = (triton.cdiv(n, block_n),)
    _bid_kernel[grid](
        candidates, candidate_cost, outside, price, assigned, slots, target, bid_key, dropped,
        stale, counts, eps, round_index, n, candidates.shape[1], capacity,
        candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=block_l,
    )  # fmt: skip
    _award_kernel[grid](
        assigned, held_key, slots, price, target, bid_key, dropped, stale, counts,
        round_index, n, capacity, BLOCK_N=block_n,
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
) -> None:
    """Pure-torch ``auction_round``. A tile's new slots are the ``R`` largest of its old keys and
    new bids, found by one sort of all keys (what the kernels' atomic cascade leaves)."""
    n, length = candidates.shape
    m, capacity = slots.shape
    cells = torch.arange(n, device=candidates.device)
    live = counts[round_index] > 0
    bidding = live & (assigned < 0)
    value = _list_values_reference(candidates, candidate_cost, price)
    best = value.amin(1)
    near = (candidates >= 0) & (value <= (best + eps * 0.5)[:, None])
    has_choice = best <= outside
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
    counts[round_index + 1] += torch.where(live, left, 0)


def _largest_keys_per_tile(
    tiles: torch.Tensor, keys: torch.Tensor, m: int, capacity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``capacity`` largest of the int64 ``keys`` given to each tile (``tiles``: int64, same
    shape, in ``[0, m]``; ``m`` collects keys that go nowhere) as int64 ``slots (m, capacity)``,
    descending, -1 where free; and bool, shaped like ``keys``: which ones made it."""
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(tiles[order], stable=True)]
    sorted_tiles = tiles[order]
    starts = torch.ones_like(sorted_tiles, dtype=torch.bool)
    starts[1:] = sorted_tiles[1:] != sorted_tiles[:-1]
    positions = torch.arange(order.numel(), device=order.device)
    rank = positions - torch.cummax(torch.where(starts, positions, 0), 0).values
    kept = torch.empty_like(starts)
    kept[order] = rank < capacity
    # Column `capacity` collects the keys that are not kept.
    slots = torch.full((m + 1, capacity + 1), -1, dtype=torch.int64, device=keys.device)
    slots[sorted_tiles, rank.clamp_max(capacity)] = keys[order]
    return slots[:m, :capacity], kept


# --- releasing holders and rebuilding the slots ------------------------------------------------


@triton.jit(do_not_specialize=["count_index", "N", "L"])
def _release_kernel(
    candidates_ptr, cost_ptr, outside_ptr, price_ptr, assigned_ptr, held_key_ptr, stale_ptr,
    held_cost_ptr, counts_ptr, tolerance_ptr, count_index, N, L, stride_cn, stride_kn,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """``auction_release`` on ``cdiv(N, BLOCK_N)`` programs. Pointers as ``_bid_kernel``, plus
    ``held_key`` int64, ``stale`` uint8 and ``held_cost`` float32 ``(N,)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tile = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    holding = tile >= 0
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
    tl.store(
        held_cost_ptr + rows,
        tl.min(tl.where(held, cost, float("inf")), axis=1),
        mask=row_mask,
    )
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
    held_cost: torch.Tensor,
    counts: torch.Tensor,
    tolerance: torch.Tensor,
    count_index: int,
) -> None:
    """Open a stage, in place, in one pass over the cells.

    - ``held_cost`` float32 ``(N,)`` gets the list cost of each cell's tile as the stage starts
      (+inf for a cell without a tile or whose tile is not in its list), so the sum prices the
      holders, complete or not (inf).
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
    check_tensor(held_cost, "held_cost", dtypes=(torch.float32,), ndim=1)
    check_tensor(counts, "counts", dtypes=(torch.int32,), ndim=1)
    check_tensor(tolerance, "tolerance", dtypes=(torch.float32,), ndim=0)
    check_same_device(
        candidates=candidates, stale=stale, held_cost=held_cost, counts=counts,
        tolerance=tolerance,
    )  # fmt: skip
    for name, x in (("stale", stale), ("held_cost", held_cost)):
        if x.shape != (n,) or not x.is_contiguous():
            raise ValueError(f"{name} must be a contiguous ({n},) tensor")
    if n == 0:
        return
    if not use_triton(candidates):
        auction_release_reference(
            candidates, candidate_cost, outside, price, assigned, held_key, stale, held_cost,
            counts, tolerance, count_index,
        )  # fmt: skip
        return
    block_n = _block_n(device)
    _release_kernel[(triton.cdiv(n, block_n),)](
        candidates, candidate_cost, outside, price, assigned, held_key, stale, held_cost,
        counts, tolerance, count_index,
        n, candidates.shape[1], candidates.stride(0), candidate_cost.stride(0),
        BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
    )  # fmt: skip


def auction_release_reference(
    candidates: torch.Tensor,
    candidate_cost: torch.Tensor,
    outside: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    stale: torch.Tensor,
    held_cost: torch.Tensor,
    counts: torch.Tensor,
    tolerance: torch.Tensor,
    count_index: int,
) -> None:
    """Pure-torch ``auction_release``."""
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
    held_cost.copy_(torch.where(held, candidate_cost, float("inf")).amin(1))
    stale |= bound_limited.to(torch.uint8)
    assigned.masked_fill_(release, -1)
    held_key.masked_fill_(release, -1)
    counts[count_index] += (assigned < 0).sum(dtype=torch.int32)


@triton.jit(do_not_specialize=["N", "capacity"])
def _rebuild_kernel(assigned_ptr, held_key_ptr, slots_ptr, N, capacity, BLOCK_N: tl.constexpr):
    """Inserts every holder's key into its tile's slots (cleared to -1 before the launch) by the
    atomic cascade of ``_bid_kernel``. ``assigned``, ``held_key`` int64 ``(N,)``; ``slots`` int64
    ``(M, capacity)`` contiguous. Grid: ``(cdiv(N, BLOCK_N),)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tile = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    holding = tile >= 0
    carry = tl.load(held_key_ptr + rows, mask=holding, other=_EMPTY_KEY)
    slot_row = slots_ptr + tile * capacity
    for slot in range(0, capacity):
        previous = tl.atomic_max(slot_row + slot, carry, mask=holding)
        carry = tl.where(holding, tl.minimum(previous, carry), carry)


def auction_rebuild_slots(
    assigned: torch.Tensor, held_key: torch.Tensor, slots: torch.Tensor
) -> None:
    """Rewrite ``slots`` in place from the holders (``assigned``, ``held_key``): each tile's keys,
    descending, -1 where free. The holders of a tile must fit in its slots."""
    n = assigned.shape[0]
    _check_state(n, assigned.device, assigned=assigned, held_key=held_key, slots=slots)
    if not use_triton(assigned):
        auction_rebuild_slots_reference(assigned, held_key, slots)
        return
    slots.fill_(-1)
    if n == 0:
        return
    block_n = _block_n(assigned.device)
    _rebuild_kernel[(triton.cdiv(n, block_n),)](
        assigned, held_key, slots, n, slots.shape[1], BLOCK_N=block_n
    )


def auction_rebuild_slots_reference(
    assigned: torch.Tensor, held_key: torch.Tensor, slots: torch.Tensor
) -> None:
    """Pure-torch ``auction_rebuild_slots``."""
    m, capacity = slots.shape
    tiles = torch.where(assigned >= 0, assigned, m)
    slots.copy_(_largest_keys_per_tile(tiles, held_key, m, capacity)[0])


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


@triton.jit(do_not_specialize=["M", "capacity", "S"])
def _lower_kernel(
    price_ptr, gain_ptr, slots_ptr, fallen_ptr, fallen_price_ptr, fell_ptr, lowest_ptr,
    M, capacity, S, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """Per tile: a tile with a free slot falls to ``min(gain, price)``; each tile that fell is
    counted in ``fell`` (int32 scalar), taken into ``lowest`` (float32 scalar, a minimum) and,
    while fewer than ``S`` have been taken, written at the next free place of ``fallen`` (int64
    ``(S,)``) with its new price in ``fallen_price`` (float32 ``(S,)``). Grid:
    ``(cdiv(M, BLOCK_M),)``."""
    tiles = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = tiles < M
    full = tl.load(slots_ptr + tiles * capacity + capacity - 1, mask=mask, other=0) >= 0
    price = tl.load(price_ptr + tiles, mask=mask, other=0.0)
    gain = tl.load(gain_ptr + tiles, mask=mask, other=0.0)
    lowered = tl.where(full, price, tl.minimum(gain, price))
    fell = mask & (lowered < price)
    tl.store(price_ptr + tiles, lowered, mask=mask)
    order = tl.cumsum(fell.to(tl.int32), axis=0) - 1
    start = tl.atomic_add(fell_ptr, tl.sum(fell.to(tl.int32), axis=0))
    place = start + order
    taken = fell & (place < S)
    tl.store(fallen_ptr + place, tiles, mask=taken)
    tl.store(fallen_price_ptr + place, lowered, mask=taken)
    tl.atomic_min(lowest_ptr, tl.min(tl.where(fell, lowered, float("inf")), axis=0))


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
) -> None:
    """Lower, in place, the ``price`` of every tile with a free slot: to 0 (``floored_prices``)
    or, ``to_ties``, only as far as its best listed taker (``tie_prices``), and say which fell.

    ``fell`` int32 ``(1,)``: how many tiles fell; ``lowest`` float32 ``(1,)``: the lowest new
    price among them (+inf when none); ``fallen`` int64 and ``fallen_price`` float32 ``(S,)``:
    ``min(fell, S)`` of them and their new prices (which ones and in what order is free when
    more than ``S`` fell); the other places keep their tile (pass valid indices at first) and
    get the price ``1e30``. Fixed shapes, no host reads."""
    _check_lists(candidates, candidate_cost, outside)
    device = candidates.device
    check_tensor(price, "price", dtypes=(torch.float32,), ndim=1)
    check_tensor(slots, "slots", dtypes=(torch.int64,), ndim=2)
    check_tensor(fallen, "fallen", dtypes=(torch.int64,), ndim=1)
    check_tensor(fallen_price, "fallen_price", dtypes=(torch.float32,), ndim=1)
    check_tensor(fell, "fell", dtypes=(torch.int32,), ndim=1)
    check_tensor(lowest, "lowest", dtypes=(torch.float32,), ndim=1)
    check_same_device(
        candidates=candidates, price=price, slots=slots, fallen=fallen,
        fallen_price=fallen_price, fell=fell, lowest=lowest,
    )  # fmt: skip
    m = price.shape[0]
    if slots.shape[0] != m or not slots.is_contiguous() or not price.is_contiguous():
        raise ValueError(f"price ({m},) and slots (M, R) must be contiguous, for the same tiles")
    if fallen.shape != fallen_price.shape or fell.shape != (1,) or lowest.shape != (1,):
        raise ValueError("fallen and fallen_price must be (S,), fell and lowest (1,)")
    if not use_triton(candidates):
        auction_lower_prices_reference(
            candidates, candidate_cost, outside, price, slots, to_ties, fallen, fallen_price,
            fell, lowest,
        )  # fmt: skip
        return
    gain = torch.zeros_like(price)
    n = candidates.shape[0]
    if to_ties and n:
        block_n = _block_n(device)
        _tie_gain_kernel[(triton.cdiv(n, block_n),)](
            candidates, candidate_cost, outside, price, gain, n, candidates.shape[1],
            candidates.stride(0), candidate_cost.stride(0),
            BLOCK_N=block_n, BLOCK_L=triton.next_power_of_2(candidates.shape[1]),
        )  # fmt: skip
    fallen_price.fill_(_BID_LIMIT)
    fell.zero_()
    lowest.fill_(float("inf"))
    if m:
        block_m = _LOWER_BLOCK_M
        _lower_kernel[(triton.cdiv(m, block_m),)](
            price, gain, slots, fallen, fallen_price, fell, lowest, m, slots.shape[1],
            fallen.shape[0], BLOCK_M=block_m,
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
    taken_price = torch.full((size + 1,), _BID_LIMIT, device=price.device)
    fallen.copy_(taken.scatter_(0, place, every_tile)[:size])
    fallen_price.copy_(taken_price.scatter_(0, place, lowered)[:size])
    fell.copy_(fallen_tiles.sum(dtype=torch.int32).reshape(1))
    lowest.copy_(torch.where(fallen_tiles, lowered, float("inf")).amin().reshape(1))
    price.copy_(lowered)


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
