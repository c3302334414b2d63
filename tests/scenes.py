"""Generated test scenes and pools: frames with structure, and tiles that look like photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mosaic.pool import TilePool


def landscape(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``(3, H, W)``: sky gradient, sun, hills and a few coloured blobs."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    sky = torch.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y])
    hills = 0.45 + 0.08 * torch.sin(x * 9.0 + 1.0) + 0.05 * torch.sin(x * 23.0)
    ground = torch.stack([0.25 + 0.2 * x, 0.5 - 0.2 * y, 0.15 + 0.1 * x])
    image = torch.where((y > hills)[None], ground, sky)
    for _ in range(6):
        cy, cx, radius = torch.rand(3, generator=generator) * torch.tensor([1.0, 1.0, 0.15])
        colour = torch.rand(3, generator=generator)
        blob = ((y - cy) ** 2 + (x - cx) ** 2) < (radius + 0.03) ** 2
        image = torch.where(blob[None], colour[:, None, None], image)
    return (image * 255).round().clamp(0, 255).to(torch.uint8)


def photo_pool(count: int, tile_size: int = 16, seed: int = 0) -> TilePool:
    """A pool of ``count`` tiles: colour gradients with texture, spread over the colour cube."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(count, 3, 1, 1, generator=generator)
    slope = (torch.rand(count, 3, 1, 1, generator=generator) - 0.5) * 0.4
    ramp = torch.linspace(-0.5, 0.5, tile_size)
    gradient = slope * (ramp[None, None, :, None] + ramp[None, None, None, :])
    texture = torch.randn(count, 3, tile_size, tile_size, generator=generator) * 0.03
    images = ((base + gradient + texture).clamp(0, 1) * 255).round().to(torch.uint8)
    return TilePool.from_tensor(images)


def write_photos(
    folder: Path, count: int, size: tuple[int, int], seed: int = 0, suffixes: tuple = ("jpg",)
) -> Path:
    """``count`` photo-like files of ``size`` (width, height) in ``folder``: a colour with a
    gradient across and noise, named ``tile_000.jpg``..., the suffixes taken in turn."""
    rng = np.random.default_rng(seed)
    width, height = size
    for index in range(count):
        ramp = np.linspace(-40, 40, width)[None, :, None] * rng.uniform(-1, 1, 3)
        pixels = rng.integers(0, 256, 3) + ramp + rng.normal(0, 6, (height, width, 3))
        suffix = suffixes[index % len(suffixes)]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"tile_{index:03d}.{suffix}")
    return folder


def add_noise(frame: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """The frame with Gaussian sensor noise of ``sigma`` levels."""
    generator = torch.Generator().manual_seed(seed)
    noisy = frame.float() + torch.randn(frame.shape, generator=generator) * sigma
    return noisy.round().clamp(0, 255).to(torch.uint8)
