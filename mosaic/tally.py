"""``FrameTally``: a video's per-frame measures summed on the device, read once at the end.

Reading a number back from a GPU stops the host until the GPU has caught up (a host sync), so a
frame loop never does it: churn, tile swaps, scene cuts and the assignment's certified gap are
added to a few device tensors, with fixed shapes, and ``read`` turns them into Python numbers
once. Each per-frame count of cells goes into a histogram with one bin per possible count, so its
median and 95th percentile are exact and memory stays flat however long the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mosaic.metrics import tile_swaps


@dataclass(frozen=True)
class TallyReading:
    """What ``FrameTally.read`` returns, over the frame pairs that are not scene cuts (each 0
    without any), as fractions of the cells of a frame.

    ``churn``, ``churn_p95``: cells whose tile changed, mean and 95th percentile.
    ``spurious_swaps``, ``spurious_swaps_p95``: cells whose tile was swapped while their source
    was calm (``mosaic.metrics.tile_swaps``), in the median frame and the 95th percentile.
    ``content_swaps``: cells whose tile was swapped where the source changed, and
    ``source_changes``: cells whose source changed, both in the median frame.
    ``scene_cuts``: frames that were one. ``gap_mean``, ``gap_max``: the certified gap over the
    frames that have one (``None`` when none has).
    """

    churn: float
    churn_p95: float
    scene_cuts: int
    gap_mean: float | None
    gap_max: float | None
    spurious_swaps: float = 0.0
    spurious_swaps_p95: float = 0.0
    content_swaps: float = 0.0
    source_changes: float = 0.0


class _CellCounts:
    """How many frame pairs counted each number of cells, 0 to ``cells``: one bin per number."""

    def __init__(self, cells: int, device: torch.device) -> None:
        self.cells = cells
        self.pairs = torch.zeros(cells + 1, dtype=torch.float64, device=device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, count: torch.Tensor, counted: torch.Tensor) -> None:
        """One frame pair's ``count`` (a ``()`` int64 tensor), weighted by ``counted`` (0 or 1)."""
        self.pairs.index_add_(0, count.reshape(1), counted.reshape(1))
        self.total += count * counted

    def read(self) -> dict[str, float]:
        """Mean, median and 95th percentile as fractions of the cells (reads the device)."""
        pairs = self.pairs.cpu()
        frames = float(pairs.sum())
        if not frames:
            return {"mean": 0.0, "median": 0.0, "p95": 0.0}
        reached = torch.cumsum(pairs, 0)

        def quantile(q: float) -> float:
            # The smallest count that at least a fraction q of the pairs do not exceed.
            return int((reached >= q * frames).int().argmax()) / self.cells

        mean = float(self.total) / frames / self.cells
        return {"mean": mean, "median": quantile(0.5), "p95": quantile(0.95)}


class FrameTally:
    """Per-frame measures of a video, kept on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        # Per measure, made at the first frame pair (when the number of cells is known).
        self._counts: dict[str, _CellCounts] = {}
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
        change: torch.Tensor | None = None,
    ) -> None:
        """One frame: its tiles ``choice`` and the previous frame's (int64 ``(rows, cols)``;
        ``None`` for the first frame), whether it was a scene cut (bool, or a ``()`` bool
        tensor), its assignment's certified gap (a ``()`` tensor, or ``None``) and, to count tile
        swaps, its source's ``mosaic.metrics.source_change`` from the previous frame."""
        cut = torch.as_tensor(scene_cut, device=choice.device)
        self._scene_cuts += cut
        if previous is not None:
            counted, cells = (~cut).double(), choice.numel()
            self._count("churn", (choice != previous).sum(), counted, cells)
            if change is not None:
                swaps = tile_swaps(previous, choice, change)
                self._count("spurious", swaps.calm, counted, cells)
                self._count("content", swaps.moving, counted, cells)
                self._count("changed", swaps.changed, counted, cells)
        if gap is not None:
            self._gap_sum += gap
            self._gap_max = torch.maximum(self._gap_max, gap)
            self._gaps += 1

    def _count(self, name: str, count: torch.Tensor, counted: torch.Tensor, cells: int) -> None:
        if name not in self._counts:
            self._counts[name] = _CellCounts(cells, self._device)
        self._counts[name].add(count, counted)

    def read(self) -> TallyReading:
        """Everything as Python numbers (reads the device once per measure)."""
        empty = {"mean": 0.0, "median": 0.0, "p95": 0.0}
        read = {name: counts.read() for name, counts in self._counts.items()}
        churn, spurious = read.get("churn", empty), read.get("spurious", empty)
        gaps = self._gaps
        return TallyReading(
            churn=churn["mean"],
            churn_p95=churn["p95"],
            scene_cuts=int(self._scene_cuts),
            gap_mean=float(self._gap_sum) / gaps if gaps else None,
            gap_max=float(self._gap_max) if gaps else None,
            spurious_swaps=spurious["median"],
            spurious_swaps_p95=spurious["p95"],
            content_swaps=read.get("content", empty)["median"],
            source_changes=read.get("changed", empty)["median"],
        )
