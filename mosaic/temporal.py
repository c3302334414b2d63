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

from mosaic.config import TemporalSettings


@dataclass(frozen=True)
class TemporalPlan:
    """What the next assignment gets: each cell's incumbent (-1 none) and its bonus."""

    incumbent: torch.Tensor | None  # (N,) int64
    bonus: torch.Tensor | float  # (N,) float32, or 0.0
    scene_cut: bool


class TemporalCoherence:
    """State carried from frame to frame: incumbents, anchors, the previous frame's features."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self._incumbent: torch.Tensor | None = None  # (N,) int64
        self._anchor: torch.Tensor | None = None  # (N, D) descriptors when tiles were chosen
        self._previous: torch.Tensor | None = None  # (N, D) last frame's descriptors
        self._steady: torch.Tensor | None = None  # (N,) bool: cells that got the bonus
        self._mean_cost = 0.0

    def plan(self, features: torch.Tensor) -> TemporalPlan:
        """Incumbents and bonuses for a frame with descriptors ``features`` ``(N, D)``."""
        settings = self.settings
        if (
            self._incumbent is None
            or self._previous is None
            or self._previous.shape != features.shape
            or settings.switch_bonus == 0
        ):
            self._steady = None
            return TemporalPlan(None, 0.0, scene_cut=False)
        threshold = settings.change_threshold
        jumped = _rms_distance(features, self._previous) > threshold
        if jumped.float().mean().item() >= settings.scene_cut:
            self._incumbent = self._steady = None
            return TemporalPlan(None, 0.0, scene_cut=True)
        steady = _rms_distance(features, self._anchor) <= threshold
        self._steady = steady
        bonus = steady.to(torch.float32) * (settings.switch_bonus * self._mean_cost)
        return TemporalPlan(self._incumbent, bonus, scene_cut=False)

    def update(self, features: torch.Tensor, tiles: torch.Tensor, total_cost: float) -> None:
        """Record a frame's choice: ``tiles`` ``(N,)`` int64, its descriptor cost summed."""
        if self._incumbent is None or self._anchor is None or self._steady is None:
            self._anchor = features.clone()
        else:
            # A cell re-anchors when it changed tile, or when it competed without the bonus
            # (its content had drifted) and kept its tile anyway.
            reanchor = (tiles != self._incumbent) | ~self._steady
            self._anchor = torch.where(reanchor[:, None], features, self._anchor)
        self._incumbent = tiles.clone()
        self._previous = features
        self._mean_cost = total_cost / max(len(tiles), 1)


def _rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Oklab distance, root mean square over the ``s x s`` blocks: ``(N,)``."""
    blocks = a.shape[1] // 3
    return ((a - b).square().sum(dim=1) / blocks).sqrt()
