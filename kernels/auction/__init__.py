"""An auction for assignment under a capacity (Bertsekas): Triton kernels, launchers, references.

Cells bid for tiles; each tile holds at most ``R`` cells (the reuse cap). Every cell sees only a
short candidate list (its nearest tiles at the current prices, plus the tile it holds and its
incumbent) and a lower bound on every tile outside it. All of it lives in fixed-shape tensors on
one device, so a whole solve is a fixed sequence of launches with no host reads (a CUDA graph can
replay it); work that is done turns the later launches into no-ops through an on-device counter.

One op a module, each kernel beside its launcher and its reference: ``lists`` (a cell's list),
``round`` (bids and awards), ``release`` (a stage's opening), ``slots`` (a tile's slots rebuilt,
the best stage kept), ``prices`` (free tiles' prices lowered), ``dual`` (each cell's best value and
the certified bound), ``complete`` (the last cells placed); ``_shared`` holds what several use
(keys, the choice hash, slot inserts, checks, sums in a fixed order, list values, distances).

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

from kernels.auction._shared import bid_of_key, cell_programs, make_keys, tile_programs
from kernels.auction.complete import (
    CompletionWork,
    auction_complete,
    auction_complete_reference,
    auction_complete_start,
    auction_complete_start_reference,
    completion_work,
)
from kernels.auction.dual import (
    auction_dual_bound,
    auction_dual_bound_reference,
    dual_values,
    dual_values_reference,
)
from kernels.auction.lists import auction_lists, auction_lists_reference
from kernels.auction.prices import (
    auction_lower_prices,
    auction_lower_prices_reference,
    floored_prices,
    tie_prices,
)
from kernels.auction.release import auction_release, auction_release_reference
from kernels.auction.round import auction_round, auction_round_reference, round_work
from kernels.auction.slots import (
    StageBest,
    auction_rebuild_slots,
    auction_rebuild_slots_reference,
    stage_best,
)

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
