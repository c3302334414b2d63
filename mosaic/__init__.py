"""The mosaic engine: tile pool, descriptors, assignment, temporal coherence, rendering.

from mosaic import MosaicConfig, TilePool, render_image, render_video
"""

from mosaic.config import PRESETS, ConfigError, MosaicConfig
from mosaic.image import render_image
from mosaic.pool import Augmentation, PoolError, TilePool
from mosaic.temporal import TemporalSettings
from mosaic.video import VideoStats, render_video

__all__ = [
    "PRESETS",
    "Augmentation",
    "ConfigError",
    "MosaicConfig",
    "PoolError",
    "TemporalSettings",
    "TilePool",
    "VideoStats",
    "render_image",
    "render_video",
]
