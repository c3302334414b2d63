"""``FrameTally``: a video's per-frame measures summed on the device, read once at the end.

Reading a number back from a GPU stops the host until the GPU has caught up (a host sync), so a
frame loop never does it: churn, scene cuts and the assignment's certified gap are added to a few
device tensors, with fixed shapes, and ``read`` turns them into Python numbers once. The 95th
percentile of the churn comes from a fixed histogram (``CHURN_BINS`` bins over [0, 1]), so memory
stays flat however long the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHURN_BINS = 1000


@dataclass(frozen=True)
class TallyReading:
    """What ``FrameTally.read`` returns: churn (mean and 95th percentile over the frame pairs
    that are not scene cuts, 0 without any), scene cuts, and the certified gap (mean and max
    over the frames that have one; ``None`` when none has)."""

    churn: float
    churn_p95: float
    scene_cuts: int
    gap_mean: float | None
    gap_max: float | None


class FrameTally:
    """Per-frame measures of a video, kept on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self._churn_histogram = torch.zeros(CHURN_BINS, dtype=torch.float64, device=device)
        self._churn_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._scene_cuts = torch.zeros((), dtype=torch.int64, device=device)
        self._gap_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._gap_max = torch.zeros((), dtype=torch.float64, device=device)
        self._gaps = 0

    def add(
        self,
        previous: torch.Tensor | None,
        choice: torch.Tensor,
        scene_cut: torch.Tensor | bool,
        gap: torch.Tensor | None,
    ) -> None:
        """One frame: its tiles ``choice`` and the previous frame's (int64, same shape; ``None``
        for the first frame), whether it was a scene cut (bool, or a ``()`` bool tensor), and its
        assignment's certified gap (a ``()`` tensor, or ``None``)."""
        cut = torch.as_tensor(scene_cut, device=choice.device)
        self._scene_cuts += cut
        if previous is not None:
            churn = (choice != previous).double().mean()
            counted = (~cut).double()
            self._churn_sum += churn * counted
            bin_index = (churn * CHURN_BINS).long().clamp_max(CHURN_BINS - 1)
            self._churn_histogram.index_add_(0, bin_index.reshape(1), counted.reshape(1))
        if gap is not None:
            self._gap_sum += gap
            self._gap_max = torch.maximum(self._gap_max, gap)
            self._gaps += 1

    def read(self) -> TallyReading:
        """Everything as Python numbers (reads the device once)."""
        histogram = self._churn_histogram.cpu()
        pairs = float(histogram.sum())
        churn = float(self._churn_sum) / pairs if pairs else 0.0
        churn_p95 = 0.0
        if pairs:
            # The upper edge of the bin that holds the 95th percentile.
            reached = torch.cumsum(histogram, 0) >= 0.95 * pairs
            churn_p95 = (int(reached.int().argmax()) + 1) / CHURN_BINS
        gaps = self._gaps
        return TallyReading(
            churn=churn,
            churn_p95=min(churn_p95, 1.0),
            scene_cuts=int(self._scene_cuts),
            gap_mean=float(self._gap_sum) / gaps if gaps else None,
            gap_max=float(self._gap_max) if gaps else None,
        )
