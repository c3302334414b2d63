"""The frame analysis as the engine ran it before ``analyse_cells``, one dispatched kernel or
torch operation at a time: what the fused kernel is tested against and benchmarked beside."""

from __future__ import annotations

import torch

from kernels import grid_reduce, srgb_to_oklab
from kernels.cell_analysis import CellAnalysis, repeat_edges


def unfused_frame_analysis(rgb: torch.Tensor, cell: int, grid: int) -> CellAnalysis:
    """``analyse_cells(rgb, cell, grid)`` the old way: pad, convert the frame to Oklab, reduce
    it to block means, average those into cell means, then a second pass for the spreads."""
    lab = srgb_to_oklab(repeat_edges(rgb, cell))
    block_means = grid_reduce(lab, cell // grid)
    mean = grid_reduce(block_means, grid)
    n, _, rows, cols = mean.shape
    deviations = lab.view(n, 3, rows, cell, cols, cell) - mean[:, :, :, None, :, None]
    std = grid_reduce(deviations.square_().view(lab.shape), cell).sqrt_()
    return CellAnalysis(
        block_means, mean.permute(0, 2, 3, 1).contiguous(), std.permute(0, 2, 3, 1).contiguous()
    )
