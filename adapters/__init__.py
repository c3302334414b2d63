"""Video and image I/O: frame readers (decoders), frame sinks (encoders), many-video datasets.

Frames are uint8 RGB tensors, ``(3, H, W)`` for one image and ``(B, 3, H, W)`` (or
``(B, H, W, 3)`` when asked) for a batch. This package knows nothing of mosaics; it never imports
``mosaic`` or ``kernels``.
"""

from adapters.base import LAYOUTS, MODES, FrameSource, resolve_device, uniform_indices
from adapters.dataset import VideoBatch, VideoDataset, WorkUnit, schedule_longest_first
from adapters.errors import AdapterError, SinkError, SourceError, Terminated
from adapters.image_sources import FolderSource, ImageSource, natural_sort_key
from adapters.images import is_image, read_image, write_image
from adapters.info import VideoInfo
from adapters.metadata import INFO_CACHE, FileStamp, file_stamp
from adapters.paths import writable_folder
from adapters.pyav_source import PyAVSource
from adapters.sink import VideoSink
from adapters.sources import VIDEO_BACKENDS, VIDEO_SUFFIXES, find_media, open_source, probe
from adapters.video_source import TorchCodecSource

__all__ = [
    "INFO_CACHE",
    "LAYOUTS",
    "MODES",
    "VIDEO_BACKENDS",
    "VIDEO_SUFFIXES",
    "AdapterError",
    "FileStamp",
    "FolderSource",
    "FrameSource",
    "ImageSource",
    "PyAVSource",
    "SinkError",
    "SourceError",
    "Terminated",
    "TorchCodecSource",
    "VideoBatch",
    "VideoDataset",
    "VideoInfo",
    "VideoSink",
    "WorkUnit",
    "file_stamp",
    "find_media",
    "is_image",
    "natural_sort_key",
    "open_source",
    "probe",
    "read_image",
    "resolve_device",
    "schedule_longest_first",
    "uniform_indices",
    "writable_folder",
    "write_image",
]
