"""Triton kernels for the mosaic engine, each with a pure-torch reference.

Tensors in, tensors out: no files, no video, no policy. Every function takes CPU or CUDA tensors
and returns tensors on the same device; ``kernels.dispatch`` says which implementation runs.
"""

from kernels.block_energy import block_energy
from kernels.cell_analysis import CellAnalysis, analyse_cells
from kernels.composite import Blend, ColourTransfer, composite_tiles
from kernels.cost import cost_matrix, cost_topk
from kernels.features import cell_features
from kernels.grid import grid_reduce
from kernels.oklab import oklab_to_srgb, srgb_to_oklab

__all__ = [
    "Blend",
    "CellAnalysis",
    "ColourTransfer",
    "analyse_cells",
    "block_energy",
    "cell_features",
    "composite_tiles",
    "cost_matrix",
    "cost_topk",
    "grid_reduce",
    "oklab_to_srgb",
    "srgb_to_oklab",
]
