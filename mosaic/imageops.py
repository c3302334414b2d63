"""Small tensor image operations the engine shares: resizing and edge padding."""

from __future__ import annotations

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
