"""Property tests for ``kernels/auction/``: the auction's release, slot rebuild, rounds, dual
values and completion, the Triton kernels (in the interpreter on CPU, compiled on CUDA) against
the pure-torch references, and the invariants a solver relies on.

States are drawn consistent, as a solve leaves them: every holder's tile is in its list, no tile
has more holders than its capacity, the slots hold exactly the holders' keys. Costs come from a
few values, so ties are everywhere (equal values, equal bids: resolved by the key's cell index and
the choice hash, which kernel and reference share). Kernel and reference do the same float32
operations, so they must agree exactly, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernels.auction import (
    auction_complete,
    auction_complete_reference,
    auction_complete_start,
    auction_complete_start_reference,
    auction_dual_bound,
    auction_dual_bound_reference,
    auction_lists,
    auction_lists_reference,
    auction_lower_prices,
    auction_lower_prices_reference,
    auction_rebuild_slots,
    auction_rebuild_slots_reference,
    auction_release,
    auction_release_reference,
    auction_round,
    auction_round_reference,
    bid_of_key,
    cell_programs,
    completion_work,
    dual_values,
    dual_values_reference,
    floored_prices,
    make_keys,
    round_work,
    stage_best,
    tie_prices,
    tile_programs,
)
from kernels.auction.dual import _FALLEN_BLOCK
from kernels.cost import cost_topk_reference
from kernels.dispatch import use_triton
from tests.kernels.compare import shares_device_fixture, sizes_around
from tests.syncs import count_launches, launches

ROUNDS = 3


@st.composite
def auction_states(draw: st.DrawFn) -> dict:
    """A consistent auction state on the CPU (see the module docstring)."""
    n = draw(st.sampled_from([1, 2, 7, 13, 40, 65]))
    capacity = draw(st.integers(1, 3))
    m = draw(st.integers(math.ceil(n / capacity), max(math.ceil(n / capacity), 40)))
    length = draw(st.integers(1, min(m, 8)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    candidates = torch.stack([torch.randperm(m, generator=generator)[:length] for _ in range(n)])
    empty = torch.rand(n, length, generator=generator) < draw(st.sampled_from([0.0, 0.2]))
    candidates = torch.where(empty, -1, candidates)
    # A few cost levels: ties in values and bids.
    cost = torch.randint(0, 4, (n, length), generator=generator).float() * 0.25 + 0.5
    outside = cost.min(1).values + torch.randint(0, 3, (n,), generator=generator).float() * 0.25
    if length == m or draw(st.booleans()):
        outside = torch.where(torch.rand(n, generator=generator) < 0.3, math.inf, outside)
    price = torch.randint(0, 3, (m,), generator=generator).float() * 0.25
    # Holders: about half the cells, each on a random listed tile with room left.
    assigned = torch.full((n,), -1, dtype=torch.int64)
    room = torch.full((m,), capacity)
    for cell in torch.randperm(n, generator=generator).tolist():
        listed = [t for t in candidates[cell].tolist() if t >= 0 and room[t] > 0]
        if listed and torch.rand(1, generator=generator).item() < 0.5:
            tile = listed[int(torch.randint(len(listed), (1,), generator=generator))]
            assigned[cell], room[tile] = tile, room[tile] - 1
    bids = price[assigned.clamp_min(0)] + torch.randint(0, 3, (n,), generator=generator) * 0.25
    held_key = torch.where(assigned >= 0, make_keys(bids.clamp_min(0.125), torch.arange(n)), -1)
    slots = torch.empty((m, capacity), dtype=torch.int64)
    auction_rebuild_slots_reference(assigned, held_key, slots)
    eps = torch.tensor(draw(st.sampled_from([0.01, 0.25, 1.0])))
    # The lowest total of an earlier stage: above, below or equal to this state's holders'.
    earlier_total = draw(st.sampled_from([math.inf, 0.0, float(n) * 0.75]))
    return {
        "earlier_total": torch.tensor(earlier_total, dtype=torch.float64),
        "candidates": candidates,
        "candidate_cost": cost,
        "outside": outside,
        "price": price,
        "assigned": assigned,
        "held_key": held_key,
        "slots": slots,
        "eps": eps,
    }


def run_ops(state: dict, device: str, *, reference: bool) -> dict:
    """Release at 1.5 eps as stage 1 (stage 0's lowest total drawn), rebuild the slots keeping
    the best stage, then ``ROUNDS`` rounds (their hash seeded apart from their counts), on a
    copy of ``state``."""
    s = {name: x.clone().to(device) for name, x in state.items()}
    n = s["candidates"].shape[0]
    counts = torch.zeros(ROUNDS + 1, dtype=torch.int32, device=device)
    stale = torch.zeros(n, dtype=torch.uint8, device=device)
    best = stage_best(s["assigned"], s["held_key"], 2)
    best.cost_sums.fill_(math.nan)
    best.lowest_total[0] = s.pop("earlier_total")
    best.tiles.fill_(-5)
    best.keys.fill_(-5)
    lists = (s["candidates"], s["candidate_cost"], s["outside"], s["price"])
    holders = (s["assigned"], s["held_key"])
    tolerance = s["eps"] * 1.5
    if reference:
        auction_release_reference(*lists, *holders, stale, counts, tolerance, 0, best, 1)
        auction_rebuild_slots_reference(*holders, s["slots"], best, 1)
        for index in range(ROUNDS):
            auction_round_reference(
                *lists, *holders, s["slots"], stale, counts, s["eps"], index + 7, index
            )
    else:
        auction_release(*lists, *holders, stale, counts, tolerance, 0, best, 1)
        auction_rebuild_slots(*holders, s["slots"], best, 1)
        work = round_work(n, torch.device(device))
        for index in range(ROUNDS):
            auction_round(
                *lists, *holders, s["slots"], stale, counts, s["eps"], index + 7, work, index
            )
    return {**s, "counts": counts, "stale": stale, **best._asdict()}


BEST_FIELDS = ("opened_tiles", "opened_keys", "cost_sums", "lowest_total", "tiles", "keys")


@shares_device_fixture
@given(state=auction_states())
def test_release_rebuild_and_rounds_match_the_reference(device, state):
    kernel = run_ops(state, device, reference=False)
    reference = run_ops(state, "cpu", reference=True)
    for name in ("assigned", "held_key", "slots", "price", "counts", "stale", *BEST_FIELDS):
        assert same(kernel[name].cpu(), reference[name]), name


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN (the places no kernel writes)."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@given(state=auction_states())
def test_rounds_keep_the_state_consistent(state):
    """After rounds: every holder's tile is in its list and has room; the slots hold exactly the
    holders' keys, descending; a full tile's price is at most its lowest bid; the last count is
    the number of cells without a tile; no price fell."""
    after = run_ops(state, "cpu", reference=True)
    assigned, held_key, slots = after["assigned"], after["held_key"], after["slots"]
    m, capacity = slots.shape
    holding = assigned >= 0
    listed = (after["candidates"] == assigned[:, None]).any(1)
    assert bool(listed[holding].all())
    assert bool((held_key[holding] >= 0).all()) and bool((held_key[~holding] == -1).all())
    assert int(torch.bincount(assigned[holding], minlength=m).max()) <= capacity
    expected = torch.empty_like(slots)
    auction_rebuild_slots_reference(assigned, held_key, expected)
    assert torch.equal(slots, expected)
    assert bool((slots[:, :-1] >= slots[:, 1:]).all())
    full = slots[:, -1] >= 0
    assert bool((after["price"][full] <= bid_of_key(slots[full, -1])).all())
    assert int(after["counts"][-1]) == int((~holding).sum()) or int(after["counts"][-1]) == 0
    assert bool((after["price"] >= state["price"]).all())


@given(state=auction_states())
def test_a_winner_is_within_eps_of_its_best_option(state):
    """Epsilon-complementary slackness: a cell that took a tile in a round values it at most
    ``eps`` above its best option at the prices the round left (float rounding aside)."""
    before = state["assigned"].clone()
    after = run_ops(state, "cpu", reference=True)
    won = (after["assigned"] >= 0) & (after["assigned"] != before)
    value = torch.where(
        after["candidates"] >= 0,
        after["candidate_cost"] + after["price"][after["candidates"].clamp_min(0)],
        math.inf,
    )
    best = torch.minimum(value.amin(1), after["outside"])
    held = after["candidates"] == after["assigned"][:, None]
    held_value = torch.where(held, value, math.inf).amin(1)
    assert bool((held_value[won] <= best[won] + state["eps"] * (1 + 1e-5) + 1e-6).all())


@given(state=auction_states())
def test_release_frees_flags_and_prices_each_holder_as_brute_force_says(state):
    """Per cell, in Python floats: a holder within the tolerance of its list's best but not of
    its outside bound is flagged stale and keeps its tile; another more than the tolerance above
    its best option leaves. The stage's holders are noted as it opened, priced by their list
    costs (summed per program) and kept by the rebuild when cheaper than the earlier stages."""
    s = {name: x.clone() for name, x in state.items()}
    n = s["candidates"].shape[0]
    stale = torch.zeros(n, dtype=torch.uint8)
    counts = torch.zeros(1, dtype=torch.int32)
    tolerance = s["eps"] * 1.5
    best = stage_best(s["assigned"], s["held_key"], 2)
    best.lowest_total[0] = s["earlier_total"]
    auction_release_reference(
        s["candidates"], s["candidate_cost"], s["outside"], s["price"], s["assigned"],
        s["held_key"], stale, counts, tolerance, 0, best, 1,
    )  # fmt: skip
    auction_rebuild_slots_reference(s["assigned"], s["held_key"], s["slots"], best, 1)
    slack = float(tolerance)
    held_costs = []
    for cell in range(n):
        tile = int(state["assigned"][cell])
        entries = [
            (float(state["candidate_cost"][cell, e]), float(state["price"][t]), t)
            for e, t in enumerate(state["candidates"][cell].tolist())
            if t >= 0
        ]
        held = [cost for cost, _, t in entries if t == tile and tile >= 0]
        held_costs.append(held[0] if held else math.inf)
        if tile < 0:
            assert int(s["assigned"][cell]) == -1 and not int(stale[cell])
            continue
        value = {t: torch.tensor(cost) + torch.tensor(price) for cost, price, t in entries}
        held_value = float(value[tile]) if tile in value else math.inf
        list_best = min(float(v) for v in value.values())
        outside = float(state["outside"][cell])
        flagged = held_value <= list_best + slack and held_value > outside + slack
        leaves = not flagged and held_value > min(list_best, outside) + slack
        assert bool(stale[cell]) == flagged
        assert int(s["assigned"][cell]) == (-1 if leaves else tile)
    assert int(counts[0]) == int((s["assigned"] < 0).sum())
    assert torch.equal(best.opened_tiles, state["assigned"])
    assert torch.equal(best.opened_keys, state["held_key"])
    # A program's cells: a power of 2 (the sums only tell it apart when there are two or more).
    block = 1 << (-(-n // best.cost_sums.shape[1]) - 1).bit_length()
    sums = [sum(held_costs[p : p + block]) for p in range(0, n, block)]
    assert best.cost_sums[1].tolist() == sums  # costs are quarters: every sum is exact
    total, earlier = sum(held_costs), float(state["earlier_total"])
    assert float(best.lowest_total[1]) == min(total, earlier)
    kept = state["assigned"] if total < earlier else state["assigned"].clone()
    assert torch.equal(best.tiles, kept)


def test_the_first_of_equal_stage_totals_is_kept(device):
    """Rebuilds over four stages with totals 3, 2, 2, inf: stage 1's holders are kept."""
    n = 70  # two programs
    assigned = torch.zeros(n, dtype=torch.int64, device=device)
    held_key = torch.arange(n, device=device)
    slots = torch.full((n, 1), -1, dtype=torch.int64, device=device)
    best = stage_best(assigned, held_key, 4)
    for stage, total in enumerate((3.0, 2.0, 2.0, math.inf)):
        best.opened_tiles.fill_(stage)
        best.cost_sums[stage] = total / best.cost_sums.shape[1]
        auction_rebuild_slots(assigned, held_key, slots, best, stage)
    assert best.tiles.tolist() == [1] * n
    assert best.lowest_total.tolist() == [3.0, 2.0, 2.0, 2.0]


def test_a_round_does_nothing_once_every_cell_holds_a_tile(device):
    candidates = torch.tensor([[0, 1], [1, 0]], device=device)
    cost = torch.tensor([[1.0, 2.0], [1.0, 2.0]], device=device)
    outside = torch.full((2,), math.inf, device=device)
    price = torch.zeros(2, device=device)
    assigned = torch.full((2,), -1, dtype=torch.int64, device=device)
    held_key = assigned.clone()
    slots = torch.full((2, 1), -1, dtype=torch.int64, device=device)
    stale = torch.zeros(2, dtype=torch.uint8, device=device)
    counts = torch.zeros(2, dtype=torch.int32, device=device)  # counts[0] == 0: nothing to do
    eps = torch.tensor(0.1, device=device)
    work = round_work(2, torch.device(device))
    state = (candidates, cost, outside, price, assigned, held_key, slots, stale, counts, eps)
    auction_round(*state, 0, work)
    assert bool((assigned == -1).all()) and int(counts[1]) == 0
    counts[0] = 2
    auction_round(*state, 0, work)
    # Each cell's cheapest tile is its own: both win in one round, none is left.
    assert assigned.tolist() == [0, 1] and int(counts[1]) == 0


def test_keys_order_by_bid_then_lower_cell():
    bids = torch.tensor([0.5, 0.5, 0.75, 2.0])
    cells = torch.tensor([3, 1, 0, 2])
    keys = make_keys(bids, cells)
    assert keys.argsort(descending=True).tolist() == [3, 2, 1, 0]
    assert torch.equal(bid_of_key(keys), bids)
    assert float(bid_of_key(torch.tensor([-1]))[0]) == 0.0


@shares_device_fixture
@given(state=auction_states())
def test_dual_values_match_the_reference_and_brute_force(device, state):
    values = dual_values(
        *(state[name].to(device) for name in ("candidates", "candidate_cost", "outside", "price"))
    )
    reference = dual_values_reference(
        state["candidates"], state["candidate_cost"], state["outside"], state["price"]
    )
    assert torch.equal(values.cpu(), reference)
    n = state["candidates"].shape[0]
    for cell in range(n):
        listed = [
            float(state["candidate_cost"][cell, e] + state["price"][t])
            for e, t in enumerate(state["candidates"][cell].tolist())
            if t >= 0
        ]
        assert float(reference[cell]) == min([*listed, float(state["outside"][cell])])


def test_floored_prices_zero_the_tiles_with_a_free_slot():
    slots = torch.tensor([[5, 4], [7, -1], [-1, -1]])
    price = torch.tensor([1.0, 2.0, 3.0])
    assert floored_prices(slots, price).tolist() == [1.0, 0.0, 0.0]


@given(state=auction_states())
def test_tie_prices_lower_free_tiles_to_their_best_taker_and_change_no_value(state):
    lists = (state["candidates"], state["candidate_cost"], state["outside"])
    price, slots = state["price"], state["slots"]
    lowered = tie_prices(*lists, price, slots)
    values = dual_values_reference(*lists, price)
    # Brute force: per tile, the highest value - cost among the cells that list it.
    takers: dict[int, float] = {}
    for cell, row in enumerate(state["candidates"].tolist()):
        for entry, tile in enumerate(row):
            if tile >= 0:
                gain = float(values[cell] - state["candidate_cost"][cell, entry])
                takers[tile] = max(takers.get(tile, -math.inf), gain)
    for tile in range(price.shape[0]):
        if int(slots[tile, -1]) >= 0:
            assert float(lowered[tile]) == float(price[tile])
        else:
            expected = min(max(takers.get(tile, -math.inf), 0.0), float(price[tile]))
            assert float(lowered[tile]) == expected
    # No cell's best value moves (up to the rounding of value - cost + cost).
    assert torch.allclose(dual_values_reference(*lists, lowered), values, rtol=0, atol=1e-6)


@st.composite
def list_inputs(draw: st.DrawFn) -> dict:
    """Descriptors on a 1/64 grid (every squared distance and sum exact in float32, whatever
    the order), searches, holders and incumbents with repeats, and a row selection."""
    n = draw(sizes_around(64))
    m = draw(st.integers(1, 40))
    dim = draw(st.sampled_from([1, 3, 12]))
    k = draw(st.integers(1, min(m, 16)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    cells = torch.randint(0, 64, (n, dim), generator=generator).float() / 64
    tiles = torch.randint(0, 64, (m, dim), generator=generator).float() / 64
    if draw(st.booleans()):  # strided views
        cells = torch.cat([cells, cells], 1)[:, ::2]
        tiles = tiles.t().contiguous().t()
    nearest = torch.stack([torch.randperm(m, generator=generator)[:k] for _ in range(n)])
    assigned = torch.randint(-1, m, (n,), generator=generator)
    incumbent = torch.where(
        torch.rand(n, generator=generator) < 0.3, assigned, torch.randint(-1, m, (n,))
    )
    bonus = (torch.randint(0, 4, (1,), generator=generator).float() / 8).expand(n)
    return {
        "cells": cells,
        "tiles": tiles,
        "incumbent": incumbent,
        "bonus": bonus,
        "nearest": nearest,
        "assigned": assigned,
        "rows": (torch.rand(n, generator=generator) < 0.6).to(torch.uint8),
        "bound": torch.randint(0, 8, (n,), generator=generator).float() / 4,
    }


def built_lists(
    inputs: dict, device: str, reference: bool, searched: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    """The lists ``inputs`` build (from NaN / -7 poison), then ``rows`` and ``bound`` after it."""
    n, k = inputs["nearest"].shape
    lists = (
        torch.full((n, k + 2), -7, dtype=torch.int64, device=device),
        torch.full((n, k + 2), math.nan, device=device),
        torch.full((n,), math.nan, device=device),
    )
    moved = {name: x.clone().to(device) for name, x in inputs.items()}
    build = auction_lists_reference if reference else auction_lists
    build(*moved.values(), *lists, None if searched is None else searched.to(device))
    return tuple(x.cpu() for x in (*lists, moved["rows"], moved["bound"]))


@shares_device_fixture
@given(inputs=list_inputs(), renew=st.booleans())
def test_lists_match_the_reference_and_brute_force(device, inputs, renew):
    """With ``renew``, the flagged rows' bounds become their searches' last values (+inf when a
    search holds every tile) and the flags clear; other rows keep theirs."""
    n, k = inputs["nearest"].shape
    m = inputs["tiles"].shape[0]
    searched = torch.arange(n * k, dtype=torch.float32).reshape(n, k) / 8 if renew else None
    kernel = built_lists(inputs, device, reference=False, searched=searched)
    reference = built_lists(inputs, "cpu", reference=True, searched=searched)
    for got, expected in zip(kernel, reference, strict=True):
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    candidates, cost, outside, rows, bound = reference
    flagged = inputs["rows"].bool()
    expected_bound = inputs["bound"]
    if renew:
        last = math.inf if k == m else searched[:, -1]
        expected_bound = torch.where(flagged, last, inputs["bound"])
        assert not bool(rows.any())
    else:
        assert torch.equal(rows, inputs["rows"])
    assert torch.equal(bound, expected_bound)
    cells, tiles, bonus = inputs["cells"].double(), inputs["tiles"].double(), inputs["bonus"]
    assert torch.equal(outside, expected_bound + bonus)
    for cell in range(candidates.shape[0]):
        if not inputs["rows"][cell]:
            assert bool((candidates[cell] == -7).all()) and bool(cost[cell].isnan().all())
            continue
        searched = inputs["nearest"][cell].tolist()
        held, incumbent = int(inputs["assigned"][cell]), int(inputs["incumbent"][cell])
        extra = [t if t >= 0 and t not in searched else -1 for t in (held, incumbent)]
        if incumbent == held:
            extra[1] = -1
        assert candidates[cell].tolist() == searched + extra
        for entry, tile in enumerate(candidates[cell].tolist()):
            expected = 0.0
            if tile >= 0:
                expected = float((cells[cell] - tiles[tile]).square().sum())
                expected += 0.0 if tile == incumbent else float(bonus[cell])
            assert float(cost[cell, entry]) == expected


def lowered(state: dict, device: str, to_ties: bool, reference: bool, size: int) -> dict:
    """A price lowering as call 1 of 3 (``fell`` and ``lowest`` set at 1, poisoned elsewhere)."""
    s = {name: state[name].clone().to(device) for name in ("price", "slots")}
    lists = [state[name].to(device) for name in ("candidates", "candidate_cost", "outside")]
    m = s["price"].shape[0]
    out = {
        "fallen": torch.zeros(size, dtype=torch.int64, device=device),
        "fallen_price": torch.full((size,), math.nan, device=device),
        "fell": torch.tensor([-3, 0, -3], dtype=torch.int32, device=device),
        "lowest": torch.tensor([math.nan, math.inf, math.nan], device=device),
        "price_sums": torch.full((3, tile_programs(m)), math.nan, device=device).double(),
    }
    if reference:
        auction_lower_prices_reference(*lists, s["price"], s["slots"], to_ties, *out.values(), 1)
    else:
        gain = torch.zeros(m, device=device)
        auction_lower_prices(*lists, s["price"], s["slots"], to_ties, *out.values(), 1, gain)
        assert not bool(gain.any())  # left ready for the next lowering
    return {name: x.cpu() for name, x in {**s, **out}.items()}


@shares_device_fixture
@given(state=auction_states(), to_ties=st.booleans(), size=st.sampled_from([1, 3, 64]))
def test_lower_prices_match_the_reference_and_say_which_fell(device, state, to_ties, size):
    kernel = lowered(state, device, to_ties, reference=False, size=size)
    reference = lowered(state, "cpu", to_ties, reference=True, size=size)
    for name in ("price", "fell", "lowest", "price_sums"):
        assert same(kernel[name], reference[name]), name
    # The same prices as tie_prices / floored_prices; the fallen places as a set (any order).
    lists = (state["candidates"], state["candidate_cost"], state["outside"])
    before, slots = state["price"], state["slots"]
    expected = tie_prices(*lists, before, slots) if to_ties else floored_prices(slots, before)
    assert torch.equal(reference["price"], expected)
    # Prices are quarters: the sums are exact, in any order.
    assert float(reference["price_sums"][1].sum()) == float(expected.double().sum())
    assert bool(reference["price_sums"][[0, 2]].isnan().all())
    fell = (expected < before).nonzero().squeeze(1)
    assert reference["fell"].tolist() == [-3, fell.numel(), -3]
    lowest = float(expected[fell].min()) if fell.numel() else math.inf
    assert float(reference["lowest"][1]) == lowest
    taken = min(size, fell.numel())
    for result in (kernel, reference):
        pairs = sorted(
            zip(
                result["fallen"][:taken].tolist(),
                result["fallen_price"][:taken].tolist(),
                strict=True,
            )
        )
        assert all(
            tile in fell.tolist() and price == float(expected[tile]) for tile, price in pairs
        )
        assert len({tile for tile, _ in pairs}) == taken
        # The other places keep what they held.
        assert bool(result["fallen_price"][taken:].isnan().all())
        assert not bool(result["fallen"][taken:].any())
    if fell.numel() <= size:
        assert sorted(kernel["fallen"][:taken].tolist()) == fell.tolist()


@st.composite
def fallen_inputs(draw: st.DrawFn) -> dict:
    """What a dual bound update reads besides a state: descriptors (on a 1/64 grid, every
    distance exact in float32 whatever the order, or rough values whose sum depends on the
    order), maybe strided; ``S`` places of fallen tiles around the kernel's block (repeats and
    quarter prices: ties), ``fell`` 0, some, exactly ``S`` or more; the places past ``fell``
    poisoned (a tile far out of range, a NaN price)."""
    state = draw(auction_states())
    n, m = state["candidates"].shape[0], state["price"].shape[0]
    dim = draw(st.sampled_from([1, 3, 12]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):
        cells = torch.randint(0, 64, (n, dim), generator=generator).float() / 64
        tiles = torch.randint(0, 64, (m, dim), generator=generator).float() / 64
    else:
        cells = torch.rand(n, dim, generator=generator)
        tiles = torch.rand(m, dim, generator=generator)
    if draw(st.booleans()):  # strided views
        cells = torch.cat([cells, cells], 1)[:, ::2]
        tiles = tiles.t().contiguous().t()
    size = draw(st.sampled_from([1, 3, _FALLEN_BLOCK, _FALLEN_BLOCK + 1, 2 * _FALLEN_BLOCK + 5]))
    fell = draw(st.sampled_from([0, min(2, size - 1), size, size + 3]))
    fallen = torch.randint(0, m, (size,), generator=generator)
    fallen_price = torch.randint(0, 3, (size,), generator=generator).float() / 4
    past = torch.arange(size) >= fell
    return {
        **state,
        "cells": cells,
        "tiles": tiles,
        "fallen": torch.where(past, 10**9, fallen),
        "fallen_price": torch.where(past, math.nan, fallen_price),
        "fell": fell,
    }


def dual_bound(inputs: dict, device: str, reference: bool) -> dict:
    """``auction_dual_bound`` as call 1 of 2 on a copy of ``inputs`` (row 0 of the sums
    poisoned), the lowest fallen price 0.125."""
    n = inputs["candidates"].shape[0]
    generator = torch.Generator().manual_seed(n)
    s = {name: inputs[name].clone().to(device) for name in ("candidate_cost", "outside")}
    moved = {
        "bound": (inputs["outside"] - 0.25).clamp_min(0).to(device),
        "stale": (torch.rand(n, generator=generator) < 0.3).to(torch.uint8).to(device),
        "value_sums": torch.full(
            (2, cell_programs(n, torch.device(device))), math.nan, dtype=torch.float64
        ).to(device),
    }
    bonus = torch.full((1,), 0.25, device=device).expand(n)
    fell = torch.tensor([-1, inputs["fell"]], dtype=torch.int32, device=device)
    lowest = torch.tensor([math.nan, 0.125], device=device)
    update = auction_dual_bound_reference if reference else auction_dual_bound
    read = {name: inputs[name].to(device) for name in ("candidates", "price", "cells", "tiles")}
    update(
        read["candidates"], s["candidate_cost"], s["outside"], read["price"], moved["bound"],
        bonus, moved["stale"], read["cells"], read["tiles"], inputs["fallen"].to(device),
        inputs["fallen_price"].to(device), fell, lowest, moved["value_sums"], 1,
    )  # fmt: skip
    return {name: x.cpu() for name, x in {**s, **moved}.items()}


@shares_device_fixture
@given(inputs=fallen_inputs())
def test_dual_bound_matches_the_reference_and_brute_force(device, inputs):
    """Bounds fall to each cell's smallest distance plus new price over the fallen places (to
    the lowest price when more fell than there are places, with every cell flagged; stay when
    none fell), ``outside`` follows, and the dual values' partial sums add up to the sum of
    ``dual_values`` at the new bounds. Kernel and reference agree bit for bit; the brute force
    (float64, per cell and tile) exactly on the 1/64 grid, to float32 rounding otherwise."""
    kernel = dual_bound(inputs, device, reference=False)
    reference = dual_bound(inputs, "cpu", reference=True)
    for name in ("outside", "bound", "stale", "value_sums"):
        assert same(kernel[name], reference[name]), name
    n, size, fell = inputs["candidates"].shape[0], inputs["fallen"].shape[0], inputs["fell"]
    generator = torch.Generator().manual_seed(n)
    stale_before = (torch.rand(n, generator=generator) < 0.3).to(torch.uint8)
    bound_before = (inputs["outside"] - 0.25).clamp_min(0)
    overflow = fell > size
    cells, tiles = inputs["cells"].double().numpy(), inputs["tiles"].double().numpy()
    exact = bool((inputs["cells"] * 64 == (inputs["cells"] * 64).round()).all())
    for cell in range(n):
        nearest = math.inf
        for place in range(0 if overflow else fell):
            tile = int(inputs["fallen"][place])
            distance = float(np.square(cells[cell] - tiles[tile]).sum())
            nearest = min(nearest, distance + float(inputs["fallen_price"][place]))
        expected = min(float(bound_before[cell]), 0.125 if overflow else nearest)
        got = float(reference["bound"][cell])
        assert got == expected if exact else got == pytest.approx(expected, rel=1e-6, abs=1e-6)
        assert int(reference["stale"][cell]) == (1 if overflow else int(stale_before[cell]))
    assert torch.equal(reference["outside"], reference["bound"] + 0.25)
    values = dual_values_reference(
        inputs["candidates"], inputs["candidate_cost"], reference["outside"], inputs["price"]
    )
    # float32 values of a few magnitudes: their float64 sum is exact, in any order.
    assert float(reference["value_sums"][1].sum()) == float(values.double().sum())
    assert bool(reference["value_sums"][0].isnan().all())


def test_arguments_are_checked():
    candidates = torch.zeros((3, 2), dtype=torch.int64)
    cost, outside = torch.zeros(3, 2), torch.zeros(3)
    assigned = torch.full((3,), -1, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"must be \(N, L\), \(N, L\) and \(N,\)"):
        dual_values(candidates, cost[:2], outside, torch.zeros(4))
    with pytest.raises(TypeError, match="candidates has dtype"):
        dual_values(candidates.int(), cost, outside, torch.zeros(4))
    with pytest.raises(ValueError, match="held_key must be a contiguous"):
        auction_rebuild_slots(assigned, assigned[:2], torch.full((4, 1), -1))


def test_launches_are_counted_torch_ops_and_kernels_apart():
    """``tests.syncs.count_launches``: every torch operation once, every kernel launch once,
    and nothing the interpreter does inside a launch."""
    candidates = torch.tensor([[0, 1], [1, -1]])
    cost, outside, price = torch.ones(2, 2), torch.full((2,), math.inf), torch.zeros(2)
    with count_launches() as counts:
        values = torch.zeros(2)
        values.add_(1.0)
    assert dict(counts) == {"torch ops": 2}
    with count_launches() as counts:
        dual_values(candidates, cost, outside, price)
    if use_triton(candidates):
        assert counts["triton"] == counts["triton _dual_values_kernel"] == 1
        assert counts["torch ops"] == 1  # the output's allocation
    else:
        assert counts["triton"] == 0 and counts["torch ops"] > 1
    assert launches(counts) == counts["torch ops"] + counts["triton"]


@st.composite
def completion_inputs(draw: st.DrawFn) -> dict:
    """Holders as a solve leaves them (some tiles full, some cells without a tile) and each cell's
    nearest tiles with a free slot, from descriptors on a 1/4 grid with repeated tiles and cells:
    equal distances and equal lightness everywhere."""
    n = draw(st.sampled_from([1, 2, 7, 13, 40, 65]))
    capacity = draw(st.integers(1, 3))
    m = draw(st.integers(math.ceil(n / capacity), max(math.ceil(n / capacity), 40)))
    dim = draw(st.sampled_from([1, 3]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    cells = torch.randint(0, 4, (n, dim), generator=generator).float() / 4
    tiles = torch.randint(0, 4, (m, dim), generator=generator).float() / 4
    if draw(st.booleans()):  # strided views
        cells = torch.cat([cells, cells], 1)[:, ::2]
        tiles = tiles.t().contiguous().t()
    assigned = torch.full((n,), -1, dtype=torch.int64)
    room = torch.full((m,), capacity)
    share = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    for cell in torch.randperm(n, generator=generator).tolist():
        if torch.rand(1, generator=generator).item() < share:
            tile = int(torch.multinomial(room.clamp_max(1).float(), 1, generator=generator))
            assigned[cell], room[tile] = tile, room[tile] - 1
    price = torch.randint(0, 4, (m,), generator=generator).float() / 4
    bids = price[assigned.clamp_min(0)] + 0.5
    held_key = torch.where(assigned >= 0, make_keys(bids, torch.arange(n)), -1)
    slots = torch.empty((m, capacity), dtype=torch.int64)
    auction_rebuild_slots_reference(assigned, held_key, slots)
    waiting, bias = torch.empty(n, dtype=torch.bool), torch.empty(m)
    auction_complete_start_reference(assigned, slots, waiting, bias)
    assert torch.equal(waiting, assigned < 0)
    expected = torch.tensor([0.0 if -1 in row else 1e30 for row in slots.tolist()])
    assert torch.equal(bias, expected)
    k = draw(st.integers(1, min(m, 8)))
    distance, nearest = cost_topk_reference(cells, tiles, k, bias=bias)
    return {
        "cells": cells,
        "tiles": tiles,
        "distance": distance,
        "nearest": nearest,
        "price": price,
        "assigned": assigned,
        "held_key": held_key,
        "slots": slots,
        "passes": draw(st.integers(1, 4)),
        "fill": draw(st.booleans()),
    }


def completed(inputs: dict, device: str, reference: bool) -> dict:
    """The holders and slots after a completion of a copy of ``inputs``. The kernels start from
    poisoned scratch, with the search only in the rows of the cells without a tile."""
    s = {name: x.clone().to(device) for name, x in inputs.items() if name not in ("passes", "fill")}
    holders = (s["price"], s["assigned"], s["held_key"], s["slots"])
    if reference:
        searched = (s["distance"], s["nearest"])
        auction_complete_reference(
            s["cells"], s["tiles"], *searched, *holders, inputs["passes"], inputs["fill"]
        )
    else:
        n, m, capacity = s["cells"].shape[0], *s["slots"].shape
        k = s["nearest"].shape[1]
        work = completion_work(n, m, capacity, inputs["passes"], k, torch.device(device))
        for x in work:
            x.fill_(math.nan if x.is_floating_point() else 7)
        auction_complete_start(s["assigned"], s["slots"], work)
        waiting, bias = torch.empty(n, dtype=torch.bool), torch.empty(m)
        auction_complete_start_reference(inputs["assigned"], inputs["slots"], waiting, bias)
        assert torch.equal(work.waiting.cpu(), waiting) and torch.equal(work.bias.cpu(), bias)
        waiting = work.waiting[:, None]
        work.distance.copy_(torch.where(waiting, s["distance"], math.nan))
        work.nearest.copy_(torch.where(waiting, s["nearest"], m + 7))
        auction_complete(s["cells"], s["tiles"], *holders, work, fill=inputs["fill"])
    return {name: s[name].cpu() for name in ("assigned", "held_key", "slots")}


def completion_oracle(inputs: dict) -> tuple[list[int], list[int]]:
    """Tiles and keys after a completion, by loops over the passes, tiles and slots."""
    n, m = inputs["cells"].shape[0], inputs["tiles"].shape[0]
    nearest, distance = inputs["nearest"].tolist(), inputs["distance"].tolist()
    price = inputs["price"]
    tiles, keys = inputs["assigned"].tolist(), inputs["held_key"].tolist()
    free = [row.count(-1) for row in inputs["slots"].tolist()]

    def take(cell: int, tile: int) -> None:
        tiles[cell] = tile
        keys[cell] = int(make_keys(price[tile : tile + 1], torch.tensor([cell]))[0])

    for _ in range(inputs["passes"]):
        offers: dict[int, list[tuple[float, int]]] = {}
        for cell in range(n):
            if tiles[cell] >= 0:
                continue
            for tile, value in zip(nearest[cell], distance[cell], strict=True):
                if free[tile] > 0:
                    offers.setdefault(tile, []).append((value, cell))
                    break
        for tile, offered in offers.items():
            for _, cell in sorted(offered)[: free[tile]]:
                take(cell, tile)
            free[tile] -= min(free[tile], len(offered))
    if not inputs["fill"]:
        return tiles, keys
    waiting = sorted((float(inputs["cells"][c, 0]), c) for c in range(n) if tiles[c] < 0)
    free_slots = [
        t
        for _, t in sorted((float(inputs["tiles"][t, 0]), t) for t in range(m))
        for _ in range(free[t])
    ]
    for rank, (_, cell) in enumerate(waiting):
        take(cell, free_slots[rank * len(free_slots) // len(waiting)])
    return tiles, keys


@shares_device_fixture
@given(inputs=completion_inputs())
def test_completion_matches_the_reference_and_brute_force(device, inputs):
    """Every cell ends with a tile (without the fill: those the passes placed): the holders keep
    theirs, the others take what passes of nearest-first offers and then the lightness fill give
    them, no tile over its capacity, and the slots hold exactly the holders' keys."""
    kernel = completed(inputs, device, reference=False)
    reference = completed(inputs, "cpu", reference=True)
    for name in ("assigned", "held_key", "slots"):
        assert torch.equal(kernel[name], reference[name]), name
    tiles, keys = completion_oracle(inputs)
    assert reference["assigned"].tolist() == tiles
    assert reference["held_key"].tolist() == keys
    m, capacity = inputs["slots"].shape
    assert bool((reference["assigned"] >= 0).all()) or not inputs["fill"]
    placed = reference["assigned"][reference["assigned"] >= 0]
    assert int(torch.bincount(placed, minlength=m).max()) <= capacity
    held = inputs["assigned"] >= 0
    assert torch.equal(reference["held_key"][held], inputs["held_key"][held])
    expected = torch.empty_like(inputs["slots"])
    auction_rebuild_slots_reference(reference["assigned"], reference["held_key"], expected)
    assert torch.equal(reference["slots"], expected)


def test_a_completion_launches_a_kernel_a_pass_and_four_more(device):
    """On the kernel path: one launch to start, then one a pass, one to settle the last pass and
    count, two to fill; no torch operation. With every cell holding a tile, nothing changes."""
    n, m, capacity, passes = 5, 4, 2, 3
    cells, tiles = torch.rand(n, 3, device=device), torch.rand(m, 3, device=device)
    assigned = torch.tensor([0, 0, 1, 2, 3], device=device)
    held_key = make_keys(torch.ones(n, device=device), torch.arange(n, device=device))
    slots = torch.empty((m, capacity), dtype=torch.int64, device=device)
    auction_rebuild_slots(assigned, held_key, slots)
    price = torch.ones(m, device=device)
    before = (assigned.clone(), held_key.clone(), slots.clone())
    work = completion_work(n, m, capacity, passes, 2, torch.device(device))
    with count_launches() as counts:
        auction_complete_start(assigned, slots, work)
        auction_complete(cells, tiles, price, assigned, held_key, slots, work)
    if use_triton(cells):
        assert counts["triton"] == passes + 4 and counts["torch ops"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, (assigned, held_key, slots), strict=True))
    assert not bool(work.waiting.any())
    # Without the fill, the slots' rebuild (its reset and kernel) takes its two launches.
    with count_launches() as counts:
        auction_complete_start(assigned, slots, work)
        auction_complete(cells, tiles, price, assigned, held_key, slots, work, fill=False)
    if use_triton(cells):
        assert counts["triton"] == passes + 3 and counts["torch ops"] == 1
