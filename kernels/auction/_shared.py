"""What the auction's ops share: keys, the choice hash, a tile's slots, argument checks,
program counts, sums in a fixed order, list values and distances (kernels and references)."""

from __future__ import annotations

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton

# Low 32 bits of a key: 2^32 - 1 - cell.
_CELL_BITS = tl.constexpr(0xFFFFFFFF)
_EMPTY_KEY = tl.constexpr(-1)
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
# Distances the references compute at a time (64 KiB of float32: blocks that stay in cache).
_REFERENCE_BLOCK_ELEMENTS = 1 << 14


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
