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
- ``counts`` int32, zeroed by the caller: a round reads the number of cells without a tile at
  its count index and adds those left after it into the next one; a round that sees 0 does
  nothing. The release of a stage counts into the index of the stage's first round (a solve
  gives each stage ``rounds + 1`` entries, so no award adds into a count a release writes).
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

**A stage's bookkeeping**, one launch each besides the searches of ``kernels.cost_topk``:
``auction_release`` opens a stage (frees every holder that no longer satisfies
epsilon-complementary slackness, flags for a new list those that only their outside bound would
free, and notes the holders as the stage opened with partial sums of their list costs, the
stage's primal); ``auction_lists`` writes the lists of the flagged cells (searched tiles, held
tile, incumbent, their costs) and, after a search of those cells, their new outside bounds;
``auction_rebuild_slots`` then rebuilds ``slots`` from the holders' keys and keeps the stage's
opened holders when their total is the lowest so far (``StageBest``); ``auction_lower_prices``
lowers the prices of the tiles with a free slot (with more slots than cells, a tile that is not
full must sit at the lowest price): to 0 (``floored_prices``) or only as far as some listed cell
would take them (``tie_prices``, which frees no holder that lists them), compacts the tiles that
fell and writes partial sums of the new prices; ``auction_dual_bound`` searches just those tiles
(each cell's smallest distance plus new price, the distance summed as ``auction_lists`` sums a
list's costs; a loop as long as the count of fallen tiles, read on the device), which keeps every
outside bound valid, and writes partial sums of each cell's best ``cost + price``
(``dual_values``, the outside bound included): the certified lower bound is ``sum(values) - R *
sum(prices)``, combined once at the end of a solve.

**The completion** (``auction_complete``, after ``auction_complete_start`` and a search of each
cell's nearest tiles with a free slot) gives every cell still without a tile a free slot, with
no prices, in a few passes: each such cell offers itself to the first of its nearest tiles that
still has a free slot, with a key ``(2^31 - 1 - float32 bits of the distance) << 32 | (2^32 - 1 -
cell)`` (distances are >= 0, so the nearest offer has the largest key, equal distances the
lower cell), inserted into the pass's ``offers`` by the same cascade as a bid; each tile takes
its best offers, as many as it has free slots. A pass's offers are never changed once written,
so the free slots after any pass are a function of ``slots`` and the earlier passes' offers that
every program recomputes for the tiles it needs: a pass is one launch (which also settles the
pass before), with no counter to keep in step. The cells still left then take the free slots in
order of lightness (two launches, the second of which rebuilds ``slots``).

**Sums** that decide something (which stage is best, the bound) are float64 and in a fixed
order: each program adds its block by pairs (``_pairwise_sum``), one partial sum per program in
a ``(calls, programs)`` row, and the programs' partial sums are added the same way (or by one
torch sum at the end of a solve), so kernels and references agree bit for bit. Float32 values
summed in float64 are exact unless they span more than about 2^23 in magnitude; otherwise the
fixed order still makes every run give the same bits.

Every op has a pure-torch reference that gives the same results (the kernels and references do
the same float32 operations in the same order), with the same fixed shapes and no host reads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.dispatch import use_triton

__all__ = [
    "CompletionWork",
    "StageBest",
    "auction_complete",
    "auction_complete_reference",
    "auction_complete_start",
    "auction_complete_start_reference",
    "auction_dual_bound",
    "auction_dual_bound_reference",
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
    "cell_programs",
    "completion_work",
    "dual_values",
    "dual_values_reference",
    "floored_prices",
    "make_keys",
    "round_work",
    "stage_best",
    "tie_prices",
    "tile_programs",
]

# The largest bid: a cell with a single possible tile bids "infinitely", kept finite so that
# prices plus costs never overflow to inf - inf.
_BID_LIMIT = 1e30
_BID_MAX = tl.constexpr(_BID_LIMIT)
# Low 32 bits of a key: 2^32 - 1 - cell.
_CELL_BITS = tl.constexpr(0xFFFFFFFF)
# High 32 bits of an offer's key: 2^31 - 1 - the distance's float32 bits (nearest first).
_DISTANCE_BITS = tl.constexpr(0x7FFFFFFF)
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
# Fallen tiles the dual bound searches at a time, against each program's cells.
_FALLEN_BLOCK = 32
# Distances the references compute at a time (64 KiB of float32: blocks that stay in cache).
_REFERENCE_BLOCK_ELEMENTS = 1 << 14
# Tiles per program of the completion, and how many cells or tiles the lightness fill compares
# each with at a time (a (64 or 128) x 32 block: 16 or 32 registers a thread at 4 warps).
_COMPLETE_BLOCK_M = 128
_SCAN_BLOCK = 32
# The bias that keeps a full tile out of the completion's search (cost_topk takes finite ones).
_EXCLUDED_BIAS = 1e30
_EXCLUDED = tl.constexpr(_EXCLUDED_BIAS)


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


@triton.jit
def _key(bid, cells):
    """``make_keys`` in Triton: int64 keys of float32 ``bid`` held by int64 ``cells``."""
    return (bid.to(tl.int32, bitcast=True).to(tl.int64) << 32) | (_CELL_BITS - cells)


# --- a tile's slots: its best keys, descending (shared by the rounds, rebuilds, completion) -----


@triton.jit
def _insert_key(slot_row, key, active, capacity):
    """Insert each active int64 ``key`` into the ``capacity`` descending slots at ``slot_row`` (a
    pointer per key) by a cascade of atomic maxima: slot 0 keeps the larger of its key and the
    new one and passes the smaller on to slot 1, and so on. Whatever the order of the inserts,
    the slots end with the largest keys. Returns the key that fell off the end of each insert."""
    carry = key
    for slot in range(0, capacity):
        previous = tl.atomic_max(slot_row + slot, carry, mask=active)
        carry = tl.where(active, tl.minimum(previous, carry), carry)
    return carry


@triton.jit
def _holds_key(slot_row, key, active, count, capacity):
    """Whether each active ``key`` is among the first ``count`` (at most ``capacity``) slots at
    ``slot_row``."""
    found = tl.zeros(key.shape, dtype=tl.int1)
    for slot in range(0, capacity):
        within = active & (tl.zeros_like(key) + slot < count)  # a count per key or one for all
        found |= within & (tl.load(slot_row + slot, mask=within, other=_EMPTY_KEY) == key)
    return found


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


def cell_programs(n: int, device: torch.device) -> int:
    """How many programs the per-cell kernels run for ``n`` cells: the width of the partial sums
    ``auction_release`` and ``auction_dual_bound`` write."""
    return -(-n // _block_n(device))


def tile_programs(m: int) -> int:
    """How many programs the price lowering runs for ``m`` tiles: the width of the partial sums
    of the prices ``auction_lower_prices`` writes."""
    return -(-m // _LOWER_BLOCK_M)


# --- sums in a fixed order (shared by kernels and references) ------------------------------------


@triton.jit
def _pairwise_sum(values, LEVELS: tl.constexpr):
    """float64 sum of a ``(2^LEVELS,)`` float64 block by pairs: each level adds neighbours ``2i``
    and ``2i + 1``. Every addition is fixed, so ``_pairwise_sums_reference`` gives the same bits
    (a plain ``tl.sum`` leaves the order to the compiler)."""
    total = values
    for _ in tl.static_range(LEVELS):
        total = tl.sum(tl.reshape(total, (total.shape[0] // 2, 2)), axis=1)
    return tl.sum(total, axis=0)


def _pairwise_sums_reference(values: torch.Tensor, block: int) -> torch.Tensor:
    """float64 ``(cdiv(len, block),)``: the sums of consecutive blocks of ``values`` (any float
    dtype, ``(len,)``; ``block`` a power of 2), padded with zeros, as ``_pairwise_sum`` adds."""
    programs = -(-values.shape[0] // block)
    sums = values.new_zeros(programs * block, dtype=torch.float64)
    sums[: values.shape[0]] = values
    sums = sums.view(programs, block)
    while sums.shape[1] > 1:
        sums = sums.view(programs, -1, 2).sum(2)
    return sums[:, 0]


def _levels(block: int) -> int:
    """``log2(block)`` of a power of 2: the levels of ``_pairwise_sum``."""
    return block.bit_length() - 1


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


# --- squared distances in a fixed order (shared by kernels and references) -----------------------


@triton.jit
def _squared_distances(
    cells_ptr, tiles_ptr, rows, cell_mask, tiles, tile_mask, D, stride_xn, stride_xd, stride_yn,
    stride_yd, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):  # fmt: skip
    """float32 ``(BLOCK_N, BLOCK_T)``: the squared distances of the cells ``rows`` (``(BLOCK_N,)``,
    read where ``cell_mask``) to ``tiles`` (int64, ``(BLOCK_N, BLOCK_T)`` or ``(1, BLOCK_T)``, read
    where ``tile_mask``), summed over ``D`` in order; masked reads count as 0. Launch with
    ``enable_fp_fusion=False`` so that each product and sum is rounded as
    ``_squared_distances_reference`` rounds it."""
    distance = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    for d in range(0, D):
        x = tl.load(cells_ptr + rows * stride_xn + d * stride_xd, mask=cell_mask, other=0.0)
        y = tl.load(tiles_ptr + tiles * stride_yn + d * stride_yd, mask=tile_mask, other=0.0)
        difference = x[:, None] - y
        distance += difference * difference
    return distance


def _squared_distances_reference(cells: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """float32 ``(N, T)``: the squared distances of ``cells`` (float32 ``(N, D)``) to ``chosen``
    (float32 ``(N, T, D)`` or ``(1, T, D)``), summed over ``D`` in order as
    ``_squared_distances`` sums them. In blocks of rows that stay in cache (8160 cells x 1024
    tiles at D = 48: ~0.2 s on a 2-core CPU, 0.8-2.5 s unblocked)."""
    n, t = cells.shape[0], chosen.shape[1]
    distance = cells.new_zeros((n, t))
    by_dimension = chosen.permute(0, 2, 1).contiguous()  # (N or 1, D, T)
    step = max(1, _REFERENCE_BLOCK_ELEMENTS // max(1, t))
    difference = cells.new_empty((min(n, step), t))
    for start in range(0, n, step):
        block = distance[start : start + step]
        x = cells[start : start + step]
        y = by_dimension if by_dimension.shape[0] == 1 else by_dimension[start : start + step]
        squares = difference[: block.shape[0]]
        for d in range(cells.shape[1]):
            torch.sub(x[:, d, None], y[:, d], out=squares)
            block += squares.mul_(squares)
    return distance


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


class StageBest(NamedTuple):
    """The cheapest holders the stages of a solve opened with, kept on the device by
    ``auction_release`` (which notes each stage's holders and prices them) and
    ``auction_rebuild_slots`` (which keeps them when they are the cheapest so far). Made by
    ``stage_best``.

    ``opened_tiles``, ``opened_keys`` int64 ``(N,)``: the holders as the current stage opened.
    ``cost_sums`` float64 ``(stages, P)``: per program of the release (``cell_programs``), the sum
    of its holders' list costs as each stage opened (+inf when one of its cells held no tile).
    ``lowest_total`` float64 ``(stages,)``: the lowest stage total up to each stage, +inf before.
    ``tiles``, ``keys`` int64 ``(N,)``: the holders of the first stage with that total.
    """

    opened_tiles: torch.Tensor
    opened_keys: torch.Tensor
    cost_sums: torch.Tensor
    lowest_total: torch.Tensor
    tiles: torch.Tensor
    keys: torch.Tensor


def stage_best(assigned: torch.Tensor, held_key: torch.Tensor, stages: int) -> StageBest:
    """A ``StageBest`` for ``stages`` stages, starting from (copies of) the holders ``assigned``
    and ``held_key`` (int64 ``(N,)``), none of them priced yet."""
    n, device = assigned.shape[0], assigned.device
    return StageBest(
        opened_tiles=assigned.clone(),
        opened_keys=held_key.clone(),
        cost_sums=torch.empty(
            (stages, cell_programs(n, device)), dtype=torch.float64, device=device
        ),
        lowest_total=torch.full((stages,), torch.inf, dtype=torch.float64, device=device),
        tiles=assigned.clone(),
        keys=held_key.clone(),
    )


def _check_stage_best(best: StageBest, n: int, device: torch.device, stage: int) -> None:
    for name in ("opened_tiles", "opened_keys", "tiles", "keys"):
        x = getattr(best, name)
        check_tensor(x, name, dtypes=(torch.int64,), ndim=1)
        if x.shape != (n,) or not x.is_contiguous() or x.device != device:
            raise ValueError(f"{name} must be a contiguous ({n},) tensor on {device}")
    check_tensor(best.cost_sums, "cost_sums", dtypes=(torch.float64,), ndim=2)
    check_tensor(best.lowest_total, "lowest_total", dtypes=(torch.float64,), ndim=1)
    stages, programs = best.cost_sums.shape
    if programs != cell_programs(n, device) or best.lowest_total.shape != (stages,):
        raise ValueError(f"cost_sums and lowest_total must come from stage_best for {n} cells")
    if not (best.cost_sums.is_contiguous() and best.lowest_total.is_contiguous()):
        raise ValueError("cost_sums and lowest_total must be contiguous")
    if best.cost_sums.device != device or best.lowest_total.device != device:
        raise ValueError(f"cost_sums and lowest_total must be on {device}")
    if not 0 <= stage < stages:
        raise ValueError(f"stage {stage} is outside the {stages} stages of best")


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


@triton.jit(do_not_specialize=["N", "capacity", "stage", "P"])
def _rebuild_kernel(
    assigned_ptr, held_key_ptr, slots_ptr, opened_tiles_ptr, opened_keys_ptr, cost_sums_ptr,
    lowest_total_ptr, best_tiles_ptr, best_keys_ptr, N, capacity, stage, P,
    BLOCK_N: tl.constexpr, KEEP_BEST: tl.constexpr, BLOCK_P: tl.constexpr,
    LEVELS_P: tl.constexpr,
):  # fmt: skip
    """Inserts every holder's key into its tile's slots (cleared to -1 before the launch) by the
    atomic cascade of ``_bid_kernel``. ``assigned``, ``held_key`` int64 ``(N,)``; ``slots`` int64
    ``(M, capacity)`` contiguous. ``KEEP_BEST``: also sums the ``P`` partial sums of row
    ``stage`` of ``cost_sums`` (``BLOCK_P = 2^LEVELS_P >= P``, every program the same sum) and,
    when below ``lowest_total[stage - 1]``, copies its rows of the opened holders into the best
    ones; program 0 writes ``lowest_total[stage]``. Grid: ``(cdiv(N, BLOCK_N),)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tile = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    holding = tile >= 0
    key = tl.load(held_key_ptr + rows, mask=holding, other=_EMPTY_KEY)
    _insert_key(slots_ptr + tile * capacity, key, holding, capacity)
    if KEEP_BEST:
        programs = tl.arange(0, BLOCK_P)
        sums = tl.load(cost_sums_ptr + stage * P + programs, mask=programs < P, other=0.0)
        total = _pairwise_sum(sums, LEVELS_P)
        # Every lane reads the entry before `stage` (a broadcast load), and row 0's lane writes
        # entry `stage`: no program reads what another writes.
        before = stage - 1 + tl.zeros_like(rows)
        earlier = tl.load(lowest_total_ptr + before, mask=before >= 0, other=float("inf"))
        better = row_mask & (total < earlier)
        opened_tile = tl.load(opened_tiles_ptr + rows, mask=better, other=-1)
        opened_key = tl.load(opened_keys_ptr + rows, mask=better, other=-1)
        tl.store(best_tiles_ptr + rows, opened_tile, mask=better)
        tl.store(best_keys_ptr + rows, opened_key, mask=better)
        tl.store(lowest_total_ptr + before + 1, tl.minimum(earlier, total), mask=rows == 0)


def auction_rebuild_slots(
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    best: StageBest | None = None,
    stage: int = 0,
) -> None:
    """Rewrite ``slots`` in place from the holders (``assigned``, ``held_key``): each tile's keys,
    descending, -1 where free. The holders of a tile must fit in its slots.

    With ``best``, after ``auction_release`` of stage ``stage``: the stage's total is the sum of
    ``best.cost_sums[stage]`` (pairwise, in a fixed order) and, when it is below every earlier
    stage's (the first of equal totals wins), the stage's opened holders become ``best.tiles``
    and ``best.keys``; ``best.lowest_total[stage]`` gets the lowest total so far."""
    n = assigned.shape[0]
    device = assigned.device
    _check_state(n, device, assigned=assigned, held_key=held_key, slots=slots)
    if best is not None:
        _check_stage_best(best, n, device, stage)
    if not use_triton(assigned):
        auction_rebuild_slots_reference(assigned, held_key, slots, best, stage)
        return
    slots.fill_(-1)
    if n == 0:
        return
    block_n = _block_n(device)
    programs = 1 if best is None else best.cost_sums.shape[1]
    block_p = triton.next_power_of_2(programs)
    placeholder = assigned  # read by no program when best is None
    _rebuild_kernel[(triton.cdiv(n, block_n),)](
        assigned, held_key, slots,
        *((placeholder,) * 6 if best is None else (
            best.opened_tiles, best.opened_keys, best.cost_sums, best.lowest_total, best.tiles,
            best.keys,
        )),
        n, slots.shape[1], stage, programs,
        BLOCK_N=block_n, KEEP_BEST=best is not None, BLOCK_P=block_p, LEVELS_P=_levels(block_p),
    )  # fmt: skip


def auction_rebuild_slots_reference(
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    best: StageBest | None = None,
    stage: int = 0,
) -> None:
    """Pure-torch ``auction_rebuild_slots``."""
    m, capacity = slots.shape
    tiles = torch.where(assigned >= 0, assigned, m)
    slots.copy_(_largest_keys_per_tile(tiles, held_key, m, capacity)[0])
    if best is None:
        return
    sums = best.cost_sums[stage]
    total = _pairwise_sums_reference(sums, 1 << (sums.shape[0] - 1).bit_length())[0]
    earlier = best.lowest_total[stage - 1] if stage else torch.full_like(total, torch.inf)
    better = total < earlier
    best.tiles.copy_(torch.where(better, best.opened_tiles, best.tiles))
    best.keys.copy_(torch.where(better, best.opened_keys, best.keys))
    best.lowest_total[stage] = torch.minimum(earlier, total)


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


# --- completing an assignment ---------------------------------------------------------------------


class CompletionWork(NamedTuple):
    """Scratch of a completion, made by ``completion_work`` (``P`` passes, ``N`` cells, ``M``
    tiles, capacity ``R``, ``K`` candidates), readied by ``auction_complete_start``.

    The search, for the caller to run between the two (``kernels.cost_topk`` with ``bias``,
    ``rows=waiting`` and ``out=(distance, nearest)``): ``waiting`` bool ``(N,)``, the cells
    without a tile; ``bias`` float32 ``(M,)``, 0 for a tile with a free slot and ``1e30`` for a
    full one; ``distance`` float32 and ``nearest`` int64 ``(N, K)``, each waiting cell's nearest
    tiles with a free slot (other rows are never read). The passes: ``offers`` int64 ``(P, M,
    R)``, each pass's best offers per tile, descending, -1 where none; ``proposals`` int64 ``(3,
    N)``, per cell the tile it offered itself to in the last pass (-1 none), its offer's key,
    and its place among the free slots of the lightness fill. The fill: ``slot_tiles`` int64
    ``(M * R,)``, the tile of each free slot in order of lightness; ``free`` int32 ``(M,)``, each
    tile's free slots after the passes; ``totals`` int32 ``(2,)``, the cells still without a tile
    after the passes and the free slots.
    """

    waiting: torch.Tensor
    bias: torch.Tensor
    distance: torch.Tensor
    nearest: torch.Tensor
    offers: torch.Tensor
    proposals: torch.Tensor
    slot_tiles: torch.Tensor
    free: torch.Tensor
    totals: torch.Tensor


def completion_work(
    n: int, m: int, capacity: int, passes: int, candidates: int, device: torch.device
) -> CompletionWork:
    """Uninitialised scratch for a completion of ``n`` cells over ``m`` tiles of ``capacity``
    slots in ``passes >= 1`` passes over ``1 <= candidates <= m`` nearest tiles."""
    return CompletionWork(
        waiting=torch.empty(n, dtype=torch.bool, device=device),
        bias=torch.empty(m, dtype=torch.float32, device=device),
        distance=torch.empty((n, candidates), dtype=torch.float32, device=device),
        nearest=torch.empty((n, candidates), dtype=torch.int64, device=device),
        offers=torch.empty((passes, m, capacity), dtype=torch.int64, device=device),
        proposals=torch.empty((3, n), dtype=torch.int64, device=device),
        slot_tiles=torch.empty(m * capacity, dtype=torch.int64, device=device),
        free=torch.empty(m, dtype=torch.int32, device=device),
        totals=torch.empty(2, dtype=torch.int32, device=device),
    )


def _nearest_first_keys(distance: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """int64 keys of offers at float32 ``distance`` (>= 0) from int64 ``cells``: the larger the
    key, the nearer the offer, equal distances to the lower cell index (``_nearest_first_key``).
    """
    bits = distance.to(torch.float32).view(torch.int32).to(torch.int64)
    return ((0x7FFFFFFF - bits) << 32) | (0xFFFFFFFF - cells)


@triton.jit
def _nearest_first_key(distance, cells):
    """``_nearest_first_keys`` in Triton: a distance's bits order like the distance (>= 0)."""
    bits = distance.to(tl.int32, bitcast=True).to(tl.int64)
    return ((_DISTANCE_BITS - bits) << 32) | (_CELL_BITS - cells)


@triton.jit
def _free_slots(slots_ptr, offers_ptr, tiles, passes, M, capacity):
    """int32 free slots of ``tiles`` (int64, any shape, -1 for none: 0) after ``passes`` passes:
    those free in ``slots`` (int64 ``(M, capacity)``, -1 free), less, each pass, the offers the
    tile took (all it got, up to its free slots). Read only, so every program of a launch sees
    the same counts. The loads read tile 0 for none, unmasked: masks kept over the loops spill
    predicate registers on sm_90."""
    readable = tl.maximum(tiles, 0)
    free = tl.zeros(tiles.shape, dtype=tl.int32)
    for slot in range(0, capacity):
        free += (tl.load(slots_ptr + readable * capacity + slot) < 0).to(tl.int32)
    for step in range(0, passes):
        offered = tl.zeros(tiles.shape, dtype=tl.int32)
        for slot in range(0, capacity):
            offer = tl.load(offers_ptr + (step * M + readable) * capacity + slot)
            offered += (offer >= 0).to(tl.int32)
        free -= tl.minimum(free, offered)
    return tl.where(tiles >= 0, free, 0)


@triton.jit(do_not_specialize=["N", "M", "capacity", "passes"])
def _complete_start_kernel(
    assigned_ptr, slots_ptr, waiting_ptr, bias_ptr, offers_ptr, proposals_ptr, totals_ptr, N, M,
    capacity, passes, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """``auction_complete_start``: the first ``cdiv(N, BLOCK_N)`` programs flag the cells
    without a tile and clear their proposals, the next ``cdiv(M, BLOCK_M)`` write the tiles'
    bias and clear their offers; the first of those zeroes ``totals``. Pointers as
    ``CompletionWork``, plus ``assigned`` int64 ``(N,)`` and ``slots`` int64 ``(M, capacity)``."""
    program = tl.program_id(0)
    cell_programs = tl.cdiv(N, BLOCK_N)
    if program < cell_programs:
        rows = program.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < N
        assigned = tl.load(assigned_ptr + rows, mask=row_mask, other=0)
        tl.store(waiting_ptr + rows, assigned < 0, mask=row_mask)
        tl.store(proposals_ptr + rows, tl.full((BLOCK_N,), -1, tl.int64), mask=row_mask)
    else:
        tile_program = program - cell_programs
        tiles = tile_program.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask = tiles < M
        free = _free_slots(slots_ptr, offers_ptr, tl.where(mask, tiles, -1), 0, M, capacity)
        tl.store(bias_ptr + tiles, tl.where(free > 0, 0.0, _EXCLUDED), mask=mask)
        for entry in range(0, passes * capacity):
            step, slot = entry // capacity, entry % capacity
            tl.store(offers_ptr + (step * M + tiles) * capacity + slot,
                     tl.full((BLOCK_M,), -1, tl.int64), mask=mask)  # fmt: skip
        both = tl.arange(0, 2)  # the first tile program zeroes both totals
        tl.store(totals_ptr + both, tl.zeros((2,), tl.int32), mask=both + 2 * tile_program < 2)


@triton.jit
def _take_offers(
    price_ptr, assigned_ptr, held_key_ptr, slots_ptr, offers_ptr, proposals_ptr, rows, row_mask,
    pass_index, N, M, capacity,
):  # fmt: skip
    """The cells of ``rows`` whose offer of pass ``pass_index - 1`` its tile took (the tile's
    best offers, as many as it had free slots) take the tile, at a key of its price. Returns
    the tile each cell holds after it (-1 none)."""
    assigned = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    tile = tl.load(proposals_ptr + rows, mask=row_mask, other=-1)
    offered = tile >= 0
    key = tl.load(proposals_ptr + N + rows, mask=offered, other=_EMPTY_KEY)
    free = _free_slots(slots_ptr, offers_ptr, tile, pass_index - 1, M, capacity)
    slot_row = offers_ptr + ((pass_index - 1) * M + tile) * capacity
    taken = _holds_key(slot_row, key, offered, free, capacity)
    price = tl.load(price_ptr + tile, mask=taken, other=0.0)
    tl.store(assigned_ptr + rows, tile, mask=taken)
    tl.store(held_key_ptr + rows, _key(price, rows), mask=taken)
    return tl.where(taken, tile, assigned)


@triton.jit(do_not_specialize=["pass_index", "N", "M", "K", "capacity"])
def _complete_pass_kernel(
    distance_ptr, nearest_ptr, price_ptr, assigned_ptr, held_key_ptr, slots_ptr, offers_ptr,
    proposals_ptr, free_ptr, totals_ptr, pass_index, N, M, K, capacity, stride_dn, stride_nn,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr, PROPOSE: tl.constexpr,
):  # fmt: skip
    """Pass ``pass_index`` of ``auction_complete``: each cell first takes its tile if its offer of
    the pass before was taken; then (``PROPOSE``) each cell still without a tile offers itself
    to the first of its ``K`` nearest tiles (``nearest`` int64, ``distance`` float32 ``(N, K)``,
    row strides ``stride_nn``, ``stride_dn``) that has a free slot, inserting its key into the
    pass's offers. Without ``PROPOSE`` (after the last pass): the cells still without a tile
    are counted into ``totals[0]``, and ``cdiv(M, BLOCK_M)`` more programs write each tile's
    free slots into ``free`` and their sum into ``totals[1]``. Grid: ``cdiv(N, BLOCK_N)``
    programs (plus the tiles' without ``PROPOSE``)."""
    program = tl.program_id(0)
    cell_programs = tl.cdiv(N, BLOCK_N)
    if program < cell_programs:
        rows = program.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < N
        assigned = _take_offers(
            price_ptr, assigned_ptr, held_key_ptr, slots_ptr, offers_ptr, proposals_ptr, rows,
            row_mask, pass_index, N, M, capacity,
        )  # fmt: skip
        waiting = row_mask & (assigned < 0)
        if PROPOSE:
            proposal = tl.full((BLOCK_N,), -1, tl.int64)
            # A program whose cells all hold a tile (every program, in a steady frame) skips the
            # free slots of its K candidates over the earlier passes.
            if tl.max(waiting.to(tl.int32), axis=0) > 0:
                entries = tl.arange(0, BLOCK_K)
                listed = waiting[:, None] & (entries < K)[None, :]
                tiles = tl.load(nearest_ptr + rows[:, None] * stride_nn + entries[None, :],
                                mask=listed, other=-1)  # fmt: skip
                free = _free_slots(slots_ptr, offers_ptr, tiles, pass_index, M, capacity)
                first = tl.min(tl.where(free > 0, entries[None, :], BLOCK_K), axis=1)
                offering = waiting & (first < BLOCK_K)
                tile = tl.max(tl.where(entries[None, :] == first[:, None], tiles, -1), axis=1)
                distance = tl.load(distance_ptr + rows * stride_dn + first, mask=offering,
                                   other=0.0)  # fmt: skip
                key = _nearest_first_key(distance, rows)
                slot_row = offers_ptr + (pass_index * M + tile) * capacity
                _insert_key(slot_row, key, offering, capacity)
                tl.store(proposals_ptr + N + rows, key, mask=offering)
                proposal = tl.where(offering, tile, -1)
            tl.store(proposals_ptr + rows, proposal, mask=row_mask)
        else:
            tl.atomic_add(totals_ptr, tl.sum(waiting.to(tl.int32), axis=0))
    elif not PROPOSE:
        tiles = (program - cell_programs).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask = tiles < M
        free = _free_slots(
            slots_ptr, offers_ptr, tl.where(mask, tiles, -1), pass_index, M, capacity
        )
        tl.store(free_ptr + tiles, free, mask=mask)
        tl.atomic_add(totals_ptr + 1, tl.sum(tl.where(mask, free, 0), axis=0))


@triton.jit
def _weight_before(lightness, index, other_lightness, other_index, other_weight):
    """int32 ``(B,)``: for each of ``B`` entries (float32 ``lightness``, int64 ``index``), the sum
    of the int32 ``other_weight`` of the ``S`` others that come before it in order of lightness,
    then index (``(S,)`` each)."""
    lighter = other_lightness[None, :] < lightness[:, None]
    tied = (other_lightness[None, :] == lightness[:, None]) & (
        other_index[None, :] < index[:, None]
    )
    return tl.sum(tl.where(lighter | tied, other_weight[None, :], 0), axis=1)


@triton.jit(do_not_specialize=["N", "M", "capacity"])
def _fill_order_kernel(
    cells_ptr, tiles_ptr, assigned_ptr, slots_ptr, proposals_ptr, slot_tiles_ptr, free_ptr,
    totals_ptr, N, M, capacity, stride_xn, stride_yn,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SCAN: tl.constexpr,
):  # fmt: skip
    """The lightness fill's order, for the ``U = totals[0]`` cells still without a tile and the
    ``F = totals[1]`` free slots: each such cell's place ``floor(q * F / U)`` for its rank ``q``
    among them by lightness (``cells[:, 0]``, then index), into ``proposals[2]``; each free slot's
    tile at its rank among the free slots by the lightness of their tile (``tiles[:, 0]``, then
    tile, then slot), into ``slot_tiles``. The tiles' programs also clear ``slots`` for the
    rebuild. Only blocks with such cells or slots compare them with every other (``BLOCK_SCAN``
    at a time). Grid: ``cdiv(N, BLOCK_N) + cdiv(M, BLOCK_M)``."""
    program = tl.program_id(0)
    cell_programs = tl.cdiv(N, BLOCK_N)
    waiting_total = tl.load(totals_ptr)
    free_total = tl.load(totals_ptr + 1)
    if program < cell_programs:
        rows = program.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < N
        waiting = row_mask & (tl.load(assigned_ptr + rows, mask=row_mask, other=0) < 0)
        if tl.max(waiting.to(tl.int32), axis=0) > 0:
            lightness = tl.load(cells_ptr + rows * stride_xn, mask=waiting, other=0.0)
            rank = tl.zeros((BLOCK_N,), dtype=tl.int32)
            for start in range(0, N, BLOCK_SCAN):
                others = start + tl.arange(0, BLOCK_SCAN).to(tl.int64)
                inside = others < N
                other_waiting = inside & (tl.load(assigned_ptr + others, mask=inside, other=0) < 0)
                other_lightness = tl.load(cells_ptr + others * stride_xn, mask=other_waiting,
                                          other=0.0)  # fmt: skip
                rank += _weight_before(
                    lightness, rows, other_lightness, others, other_waiting.to(tl.int32)
                )
            place = rank.to(tl.int64) * free_total // tl.maximum(waiting_total, 1)
            tl.store(proposals_ptr + 2 * N + rows, place, mask=waiting)
    else:
        tiles = (program - cell_programs).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask = tiles < M
        for slot in range(0, capacity):
            tl.store(slots_ptr + tiles * capacity + slot, tl.full((BLOCK_M,), -1, tl.int64),
                     mask=mask)  # fmt: skip
        free = tl.load(free_ptr + tiles, mask=mask, other=0)
        having = mask & (free > 0)
        if (waiting_total > 0) & (tl.max(having.to(tl.int32), axis=0) > 0):
            lightness = tl.load(tiles_ptr + tiles * stride_yn, mask=having, other=0.0)
            before = tl.zeros((BLOCK_M,), dtype=tl.int32)
            for start in range(0, M, BLOCK_SCAN):
                others = start + tl.arange(0, BLOCK_SCAN).to(tl.int64)
                inside = others < M
                other_free = tl.load(free_ptr + others, mask=inside, other=0)
                other_lightness = tl.load(tiles_ptr + others * stride_yn,
                                          mask=inside & (other_free > 0), other=0.0)  # fmt: skip
                before += _weight_before(lightness, tiles, other_lightness, others, other_free)
            for slot in range(0, capacity):
                tl.store(slot_tiles_ptr + before + slot, tiles, mask=having & (slot < free))


@triton.jit(do_not_specialize=["N", "capacity"])
def _fill_kernel(
    price_ptr, assigned_ptr, held_key_ptr, slots_ptr, proposals_ptr, slot_tiles_ptr,
    totals_ptr, N, capacity, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """After ``_fill_order_kernel``: each cell still without a tile takes the tile of the free
    slot at its place, at a key of its price; then every holder's key goes into the cleared
    ``slots`` (the rebuild of ``auction_rebuild_slots``). Grid: ``cdiv(N, BLOCK_N)``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    tile = tl.load(assigned_ptr + rows, mask=row_mask, other=-1)
    key = tl.load(held_key_ptr + rows, mask=row_mask, other=_EMPTY_KEY)
    place = tl.load(proposals_ptr + 2 * N + rows, mask=row_mask & (tile < 0), other=0)
    # A place is below the free slots' count when the slots hold every cell (N <= M * R).
    filled = row_mask & (tile < 0) & (place < tl.load(totals_ptr + 1))
    tile = tl.where(filled, tl.load(slot_tiles_ptr + place, mask=filled, other=-1), tile)
    key = tl.where(filled, _key(tl.load(price_ptr + tile, mask=filled, other=0.0), rows), key)
    tl.store(assigned_ptr + rows, tile, mask=filled)
    tl.store(held_key_ptr + rows, key, mask=filled)
    _insert_key(slots_ptr + tile * capacity, key, tile >= 0, capacity)


def _check_work(work: CompletionWork, n: int, m: int, capacity: int, device: torch.device):
    """One line if ``work`` is not ``completion_work(n, m, capacity, ...)`` on ``device``."""
    passes = work.offers.shape[0] if work.offers.ndim == 3 else 0
    k = work.nearest.shape[1] if work.nearest.ndim == 2 else 0
    expected = {
        "waiting": ((n,), torch.bool),
        "bias": ((m,), torch.float32),
        "distance": ((n, k), torch.float32),
        "nearest": ((n, k), torch.int64),
        "offers": ((passes, m, capacity), torch.int64),
        "proposals": ((3, n), torch.int64),
        "slot_tiles": ((m * capacity,), torch.int64),
        "free": ((m,), torch.int32),
        "totals": ((2,), torch.int32),
    }
    for name, x in zip(work._fields, work, strict=True):
        shape, dtype = expected[name]
        fits = x.shape == shape and x.dtype == dtype and x.device == device
        if not (fits and x.is_contiguous() and passes >= 1 and 1 <= k <= m):
            raise ValueError(
                f"work.{name} must come from completion_work({n}, {m}, {capacity}, ...) on {device}"
            )


def _check_holders(
    assigned: torch.Tensor, slots: torch.Tensor, work: CompletionWork
) -> tuple[int, int, int]:
    """``(N, M, R)`` of valid holders and their completion's ``work``."""
    check_tensor(slots, "slots", dtypes=(torch.int64,), ndim=2)
    check_tensor(assigned, "assigned", dtypes=(torch.int64,), ndim=1)
    (n,), (m, capacity) = assigned.shape, slots.shape
    if not slots.is_contiguous() or slots.device != assigned.device or n > m * capacity:
        raise ValueError(f"slots must be contiguous (M, R) on {assigned.device} with N <= M * R")
    _check_work(work, n, m, capacity, assigned.device)
    return n, m, capacity


def auction_complete_start(
    assigned: torch.Tensor, slots: torch.Tensor, work: CompletionWork
) -> None:
    """Ready ``work`` for a completion of the holders ``assigned`` (int64 ``(N,)``, -1 none) of
    ``slots`` (int64 ``(M, R)``, -1 free): ``work.waiting`` flags the cells without a tile,
    ``work.bias`` keeps the full tiles out of their search (see ``CompletionWork``), the rest is
    cleared. One launch."""
    n, m, capacity = _check_holders(assigned, slots, work)
    if not use_triton(slots):
        auction_complete_start_reference(assigned, slots, work.waiting, work.bias)
        return
    block_n = _block_n(slots.device)
    grid = (triton.cdiv(n, block_n) + triton.cdiv(m, _COMPLETE_BLOCK_M),)
    _complete_start_kernel[grid](
        assigned, slots, work.waiting, work.bias, work.offers, work.proposals, work.totals, n, m,
        capacity, work.offers.shape[0], BLOCK_N=block_n, BLOCK_M=_COMPLETE_BLOCK_M,
    )  # fmt: skip


def auction_complete_start_reference(
    assigned: torch.Tensor, slots: torch.Tensor, waiting: torch.Tensor, bias: torch.Tensor
) -> None:
    """Pure-torch ``auction_complete_start``: the search's rows and bias (the reference needs
    no other scratch)."""
    waiting.copy_(assigned < 0)
    bias.copy_(torch.where((slots < 0).any(1), 0.0, _EXCLUDED_BIAS))


def auction_complete(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    work: CompletionWork,
    fill: bool = True,
) -> None:
    """Give every cell without a tile a free slot, in place, and rebuild ``slots``.

    After ``auction_complete_start`` and the search of ``CompletionWork``: ``P`` passes (the
    ``work.offers``) in each of which every cell without a tile offers itself to the first of its
    ``K`` nearest tiles (``work.nearest``) that still has a free slot, and each tile takes the
    nearest of its offers (``work.distance``; equal distances: the lower cell index first), as
    many as it has free slots. Then the cells still without a tile and the free slots are both
    put in order of lightness (the first descriptor entry of float32 ``cells (N, D)`` and
    ``tiles (M, D)``; ties by index) and the ``q``-th of ``U`` cells takes free slot ``floor(q *
    F / U)`` of ``F``. A cell that takes a tile holds it at a key of its ``price`` float32 ``(M,)``
    (``make_keys``); ``slots`` (int64 ``(M, R)``) are rebuilt from every holder (``assigned``,
    ``held_key`` int64 ``(N,)``), which must be those of ``slots``, with ``N <= M * R``.
    Without ``fill`` the cells left after the passes stay without a tile (for another search and
    completion).

    ``P + 3`` launches (``P + 3`` too without the fill: the slots' rebuild takes its place),
    fixed shapes, no host reads."""
    n, m, capacity = _check_holders(assigned, slots, work)
    check_tensor(cells, "cells", dtypes=(torch.float32,), ndim=2)
    check_tensor(tiles, "tiles", dtypes=(torch.float32,), ndim=2)
    _check_state(n, assigned.device, assigned=assigned, held_key=held_key, price=price)
    check_same_device(assigned=assigned, cells=cells, tiles=tiles)
    if cells.shape[0] != n or tiles.shape[0] != m or price.shape != (m,):
        raise ValueError(f"cells, tiles and price must be ({n}, D), ({m}, D) and ({m},)")
    if n == 0:
        return
    passes = work.offers.shape[0]
    if not use_triton(cells):
        auction_complete_reference(
            cells, tiles, work.distance, work.nearest, price, assigned, held_key, slots, passes,
            fill,
        )  # fmt: skip
        return
    block_n = _block_n(cells.device)
    cell_grid = triton.cdiv(n, block_n)
    tile_grid = triton.cdiv(m, _COMPLETE_BLOCK_M)
    k = work.nearest.shape[1]
    for pass_index in range(passes + 1):
        propose = pass_index < passes
        _complete_pass_kernel[(cell_grid + (0 if propose else tile_grid),)](
            work.distance, work.nearest, price, assigned, held_key, slots, work.offers,
            work.proposals, work.free, work.totals, pass_index, n, m, k, capacity, k, k,
            BLOCK_N=block_n, BLOCK_K=triton.next_power_of_2(k), BLOCK_M=_COMPLETE_BLOCK_M,
            PROPOSE=propose,
        )  # fmt: skip
    if not fill:
        auction_rebuild_slots(assigned, held_key, slots)
        return
    _fill_order_kernel[(cell_grid + tile_grid,)](
        cells, tiles, assigned, slots, work.proposals, work.slot_tiles, work.free, work.totals,
        n, m, capacity, cells.stride(0), tiles.stride(0),
        BLOCK_N=block_n, BLOCK_M=_COMPLETE_BLOCK_M, BLOCK_SCAN=_SCAN_BLOCK,
    )  # fmt: skip
    _fill_kernel[(cell_grid,)](
        price, assigned, held_key, slots, work.proposals, work.slot_tiles, work.totals, n,
        capacity, BLOCK_N=block_n,
    )  # fmt: skip


def auction_complete_reference(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    distance: torch.Tensor,
    nearest: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    slots: torch.Tensor,
    passes: int,
    fill: bool = True,
) -> None:
    """Pure-torch ``auction_complete`` in ``passes`` passes, with the search's ``distance`` and
    ``nearest`` (``(N, K)``; the rows of the cells that hold a tile are never read): each pass's
    offers go to their tiles by one sort of all keys (``_largest_keys_per_tile``, as in
    ``auction_round_reference``)."""
    n, (m, capacity) = cells.shape[0], slots.shape
    every_cell = torch.arange(n, device=cells.device)
    every_slot = torch.arange(capacity, device=cells.device)
    nearest = torch.where((assigned < 0)[:, None], nearest, 0)
    free = (slots < 0).sum(1)
    for _ in range(passes):
        open_ = free[nearest] > 0
        first = open_.to(torch.int8).argmax(1, keepdim=True)
        offering = (assigned < 0) & open_.any(1)
        tile = nearest.gather(1, first).squeeze(1)
        key = _nearest_first_keys(distance.gather(1, first).squeeze(1), every_cell)
        offers, _ = _largest_keys_per_tile(torch.where(offering, tile, m), key, m, capacity)
        within = every_slot < free[tile, None]
        taken = offering & ((offers[tile] == key[:, None]) & within).any(1)
        assigned.copy_(torch.where(taken, tile, assigned))
        held_key.copy_(torch.where(taken, make_keys(price[tile], every_cell), held_key))
        free = free - torch.minimum(free, (offers >= 0).sum(1))
    if fill:
        _fill_by_lightness_reference(cells, tiles, price, assigned, held_key, free, capacity)
    auction_rebuild_slots_reference(assigned, held_key, slots)


def _fill_by_lightness_reference(
    cells: torch.Tensor,
    tiles: torch.Tensor,
    price: torch.Tensor,
    assigned: torch.Tensor,
    held_key: torch.Tensor,
    free: torch.Tensor,
    capacity: int,
) -> None:
    """The lightness fill of ``auction_complete``, with ``free`` int64 ``(M,)`` free slots per
    tile: one stable sort of the free slots by their tile's lightness, one of the cells still
    without a tile by theirs."""
    n, m = cells.shape[0], tiles.shape[0]
    device = cells.device
    unassigned = assigned < 0
    is_free = torch.arange(capacity, device=device)[None, :] < free[:, None]  # (M, R)
    slot_key = torch.where(is_free, tiles[:, :1], torch.inf).reshape(-1)
    slot_order = torch.argsort(slot_key, stable=True)
    cell_key = torch.where(unassigned, cells[:, 0], torch.inf)
    order = torch.argsort(cell_key, stable=True)
    waiting = unassigned.sum()
    rank = torch.arange(n, device=device)
    place = (rank * is_free.sum()).div(waiting.clamp_min(1), rounding_mode="floor")
    tile = slot_order[place.clamp_max(m * capacity - 1)] // capacity
    take = rank < waiting
    assigned[order] = torch.where(take, tile, assigned[order])
    held_key[order] = torch.where(take, make_keys(price[tile], order), held_key[order])
