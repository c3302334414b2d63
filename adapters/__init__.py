"""Video and image I/O: frame readers (decoders), frame sinks (encoders), many-video datasets.

Frames are uint8 RGB tensors, ``(3, H, W)`` for one image and ``(B, 3, H, W)`` (or
``(B, H, W, 3)`` when asked) for a batch; a video sink also takes YUV 4:2:0 bytes
(``adapters.yuv``). This package knows nothing of mosaics; it never imports ``mosaic`` or
``kernels``.
"""

from adapters.base import LAYOUTS, MODES, FrameSource, resolve_device, uniform_indices
from adapters.dataset import VideoBatch, VideoDataset, WorkUnit, schedule_longest_first
from adapters.errors import AdapterError, SinkError, SourceError, Terminated
from adapters.frame_sink import FrameSink
from adapters.image_sources import FolderSource, ImageSource, natural_sort_key
from adapters.images import is_image, read_image, write_image
from adapters.info import VideoInfo
from adapters.metadata import INFO_CACHE, FileStamp, file_stamp
from adapters.paths import writable_folder
from adapters.pyav_sink import PyAVSink
from adapters.pyav_source import PyAVSource
from adapters.sink import VideoSink
from adapters.sinks import SINK_BACKENDS, check_output, open_sink, sink_backend
from adapters.sources import VIDEO_BACKENDS, VIDEO_SUFFIXES, find_media, open_source, probe
from adapters.video_source import TorchCodecSource
from adapters.yuv import rgb_to_yuv420

__all__ = [
    "INFO_CACHE",
    "LAYOUTS",
    "MODES",
    "SINK_BACKENDS",
    "VIDEO_BACKENDS",
    "VIDEO_SUFFIXES",
    "AdapterError",
    "FileStamp",
    "FolderSource",
    "FrameSink",
    "FrameSource",
    "ImageSource",
    "PyAVSink",
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
    "check_output",
    "file_stamp",
    "find_media",
    "is_image",
    "natural_sort_key",
    "open_sink",
    "open_source",
    "probe",
    "read_image",
    "resolve_device",
    "rgb_to_yuv420",
    "schedule_longest_first",
    "sink_backend",
    "uniform_indices",
    "writable_folder",
    "write_image",
]
