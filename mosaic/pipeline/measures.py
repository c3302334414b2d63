"""What a pipeline measures frame by frame, whichever executor runs it: the sampled fidelity and
the per-frame measures of ``mosaic.tally.FrameTally`` (churn, tile swaps, scene cuts, the
certified gap), kept on the device and read once at the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.yuv import yuv420_to_rgb
from mosaic.assign import Assignment
from mosaic.engine import FrameAnalysis
from mosaic.metrics import fidelity, source_change
from mosaic.tally import FrameTally, TallyReading

# The fidelity metric converts the source and the mosaic to Oklab again, as much work as a
# frame's features: it is measured on the first frame and every FIDELITY_EVERY-th after it.
FIDELITY_EVERY = 30

# Whether temporal coherence saw a scene cut before a frame: a bool tensor on the device, or
# False when there was nothing to compare.
CutFlag = torch.Tensor | bool


@dataclass(frozen=True)
class FramesSummary:
    """What ``render_frames`` measured: frames rendered, the solver that ran, the mean sampled
    fidelity and the per-frame measures of ``VideoStats`` (``tally``)."""

    frames: int
    method: str
    fidelity: float
    tally: TallyReading


class FrameMeasures:
    """The measures of a run's frames, given in order (one thread at a time).

    ``pixel_format`` is how the mosaics come (``"rgb"`` or ``"yuv420p"``): fidelity is measured
    on what the encoder receives, I420 converted back to RGB. Only the sampled fidelity reads a
    value back from the device, on every ``FIDELITY_EVERY``-th frame.
    """

    def __init__(
        self, device: torch.device, cell_shape: tuple[int, int], pixel_format: str = "rgb"
    ) -> None:
        self.cell_shape = cell_shape
        self.pixel_format = pixel_format
        self.tally = FrameTally(device)
        self._fidelities: list[float] = []
        # The frame measured last and its tiles, for the swaps of the next one.
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(
        self,
        index: int,
        analysis: FrameAnalysis,
        choice: torch.Tensor,
        image: torch.Tensor,
        assignment: Assignment,
        cut: CutFlag,
    ) -> None:
        """Measure frame ``index``: its analysis, tiles ``choice`` (int64 ``(rows, cols)``),
        mosaic ``image``, assignment and scene-cut flag."""
        if index % FIDELITY_EVERY == 0:
            shown = image if self.pixel_format == "rgb" else yuv420_to_rgb(image)
            self._fidelities.append(fidelity(analysis.frame, shown, analysis.grid)["mean"])
        previous_frame, previous_choice = self._last or (None, None)
        change = None
        if previous_frame is not None:
            change = source_change(previous_frame, analysis.frame, self.cell_shape)
        self.tally.add(previous_choice, choice, cut, assignment.gap, change)
        # Copies: a FrameStep's outputs are its static buffers, overwritten by the next frame.
        self._last = analysis.frame.clone(), choice.clone()

    def summary(self, frames: int, method: str) -> FramesSummary:
        """The run's ``FramesSummary`` (reads the tally back from the device)."""
        fidelities = self._fidelities
        return FramesSummary(
            frames=frames,
            method=method,
            fidelity=sum(fidelities) / max(len(fidelities), 1),
            tally=self.tally.read(),
        )
