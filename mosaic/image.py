"""``render_image``: one still image in, one mosaic out."""

from __future__ import annotations

from pathlib import Path

import torch

from adapters import read_image
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.pool import TilePool


def render_image(
    image: str | Path | torch.Tensor,
    pool: TilePool,
    config: MosaicConfig | None = None,
) -> torch.Tensor:
    """Turn one image into a photo mosaic.

    Args:
        image: a path to an image file, or a uint8 ``(3, H, W)`` tensor on any device.
        pool: the tiles.
        config: the settings (``MosaicConfig()`` when omitted).

    Returns:
        uint8 ``(3, H_out, W_out)``: the input's size when ``config.tile_size`` is ``None``, else
        ``H * tile_size / cell`` by ``W * tile_size / cell``. On the input tensor's device, or on
        the CPU for a path.
    """
    config = config or MosaicConfig()
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}"
            )
        frame, out_device = image, image.device
    else:
        frame, out_device = read_image(image), torch.device("cpu")
    return FrameRenderer(pool, config).render(frame).image.to(out_device)
