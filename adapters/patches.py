"""Patch streams for training readers: the patches of a clip that carry the most detail.

``patch_stream(path, ...)`` reads ``sequence_length`` frames spread evenly over a video (the
frames ``FrameSource.sample_uniform`` picks), resizes them, cuts them into square patches and
keeps the ``k_keep`` patches of highest detail energy over the whole clip
(``kernels.block_energy``: the mean squared luma gradient inside each patch);
``PatchClipDataset`` does the same for many videos, with DataLoader workers.

Resizing is by the short side: each frame is scaled, its aspect ratio kept, so that its short
side is ``input_size`` (bilinear, antialiased, to 8-bit codes), and its long side is cut,
centred, to a multiple of ``patch_size``; a frame already that size is not resampled. A 1280 x
720 frame at ``input_size=224``, ``patch_size=14`` becomes 224 x 398, cut to 224 x 392: 16 x 28
patches. The patches are kept in the order of the clip, by (frame, patch row, patch column);
among patches of equal energy the earlier ones in that order are kept, so a clip gives the same
patches every time.

Decoding and processing may run on different devices. Frames are resized on a GPU when either
device is one (before the copy to the process device for cuda -> cpu, after it for cpu ->
cuda); energies, selection and outputs are on the process device, with no host
synchronisation there. This is the one module of ``adapters`` that imports ``kernels``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info

from adapters.base import resolve_device, uniform_indices
from adapters.info import VideoInfo
from adapters.sources import open_source, probe
from kernels import block_energy

__all__ = [
    "PATCH_DTYPES",
    "ClipFrames",
    "PatchClip",
    "PatchClipDataset",
    "PatchLoader",
    "PatchSpec",
    "patch_stream",
]

PATCH_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""What patches can be: uint8 keeps the pixel codes, floats are the codes divided by 255."""


class PatchClip(NamedTuple):
    """The patches kept of one clip, on the process device, in (frame, row, column) order.

    Attributes:
        patches: ``(k_keep, 3, patch_size, patch_size)`` in the asked dtype (uint8 codes, or
            floats in [0, 1]: the codes divided by 255).
        positions: int64 ``(k_keep, 3)``: the frame's index in the clip (0 to
            ``sequence_length - 1``), the patch row and the patch column.
        scores: float32 ``(k_keep,)``: the detail energy that selected each patch.
        frame_indices: int64 ``(sequence_length,)``: the clip's frames' indices in the video.
        grid: patch rows and columns of every frame.
    """

    patches: torch.Tensor
    positions: torch.Tensor
    scores: torch.Tensor
    frame_indices: torch.Tensor
    grid: tuple[int, int]


