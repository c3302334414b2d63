"""The GPU executor (``mosaic.pipeline.gpu``): its ordering with CPU tensors and stand-in
streams (every machine), and on CUDA against the CPU executor (tests with ``cuda`` in their ids,
skipped without a GPU)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace

import pytest
import torch

from mosaic import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.pipeline import FrameMeasures, render_frames
from mosaic.pipeline.cpu import render_frames_threaded
from mosaic.pipeline.gpu import DOWNLOAD_DEPTH, Arrival, DownloadRing, run_streamed
from mosaic.pipeline.step import FrameStep, StepOutput
from mosaic.stages import StageTimer
from tests.scenes import photo_pool
from tests.test_stages import clip_frames


class Delivery:
    """What a run's slots and ``write`` saw: frames put, frames written, and the most put but
    not yet written at any ``fill``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.put = self.written = self.most_in_flight = 0

    def write(self, image: torch.Tensor, into: list[torch.Tensor]) -> None:
        into.append(image.clone())
        with self.lock:
            self.written += 1


class LateSlot:
    """A ``DownloadSlot`` for CPU tensors whose copy lands only when waited for, some time
    later (as a copy on another stream would), and into the same host buffer every time."""

    def __init__(self, delivery: Delivery, delay: float = 0.0) -> None:
        self.delivery, self.delay = delivery, delay
        self.host: torch.Tensor | None = None
        self.pending: torch.Tensor | None = None

    def fill(self, image: torch.Tensor) -> None:
        assert self.pending is None, "a slot was filled again before its copy was waited for"
        self.pending = image.clone()
        with self.delivery.lock:
            self.delivery.put += 1
            in_flight = self.delivery.put - self.delivery.written
            self.delivery.most_in_flight = max(self.delivery.most_in_flight, in_flight)

    def wait(self) -> torch.Tensor:
        assert self.pending is not None
        time.sleep(self.delay)
        if self.host is None:
            self.host = torch.empty_like(self.pending)
        self.host.copy_(self.pending)
        self.pending = None
        return self.host


