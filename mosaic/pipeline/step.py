"""``FrameStep``: one frame's whole step (analyse, choose, compose) with the state a video
carries from frame to frame, behind one call, for the GPU executor (``mosaic.pipeline.gpu``).

This is the eager step: every call runs ``FrameRenderer``'s three steps in turn. Its outputs are
documented as valid only until the next call, so a step that reuses fixed buffers (a CUDA graph
replayed frame after frame) can take its place with the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mosaic.assign import Assignment
from mosaic.engine import FrameAnalysis, FrameRenderer
from mosaic.pipeline.measures import CutFlag
from mosaic.temporal import TemporalCoherence

__all__ = ["FrameStep", "StepOutput"]


@dataclass(frozen=True)
class StepOutput:
    """One frame through ``FrameStep``: its analysis, assignment, scene-cut flag, tiles
    ``choice`` (int64 ``(rows, cols)``) and mosaic ``image`` (uint8 RGB ``(3, H_out, W_out)``
    or I420 bytes, as ``FrameRenderer.compose`` returns it). Valid until the next call."""

    analysis: FrameAnalysis
    assignment: Assignment
    cut: CutFlag
    choice: torch.Tensor
    image: torch.Tensor


class FrameStep:
    """A video's frames, one call each, in order: ``step(frame)`` -> ``StepOutput``.

    Holds the video's ``TemporalCoherence`` and colour hold. ``method`` is the solver that ran
    on the last frame (``""`` before the first), ``captured`` whether frames replay a CUDA graph
    (never, for this eager step).
    """

    def __init__(self, renderer: FrameRenderer, pixel_format: str = "rgb") -> None:
        self.renderer = renderer
        self.pixel_format = pixel_format
        self.temporal = TemporalCoherence(renderer.config.temporal)
        self.hold = renderer.colour_hold()
        self.method = ""
        self.captured = False

    def __call__(self, frame: torch.Tensor) -> StepOutput:
        """The step of uint8 ``(3, H, W)`` ``frame`` (on the processing device, any strides)."""
        renderer = self.renderer
        analysis = renderer.analyse(frame)
        assignment, cut = renderer.choose(analysis, self.temporal)
        choice = assignment.tiles.reshape(analysis.grid)
        image = renderer.compose(analysis, choice, hold=self.hold, pixel_format=self.pixel_format)
        self.method = assignment.method
        return StepOutput(analysis, assignment, cut, choice, image)