class ClipFrames(NamedTuple):
    """A clip's frames resized and cut for patching: what a DataLoader worker hands over.

    Attributes:
        frames: uint8 ``(sequence_length, 3, rows * patch_size, cols * patch_size)``, any
            strides (usually a decoder's HWC frames seen as CHW).
        frame_indices: int64 ``(sequence_length,)``: their indices in the video.
    """

    frames: torch.Tensor
    frame_indices: torch.Tensor


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class PatchSpec(NamedTuple):
    """What a patch stream takes of each clip; ``PatchSpec.checked`` validates it."""

    sequence_length: int
    input_size: int
    patch_size: int
    k_keep: int
    dtype: torch.dtype

    @classmethod
    def checked(
        cls,
        sequence_length: int,
        input_size: int,
        patch_size: int,
        k_keep: int,
        dtype: torch.dtype,
    ) -> PatchSpec:
        """The spec, or ValueError (TypeError for the dtype) in one line."""
        for name, value in (
            ("sequence_length", sequence_length),
            ("input_size", input_size),
            ("patch_size", patch_size),
            ("k_keep", k_keep),
        ):
            _positive_int(name, value)
        if input_size % patch_size:
            raise ValueError(
                f"input_size {input_size} is not a multiple of patch_size {patch_size}"
            )
        if dtype not in PATCH_DTYPES:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in PATCH_DTYPES)
            raise TypeError(f"dtype must be one of {allowed}, got {dtype!r}")
        return cls(sequence_length, input_size, patch_size, k_keep, dtype)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` of an ``height x width`` frame with its short side scaled to
        ``input_size``, aspect ratio kept (the long side rounded to the nearest pixel)."""
        if height <= width:
            return self.input_size, max(self.input_size, round(width * self.input_size / height))
        return max(self.input_size, round(height * self.input_size / width)), self.input_size

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch rows and columns of an ``height x width`` frame, resized and cut."""
        resized_h, resized_w = self.resized(height, width)
        return resized_h // self.patch_size, resized_w // self.patch_size

    def check_patches(self, info: VideoInfo, path: str | Path) -> None:
        """ValueError when ``path``'s clip has fewer than ``k_keep`` patches."""
        rows, cols = self.grid(info.height, info.width)
        available = self.sequence_length * rows * cols
        if self.k_keep > available:
            raise ValueError(
                f"k_keep {self.k_keep} is more than the {available} patches of {path}'s clip "
                f"({self.sequence_length} frames of {rows} x {cols} patches)"
            )


def _device(name: str, value: str | torch.device) -> torch.device:
    """``resolve_device(value)`` for a CPU or CUDA device, else ValueError in one line."""
    try:
        device = resolve_device(value)
    except RuntimeError:  # torch's own message for a malformed name runs over several lines
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return device


# --------------------------------------------------------------------------- frames


def resize_frames(frames: torch.Tensor, spec: PatchSpec, device: torch.device) -> torch.Tensor:
    """uint8 frames ``(B, 3, H, W)`` -> uint8 on ``device``, resized by the short side and cut
    to whole patches (module docstring), as views where nothing is resized.

    On a CPU torch resizes uint8 channels-last frames directly, about 30 times faster than their
    float32 copies (16 frames of 720p: 11 ms against 370 ms on two cores); on a GPU the float32
    result is rounded to codes, so both give 8-bit frames.
    """
    height, width = frames.shape[-2:]
    resized_h, resized_w = spec.resized(height, width)
    pixels = frames.to(device)
    if (resized_h, resized_w) != (height, width):
        size = (resized_h, resized_w)
        if device.type == "cpu":
            pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True)
        else:
            resized = F.interpolate(pixels.float(), size=size, mode="bilinear", antialias=True)
            pixels = resized.round_().clamp_(0, 255).to(torch.uint8)
    rows, cols = spec.grid(height, width)
    top = (resized_h - rows * spec.patch_size) // 2
    left = (resized_w - cols * spec.patch_size) // 2
    return pixels[..., top : top + rows * spec.patch_size, left : left + cols * spec.patch_size]


def read_clip(
    path: str | Path,
    spec: PatchSpec,
    *,
    decode_device: torch.device,
    resize_device: torch.device,
    backend: str = "auto",
    automatic_decode: bool = False,
    num_threads: int = 0,
) -> ClipFrames:
    """Decode ``spec.sequence_length`` frames spread evenly over ``path`` a batch at a time
    (memory bounded by a batch of decoded frames) and resize them on ``resize_device``.

    ``automatic_decode``: let the backend pick where it decodes (``decode_device="auto"`` of
    ``open_source``), delivering to ``decode_device``; else decode on ``decode_device``.
    """
    with open_source(
        path,
        layout="NHWC",
        device=decode_device,
        decode_device="auto" if automatic_decode else decode_device.type,
        backend=backend,
        num_threads=num_threads,
    ) as source:
        spec.check_patches(source.info, path)
        indices = uniform_indices(len(source), spec.sequence_length)
        # A decoder's own layout, seen as (B, 3, H, W) without a copy.
        batches = (batch.permute(0, 3, 1, 2) for batch in source.iter_frames(indices))
        frames = [resize_frames(batch, spec, resize_device) for batch in batches]
    return ClipFrames(torch.cat(frames), torch.tensor(indices, dtype=torch.int64))


# --------------------------------------------------------------------------- selection


def select_patches(clip: ClipFrames, spec: PatchSpec, device: torch.device) -> PatchClip:
    """The ``k_keep`` patches of highest detail energy of ``clip``, on ``device``, in (frame,
    row, column) order, ties to the earlier patch. Fixed shapes, no host synchronisation."""
    frames = clip.frames.to(device)
    size = spec.patch_size
    _, _, height, width = frames.shape
    rows, cols = height // size, width // size
    energy = block_energy(frames, size).flatten()
    # A stable sort keeps equal energies in (frame, row, column) order: ties go to the earlier.
    strongest = torch.sort(energy, descending=True, stable=True).indices[: spec.k_keep]
    kept = torch.sort(strongest).values
    frame, row, col = kept // (rows * cols), kept // cols % rows, kept % cols
    # (T, 3, rows, cols, size, size) view; indexing frame, row and column gives (k, 3, size, size).
    patches = frames.unfold(2, size, size).unfold(3, size, size)[frame, :, row, col]
    if spec.dtype != torch.uint8:
        patches = patches.to(spec.dtype).div_(255.0)
    return PatchClip(
        patches=patches,
        positions=torch.stack([frame, row, col], dim=1),
        scores=energy[kept],
        frame_indices=clip.frame_indices.to(device),
        grid=(rows, cols),
    )


def patch_stream(
    path: str | Path,
    *,
    sequence_length: int,
    input_size: int,
    patch_size: int,
    k_keep: int,
    decode_device: str | torch.device = "auto",
    process_device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> PatchClip:
    """The ``k_keep`` most detailed ``patch_size`` patches of a clip of ``path``.

    Args:
        path: a video, a folder of frames or an image (as ``open_source`` takes them).
        sequence_length: frames of the clip, spread evenly over the video (repeated when the
            video has fewer).
        input_size: the frames' short side after resizing; a multiple of ``patch_size``.
        patch_size: patch side in pixels.
        k_keep: patches kept over the whole clip; at most the clip's patches.
        decode_device: where the video is decoded: ``"auto"`` (the backend's choice: NVDEC when
            there is CUDA and torchcodec can, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``.
        process_device: where energies and selection run and the outputs live: ``"auto"``
            (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``torch.uint8`` keeps pixel codes; a float dtype gives values in [0, 1]
            (the codes divided by 255).
        backend: the video decoder, as ``open_source`` takes it.

    Returns:
        ``PatchClip``; the module docstring says how frames are resized and patches chosen.

    Raises:
        ValueError: a bad argument or device, or ``k_keep`` more than the clip's patches.
        SourceError: ``path`` cannot be read.
    """
    spec = PatchSpec.checked(sequence_length, input_size, patch_size, k_keep, dtype)
    decode = _device("decode_device", decode_device)
    process = _device("process_device", process_device)
    clip = read_clip(
        path,
        spec,
        decode_device=decode,
        resize_device=decode if decode.type == "cuda" else process,
        backend=backend,
        automatic_decode=decode_device == "auto",
    )
    return select_patches(clip, spec, process)


# --------------------------------------------------------------------------- many videos


class PatchClipDataset(Dataset):
    """Patch clips of many videos: item ``i`` is ``patch_stream`` of ``paths[i]``.

    ``dataset[i]`` reads, resizes and selects in this process. ``loader(workers=N)`` shares the
    work the way CUDA allows: DataLoader worker processes decode and resize on the CPU (one
    FFmpeg thread each) and hand over ``ClipFrames``; this process measures the energies and
    selects the patches on ``process_device``, where a forked worker could not use CUDA.

    Args:
        paths: videos, frame folders or images.
        sequence_length, input_size, patch_size, k_keep, dtype: as ``patch_stream``.
        process_device: where energies, selection and the outputs are (``"auto"``, ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``).
        backend: the video decoder, as ``open_source`` takes it.

    The videos are probed when the dataset is made, so a missing file, or one whose clip has
    fewer than ``k_keep`` patches, fails at once with its path.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        sequence_length: int,
        input_size: int,
        patch_size: int,
        k_keep: int,
        process_device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        backend: str = "auto",
    ) -> None:
        self.spec = PatchSpec.checked(sequence_length, input_size, patch_size, k_keep, dtype)
        self.process_device = _device("process_device", process_device)
        self.backend = backend
        self.paths = [Path(path) for path in paths]
        for path in self.paths:
            self.spec.check_patches(probe(path, backend=backend), path)

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, index: int) -> ClipFrames:
        """Video ``index``'s clip decoded and resized on the CPU (a worker's part)."""
        cpu = torch.device("cpu")
        return read_clip(
            self.paths[index],
            self.spec,
            decode_device=cpu,
            resize_device=cpu,
            backend=self.backend,
            num_threads=1 if get_worker_info() is not None else 0,
        )

    def select(self, clip: ClipFrames) -> PatchClip:
        """The patches of a clip from ``frames``, on ``process_device`` (this process's part)."""
        return select_patches(clip, self.spec, self.process_device)

    def __getitem__(self, index: int) -> PatchClip:
        return self.select(self.frames(index))

    def loader(self, workers: int = 0, **options: object) -> PatchLoader:
        """The clips through a ``DataLoader`` with ``workers`` processes (0: this one), one
        ``PatchClip`` at a time. ``options`` go to ``DataLoader`` (``shuffle``,
        ``pin_memory``, ``prefetch_factor``, ...); batching is one clip."""
        loader = DataLoader(_ClipFramesOf(self), batch_size=None, num_workers=workers, **options)
        return PatchLoader(self, loader)


class _ClipFramesOf(Dataset):
    """The worker's side of a ``PatchClipDataset``: item ``i`` is ``dataset.frames(i)``."""

    def __init__(self, dataset: PatchClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> ClipFrames:
        return self.dataset.frames(index)


class PatchLoader:
    """``PatchClipDataset.loader``'s iterable: each ``ClipFrames`` a worker delivers, selected
    in this process."""

    def __init__(self, dataset: PatchClipDataset, loader: DataLoader) -> None:
        self.dataset = dataset
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[PatchClip]:
        for clip in self.loader:
            yield self.dataset.select(clip)
