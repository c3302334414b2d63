"""``auction_rebuild_slots``: each tile's slots rebuilt from its holders, and the cheapest
holders a solve's stages opened with (``StageBest``; see ``kernels.auction``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels._launch import check_tensor
from kernels._triton import tl, triton
from kernels.auction._shared import (
    _EMPTY_KEY,
    _block_n,
    _check_state,
    _insert_key,
    _largest_keys_per_tile,
    _levels,
    _pairwise_sum,
    _pairwise_sums_reference,
    cell_programs,
)
from kernels.dispatch import use_triton

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
