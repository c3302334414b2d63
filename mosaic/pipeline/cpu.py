"""The CPU executor: a video's frames through ``FrameRenderer`` in threads joined by bounded
queues (decode and analysis, assignment, compose and measures, encode), so the stages overlap and
memory stays flat however long the video."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator

import torch

from mosaic.assign import Assignment
from mosaic.engine import FrameAnalysis, FrameRenderer
from mosaic.pipeline.measures import CutFlag, FrameMeasures, FramesSummary
from mosaic.pipeline.streaming import BackgroundConsumer, Prefetcher
from mosaic.stages import NO_TIMER, StageTimer, timed_iteration
from mosaic.temporal import TemporalCoherence

__all__ = ["render_frames_threaded", "torch_threads"]

# Mosaics queued for the encoder.
OUTPUT_DEPTH = 4


def render_frames_threaded(
    batches: Iterable[torch.Tensor],
    renderer: FrameRenderer,
    write: Callable[[torch.Tensor], None],
    *,
    timer: StageTimer = NO_TIMER,
    on_batch: Callable[[int], None] | None = None,
    pixel_format: str = "rgb",
) -> FramesSummary:
    """Render uint8 NHWC ``(B, H, W, 3)`` batches of frames into mosaics handed to ``write``.

    Four stages run at once, joined by bounded queues, so memory stays flat however many
    frames: iterating ``batches`` and each frame's descriptors and colour statistics (a
    background thread), the assignment (this thread: it carries temporal coherence from frame to
    frame), the mosaic pixels and the per-frame measures (``FrameTally``: churn, tile swaps;
    a background thread) and ``write`` (a background thread), which
    receives each mosaic in order, uint8 ``(3, H_out, W_out)`` (a view: any strides). On a
    CPU, torch runs few threads meanwhile (``torch_threads``). ``on_batch`` is called with the
    number of frames of each batch once assigned (a progress bar). ``timer`` records
    ``"decode"`` (producing a batch), the ``FrameRenderer`` stages, ``"metrics"`` (the tally,
    and fidelity on every ``FIDELITY_EVERY``-th frame), ``"encode"``
    (``write``), this thread's ``"waiting_input"`` and ``"waiting_output"``, and ``"flush"``
    (the last batches' way out once all are assigned). With ``pixel_format="yuv420p"`` the
    mosaics are handed over as the I420 bytes a video encoder takes (``FrameRenderer.compose``);
    fidelity is then measured on them converted back to RGB, what the encoder receives.
    """
    temporal = TemporalCoherence(renderer.config.temporal)
    hold = renderer.colour_hold()
    measures = FrameMeasures(renderer.device, renderer.config.cell_shape, pixel_format)
    frames, method = 0, ""

    def analyse(batches: Iterable[torch.Tensor]) -> Iterator[list[FrameAnalysis]]:
        for batch in timed_iteration(batches, timer, "decode"):
            yield [renderer.analyse(frame.permute(2, 0, 1), timer) for frame in batch]

    def encode(image: torch.Tensor) -> None:
        with timer.stage("encode"):
            write(image)

    def compose(item: tuple[int, list[FrameAnalysis], list[Assignment], list[CutFlag]]) -> None:
        first, analyses, assignments, cuts = item
        for index, (analysis, assignment, cut) in enumerate(
            zip(analyses, assignments, cuts, strict=True), first
        ):
            choice = assignment.tiles.reshape(analysis.grid)
            image = renderer.compose(analysis, choice, timer, hold, pixel_format)
            with timer.stage("metrics"):
                measures.add(index, analysis, choice, image, assignment, cut)
            writer.put(image)

    with torch_threads(renderer.device):
        # Frames one by one: a cropped mosaic is copied once, by the writer, if it needs to be.
        writer: BackgroundConsumer[torch.Tensor] = BackgroundConsumer(
            encode, depth=OUTPUT_DEPTH, name="encode"
        )
        composer: BackgroundConsumer[
            tuple[int, list[FrameAnalysis], list[Assignment], list[CutFlag]]
        ]
        composer = BackgroundConsumer(compose, name="compose")
        prefetcher = Prefetcher(analyse(batches), name="decode")
        analysed = iter(prefetcher)
        try:
            while True:
                with timer.stage("waiting_input"):
                    batch = next(analysed, None)
                if batch is None:
                    break
                assignments, cuts = [], []
                for analysis in batch:
                    assignment, scene_cut = renderer.choose(analysis, temporal, timer)
                    assignments.append(assignment)
                    cuts.append(scene_cut)
                    method = assignment.method
                with timer.stage("waiting_output"):
                    composer.put((frames, batch, assignments, cuts))
                frames += len(batch)
                if on_batch is not None:
                    on_batch(len(batch))
            with timer.stage("flush"):
                composer.finish()
                writer.finish()
        finally:
            composer.close()
            writer.close()
            prefetcher.close()
    return measures.summary(frames, method)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


@contextlib.contextmanager
def torch_threads(device: torch.device) -> Iterator[None]:
    """Context: on a CPU, torch's intra-op threads for a pipeline run, a quarter of the cores
    (at least one); elsewhere nothing.

    The pipeline's stages already keep the cores busy side by side; on top of that, torch's
    OpenMP threads spin-wait for each other at every operation and collapse when the cores are
    shared (measured on 2 cores with decoding and ffmpeg beside it: rendering slowed 4-10x, most
    of all once the decoder thread had finished, the lone slowdown at the end of a run). The
    previous setting comes back when the last concurrent run ends.
    """
    global _threads_users, _threads_before
    if device.type != "cpu":
        yield
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(max(1, (cores or 1) // 4))
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)
