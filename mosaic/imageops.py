"""Small tensor image operations the engine shares: resizing and edge padding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 ``(3, H, W)`` or ``(N, 3, H, W)`` to ``size``.

    ``size`` is a side (square) or ``(height, width)``. Returns uint8 of the same rank.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    batch = images if images.ndim == 4 else images[None]
    resized = F.interpolate(
        batch.float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized if images.ndim == 4 else resized[0]


def pad_to_multiple(frame: torch.Tensor, cell: int) -> torch.Tensor:
    """Pad ``(..., H, W)`` bottom and right to multiples of ``cell`` by repeating the edge."""
    height, width = frame.shape[-2:]
    padded_h, padded_w = math.ceil(height / cell) * cell, math.ceil(width / cell) * cell
    if (padded_h, padded_w) == (height, width):
        return frame
    # Copies of whole rows (concatenation), not a per-pixel gather: several times faster.
    if padded_w > width:
        edge = frame[..., -1:].expand(*frame.shape[:-1], padded_w - width)
        frame = torch.cat([frame, edge], dim=-1)
    if padded_h > height:
        edge = frame[..., -1:, :].expand(*frame.shape[:-2], padded_h - height, padded_w)
        frame = torch.cat([frame, edge], dim=-2)
    return frame
