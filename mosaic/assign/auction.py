"""Method ``"auction"``: assignment under a reuse cap by an epsilon-scaled auction on candidate
lists, with prices and lists carried from frame to frame, a certified gap and no host syncs in a
warm solve.

The problem solved is ``min sum_i c(i, a(i))`` with each tile used at most ``R`` times, where
``c(i, j)`` is the squared descriptor distance plus the cell's switching bonus on every tile but
its incumbent (the same optimum as subtracting the bonus from the incumbent, with costs >= 0).
The bids and awards are the kernels of ``kernels.auction``; this module decides what they see.

**Lists.** Each cell bids over a short list: its ``CANDIDATES`` best tiles by ``distance +
price`` (``kernels.cost_topk`` with the prices as a bias), the tile it holds and its incumbent,
and a lower bound ``V`` on ``distance + price`` of every tile outside the list. Lists are kept
from frame to frame and only renewed for the cells that need it, so a frame where little
changes costs little:

- prices that rise keep ``V`` valid; prices that fall (a tile left with a free slot drops to
  0) are taken into ``V`` by a small search over just those tiles (``DROPPED_TILES`` at most;
  past that, ``V`` drops to the lowest fallen price and every list is renewed);
- when a cell's descriptor moves by ``delta`` (Euclidean), a distance ``d`` becomes at least
  ``(sqrt(d) - delta)^2``, so ``V`` becomes ``(sqrt(V) - delta)^2`` (with ``d + p >= V`` and
  ``d, p >= 0``, ``(sqrt(d) - delta)^2 + p`` is smallest at ``d = V``);
- a cell with no entry near its best (every listed tile got dearer than the bound) is *stale*
  and gets a new list at the next stage (cold: the next round), in one fixed-shape masked search
  over all cells.

**Stages.** A warm solve runs stages of ``ROUNDS_PER_STAGE`` rounds, a cold one of
``COLD_ROUNDS_PER_STAGE`` with the stale lists renewed before each. A stage starts by freeing the
holders whose tile is no longer within ``RELEASE_SLACK * eps`` of their best option (new costs,
smaller epsilon, cheaper tiles; a holder that only its loose outside bound would free gets a new
list instead and keeps its tile until that list decides), rebuilding the tiles' slots,
lowering the prices of tiles left with a free slot (with more slots than cells, the optimum
needs every such tile at the lowest price; a forward auction without it ends far from the
optimum) and renewing stale lists. A cold
start floors them to 0; a warm start lowers them only to the price at which a cell that lists
them would take them (``tie_prices``), so a holder that drifted and left does not pull the
others after it.
A cold start (no previous frame) begins with epsilon at ``EPS_STEP ** COLD_SCALING_STAGES``
times its final value and divides it by ``EPS_STEP`` at each stage that starts with every cell
placed (epsilon scaling, decided on the device) for at most ``COLD_STAGES``, and stops once its
certificate meets the target, read back every ``COLD_CHECK_STAGES`` stages (for the first frame
of a video or grid: a scene cut restarts on the device instead, within the warm budget). Those
stages run as chunks that look alike to the device (``_Stages``): on a GPU the first chunk is
launched one by one and every later one replays a CUDA graph captured once. A warm start
runs ``WARM_STAGES`` from the previous frame's holders, prices and lists: a cell whose tile
still satisfies the condition keeps it, so only the cells whose content changed bid. Its
epsilon follows the stage index: ``WARM_EPS_SCALE`` times the final epsilon carried from the
previous frame, divided by ``WARM_EPS_STEP`` a stage down to it for the last
``WARM_FINAL_STAGES`` stages. The cells that
a moving picture displaces compete for the same few tiles; at the final epsilon alone their
bids raise those prices by so little that many are still without a tile when the budget ends
(and the completion places them far from their optimum). The larger epsilon settles them, and
the last stages tighten the bound. A frame that moved little (its first stage left at most
``WARM_DISPLACED_SHARE`` of the cells without a tile) runs the later stages at the final
epsilon, decided once on the device. Rounds after every cell holds a tile do nothing (an
on-device count).
On the kernel path a warm stage is 18 launches, each a node of a CUDA graph replay: the
release, the stale lists' search and rebuild, the slots' rebuild (which also keeps the best
stage), the price lowering (2 with ties), the bound update (which searches the tiles whose price
fell itself), 4 rounds of 2 kernels, and 3 torch operations (the search's row-mask view and the
slots' reset among them). Nothing of a stage is summed or selected in torch:
the kernels keep partial sums, combined at the end; the warm epsilons and their release
tolerances are a few tensors made before the stages.

**Completion and certificate.** Cells still without a tile when the budget runs out take free
slots (``_complete``): a few passes in which each offers itself to its nearest tile with a free
slot and each tile takes its nearest offers, twice with a new search, then the free slots in
order of lightness; on the kernel path a start, a search and a launch a pass for each search,
the slots' rebuild between them and the fill's 2 (34 launches), which only read the holders
when every cell holds a tile. A stage can end in the middle of a cascade of evictions (after a
smaller epsilon or a price floor), so the solve keeps the best complete assignment and the best
bound any stage has seen, and returns those. ``P`` is the total cost; for any prices ``p >= 0``,
``D = sum_i min_j (c(i, j) + p_j) - R sum_j p_j`` is a lower bound on the optimum (weak
duality; the minimum over tiles outside a list is bounded by ``V``), so ``(P - D) / D`` bounds
``P / OPT - 1`` whatever the auction did. At epsilon-complementary slackness with every tile
that has a free slot at 0, ``P - D <= RELEASE_SLACK * N * eps``: epsilon's final value follows
the target gap and the last bound.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from kernels import cost_topk
from kernels.auction import (
    StageBest,
    auction_complete,
    auction_complete_start,
    auction_dual_bound,
    auction_lists,
    auction_lower_prices,
    auction_rebuild_slots,
    auction_release,
    auction_round,
    cell_programs,
    completion_work,
    round_work,
    stage_best,
    tile_programs,
)
from kernels.dispatch import use_triton
from mosaic.assign.problem import Problem

CANDIDATES = 16
ROUNDS_PER_STAGE = 4
# A warm frame's budget. Stages, not rounds, settle a moving picture (each frees the holders
# that drifted, lowers the free tiles' prices and renews stale lists): on a pan through
# TemporalCoherence (20 x 30 cells, 700 tiles), 192 rounds as 12 stages of 16 ended 3.1 % above
# the optimum on average (max 9.4 %), as 24 of 8 1.7 % (5.8 %), as 48 of 4 1.1 % (3.8 %), all at
# the carried epsilon.
WARM_STAGES = 48
# A warm solve's epsilon: 16 times the carried one for 40 stages, 4 times for one, then the
# carried one for the last 7 (fixed by the stage index: 8 more launches a solve, none a stage).
# Measured on the references against SciPy, the pan above with seeds 0-5 (42 warm frames; true
# / certified gap, mean and worst): at the carried epsilon throughout 2.0 / 2.6 %, 8.3 / 9.6 %
# (the frames half a cell off the grid end with ~25 of 600 cells without a tile); this schedule
# 0.84 / 1.13 %, 2.1 / 3.3 %; with the last 11 or 15 stages at the carried epsilon 0.86-0.96 /
# 1.10-1.23 %, 5.7-5.9 / 6.5-6.8 %; with the first stage at the carried epsilon 1.0 / 1.3 %,
# 5.3 / 6.0 %. The footage-like clips of tests/test_temporal.py (504 cells, 560 tiles, 23 warm
# frames; true gap, mean and worst): pan 0.62 / 5.3 % -> 0.33 / 1.9 %, zoom 0.07 / 1.0 % ->
# 0.03 / 0.2 %, shake 2.1 / 8.5 % -> 1.1 / 3.1 %. On seeds 0-2: 16 times until every cell
# holds a tile (decided on the device, 4 more torch ops a stage) 0.64 / 2.8 %, 1.2 / 4.8 % (the
# bound stays loose); scaling down from 4, 16 or 64 times in the first stages, twice or half the
# carried epsilon, floors to 0 on the first stage, 32-40 stages of 6-10 rounds: still 6.7-9.5 %
# above the optimum at worst; RELEASE_SLACK 1 (21 %, and cold solves 54-76 %), 2 or 3 (7.2-8.5 %).
WARM_EPS_SCALE = 16.0
WARM_EPS_STEP = 4.0
WARM_FINAL_STAGES = 7
# The share of the cells that the first warm stage must leave without a tile for the later
# stages to run scaled. The footage-like clips of tests/scenes.py at 320 x 192 (240 cells, 7
# warm frames) mostly stay below it: their shake ends 0.10 % above the optimum on average, 0.64 %
# at worst (0.02 % and 0.14 % at the carried epsilon throughout, 0.19 % and 0.90 % scaled
# throughout), their pan 0.08 % and 0.42 % (0.13 % and 0.82 %; 0.06 % and 0.32 %).
WARM_DISPLACED_SHARE = 0.125
# A cold solve (the first frame of a video or of a new grid, never inside the frame step's CUDA
# graph) runs stages of COLD_ROUNDS_PER_STAGE rounds and renews the stale lists before each
# round, reads its certificate back every COLD_CHECK_STAGES stages (a chunk, on a GPU one graph
# replay) and stops once it meets the target: one host read per check, on every device alike (so
# the kernels and the references stop at the same stage). Why the renewals: after a round's
# first evictions nearly every cell without a tile has a stale list (2040 x 5000: 1361 of 1413
# after 4 rounds), so without them it waits for the next stage and stages, not rounds, set the
# pace. Measured against SciPy on image-like frames (stages / true / certified gap at the stop;
# before, 4 rounds a stage, a renewal a stage, checks every 8 of 800): 600 x 700 reuse 1 seeds 0
# and 5 184 / 0.11 / 0.72 % and 236 / 0.12 / 0.73 % (800 / 0.09 / 0.72 %, 800 / 0.40 / 1.07 %:
# not met), reuse 2 44 / 0.10 / 0.60 % (200 / 0.08 / 0.59 %), 600 x 400 reuse 3 28 / 0.12 /
# 0.60 % (168 / 0.10 / 0.49 %); 2040 x 5000 reuse 1, 2, 3: 92, 44, 36 stages to 0.96, 0.77,
# 0.61 % certified (384 to 0.96 %, 376 to 0.74 %, 800 to 7-9 %: not met). A stage is 83 launches
# (23 before): 2.3k-20k a solve where it was 3.7k-18k. With 4 or 8 rounds a stage and the
# renewals, about as many rounds in all and more stages (2040 x 5000 reuse 1: 227 stages of 4,
# 136 of 8); 6 to 12 rounds with a renewal before each: ~1000-1100 rounds (reuse 1).
COLD_STAGES = 256
COLD_ROUNDS_PER_STAGE = 12
COLD_CHECK_STAGES = 4
# A cold start begins at 256 times the final epsilon and divides it by 16 twice. Measured
# against SciPy (600 x 700 image-like, 3200 rounds): 0.08 % true / 0.71 % certified, where 4 six
# times gave 0.63 % / 2.99 %, 8 three times 0.62 % / 1.57 %, 4 three times 0.37 % / 1.11 %.
EPS_STEP = 16.0
COLD_SCALING_STAGES = 2
RELEASE_SLACK = 1.5
TARGET_GAP = 0.01
DROPPED_TILES = 1024
# The completion: searches of candidates, each followed by passes. A frame whose stages leave
# many cells without a tile (a hard cut restarts within the warm budget: ~50 of 600) needs them:
# a cell left after the last search's passes takes a free slot by lightness, often far off (one
# such cell costs its 600-cell frame ~7 %). Cut frames through TemporalCoherence (600 cells, 700
# tiles; true / certified gap): one search of 8 candidates and 4 passes left 13 cells to the
# fill, 37.5 / 40.4 %; of 32 and 12 none, 3.3 / 5.5 % (other cuts 2.7-3.0 %). A restart on an
# unrelated frame (600 x 700, seed 5: 52 cells left by the stages) still left 8 after one search
# of 32 and 12, 39.5 %; a second search over the cells still waiting places them, 9.7 % (two of
# 16 and 6: 26.5 %; three of 8 and 4, four of 16 and 4, three of 32 and 8: 9.8 %). A frame that
# leaves no cell searches nothing (only launches).
COMPLETION_SEARCHES = 2
COMPLETION_CANDIDATES = 32
COMPLETION_PASSES = 12
# Epsilon never falls below this fraction of the mean value of the cells' last candidates: when
# perfect matches make the lower bound 0, a relative target says nothing, and float32 prices must
# still move when a bid adds epsilon.
EPS_FLOOR = 1e-3


@dataclass
class AuctionState:
    """What an auction carries from one frame to the next, all on the features' device.

    Holders: ``assigned`` and ``held_key`` int64 ``(N,)`` (-1 none), ``slots`` int64 ``(M, R)``,
    ``price`` float32 ``(M,)``. Lists: ``nearest`` int64 and ``values`` float32 ``(N, k)``, the
    last search of each cell; ``bound`` float32 ``(N,)``, the lower bound ``V`` on ``distance +
    price`` of the tiles outside its list, for the descriptors ``features`` float32 ``(N, D)``.
    ``eps`` float32 ``()``: the final bid increment. ``warm``: whether it holds a solution (else
    the next solve starts cold). Shapes never change; a new grid, pool or cap needs a new state.
    """

    assigned: torch.Tensor
    held_key: torch.Tensor
    slots: torch.Tensor
    price: torch.Tensor
    nearest: torch.Tensor
    values: torch.Tensor
    bound: torch.Tensor
    features: torch.Tensor
    eps: torch.Tensor
    warm: bool = False

    @classmethod
    def fresh(cls, problem: Problem, capacity: int) -> AuctionState:
        """A cold state for problems shaped like ``problem``: no holders, every price 0."""
        (n, dim), m = problem.cells.shape, problem.tiles.shape[0]
        k = min(CANDIDATES, m)
        device = problem.device
        return cls(
            assigned=torch.full((n,), -1, dtype=torch.int64, device=device),
            held_key=torch.full((n,), -1, dtype=torch.int64, device=device),
            slots=torch.full((m, capacity), -1, dtype=torch.int64, device=device),
            price=torch.zeros(m, dtype=torch.float32, device=device),
            nearest=torch.zeros((n, k), dtype=torch.int64, device=device),
            values=torch.zeros((n, k), dtype=torch.float32, device=device),
            bound=torch.zeros(n, dtype=torch.float32, device=device),
            features=torch.zeros((n, dim), dtype=torch.float32, device=device),
            eps=torch.zeros((), dtype=torch.float32, device=device),
        )

    def copy(self) -> AuctionState:
        """An independent copy (benchmarks start every round from the same carried state)."""
        tensors = {
            name: getattr(self, name).clone()
            for name in self.__dataclass_fields__
            if name != "warm"
        }
        return AuctionState(**tensors, warm=self.warm)

    def matches(self, problem: Problem, capacity: int) -> bool:
        """Whether this state fits ``problem`` under ``capacity`` (shapes and device)."""
        return (
            self.features.shape == problem.cells.shape
            and self.slots.shape == (problem.tiles.shape[0], capacity)
            and self.slots.device == problem.device
        )

    def restart_where(self, cold: torch.Tensor) -> None:
        """Forget the previous frame, in place, where the bool scalar ``cold`` is true (a scene
        cut seen on the device): no holders and every price 0, with no host read. Lists are kept
        (their bounds stay valid when prices fall to 0 only if renewed, so every list is
        marked for renewal through an infinite descriptor move)."""
        self.assigned.copy_(torch.where(cold, -1, self.assigned))
        self.held_key.copy_(torch.where(cold, -1, self.held_key))
        self.slots.copy_(torch.where(cold, -1, self.slots))
        self.price.copy_(torch.where(cold, 0.0, self.price))
        self.bound.copy_(torch.where(cold, 0.0, self.bound))


@dataclass(frozen=True)
class AuctionResult:
    """A solve's assignment and certificate, all on the device (read them when needed).

    ``tiles`` int64 ``(N,)``; ``primal`` and ``dual`` float64 ``()``: the total cost (bonus on
    every tile but the incumbent) and the lower bound on its optimum; ``gap`` float64 ``()``:
    ``(primal - dual) / dual``, an upper bound on ``primal / optimum - 1`` (inf when the bound is
    not positive).
    """

    tiles: torch.Tensor
    primal: torch.Tensor
    dual: torch.Tensor
    gap: torch.Tensor


@dataclass
class _Lists:
    """This frame's candidate lists in ``kernels.auction``'s layout: ``candidates`` int64 and
    ``cost`` float32 ``(N, k + 2)``, ``outside`` float32 ``(N,)`` (the bound plus the bonus)."""

    candidates: torch.Tensor
    cost: torch.Tensor
    outside: torch.Tensor


def solve_auction(
    problem: Problem,
    reuse: int,
    state: AuctionState | None = None,
    target_gap: float = TARGET_GAP,
) -> AuctionResult:
    """Assign the cells of ``problem`` with each tile at most ``reuse >= 1`` times.

    ``state`` carries prices, holders and lists between the frames of a video (updated in
    place; a cold start when it is not ``warm``); ``None`` solves a single frame cold.
    ``N <= M * reuse``.
    """
    n = problem.cells.shape[0]
    capacity = min(reuse, n)
    if state is None:
        state = AuctionState.fresh(problem, capacity)
    cold = not state.warm
    if cold:
        _search_all(problem, state)
        eps_final = _eps_from_bound(state.values[:, 0].double().sum(), n, target_gap, state)
        eps = eps_final * EPS_STEP**COLD_SCALING_STAGES
        stages, chunk = COLD_STAGES, min(COLD_CHECK_STAGES, COLD_STAGES)
        rounds = COLD_ROUNDS_PER_STAGE
    else:
        _follow_descriptors(problem, state)
        eps = eps_final = state.eps
        stages = chunk = WARM_STAGES
        rounds = ROUNDS_PER_STAGE
    lists = _lists(problem, state, searched=cold)
    run = _Stages.start(problem, state, lists, chunk, rounds, eps, eps_final, cold)
    # The first chunk runs eagerly (it compiles and tunes the kernels for these sizes); a cold
    # solve's later chunks, all alike, replay one CUDA graph on a GPU, between its checks.
    graph = _ChunkGraph(run) if cold and run.capturable else None
    for first in range(0, stages, chunk):
        if first and cold and run.best.certified(target_gap):
            break
        count = min(chunk, stages - first)
        if graph is not None and first and count == chunk:
            graph.run()
        elif run.chunk(first, count):
            break
    _complete(problem, state, capacity)
    run.best.offer_primal(problem, state)
    run.floor_prices(chunk)
    result = run.best.restore(problem, state)
    run.floor_prices(chunk + 1)
    state.eps = _eps_from_bound(result.dual, n, target_gap, state)
    state.warm = True
    return result


@dataclass
class _Stages:
    """A solve's stages, run in chunks of ``chunk`` stages that all look alike to the device.

    Everything a stage indexes lives in rings of one chunk: stage ``s`` of a chunk of ``rounds``
    rounds a stage counts its cells without a tile at ``counts[1 + s * (rounds + 1) + r]`` (``r =
    0`` its release; each round adds into the next entry), notes its total in row ``s + 1`` of
    ``best.stages`` and its price lowering in row ``s`` of ``best`` and ``lowering``. Entry 0
    of ``counts`` and of ``best.stages.lowest_total`` carry the last chunk's last entries, and
    the bounds of the last chunk are kept in ``best.bound`` as the next one opens
    (``open_chunk``), so a cold solve's later chunks are one sequence of launches with the same
    arguments, which a CUDA graph replays. ``eps`` float32 ``()``: a cold solve's epsilon,
    carried from chunk to chunk. Two lowerings follow the stages (rows ``chunk`` and ``chunk +
    1``). ``stale`` uint8 ``(N,)``, the cells whose list is renewed next, and ``stale_rows`` the
    same as bool.
    """

    problem: Problem
    state: AuctionState
    lists: _Lists
    cold: bool
    chunk_stages: int
    rounds: int
    stale: torch.Tensor
    stale_rows: torch.Tensor
    counts: torch.Tensor
    work: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    best: _Best
    lowering: _Lowering
    eps: torch.Tensor
    eps_final: torch.Tensor
    # Without kernels (the pure-torch references on a CPU) reading a count costs nothing, and
    # stopping once a stage at the final epsilon changed nothing gives the same result sooner:
    # ``settled`` says whether the last stage opened with every cell placed, none of them with
    # a stale list, and lowered no price (then every later stage does nothing).
    idle_stop: bool
    settled: bool = False

    @classmethod
    def start(
        cls,
        problem: Problem,
        state: AuctionState,
        lists: _Lists,
        chunk: int,
        rounds: int,
        eps: torch.Tensor,
        eps_final: torch.Tensor,
        cold: bool,
    ) -> _Stages:
        """Nothing run yet: ``counts`` at 0 but, cold, entry 0 (no stage before, so no
        epsilon scaling: 1), the epsilon ``eps``; ``chunk`` stages a chunk, of ``rounds``
        rounds. (A warm solve is one chunk and reads no entry 0.)"""
        n, device = problem.cells.shape[0], problem.device
        counts = torch.zeros(1 + chunk * (rounds + 1), dtype=torch.int32, device=device)
        if cold:
            counts[:1].fill_(1)
        stale = torch.zeros(n, dtype=torch.uint8, device=device)
        return cls(
            problem=problem,
            state=state,
            lists=lists,
            cold=cold,
            chunk_stages=chunk,
            rounds=rounds,
            stale=stale,
            stale_rows=stale.view(torch.bool),
            counts=counts,
            work=round_work(n, device),
            best=_Best.start(state, chunk + 1, chunk + 2),
            lowering=_Lowering.start(problem, chunk + 2),
            eps=eps,
            eps_final=eps_final,
            idle_stop=not use_triton(problem.cells),
        )

    @property
    def capturable(self) -> bool:
        """Whether a chunk can be captured as a CUDA graph: kernels on a GPU, and not inside
        another capture."""
        cells = self.problem.cells
        return (
            cells.device.type == "cuda"
            and use_triton(cells)
            and not torch.cuda.is_current_stream_capturing()
        )

    def chunk(self, first: int, count: int) -> bool:
        """Run stages ``first`` to ``first + count - 1`` (``count`` at most a chunk) and return
        whether the solve can stop (the references only: a stage changed nothing at the final
        epsilon)."""
        if first:
            self.open_chunk()
        if self.cold:
            return self.cold_stages(first, count)
        self.warm_stages(count)
        return False

    def open_chunk(self) -> None:
        """Carry the last chunk's last entries into entry 0 and keep its best bound (no host
        read: the same launches for every chunk)."""
        self.counts[0] = self.counts[-1]
        self.counts[1:].zero_()
        totals = self.best.stages.lowest_total
        totals[0] = totals[-1]
        self.best.keep_bound()
        self.lowering.fell.zero_()
        self.lowering.lowest.fill_(math.inf)

    def cold_stages(self, first: int, count: int) -> bool:
        """A cold chunk: epsilon scaling, divided by ``EPS_STEP`` at each stage that opens with
        every cell placed (on the device), carried in ``eps``."""
        eps = self.eps
        for stage in range(count):
            if self.idle_stop and self.idle(eps):
                return True
            before = self.counts[self.opened(stage) - 1]
            eps = torch.where(before == 0, torch.maximum(eps / EPS_STEP, self.eps_final), eps)
            self.stage(stage, eps, eps * RELEASE_SLACK)
        self.eps.copy_(eps)
        return False

    def warm_stages(self, count: int) -> None:
        """A warm solve's ``count`` stages, its epsilon by the stage index
        (``_warm_epsilons``)."""
        schedule = _warm_epsilons(self.eps_final, count)
        for stage in range(count):
            if self.idle_stop and stage and self.idle(schedule[stage - 1][0]):
                return
            if stage == 1:
                # Decided on the device: a frame whose first stage freed few holders (it moved
                # little) runs at the carried epsilon from here on, as it did before scaling.
                displaced = self.counts[self.opened(0)] > self.stale.shape[0] * WARM_DISPLACED_SHARE
                schedule = _warm_epsilons(self.eps_final, count, displaced)
            self.stage(stage, *schedule[stage])

    def idle(self, eps: torch.Tensor) -> bool:
        """Whether the last stage, run at ``eps``, changed nothing at the final epsilon (a
        host read: the references only)."""
        return self.settled and bool(eps <= self.eps_final)

    def opened(self, stage: int) -> int:
        """The entry of ``counts`` that stage ``stage`` of a chunk opens with."""
        return 1 + stage * (self.rounds + 1)

    def stage(self, stage: int, eps: torch.Tensor, tolerance: torch.Tensor) -> None:
        """Stage ``stage`` of a chunk (the module docstring's stages)."""
        state, lists, stale = self.state, self.lists, self.stale
        opened = self.opened(stage)
        auction_release(
            lists.candidates, lists.cost, lists.outside, state.price, state.assigned,
            state.held_key, stale, self.counts, tolerance, opened, self.best.stages, stage + 1,
        )  # fmt: skip
        quiet = self.idle_stop and bool(self.counts[opened] == 0) and not bool(stale.any())
        _renew_stale(self.problem, state, lists, stale, self.stale_rows)
        auction_rebuild_slots(
            state.assigned, state.held_key, state.slots, self.best.stages, stage + 1
        )
        self.floor_prices(stage)
        self.settled = quiet and bool(self.lowering.fell[stage] == 0)
        for step in range(self.rounds):
            if step and self.cold:
                _renew_stale(self.problem, state, lists, stale, self.stale_rows)
            auction_round(
                lists.candidates, lists.cost, lists.outside, state.price, state.assigned,
                state.held_key, state.slots, stale, self.counts, eps,
                stage * self.rounds + step, self.work, opened + step,
            )  # fmt: skip

    def floor_prices(self, index: int) -> None:
        """``_floor_prices`` as lowering ``index``: to ties when warm, to 0 when cold. Warm,
        floors to 0 undo the carried prices: the holders whose content drifted leave, their
        tiles drop to 0 and draw holders from elsewhere, a cascade that the warm budget does not
        settle; floors to ties do not start it. Cold, epsilon scaling ends closer to the optimum
        with floors to 0 (at 600 x 700: 0.5 % above it against 5.7 %)."""
        _floor_prices(
            self.problem, self.state, self.lists, self.stale, not self.cold, self.lowering,
            self.best, index,
        )  # fmt: skip


class _ChunkGraph:
    """A cold solve's later chunks as one CUDA graph: captured at the first call (the chunk
    captured is then replayed: capturing runs nothing), replayed at each. A chunk that cannot be
    captured runs eagerly, with a warning, as do the rest: slower, not wrong."""

    def __init__(self, run: _Stages) -> None:
        self.stages = run
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False

    def run(self) -> None:
        """One chunk after the first."""
        run, chunk = self.stages, self.stages.chunk_stages
        if self.graph is None and not self.failed:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    run.chunk(chunk, chunk)
            except RuntimeError as error:
                self.failed = True
                reason = (str(error).strip() or type(error).__name__).splitlines()[0]
                warnings.warn(
                    f"a cold auction's stages could not be captured as a CUDA graph ({reason}); "
                    "they run without one",
                    stacklevel=3,
                )
            else:
                self.graph = graph
        if self.graph is None:
            run.chunk(chunk, chunk)
        else:
            self.graph.replay()


@dataclass
class _Best:
    """The best complete assignment and the best lower bound a solve has seen, on the device.

    A stage can end in the middle of a cascade of evictions (a smaller epsilon, a price floor),
    so the last state is not always the best one: every stage offers its assignment as it opens
    (the kernels keep the cheapest complete one in ``stages``, a ``kernels.auction.StageBest``)
    and every price lowering its bound, as partial sums (``value_sums`` float64 ``(C,
    cell_programs)``, -inf in rows never written, and ``price_sums`` float64 ``(C,
    tile_programs)``, one row per lowering of a chunk; ``bound`` float64 ``()`` keeps the best
    bound of the rows that a later chunk overwrites); ``restore`` keeps the highest. Any prices
    give a valid bound, so the best bound is one too. ``primal`` float64 ``()``: the cost of the
    best holders once ``offer_primal`` has run, +inf before. ``capacity``: the tiles' slots.
    """

    stages: StageBest
    value_sums: torch.Tensor
    price_sums: torch.Tensor
    bound: torch.Tensor
    primal: torch.Tensor
    capacity: int

    @classmethod
    def start(cls, state: AuctionState, stages: int, lowerings: int) -> _Best:
        """Nothing offered yet, for ``stages`` stages and ``lowerings`` price lowerings."""
        n, m = state.assigned.shape[0], state.price.shape[0]
        device = state.price.device
        return cls(
            stages=stage_best(state.assigned, state.held_key, stages),
            value_sums=torch.full(
                (lowerings, cell_programs(n, device)),
                -math.inf,
                dtype=torch.float64,
                device=device,
            ),
            price_sums=torch.zeros(
                (lowerings, tile_programs(m)), dtype=torch.float64, device=device
            ),
            bound=torch.full((), -math.inf, dtype=torch.float64, device=device),
            primal=torch.full((), math.inf, dtype=torch.float64, device=device),
            capacity=state.slots.shape[1],
        )

    def certified(self, target_gap: float) -> bool:
        """Whether the best holders and bound of the chunks run so far certify a gap of at
        most ``target_gap`` (a host read; between full chunks, where the last entry of
        ``lowest_total`` is the lowest total so far)."""
        primal = self.stages.lowest_total[-1]
        dual = self._best_bound()
        return bool((primal - dual <= target_gap * dual) & (dual > 0))

    def keep_bound(self) -> None:
        """Take the bounds of the lowerings so far into ``bound`` (before a chunk overwrites
        their rows)."""
        torch.maximum(self.bound, self._best_bound(), out=self.bound)

    def _best_bound(self) -> torch.Tensor:
        """float64 ``()``: the highest bound offered, ``sum(dual_values) - capacity *
        sum(price)`` of a lowering (-inf when none was)."""
        bounds = self.value_sums.sum(1) - self.capacity * self.price_sums.sum(1)
        return torch.maximum(self.bound, bounds.amax())

    def offer_primal(self, problem: Problem, state: AuctionState) -> None:
        """After the stages: keep the state's holders if every cell holds a tile and they cost
        less than any holders offered before, and note the best holders' cost."""
        total = objective(problem, state.assigned.clamp_min(0))
        total = torch.where((state.assigned >= 0).all(), total, math.inf)
        earlier = torch.minimum(self.primal, self.stages.lowest_total.amin())
        better = total < earlier
        torch.where(better, state.assigned, self.stages.tiles, out=self.stages.tiles)
        torch.where(better, state.held_key, self.stages.keys, out=self.stages.keys)
        torch.minimum(earlier, total, out=self.primal)

    def restore(self, problem: Problem, state: AuctionState) -> AuctionResult:
        """Put the best holders back in ``state`` and return them with their certificate: the
        cost recomputed as ``objective`` does (the stages priced them from their lists, whose
        sums may round differently) and the highest bound offered, ``sum(dual_values) -
        capacity * sum(price)`` of a lowering."""
        tiles = self.stages.tiles
        state.assigned.copy_(tiles)
        state.held_key.copy_(self.stages.keys)
        auction_rebuild_slots(state.assigned, state.held_key, state.slots)
        primal = torch.where(self.primal < math.inf, objective(problem, tiles), math.inf)
        dual = self._best_bound()
        gap = torch.where(dual > 0, (primal - dual).clamp_min(0) / dual, math.inf)
        return AuctionResult(tiles.clone(), primal, dual, gap)


def _warm_epsilons(
    eps_final: torch.Tensor, stages: int, scaled: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each warm stage's epsilon and release tolerance (``RELEASE_SLACK`` times it): epsilon
    ``WARM_EPS_SCALE`` times ``eps_final`` (float32 ``()``), divided by ``WARM_EPS_STEP`` a
    stage so that the last ``WARM_FINAL_STAGES`` run at ``eps_final`` (all of them when the
    budget is shorter); where the bool ``()`` ``scaled`` is false, ``eps_final`` throughout.
    Fixed by the stage index, so it costs no launch a stage: one pair of tensors per value,
    shared by the stages that use it."""
    descent = round(math.log(WARM_EPS_SCALE, WARM_EPS_STEP))
    first_step = stages - WARM_FINAL_STAGES - descent
    values = []
    for steps in range(descent):
        value = eps_final * (WARM_EPS_SCALE / WARM_EPS_STEP**steps)
        values.append(value if scaled is None else torch.where(scaled, value, eps_final))
    values.append(eps_final)
    pairs = [(value, value * RELEASE_SLACK) for value in values]
    return [pairs[min(max(stage - first_step, 0), descent)] for stage in range(stages)]


def _eps_from_bound(dual: torch.Tensor, n: int, target_gap: float, state: AuctionState):
    """The final epsilon for a lower bound ``dual`` on the optimum: ``RELEASE_SLACK * N * eps``
    is half the target gap of it, and never below ``EPS_FLOOR`` of the mean value of the cells'
    last candidates."""
    floor = (state.values[:, -1].mean() * EPS_FLOOR).clamp_min(1e-12)
    eps = (target_gap / 2 / RELEASE_SLACK) * dual.float() / max(n, 1)
    return torch.maximum(eps, floor)


def _search_all(problem: Problem, state: AuctionState) -> None:
    """Every cell's search from scratch at the state's prices (``_lists(..., searched=True)``
    then takes their bounds)."""
    k = state.nearest.shape[1]
    cost_topk(problem.cells, problem.tiles, k, bias=state.price, out=(state.values, state.nearest))
    state.features.copy_(problem.cells)


def _follow_descriptors(problem: Problem, state: AuctionState) -> None:
    """Carry the bounds over to this frame's descriptors (the module docstring's rule)."""
    moved = (problem.cells - state.features).square_().sum(1).sqrt_()
    state.bound.copy_((state.bound.sqrt() - moved).clamp_min_(0).square_())
    state.features.copy_(problem.cells)


def _lists(problem: Problem, state: AuctionState, searched: bool = False) -> _Lists:
    """This frame's lists: each cell's searched tiles, then its held tile and its incumbent
    where not already listed, with their costs at this frame's descriptors and bonus.
    ``searched``: every cell was just searched (``_search_all``): the bounds become the
    searches' last values first."""
    n, k = state.nearest.shape
    device = problem.device
    lists = _Lists(
        torch.empty((n, k + 2), dtype=torch.int64, device=device),
        torch.empty((n, k + 2), dtype=torch.float32, device=device),
        torch.empty(n, dtype=torch.float32, device=device),
    )
    every_row = torch.ones(n, dtype=torch.uint8, device=device)
    _write_lists(problem, state, lists, every_row, renew=searched)
    return lists


def _write_lists(
    problem: Problem,
    state: AuctionState,
    lists: _Lists,
    rows: torch.Tensor,
    renew: bool = False,
) -> None:
    """Rewrite the lists of the cells flagged in ``rows`` (uint8 ``(N,)``) from the state's
    searches and holders (``kernels.auction.auction_lists``); every ``outside`` follows the
    state's bounds. ``renew``: the flagged rows were just searched again: their bounds become
    their searches' last values first, and the flags are cleared."""
    auction_lists(
        problem.cells, problem.tiles, problem.incumbent, problem.bonus, state.nearest,
        state.assigned, rows, state.bound, lists.candidates, lists.cost, lists.outside,
        state.values if renew else None,
    )  # fmt: skip


@dataclass
class _Lowering:
    """What ``_floor_prices`` fills, for a solve: ``fallen`` int64 and ``fallen_price`` float32
    ``(S,)``, the tiles whose price fell and their prices (``DROPPED_TILES`` at most); ``fell``
    int32 and ``lowest`` float32 ``(C,)``, one entry per lowering of a chunk (how many fell,
    their lowest price; reset as the next chunk opens); ``gain`` float32 ``(M,)``: the
    lowering's scratch, 0s."""

    fallen: torch.Tensor
    fallen_price: torch.Tensor
    fell: torch.Tensor
    lowest: torch.Tensor
    gain: torch.Tensor

    @classmethod
    def start(cls, problem: Problem, lowerings: int) -> _Lowering:
        m = problem.tiles.shape[0]
        size = min(m, DROPPED_TILES)
        device = problem.device
        return cls(
            fallen=torch.zeros(size, dtype=torch.int64, device=device),
            fallen_price=torch.zeros(size, dtype=torch.float32, device=device),
            fell=torch.zeros(lowerings, dtype=torch.int32, device=device),
            lowest=torch.full((lowerings,), math.inf, dtype=torch.float32, device=device),
            gain=torch.zeros(m, dtype=torch.float32, device=device),
        )


def _floor_prices(
    problem: Problem,
    state: AuctionState,
    lists: _Lists,
    stale: torch.Tensor,
    to_ties: bool,
    lowering: _Lowering,
    best: _Best,
    index: int,
) -> None:
    """Lower the prices of the tiles with a free slot, to 0 or (``to_ties``) only as far as a
    cell that lists them would take them (``kernels.auction.auction_lower_prices``), and keep
    every bound valid: each cell's bound also covers the tiles whose price fell (a search over
    ``DROPPED_TILES`` of them at most, whose work follows how many fell); if more fell, every
    bound drops to the lowest fallen price (a distance is never negative) and every list is
    marked stale (``kernels.auction.auction_dual_bound``, which also offers the bound at the new
    prices to ``best``). ``index``: this lowering's, below ``lowerings`` of ``_Lowering.start``."""
    auction_lower_prices(
        lists.candidates, lists.cost, lists.outside, state.price, state.slots, to_ties,
        lowering.fallen, lowering.fallen_price, lowering.fell, lowering.lowest, best.price_sums,
        index, lowering.gain,
    )  # fmt: skip
    auction_dual_bound(
        lists.candidates, lists.cost, lists.outside, state.price, state.bound, problem.bonus,
        stale, problem.cells, problem.tiles, lowering.fallen, lowering.fallen_price,
        lowering.fell, lowering.lowest, best.value_sums, index,
    )  # fmt: skip


def _renew_stale(
    problem: Problem, state: AuctionState, lists: _Lists, stale: torch.Tensor, rows: torch.Tensor
) -> None:
    """New lists, at the current prices, for the cells flagged ``stale``; clears the flags.
    ``rows``: ``stale`` viewed as bool."""
    k = state.nearest.shape[1]
    cost_topk(
        problem.cells, problem.tiles, k, bias=state.price, rows=rows,
        out=(state.values, state.nearest),
    )  # fmt: skip
    _write_lists(problem, state, lists, stale, renew=True)


def _complete(problem: Problem, state: AuctionState, capacity: int) -> None:
    """Give every cell still without a tile a free slot, in place, with fixed shapes and no
    prices (``kernels.auction.auction_complete``): ``COMPLETION_SEARCHES`` times, a search of
    each such cell's ``COMPLETION_CANDIDATES`` nearest tiles with a free slot and
    ``COMPLETION_PASSES`` passes in which it offers itself to the first of them that still has
    one and each tile takes the nearest offers it has room for; then, for any cell still left,
    the free slots in order of lightness; then the slots are rebuilt. Changes nothing when every
    cell holds a tile (and then searches nothing)."""
    n, m = problem.cells.shape[0], problem.tiles.shape[0]
    k = min(COMPLETION_CANDIDATES, m)
    work = completion_work(n, m, capacity, COMPLETION_PASSES, k, problem.device)
    for search in range(COMPLETION_SEARCHES):
        auction_complete_start(state.assigned, state.slots, work)
        cost_topk(
            problem.cells, problem.tiles, k, bias=work.bias, rows=work.waiting,
            out=(work.distance, work.nearest),
        )  # fmt: skip
        auction_complete(
            problem.cells, problem.tiles, state.price, state.assigned, state.held_key,
            state.slots, work, fill=search == COMPLETION_SEARCHES - 1,
        )  # fmt: skip


def objective(problem: Problem, tiles: torch.Tensor) -> torch.Tensor:
    """float64 ``()``: the auction's objective for ``tiles`` (int64 ``(N,)``): the squared
    distances with the bonus charged on every tile but the incumbent (the exact methods'
    objective plus a constant, the bonuses' sum)."""
    cells = torch.arange(tiles.shape[0], device=tiles.device)
    bonus = torch.where(tiles == problem.incumbent, 0.0, problem.bonus)
    return (problem.distance(cells, tiles) + bonus).double().sum()
