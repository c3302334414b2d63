"""A video's frames through the mosaic's steps, overlapped: the executors and what they share.

``render_frames`` hands uint8 NHWC batches to an executor and each finished mosaic, in order, to
``write``. The CPU executor (``mosaic.pipeline.cpu``) runs the steps of ``FrameRenderer``
(analyse, choose, compose) in threads joined by bounded queues. The GPU executor
(``mosaic.pipeline.gpu``) runs each frame's whole step on a compute stream, with the upload of
the next frames and the copy of the last mosaics to the host on their own CUDA streams. Every
executor measures its frames with ``FrameMeasures`` and times its stages with a ``StageTimer``.

``FrameStep`` (``mosaic.pipeline.step``) is that whole step: fixed input and state buffers,
captured once as a CUDA graph and replayed frame after frame with the auction solver; its
outputs are overwritten by the next frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from mosaic.engine import FrameRenderer
from mosaic.pipeline.cpu import render_frames_threaded, torch_threads
from mosaic.pipeline.gpu import render_frames_streamed
from mosaic.pipeline.measures import FIDELITY_EVERY, FrameMeasures, FramesSummary
from mosaic.stages import NO_TIMER, StageTimer

__all__ = [
    "FIDELITY_EVERY",
    "FrameMeasures",
    "FramesSummary",
    "render_frames",
    "torch_threads",
]


def render_frames(
    batches: Iterable[torch.Tensor],
    renderer: FrameRenderer,
    write: Callable[[torch.Tensor], None],
    *,
    timer: StageTimer = NO_TIMER,
    on_batch: Callable[[int], None] | None = None,
    pixel_format: str = "rgb",
) -> FramesSummary:
    """Render uint8 NHWC ``(B, H, W, 3)`` batches of frames into mosaics handed to ``write``, in
    order, by the executor for ``renderer.device``: ``render_frames_streamed`` on CUDA,
    ``render_frames_threaded`` elsewhere (their docstrings say what each argument does and
    which stages ``timer`` records). ``write`` may be handed a buffer that is reused once it
    returns: it copies what it keeps."""
    executor = render_frames_streamed if renderer.device.type == "cuda" else render_frames_threaded
    return executor(
        batches, renderer, write, timer=timer, on_batch=on_batch, pixel_format=pixel_format
    )
