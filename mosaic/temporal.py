"""Temporal coherence: keep each cell's tile while its content stays, change it when it changes.

Each cell remembers its *anchor*: its descriptor when its current tile was chosen. While the
cell's content stays within ``change_threshold`` of the anchor, its incumbent tile gets a
switching bonus in the assignment cost, so sensor noise and small shifts never flip it. Once the
content has drifted past the threshold (a slow pan accumulates drift), the bonus is withdrawn and
the cell competes afresh; it then takes a new anchor. A scene cut (most cells jump at once from
one frame to the next) drops every incumbent.

The bonus is relative to the mean per-cell cost of the previous frame, so one setting works for
any pool and any descriptor grid. The settings, ``TemporalSettings``, are defined with the other
settings in ``mosaic.config`` (plain data that imports without torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mosaic.assign import AuctionState, Problem
from mosaic.config import TemporalSettings


@dataclass(frozen=True)
class TemporalPlan:
    """What the next assignment gets: each cell's incumbent (-1 none) and its bonus, and whether
    this frame is a scene cut (a bool tensor on the features' device: nothing is read back)."""

    incumbent: torch.Tensor | None  # (N,) int64
    bonus: torch.Tensor | float  # (N,) float32, or 0.0
    scene_cut: torch.Tensor | bool  # () bool, or False when nothing was compared


class TemporalCoherence:
    """State carried from frame to frame: incumbents, anchors, the previous frame's features,
    and the auction's prices and lists (``auction_state``). Everything stays on the features'
    device; nothing here reads a value back to the host."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self._incumbent: torch.Tensor | None = None  # (N,) int64
        self._anchor: torch.Tensor | None = None  # (N, D) descriptors when tiles were chosen
        self._previous: torch.Tensor | None = None  # (N, D) last frame's descriptors
        self._steady: torch.Tensor | None = None  # (N,) bool: cells that got the bonus
        self._mean_cost: torch.Tensor | None = None  # () float64: last frame's mean cost
        self._auction: AuctionState | None = None

    def plan(self, features: torch.Tensor) -> TemporalPlan:
        """Incumbents and bonuses for a frame with descriptors ``features`` ``(N, D)``.

        A scene cut (at least ``scene_cut`` of the cells jumped past ``change_threshold`` since
        the previous frame) is decided on the device: it withdraws every incumbent and bonus and
        restarts the auction's state, all through ``torch.where``.
        """
        settings = self.settings
        if (
            self._incumbent is None
            or self._previous is None
            or self._mean_cost is None
            or self._previous.shape != features.shape
            or settings.switch_bonus == 0
        ):
            self._steady = None
            return TemporalPlan(None, 0.0, scene_cut=False)
        threshold = settings.change_threshold
        jumped = _rms_distance(features, self._previous) > threshold
        cut = jumped.float().mean() >= settings.scene_cut
        steady = (_rms_distance(features, self._anchor) <= threshold) & ~cut
        self._steady = steady
        bonus = steady.to(torch.float32) * (settings.switch_bonus * self._mean_cost.float())
        if self._auction is not None:
            self._auction.restart_where(cut)
        return TemporalPlan(torch.where(cut, -1, self._incumbent), bonus, scene_cut=cut)

    def auction_state(self, problem: Problem, capacity: int) -> AuctionState:
        """The auction's prices, holders and lists for this video, new when the grid, pool or
        cap changed (or for the first frame)."""
        if self._auction is None or not self._auction.matches(problem, capacity):
            self._auction = AuctionState.fresh(problem, capacity)
        return self._auction

    def update(self, features: torch.Tensor, tiles: torch.Tensor, total_cost: torch.Tensor) -> None:
        """Record a frame's choice: ``tiles`` ``(N,)`` int64 and its summed descriptor cost
        (a ``()`` tensor on the device)."""
        if self._incumbent is None or self._anchor is None or self._steady is None:
            self._anchor = features.clone()
        else:
            # A cell re-anchors when it changed tile, or when it competed without the bonus
            # (its content had drifted, or the frame was a scene cut) and kept its tile anyway.
            reanchor = (tiles != self._incumbent) | ~self._steady
            self._anchor = torch.where(reanchor[:, None], features, self._anchor)
        self._incumbent = tiles.clone()
        self._previous = features
        self._mean_cost = total_cost.double() / max(len(tiles), 1)


def _rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Oklab distance, root mean square over the ``s x s`` blocks: ``(N,)``."""
    blocks = a.shape[1] // 3
    return ((a - b).square().sum(dim=1) / blocks).sqrt()
