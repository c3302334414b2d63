"""``auction_complete``: a free slot for every cell still without a tile (see
``kernels.auction``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels._launch import check_same_device, check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _CELL_BITS,
    _EMPTY_KEY,
    _block_n,
    _check_state,
    _holds_key,
    _insert_key,
    _key,
    _largest_keys_per_tile,
    make_keys,
)
from kernels.auction.slots import auction_rebuild_slots, auction_rebuild_slots_reference
from kernels.dispatch import use_triton

# High 32 bits of an offer's key: 2^31 - 1 - the distance's float32 bits (nearest first).
_DISTANCE_BITS = tl.constexpr(0x7FFFFFFF)
# Tiles per program of the completion, and how many cells or tiles the lightness fill compares
# each with at a time (a (64 or 128) x 32 block: 16 or 32 registers a thread at 4 warps).
_COMPLETE_BLOCK_M = 128
_SCAN_BLOCK = 32
# The bias that keeps a full tile out of the completion's search (cost_topk takes finite ones).
_EXCLUDED_BIAS = 1e30
_EXCLUDED = tl.constexpr(_EXCLUDED_BIAS)


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