class HostStreams:
    """``Streams`` for CPU tensors: nothing to make current, frames already where they go, the
    download slots ``LateSlot``s."""

    def __init__(self, delivery: Delivery, delay: float = 0.0) -> None:
        self.delivery, self.delay = delivery, delay

    def decoding(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def computing(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def upload(self, frame: torch.Tensor) -> Arrival:
        return Arrival(frame.permute(2, 0, 1))

    def receive(self, arrival: Arrival) -> torch.Tensor:
        return arrival.frame

    def download_slot(self) -> LateSlot:
        return LateSlot(self.delivery, self.delay)


class StaticStep:
    """``FrameStep`` with its outputs in fixed buffers, overwritten at every call, as those of a
    step replayed from a CUDA graph are."""

    def __init__(self, renderer: FrameRenderer, pixel_format: str = "rgb") -> None:
        self.step = FrameStep(renderer, pixel_format)
        self.buffers: dict[str, torch.Tensor] = {}

    @property
    def method(self) -> str:
        return self.step.method

    def __call__(self, frame: torch.Tensor) -> StepOutput:
        out = self.step(frame)
        analysis = replace(out.analysis, frame=self._fixed("frame", out.analysis.frame))
        choice, image = self._fixed("choice", out.choice), self._fixed("image", out.image)
        return replace(out, analysis=analysis, choice=choice, image=image)

    def _fixed(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return self.buffers.setdefault(name, torch.empty_like(tensor)).copy_(tensor)


# --------------------------------------------------------------------------- the download ring


def test_ring_writes_in_order_what_was_put_with_a_bounded_number_in_flight():
    """Each mosaic reaches ``write`` as it was when put, in order, although the producer
    overwrites its buffer at once and the copies land late; never more than the slots in
    flight."""
    delivery = Delivery()
    written: list[torch.Tensor] = []
    ring = DownloadRing(
        [LateSlot(delivery, delay=0.002) for _ in range(3)],
        lambda image: delivery.write(image, written),
    )
    buffer = torch.zeros(2, 5, dtype=torch.uint8)
    try:
        for value in range(20):
            buffer.fill_(value)
            ring.put(buffer)
        ring.finish()
    finally:
        ring.close()
    assert [int(image[0, 0]) for image in written] == list(range(20))
    assert all(torch.equal(image, torch.full_like(image, int(image[0, 0]))) for image in written)
    assert delivery.most_in_flight == 3


def test_ring_raises_the_writers_error_once_instead_of_blocking():
    """A failing ``write`` frees no more slots: ``put`` raises its error rather than wait for
    one forever, and ``close`` returns."""
    delivery = Delivery()

    def write(image: torch.Tensor) -> None:
        raise OSError("disk full")

    ring = DownloadRing([LateSlot(delivery) for _ in range(2)], write)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(10):
            ring.put(torch.zeros(3, dtype=torch.uint8))
    ring.close()
    assert delivery.put <= 3


# --------------------------------------------------------------------------- the whole run


def streamed(batches, renderer, pixel_format="rgb", delay=0.0, timer=None, on_batch=None):
    """``run_streamed`` of a ``StaticStep`` on CPU tensors with ``HostStreams``: the mosaics
    written (copies), the summary and what the slots saw."""
    delivery = Delivery()
    written: list[torch.Tensor] = []
    step = StaticStep(renderer, pixel_format)
    measures = FrameMeasures(renderer.device, renderer.config.cell_shape, pixel_format)
    frames = run_streamed(
        batches,
        step,
        HostStreams(delivery, delay),
        lambda image: delivery.write(image, written),
        measures,
        timer=timer or StageTimer(enabled=False),
        on_batch=on_batch,
    )
    return written, measures.summary(frames, step.method), delivery


@pytest.mark.parametrize(("color", "pixel_format"), [(0.0, "rgb"), (0.6, "yuv420p")])
def test_streamed_frames_equal_the_cpu_executors(reference_path, color, pixel_format):
    """The same frames, bytes and measures as the CPU executor, frame after frame (temporal
    coherence and the colour hold carried along), from a step whose outputs change at its next
    call, with at most ``DOWNLOAD_DEPTH`` mosaics on their way to ``write``."""
    config = MosaicConfig(cell=8, tile_size=None, color=color, device="cpu")
    frames = clip_frames(9)
    batches = [torch.stack(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    expected: list[torch.Tensor] = []
    threaded = render_frames_threaded(
        batches,
        FrameRenderer(photo_pool(300), config),
        lambda image: expected.append(image.clone()),
        pixel_format=pixel_format,
    )
    counts: list[int] = []
    written, summary, delivery = streamed(
        batches,
        FrameRenderer(photo_pool(300), config),
        pixel_format,
        delay=0.003,
        on_batch=counts.append,
    )
    assert len(written) == 9 and counts == [4, 4, 1]
    for image, reference in zip(written, expected, strict=True):
        assert torch.equal(image, reference)
    assert summary == threaded
    assert delivery.most_in_flight <= DOWNLOAD_DEPTH


def test_streamed_run_records_its_stages(reference_path):
    renderer = FrameRenderer(photo_pool(100), MosaicConfig(cell=8, device="cpu"))
    timer = StageTimer()
    streamed([torch.stack(clip_frames(2))], renderer, timer=timer)
    assert set(timer.seconds) == {
        "decode", "upload", "step", "metrics", "encode", "waiting_input", "waiting_output",
        "flush",
    }  # fmt: skip


def test_an_error_in_any_thread_of_the_run_surfaces(reference_path):
    renderer = FrameRenderer(photo_pool(100), MosaicConfig(cell=8, device="cpu"))
    frames = torch.stack(clip_frames(2))

    def failing_decoder():
        yield frames
        raise ValueError("corrupt packet")

    with pytest.raises(ValueError, match="corrupt packet"):
        streamed(failing_decoder(), renderer)

    def write(image: torch.Tensor) -> None:
        raise OSError("disk full")

    step = FrameStep(renderer)
    measures = FrameMeasures(renderer.device, renderer.config.cell_shape)
    with pytest.raises(OSError, match="disk full"):
        run_streamed([frames] * 8, step, HostStreams(Delivery()), write, measures)

    with pytest.raises(RuntimeError, match="a step failed"):
        run_streamed([frames] * 8, _failing_step, HostStreams(Delivery()), write, measures)


def _failing_step(frame: torch.Tensor):
    raise RuntimeError("a step failed")


# --------------------------------------------------------------------------- on CUDA

cuda = pytest.mark.cuda


def _cuda_run(renderer, batches, pixel_format):
    written: list[torch.Tensor] = []
    summary = render_frames(
        batches, renderer, lambda image: written.append(image.clone()), pixel_format=pixel_format
    )
    return written, summary


@cuda
@pytest.mark.parametrize(
    ("frames_on", "method"), [("host", "auction"), ("device", "auction"), ("host", "windows")]
)
def test_streamed_equals_the_cpu_executor_on_cuda(frames_on: str, method: str):
    """render_frames on CUDA (the GPU executor; frames decoded on the host go through the
    pinned buffers, frames on the device as NVDEC delivers them) writes what the CPU
    executor writes on the same device: the same I420 bytes within one level, the same
    measures."""
    config = MosaicConfig(cell=8, tile_size=None, color=0.6, device="cuda", method=method)
    frames = clip_frames(13)
    batches = [torch.stack(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    if frames_on == "device":
        batches = [batch.cuda() for batch in batches]
    pool = photo_pool(300)
    expected: list[torch.Tensor] = []
    threaded = render_frames_threaded(
        batches,
        FrameRenderer(pool, config),
        lambda image: expected.append(image.cpu()),
        pixel_format="yuv420p",
    )
    written, summary = _cuda_run(FrameRenderer(pool, config), batches, "yuv420p")
    assert len(written) == len(expected) == 13
    for image, reference in zip(written, expected, strict=True):
        assert image.device.type == "cpu" and image.shape == reference.shape
        assert (image.int() - reference.int()).abs().max() <= 1
    assert summary.frames == threaded.frames and summary.method == threaded.method
    assert summary.tally.churn == pytest.approx(threaded.tally.churn, abs=0.02)
    assert summary.fidelity == pytest.approx(threaded.fidelity, rel=0.05)


@cuda
def test_streamed_memory_stays_flat_at_1080p_on_cuda():
    """1080p frames from the host: the device memory at the peak is the same for 8 and for 24
    frames (a bounded number in flight), within three frames (16 more frames kept would be 16
    more)."""
    config = MosaicConfig(cell=16, tile_size=None, reuse=0, min_distance=0, device="cuda")
    renderer = FrameRenderer(photo_pool(200), config)
    frame = torch.randint(0, 256, (1080, 1920, 3), dtype=torch.uint8)
    peaks = []
    for count in (8, 24, 8):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        render_frames([frame[None]] * count, renderer, lambda image: None, pixel_format="yuv420p")
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated())
    assert abs(peaks[1] - peaks[2]) <= 3 * frame.numel()


@cuda
def test_an_error_in_write_surfaces_on_cuda():
    renderer = FrameRenderer(photo_pool(100), MosaicConfig(cell=8, device="cuda"))
    batches = [torch.stack(clip_frames(4))] * 4

    def write(image: torch.Tensor) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        render_frames(batches, renderer, write, pixel_format="yuv420p")
    # The device and the renderer still work afterwards, through the GPU executor (its stages).
    timer = StageTimer(torch.device("cuda"))
    summary = render_frames(batches[:1], renderer, lambda image: None, timer=timer)
    assert summary.frames == 4 and {"upload", "step"} <= set(timer.seconds)


@cuda
def test_render_video_on_cuda_uploads_cpu_decoded_frames(tmp_path):
    """render_video on CUDA from a clip PyAV decodes on the CPU: the frames reach the GPU
    executor on the host (it uploads them itself) and every frame is written."""
    pytest.importorskip("av")
    from adapters import open_sink, open_source
    from mosaic import render_video

    clip = tmp_path / "in.mp4"
    with open_sink(clip, width=84, height=60, fps=25, backend="pyav") as sink:
        for frame in clip_frames(10):
            sink.write(frame.permute(2, 0, 1))
    config = MosaicConfig(cell=8, device="cuda")
    stats = render_video(clip, tmp_path / "out.mp4", photo_pool(100), config, decoder="pyav")
    assert stats.frames == 10 and stats.decoder == "pyav (cpu)" and stats.device.startswith("cuda")
    with open_source(tmp_path / "out.mp4", device="cpu", backend="pyav") as written:
        assert len(written) == 10
