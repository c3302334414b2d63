"""The GPU executor: a video's frames through ``FrameStep`` with the upload, the step and the
download of each frame on their own CUDA streams, joined by events, so that the GPU works on
frame t while frame t+1 is uploaded and frame t-1's mosaic is copied to the host.

Four parts, each waiting only for what it needs:

- decode (a background thread, ``Prefetcher``): iterates the batches with the upload stream
  current, so a decoder working on the GPU (NVDEC) runs there. A frame decoded on the CPU is
  copied into one of ``UPLOAD_DEPTH`` pinned host buffers and sent to the device from there
  without blocking; a frame already on the device passes as it is. Each frame travels with an
  event recorded after it on the upload stream.
- step (the caller's thread): the compute stream waits for the frame's event, runs the step and
  the per-frame measures (``FrameMeasures``), then copies the mosaic into a download slot's own
  device buffer (a copy on the device, a few MB): the step's outputs change at its next call,
  and the next step never waits for the copy to the host.
- download (the download stream): copies the slot's device buffer into its pinned host buffer
  without blocking and records the slot's event.
- encode (a background thread, ``DownloadRing``): waits for each slot's event, in order, hands
  the host bytes to ``write`` and frees the slot.

Memory stays flat: ``DECODE_DEPTH`` batches decoded ahead, ``UPLOAD_DEPTH`` pinned upload
buffers, ``DOWNLOAD_DEPTH`` slots between the step and ``write``. The executor itself reads
nothing back from the device; the sampled fidelity does (``FrameMeasures``, every
``FIDELITY_EVERY``-th frame), and so do the windows and exact solvers inside the step: those
wait for the compute stream only, while uploads and downloads go on.

The ordering (slots, events, threads) is written against the small ``Streams`` and
``DownloadSlot`` interfaces, which ``CudaStreams`` implements with CUDA streams and events, so
that ``run_streamed`` and ``DownloadRing`` also run with CPU tensors and stand-in events.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch

from mosaic.engine import FrameRenderer
from mosaic.pipeline.measures import FrameMeasures, FramesSummary
from mosaic.pipeline.step import FrameStep
from mosaic.pipeline.streaming import BackgroundConsumer, Prefetcher
from mosaic.stages import NO_TIMER, StageTimer

__all__ = [
    "DOWNLOAD_DEPTH",
    "UPLOAD_DEPTH",
    "Arrival",
    "CudaStreams",
    "DownloadRing",
    "DownloadSlot",
    "Streams",
    "render_frames_streamed",
    "run_streamed",
]

# Batches decoded (and uploaded) ahead of the step.
DECODE_DEPTH = 2
# Pinned host buffers that CPU-decoded frames go to the device from; a buffer is reused once its
# last copy is done.
UPLOAD_DEPTH = 4
# Mosaics between the step and ``write`` (each a device buffer and a pinned host buffer).
DOWNLOAD_DEPTH = 4


@dataclass(frozen=True)
class Arrival:
    """A frame on the processing device, uint8 ``(3, H, W)`` (any strides), and the event after
    which it is there (``None``: it already is)."""

    frame: torch.Tensor
    ready: torch.cuda.Event | None = None


class DownloadSlot(Protocol):
    """One mosaic on its way to the host."""

    def fill(self, image: torch.Tensor) -> None:
        """Start copying ``image`` to the host, after the work queued before it on the current
        stream; ``image`` may change as soon as this returns."""

    def wait(self) -> torch.Tensor:
        """Block until the copy is done and return it, on the host (valid until the next
        ``fill``)."""


class Streams(Protocol):
    """Where a run's work goes: the stream each thread makes current, and the copies between
    host and device."""

    def decoding(self) -> AbstractContextManager[None]:
        """Context for the decode thread while it decodes and uploads."""

    def computing(self) -> AbstractContextManager[None]:
        """Context for the step's thread while it steps; its work is visible to the caller's
        stream after it."""

    def upload(self, frame: torch.Tensor) -> Arrival:
        """uint8 ``(H, W, 3)`` ``frame`` (host or device) on its way to the device (decode
        thread)."""

    def receive(self, arrival: Arrival) -> torch.Tensor:
        """The frame of ``arrival``, for the work queued after this call (step's thread)."""

    def download_slot(self) -> DownloadSlot:
        """A new, empty download slot."""


class DownloadRing:
    """Mosaics handed to ``write``, in order, from a background thread, each through one of
    ``slots`` (a copy to the host under way): at most ``len(slots)`` mosaics are between ``put``
    and ``write`` at any time, so memory stays flat.

    ``put`` blocks while every slot is in use. An exception in ``write`` (or in a slot's
    ``wait``) is raised by the next ``put`` or by ``finish``; ``close`` never raises.
    """

    def __init__(
        self,
        slots: Sequence[DownloadSlot],
        write: Callable[[torch.Tensor], None],
        timer: StageTimer = NO_TIMER,
    ) -> None:
        self._write, self._timer = write, timer
        self._free: queue.Queue[DownloadSlot] = queue.Queue()
        for slot in slots:
            self._free.put(slot)
        self._writer: BackgroundConsumer[DownloadSlot] = BackgroundConsumer(
            self._deliver, depth=len(slots), name="encode"
        )

    def put(self, image: torch.Tensor) -> None:
        """Start ``image`` on its way to ``write`` (after the work queued before it)."""
        slot = self._free_slot()
        slot.fill(image)
        self._writer.put(slot)

    def _free_slot(self) -> DownloadSlot:
        # A failed writer frees no more slots: check it while waiting.
        while True:
            self._writer.raise_if_failed()
            with contextlib.suppress(queue.Empty):
                return self._free.get(timeout=0.05)

    def _deliver(self, slot: DownloadSlot) -> None:
        try:
            host = slot.wait()
            with self._timer.stage("encode"):
                self._write(host)
        finally:
            self._free.put(slot)

    def finish(self) -> None:
        """Wait until every mosaic is written; raise ``write``'s error if it failed."""
        self._writer.finish()

    def close(self) -> None:
        """Stop the writer once what is queued is written (idempotent, never raises)."""
        self._writer.close()


def run_streamed(
    batches: Iterable[torch.Tensor],
    step: FrameStep,
    streams: Streams,
    write: Callable[[torch.Tensor], None],
    measures: FrameMeasures,
    *,
    timer: StageTimer = NO_TIMER,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Run uint8 NHWC ``(B, H, W, 3)`` ``batches`` through ``step``, each frame's work on
    ``streams``, each mosaic measured by ``measures`` and handed to ``write`` in order; return
    the number of frames. ``render_frames_streamed`` says what the other arguments do."""

    def arrivals() -> Iterator[list[Arrival]]:
        iterator = iter(batches)
        while True:
            # The stream is made current around each batch, never across a yield: a generator
            # closed from another thread would restore that thread's stream.
            with streams.decoding():
                with timer.stage("decode"):
                    batch = next(iterator, None)
                if batch is None:
                    return
                with timer.stage("upload"):
                    uploaded = [streams.upload(frame) for frame in batch]
            yield uploaded

    frames = 0
    prefetcher = Prefetcher(arrivals(), depth=DECODE_DEPTH, name="decode")
    downloads = DownloadRing([streams.download_slot() for _ in range(DOWNLOAD_DEPTH)], write, timer)
    try:
        with streams.computing():
            uploaded = iter(prefetcher)
            while True:
                with timer.stage("waiting_input"):
                    batch = next(uploaded, None)
                if batch is None:
                    break
                for arrival in batch:
                    frame = streams.receive(arrival)
                    with timer.stage("step"):
                        out = step(frame)
                    with timer.stage("metrics"):  # keeps its own copies of what it compares
                        measures.add(
                            frames, out.analysis, out.choice, out.image, out.assignment, out.cut
                        )
                    with timer.stage("waiting_output"):
                        downloads.put(out.image)
                    frames += 1
                if on_batch is not None:
                    on_batch(len(batch))
            with timer.stage("flush"):
                downloads.finish()
    finally:
        downloads.close()
        prefetcher.close()
    return frames


def render_frames_streamed(
    batches: Iterable[torch.Tensor],
    renderer: FrameRenderer,
    write: Callable[[torch.Tensor], None],
    *,
    timer: StageTimer = NO_TIMER,
    on_batch: Callable[[int], None] | None = None,
    pixel_format: str = "rgb",
) -> FramesSummary:
    """Render uint8 NHWC ``(B, H, W, 3)`` batches of frames (on the host or on ``renderer``'s
    CUDA device) into mosaics handed to ``write``, in order, with decode and upload, the frame
    step and the copy to the host overlapped on their own streams (this module's docstring).

    ``write`` runs in a background thread and receives each mosaic on the host, uint8
    ``(3, H_out, W_out)`` or with ``pixel_format="yuv420p"`` the I420 bytes
    ``(H_out' * 3 // 2, W_out')`` (contiguous, in pinned memory); the tensor is reused once
    ``write`` returns, so ``write`` copies what it keeps. ``on_batch`` is called with the number of
    frames of each batch once stepped (a progress bar). ``timer`` records ``"decode"``,
    ``"upload"`` (the decode thread), ``"step"`` (the whole frame step: analysis, assignment and
    compositing, one graph replay once captured), ``"metrics"``, ``"waiting_input"``,
    ``"waiting_output"`` (this thread), ``"encode"`` (``write``) and ``"flush"``.
    """
    step = FrameStep(renderer, pixel_format)
    measures = FrameMeasures(renderer.device, renderer.config.cell_shape, pixel_format)
    streams = CudaStreams(renderer.device)
    frames = run_streamed(batches, step, streams, write, measures, timer=timer, on_batch=on_batch)
    return measures.summary(frames, step.method)


class CudaStreams:
    """``Streams`` on a CUDA ``device``: an upload, a compute and a download stream, made when
    the run starts (in the caller's thread, whose stream both others first wait for)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.caller_stream = torch.cuda.current_stream(device)
        self.upload_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        self.download_stream = torch.cuda.Stream(device)
        # What the caller queued (the renderer's tiles, frames already on the device) comes first.
        self.upload_stream.wait_stream(self.caller_stream)
        self.compute_stream.wait_stream(self.caller_stream)
        # Pinned host buffers for CPU-decoded frames, used in turn: (buffer, its last copy).
        self._pinned: list[tuple[torch.Tensor, torch.cuda.Event] | None] = [None] * UPLOAD_DEPTH
        self._uploads = 0

    def decoding(self) -> AbstractContextManager[None]:
        return torch.cuda.stream(self.upload_stream)

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        try:
            with torch.cuda.stream(self.compute_stream):
                yield
        finally:
            self.caller_stream.wait_stream(self.compute_stream)

    def upload(self, frame: torch.Tensor) -> Arrival:
        with torch.cuda.stream(self.upload_stream):
            if frame.device.type != "cpu":
                return Arrival(frame.permute(2, 0, 1), _recorded_event())
            # Through the next pinned buffer, once the copy that used it last is done.
            index = self._uploads % UPLOAD_DEPTH
            self._uploads += 1
            previous = self._pinned[index]
            if previous is not None and previous[0].shape == frame.shape:
                buffer, last_copy = previous
                last_copy.synchronize()
            else:
                buffer = torch.empty(frame.shape, dtype=frame.dtype, pin_memory=True)
            on_device = buffer.copy_(frame).to(self.device, non_blocking=True)
            ready = _recorded_event()
            self._pinned[index] = buffer, ready
            return Arrival(on_device.permute(2, 0, 1), ready)

    def receive(self, arrival: Arrival) -> torch.Tensor:
        if arrival.ready is not None:
            self.compute_stream.wait_event(arrival.ready)
        # Made on another stream: its memory is not reused before the work queued here is done.
        arrival.frame.record_stream(self.compute_stream)
        return arrival.frame

    def download_slot(self) -> DownloadSlot:
        return _CudaDownloadSlot(self.download_stream)


def _recorded_event() -> torch.cuda.Event:
    """An event recorded on the current stream; a thread waiting on it sleeps rather than
    spins (the cores are the encoder's)."""
    event = torch.cuda.Event(blocking=True)
    event.record()
    return event


class _CudaDownloadSlot:
    """A device buffer and a pinned host buffer (made at the first ``fill``, at the mosaic's
    size), the copy between them on the download stream and its event."""

    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream = stream
        self.copied = torch.cuda.Event(blocking=True)  # the encoder thread sleeps on it
        self.staged: torch.Tensor | None = None
        self.host: torch.Tensor | None = None

    def fill(self, image: torch.Tensor) -> None:
        if self.staged is None or self.host is None or self.staged.shape != image.shape:
            self.staged = torch.empty(image.shape, dtype=image.dtype, device=image.device)
            self.staged.record_stream(self.stream)  # read there until the slot's last copy
            self.host = torch.empty(image.shape, dtype=image.dtype, pin_memory=True)
        self.staged.copy_(image)  # on the current (compute) stream
        self.stream.wait_stream(torch.cuda.current_stream(image.device))
        with torch.cuda.stream(self.stream):
            self.host.copy_(self.staged, non_blocking=True)
            self.copied.record()

    def wait(self) -> torch.Tensor:
        assert self.host is not None, "wait before fill"
        self.copied.synchronize()
        return self.host
