"""Temporal coherence: keep each cell's tile while its content stays, move it with the content,
change it when the content changes.

Each cell remembers its *anchor*: its descriptor when its current tile was chosen. While the
cell's content stays within ``change_threshold`` of the anchor, its incumbent tile gets a
switching bonus in the assignment cost, so sensor noise and small shifts never flip it. Once the
content has drifted past the threshold, the bonus is withdrawn and the cell competes afresh; it
then takes a new anchor. A scene cut (most cells jump at once from one frame to the next, after
the camera's motion is accounted for) drops every incumbent.

**Tiles follow the camera.** Each frame's motion is estimated from the descriptors of this frame
and the previous one (``mosaic.motion``: one affine map, pan, zoom and shake). The tiles move
with the content: a *phase* per cell, in cells, adds up the motion the tiles have not followed
yet, and once it passes half a cell (``HOP`` with a little hysteresis, so a camera shaking
around a half-cell offset does not make the tiles hop back and forth) the tiles move by whole
cells. Each cell's incumbent and anchor are then those of the cell its content came from; cells
whose content entered the frame have none. Neighbouring cells share their phase (it comes from
one smooth motion field), so on a pan the tiles move together, as the picture does. The anchor
is compared with the cell's content after moving it by the motion the tile has not followed
(its *drift*), so a tile half a cell behind its content keeps its bonus. What the motion model
misses (an object moving on its own) the solver corrects, as before.

The bonus is relative to the mean per-cell cost of the previous frame, so one setting works for
any pool and any descriptor grid. The settings, ``TemporalSettings``, are defined with the other
settings in ``mosaic.config`` (plain data that imports without torch).

Everything stays on the features' device in fixed shapes: nothing here reads a value back to the
host, and a frame's plan is the same sequence of operations whatever the content.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mosaic.assign import AuctionState, Problem
from mosaic.config import TemporalSettings
from mosaic.motion import (
    MotionConstants,
    block_image,
    carry,
    cell_descriptors,
    cell_displacement,
    descriptor_side,
    estimate_motion,
    motion_field,
    warp_blocks,
)

# Tiles move by a cell once their content is HOP cells past them; the tiles behind one that
# moves follow it, in a row, while their content is at least FOLLOW past them (so that after
# the move none is more than 1 - FOLLOW off), and a row of tiles that would push into one that
# stays moves only once its front is LIMIT past (a zoom-out packs content together).
HOP = 0.6
FOLLOW = 0.4
LIMIT = 0.8
# The change of a cell's descriptor from the last frame (Oklab, RMS over its blocks) at which
# its bonus is halved (see ``plan``).
MASKING = 0.03


@dataclass(frozen=True)
class TemporalPlan:
    """What the next assignment gets: each cell's incumbent (-1 none) and its bonus, and whether
    this frame is a scene cut (a bool tensor on the features' device: nothing is read back)."""

    incumbent: torch.Tensor | None  # (N,) int64
    bonus: torch.Tensor | float  # (N,) float32, or 0.0
    scene_cut: torch.Tensor | bool  # () bool, or False when nothing was compared


@dataclass(frozen=True)
class _Carried:
    """Each cell's incumbent, anchor and drift after the tiles moved with the content."""

    incumbent: torch.Tensor  # (N,) int64, -1 where the content entered the frame
    anchor: torch.Tensor  # (N, D)
    drift: torch.Tensor  # (N, 2) float32, cells: content motion the tile has not followed
    steady: torch.Tensor  # (N,) bool: cells that got the bonus


class TemporalCoherence:
    """State carried from frame to frame: incumbents, anchors, the previous frame's features,
    the camera's motion and the tiles' phase, and the auction's prices and lists
    (``auction_state``). Everything stays on the features' device; nothing here reads a value
    back to the host."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self._incumbent: torch.Tensor | None = None  # (N,) int64
        self._anchor: torch.Tensor | None = None  # (N, D) descriptors when tiles were chosen
        self._drift: torch.Tensor | None = None  # (N, 2) cells, content motion since then
        self._previous: torch.Tensor | None = None  # (N, D) last frame's descriptors
        self._grid: tuple[int, int] | None = None
        self._motion: torch.Tensor | None = None  # (2, 3) last frame's motion, in blocks
        self._pan: torch.Tensor | None = None  # (2,) cells the tiles lag the camera's pan
        self._phase: torch.Tensor | None = None  # (N, 2) and its zoom and roll, cell by cell
        self._carried: _Carried | None = None
        self._mean_cost: torch.Tensor | None = None  # () float64: last frame's mean cost
        self._auction: AuctionState | None = None
        # The motion fit's fixed tensors, kept with this state: a captured frame step reads them.
        self._motion_constants = MotionConstants()

    def plan(self, features: torch.Tensor, grid: tuple[int, int]) -> TemporalPlan:
        """Incumbents and bonuses for a frame with descriptors ``features`` ``(N, D)`` on a
        ``rows x cols`` ``grid``.

        The tiles first move with the content (module docstring). A scene cut (at least
        ``scene_cut`` of the cells jumped past ``change_threshold`` from the previous frame moved
        by the camera's motion) is decided on the device: it withdraws every incumbent and
        bonus, forgets the motion and restarts the auction's state, all through ``torch.where``.
        """
        settings = self.settings
        same_grid, self._grid = self._grid == grid, grid
        if (
            self._incumbent is None
            or self._previous is None
            or self._mean_cost is None
            or not same_grid
            or self._previous.shape != features.shape
            or settings.switch_bonus == 0
        ):
            self._carried = None
            return TemporalPlan(None, 0.0, scene_cut=False)
        threshold = settings.change_threshold
        if settings.follow_motion:
            side = descriptor_side(features)
            before = block_image(self._previous, grid)
            constants = self._motion_constants
            current = block_image(features, grid)
            motion = estimate_motion(before, current, self._motion, side, constants)
            field = motion_field(motion, *before.shape[-2:], constants)
            predicted = warp_blocks(before, field, constants)
            jumped = descriptor_distance(features, cell_descriptors(predicted, side)) > threshold
        else:
            jumped = descriptor_distance(features, self._previous) > threshold
        cut = jumped.float().mean() >= settings.scene_cut
        incumbent, anchor, drift = self._incumbent, self._anchor, self._drift
        aligned = features
        if settings.follow_motion:
            motion = torch.where(cut, 0.0, motion)
            self._motion = motion
            incumbent, anchor, drift = self._follow(motion, grid, side, cut)
            aligned = _moved(features, -drift, grid, side, self._motion_constants)
        incumbent = torch.where(cut, -1, incumbent)
        steady = (descriptor_distance(aligned, anchor) <= threshold) & (incumbent >= 0)
        self._carried = _Carried(incumbent, anchor, drift, steady)
        # Masking: a swap where the picture itself changes (texture sliding past, something
        # moving) is hidden by that change, and there a held tile soon stops matching; where the
        # picture is calm a swap is seen. So the bonus falls with the cell's change from the last
        # frame, as it is (not moved back by the camera's motion, on purpose).
        change = descriptor_distance(features, self._previous)
        masking = 1 / (1 + (change / MASKING).square())
        scale = settings.switch_bonus * self._mean_cost.float()
        bonus = steady.to(torch.float32) * masking * scale
        if self._auction is not None:
            self._auction.restart_where(cut)
        return TemporalPlan(incumbent, bonus, scene_cut=cut)

    def _follow(
        self, motion: torch.Tensor, grid: tuple[int, int], side: int, cut: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move the tiles with the content (``motion``, in blocks of ``side`` per cell): each
        cell's incumbent (-1 where the content entered the frame), anchor and drift after."""
        # All together for the camera's translation (one phase for the frame), each tile on its
        # own for what zoom and roll add to it (its own phase, carried with it).
        displacement = cell_displacement(motion, grid, side, self._motion_constants)
        translation = motion[:, 0] / side
        pan = torch.where(cut, 0.0, self._pan + translation)
        pan_shift = torch.where(pan.abs() > HOP, pan.round(), 0.0)
        self._pan = pan - pan_shift
        phase = self._phase + displacement - translation
        phase_shift = _waves(phase, grid)
        phase = phase - phase_shift
        move = pan_shift + phase_shift
        source, landed = carry(move.long(), grid, phase.abs().sum(1))
        self._phase = torch.where(landed[:, None] & ~cut, phase[source], 0.0)
        incumbent = torch.where(landed, self._incumbent[source], -1)
        drift = (self._drift + displacement - move)[source]
        return incumbent, self._anchor[source], drift

    def auction_state(self, problem: Problem, capacity: int) -> AuctionState:
        """The auction's prices, holders and lists for this video, new when the grid, pool or
        cap changed (or for the first frame)."""
        if self._auction is None or not self._auction.matches(problem, capacity):
            self._auction = AuctionState.fresh(problem, capacity)
        return self._auction

    def update(self, features: torch.Tensor, tiles: torch.Tensor, total_cost: torch.Tensor) -> None:
        """Record a frame's choice: ``tiles`` ``(N,)`` int64 and its summed descriptor cost
        (a ``()`` tensor on the device)."""
        # What plan carried is this frame's only: the state between frames holds no part of it.
        carried, self._carried = self._carried, None
        if carried is None:
            self._anchor = features.clone()
            self._drift = torch.zeros(len(tiles), 2, device=features.device)
            self._phase = torch.zeros_like(self._drift)
            self._pan = torch.zeros(2, device=features.device)
            self._motion = torch.zeros(2, 3, device=features.device)
        else:
            # A cell re-anchors when it changed tile, or when it competed without the bonus
            # (its content had drifted, or the frame was a scene cut) and kept its tile anyway.
            reanchor = (tiles != carried.incumbent) | ~carried.steady
            self._anchor = torch.where(reanchor[:, None], features, carried.anchor)
            self._drift = torch.where(reanchor[:, None], 0.0, carried.drift)
        self._incumbent = tiles.clone()
        self._previous = features
        self._mean_cost = total_cost.double() / max(len(tiles), 1)


def _waves(phase: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Which tiles move a cell, and which way, from their phases ``(N, 2)`` (cells, x and y):
    float32 ``(N, 2)`` of -1, 0 or 1.

    Along each row (for x) and column (for y), a tile moves forward when, ahead of it, a tile
    past ``HOP`` comes before any at ``FOLLOW`` or less: the tiles between all move, each into
    the place of the next, like a queue. The run moves only if its front leaves the grid or
    is past ``LIMIT`` (it then pushes the tile ahead, which stays, out of the picture). So a zoom
    moves whole runs of tiles outwards at once and opens one gap per run (where new content
    appears), instead of opening a gap at every tile that happens to cross HOP first.
    Cumulative minima and maxima along the axis find each tile's next trigger and stop: fixed
    shapes, no loop over the tiles.
    """
    rows, cols = grid
    field = phase.view(rows, cols, 2)
    shifts = []
    for axis, dim in ((0, 1), (1, 0)):  # x along columns (dim 1), y along rows (dim 0)
        values = field[..., axis]
        length = values.shape[dim]
        index = torch.arange(length, device=phase.device)
        index = index.view(1, -1) if dim == 1 else index.view(-1, 1)
        index = index.expand_as(values)
        # Forward (towards higher indices): the nearest trigger and stop at or after each tile.
        trigger = torch.where(values > HOP, index, length).flip(dim).cummin(dim).values.flip(dim)
        stop = torch.where(values <= FOLLOW, index, length).flip(dim).cummin(dim).values.flip(dim)
        front = torch.gather(values, dim, (stop - 1).clamp_min(0))
        forward = (trigger < stop) & ((stop == length) | (front > LIMIT))
        # Backward: the nearest at or before it.
        trigger = torch.where(values < -HOP, index, -1).cummax(dim).values
        stop = torch.where(values >= -FOLLOW, index, -1).cummax(dim).values
        front = torch.gather(values, dim, (stop + 1).clamp_max(length - 1))
        backward = (trigger > stop) & ((stop == -1) | (front < -LIMIT))
        shifts.append(forward.float() - backward.float())
    return torch.stack(shifts, -1).view(-1, 2)


def _moved(
    descriptors: torch.Tensor,
    drift: torch.Tensor,
    grid: tuple[int, int],
    side: int,
    constants: MotionConstants,
) -> torch.Tensor:
    """``descriptors`` ``(N, D)`` with each cell's content moved by its ``drift`` ``(N, 2)``
    (cells): what each cell would show now if its anchor's content had only moved."""
    rows, cols = grid
    per_block = drift.view(rows, cols, 2).permute(2, 0, 1) * side
    per_block = per_block.repeat_interleave(side, 1).repeat_interleave(side, 2)
    return cell_descriptors(warp_blocks(block_image(descriptors, grid), per_block, constants), side)


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Oklab distance of two ``(N, 3 s^2)`` descriptor sets, root mean square over the
    ``s x s`` blocks: ``(N,)``. What ``change_threshold`` is compared with (here, and where
    ``mosaic.distributed`` looks for scene cuts)."""
    blocks = a.shape[1] // 3
    return ((a - b).square().sum(dim=1) / blocks).sqrt()
