"""Capacity-limited acceptance of proposals, shared by the windows solver and the spacing repair."""

from __future__ import annotations

import torch


def rank_in_runs(sorted_keys: torch.Tensor) -> torch.Tensor:
    """int64 position of each element of 1-D ``sorted_keys`` within its run of equal values."""
    positions = torch.arange(sorted_keys.numel(), device=sorted_keys.device)
    run_starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    run_starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return positions - torch.cummax(torch.where(run_starts, positions, 0), 0).values


def order_by(major: torch.Tensor, minor: torch.Tensor) -> torch.Tensor:
    """Permutation sorting 1-D tensors by ``major``, then ``minor``, then position (stable)."""
    order = torch.argsort(minor, stable=True)
    return order[torch.argsort(major[order], stable=True)]


def accept_within_capacity(
    tiles: torch.Tensor, priority: torch.Tensor, capacity: torch.Tensor
) -> torch.Tensor:
    """Which proposals ``(cell -> tiles[p])`` to accept: per tile, the ``capacity[tile]`` ones of
    lowest ``priority`` (ties: earliest). Returns bool, shaped like ``tiles``."""
    order = order_by(tiles, priority)
    accepted = torch.empty_like(tiles, dtype=torch.bool)
    accepted[order] = rank_in_runs(tiles[order]) < capacity[tiles[order]]
    return accepted
