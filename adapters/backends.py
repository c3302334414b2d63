"""Names of the video decoders and of the devices they decode on: plain constants that import
nothing, so the command line can list them in its help before torch loads."""

from __future__ import annotations

__all__ = ["DECODE_DEVICES", "VIDEO_BACKENDS"]

# "auto" is resolved by ``open_source`` (and, for a mosaic pipeline, ``mosaic.video``).
VIDEO_BACKENDS = ("auto", "torchcodec", "pyav")
# Where a video is decoded, apart from where its frames are delivered (``open_source``).
DECODE_DEVICES = ("auto", "cpu", "cuda")
