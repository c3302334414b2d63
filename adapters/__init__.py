"""Video and image I/O: frame sources (decoders) and frame sinks (encoders).

Frames are uint8 RGB tensors, ``(3, H, W)`` for one image and ``(B, 3, H, W)`` for a batch.
This package knows nothing of mosaics; it never imports ``mosaic`` or ``kernels``.
"""

from adapters.base import FrameSource, resolve_device
from adapters.errors import AdapterError, SinkError, SourceError, Terminated
from adapters.image_sources import FolderSource, ImageSource, natural_sort_key
from adapters.images import is_image, read_image, write_image
from adapters.info import VideoInfo
from adapters.sink import VideoSink
from adapters.sources import open_source
from adapters.video_source import TorchCodecSource

__all__ = [
    "AdapterError",
    "FolderSource",
    "FrameSource",
    "ImageSource",
    "SinkError",
    "SourceError",
    "Terminated",
    "TorchCodecSource",
    "VideoInfo",
    "VideoSink",
    "is_image",
    "natural_sort_key",
    "open_source",
    "read_image",
    "resolve_device",
    "write_image",
]
