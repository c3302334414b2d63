"""Video and image I/O: frame readers (decoders), frame sinks (encoders), many-video datasets.

Frames are uint8 RGB tensors, ``(3, H, W)`` for one image and ``(B, 3, H, W)`` (or
``(B, H, W, 3)`` when asked) for a batch; a video sink also takes YUV 4:2:0 bytes
(``adapters.yuv``). ``adapters.patches`` cuts clips into the patches a vision model reads,
keeping the most detailed. This package knows nothing of mosaics: it never imports ``mosaic``.
Its one import of ``kernels`` (``block_energy``, tensors in and out) is in
``adapters.patches``, which loads only when one of its names is first used.

The names below load with their module on first use (``from adapters import open_source``
imports ``adapters.sources`` then), so that a program needing only ``adapters.backends`` or
``adapters.errors`` does not wait for torch.
"""

from __future__ import annotations

from adapters.lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS = {
    "DECODE_DEVICES": "adapters.backends",
    "VIDEO_BACKENDS": "adapters.backends",
    "LAYOUTS": "adapters.base",
    "MODES": "adapters.base",
    "FrameSource": "adapters.base",
    "resolve_device": "adapters.base",
    "uniform_indices": "adapters.base",
    "concat_videos": "adapters.concat",
    "VideoBatch": "adapters.dataset",
    "VideoDataset": "adapters.dataset",
    "WorkUnit": "adapters.dataset",
    "schedule_longest_first": "adapters.dataset",
    "AdapterError": "adapters.errors",
    "DecodeError": "adapters.errors",
    "SinkError": "adapters.errors",
    "SourceError": "adapters.errors",
    "Terminated": "adapters.errors",
    "FolderSource": "adapters.image_sources",
    "ImageSource": "adapters.image_sources",
    "natural_sort_key": "adapters.image_sources",
    "is_image": "adapters.images",
    "read_image": "adapters.images",
    "write_image": "adapters.images",
    "VideoInfo": "adapters.info",
    "INFO_CACHE": "adapters.metadata",
    "FileStamp": "adapters.metadata",
    "file_stamp": "adapters.metadata",
    "writable_folder": "adapters.paths",
    "PATCH_DTYPES": "adapters.patches",
    "ClipFrames": "adapters.patches",
    "PatchClip": "adapters.patches",
    "PatchClipDataset": "adapters.patches",
    "PatchLoader": "adapters.patches",
    "PatchSpec": "adapters.patches",
    "patch_stream": "adapters.patches",
    "FrameSink": "adapters.frame_sink",
    "PyAVSink": "adapters.pyav_sink",
    "PyAVSource": "adapters.pyav_source",
    "VideoSink": "adapters.sink",
    "SINK_BACKENDS": "adapters.sinks",
    "check_output": "adapters.sinks",
    "open_sink": "adapters.sinks",
    "sink_backend": "adapters.sinks",
    "VIDEO_SUFFIXES": "adapters.sources",
    "find_media": "adapters.sources",
    "open_source": "adapters.sources",
    "probe": "adapters.sources",
    "VideoDatasource": "adapters.ray_source",
    "read_videos": "adapters.ray_source",
    "TorchCodecSource": "adapters.video_source",
    "rgb_to_yuv420": "adapters.yuv",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
