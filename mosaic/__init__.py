"""The mosaic engine: tile pool, descriptors, assignment, temporal coherence, rendering.

from mosaic import MosaicConfig, TilePool, render_image, render_video

The names below load with their module on first use, so that the command line answers
``--help`` and argument errors without waiting for torch.
"""

from __future__ import annotations

from adapters.lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS = {
    "PRESETS": "mosaic.config",
    "ConfigError": "mosaic.config",
    "MosaicConfig": "mosaic.config",
    "TemporalSettings": "mosaic.config",
    "ImageStats": "mosaic.reports",
    "render_image": "mosaic.image",
    "render_image_with_stats": "mosaic.image",
    "Augmentation": "mosaic.pool",
    "PoolError": "mosaic.pool",
    "TilePool": "mosaic.pool",
    "render_print": "mosaic.print_size",
    "VideoStats": "mosaic.video",
    "render_video": "mosaic.video",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
