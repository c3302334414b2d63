"""Compile every Triton kernel of ``kernels/`` for sm_90 (H100, H200), no GPU needed.

The Triton interpreter cannot show what only the GPU compiler rejects (a ``tl.dot`` with K < 16,
an API only the interpreter accepts) or what only costs time there (register spills). This
compiles each kernel ahead of time with the ptxas bundled in the Triton wheel, in the
configurations its launcher uses, and reads the cubin's resource usage with the bundled
``cuobjdump -res-usage``: registers per thread, and spills as the runtime counts them
(``CompiledKernel.n_spills``: local memory per thread, where ptxas spills, in 4-byte words).
Shared memory is Triton's allocation (``metadata.shared``).

Run by hand: ``python -m tests.kernels.compile_sm90`` prints a table (``--json``: one line of
JSON, what ``tests/kernels/test_compile_sm90.py`` checks). Exit status 1 when a kernel fails to
compile or spills. Nothing is cached between runs (a fresh ``TRITON_CACHE_DIR`` per run).

Configurations: the block sizes of the launchers' GPU heuristics (called here, for a 132-SM GPU)
with every autotune config of each kernel (those its ``early_config_prune`` keeps for the
launch), over the dtypes and layouts the launchers accept; kernels without autotuning in the one
configuration their launcher's heuristics pick.
Inputs are meta tensors passed through the launchers' own argument code, and ``ast_source``
specialises like a real launch (16-divisible ints and aligned pointers, ints equal to 1). To
stay well under a minute on two cores the cross product is trimmed: each kernel takes every
config in its main dtypes and layouts, and only its first config in the others. Each
``*_launches`` docstring says which is which.
"""

from __future__ import annotations

import os

# Triton picks compiled or interpreted kernels when their decorators run: set before `kernels`.
os.environ["TRITON_INTERPRET"] = "0"

import argparse
import contextlib
import importlib
import itertools
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime import Autotuner, JITFunction

from kernels import auction, cell_analysis, composite, cost, grid, oklab
from kernels._launch import FLOAT_DTYPES, IMAGE_DTYPES, size_class
from kernels.auction import _shared as auction_shared
from kernels.auction import complete as auction_completion
from kernels.auction import dual as auction_dual

# The module: ``kernels.block_energy`` is the function the package exports under its name.
block_energy = importlib.import_module("kernels.block_energy")

TARGET = GPUTarget("cuda", 90, 32)
# H100 and H200 both have 132 SMs; the grid heuristics size tiles by it.
SM_COUNT = 132
# The auction's ops, one module each.
AUCTION_MODULES = tuple(
    importlib.import_module(f"kernels.auction.{op}")
    for op in ("lists", "round", "release", "slots", "prices", "dual", "complete")
)
KERNEL_MODULES = (*AUCTION_MODULES, block_energy, cell_analysis, composite, cost, grid, oklab)
POINTER_TYPES = {
    torch.bool: "*i1",
    torch.uint8: "*u8",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float32: "*fp32",
    torch.float64: "*fp64",
    torch.int32: "*i32",
    torch.int64: "*i64",
}
# The cost kernels' problem: the cells of a 1080p frame (16-pixel cells, 68 x 120) against a
# 20k-tile pool, top-k columns split over SPLITS programs.
CELLS, TILES, SPLITS = 8160, 20000, 4
# Its autotuning size class, a plain int argument.
SIZE_CLASS = cost._size_key(CELLS, TILES)
CUDA = torch.device("cuda")  # only its type is read: the launchers' GPU block sizes
DOT_KEYWORDS = {"BLOCK_D": cost._BLOCK_D, "DOT_PRECISION": cost._DOT_PRECISION}
# What the tiled launchers ask of a 132-SM GPU, and Triton's default pipelining depth.
MIN_PROGRAMS = grid.PROGRAMS_PER_SM * SM_COUNT
DEFAULT_STAGES = 3


@dataclass(frozen=True)
class Pointer:
    """A tensor argument as the compiler sees it: element type and 16-byte alignment."""

    type: str
    aligned: bool = True


@dataclass(frozen=True)
class Launch:
    """One kernel specialisation: positional arguments and keywords as the launcher passes them.

    ``kernel`` is ``"module:name"`` of the ``@triton.jit`` function; ``keywords`` holds its
    constexprs and the compile options of the config (``num_warps``, ``num_stages``, ...).
    """

    kernel: str
    label: str
    args: tuple[Pointer | int, ...]
    keywords: dict[str, object]


@dataclass
class Result:
    """What ptxas made of one launch; ``error`` is set when it did not compile."""

    kernel: str
    label: str
    registers: int | None = None
    spills: int | None = None
    shared_bytes: int | None = None
    seconds: float = 0.0
    error: str | None = None


# --------------------------------------------------------------------------- arguments


def pointer(tensor: torch.Tensor) -> Pointer:
    """The ``Pointer`` a launch passes for ``tensor`` (a meta tensor: no memory, real strides).

    Allocations are 16-byte aligned, so only the view's offset decides the alignment.
    """
    offset_bytes = tensor.storage_offset() * tensor.element_size()
    return Pointer(POINTER_TYPES[tensor.dtype], offset_bytes % 16 == 0)


def type_name(dtype: torch.dtype) -> str:
    """Triton's short name of ``dtype``: ``u8``, ``fp16``, ..."""
    return POINTER_TYPES[dtype].removeprefix("*")


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A contiguous tensor of ``shape`` without storage."""
    return torch.empty(shape, dtype=dtype, device="meta")


def launch_args(*values: torch.Tensor | int) -> tuple[Pointer | int, ...]:
    """Launcher arguments with tensors replaced by their ``Pointer``."""
    return tuple(pointer(v) if isinstance(v, torch.Tensor) else v for v in values)


def config_text(keywords: dict[str, object], shown: tuple[str, ...]) -> str:
    """``NAME=value`` for the ``shown`` keywords, then warps, stages and any register limit
    (``w4 s3``, ``w4 s2 r168``)."""
    names = " ".join(f"{name}={keywords[name]}" for name in shown)
    limit = f" r{keywords['maxnreg']}" if keywords.get("maxnreg") else ""
    return f"{names} w{keywords['num_warps']} s{keywords['num_stages']}{limit}".strip()


def tuned_configs(
    tuned: Autotuner, every: bool = True, **constexprs: object
) -> list[dict[str, object]]:
    """Keywords (constexprs and compile options) of every config an autotuned kernel tries for a
    launch with ``constexprs`` (those its ``early_config_prune`` keeps), or only of the first
    when not ``every`` (the trimmed part of the cross product)."""
    configs = tuned.configs
    if tuned.early_config_prune is not None:
        configs = tuned.early_config_prune(configs, {}, **constexprs)
    keywords = [config.all_kwargs() for config in configs]
    return keywords if every else keywords[:1]


# --------------------------------------------------------------------------- launches


def frame_layouts(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """1080p frames ``(1, 3, H, W)`` in each layout the pixel launchers special-case.

    CHW: one long row. HWC seen as CHW: channel stride 1, pixel stride 3. crop (``[..., 1:, 1:]``
    of CHW): row by row, 1919 columns (not 16-divisible), pointer unaligned.
    """
    chw = meta(1, 3, 1080, 1920, dtype=dtype)
    hwc = meta(1, 1080, 1920, 3, dtype=dtype).permute(0, 3, 1, 2)
    return {"CHW": chw, "HWC": hwc, "crop": chw[..., 1:, 1:]}


def pixel_launch(
    kernel: str, src: torch.Tensor, keywords: dict, label: str, *extra: torch.Tensor
) -> Launch:
    """Arguments of ``oklab._launch_pixelwise`` for ``src``, built by the launcher's own code."""
    frames = oklab._as_frames(src)
    _, _, height, width = frames.shape
    stride_frame, stride_channel, stride_h, stride_w = frames.stride()
    rows, cols, stride_row, stride_col = oklab._plane_walk(height, width, stride_h, stride_w)
    out_dtype = torch.uint8 if kernel == "_oklab_to_srgb_kernel" else torch.float32
    out = meta(*src.shape, dtype=out_dtype)
    sizes = size_class(frames.shape[0] * rows * cols) * 16 + size_class(cols)
    args = (frames, out, rows, cols, stride_frame, stride_channel, stride_row, stride_col, sizes)
    args += extra
    return Launch(f"kernels.oklab:{kernel}", label, launch_args(*args), keywords)


def oklab_launches() -> Iterator[Launch]:
    """Both conversions. Full: every layout and config for uint8 (decode table) and float32
    (decode curve) inputs, and float32 Oklab. Trimmed: the other dtypes, CHW, first config."""
    decode_table = meta(256)
    for dtype in IMAGE_DTYPES:
        full = dtype in (torch.uint8, torch.float32)
        for layout, frame in frame_layouts(dtype).items():
            if not full and layout != "CHW":
                continue
            for config in tuned_configs(oklab._srgb_to_oklab_tuned, full):
                keywords = {**config, "DECODE_FROM_TABLE": dtype == torch.uint8}
                label = f"{type_name(dtype)} {layout} {config_text(keywords, ('BLOCK',))}"
                yield pixel_launch("_srgb_to_oklab_kernel", frame, keywords, label, decode_table)
    for dtype in FLOAT_DTYPES:
        full = dtype == torch.float32
        for layout, frame in frame_layouts(dtype).items():
            if not full and layout != "CHW":
                continue
            for config in tuned_configs(oklab._oklab_to_srgb_tuned, full):
                label = f"{type_name(dtype)} {layout} {config_text(config, ('BLOCK',))}"
                yield pixel_launch("_oklab_to_srgb_kernel", frame, config, label)


def frame(
    layout: str, dtype: torch.dtype = torch.uint8, height: int = 1080, count: int = 1
) -> torch.Tensor:
    """``count`` frames ``(count, 3, height, 1920)``: ``"CHW"`` contiguous, ``"HWC"`` a decoder's
    frames seen as CHW (channel stride 1, pixel stride 3)."""
    if layout == "HWC":
        return meta(count, height, 1920, 3, dtype=dtype).permute(0, 3, 1, 2)
    return meta(count, 3, height, 1920, dtype=dtype)


def grid_scenes(dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
    """Images and block sizes of ``grid_reduce``: 8 frames of 1080p (the benchmark; the largest
    tiles) with every power-of-two block of 2 to 32 (one reshaped run of columns per tile row),
    blocks 3, 6 and 12 and HWC frames (spans gathered into blocks), strides with gaps (padded
    lanes), and 1024 tiles of 64 x 64, one block each (the engine's tile statistics)."""
    batch = {layout: frame(layout, dtype, count=8) for layout in ("CHW", "HWC")}
    scenes = {f"CHW/{b}x{b}": (batch["CHW"], (b, b)) for b in (2, 4, 8, 16, 32, 3, 6, 12)}
    scenes |= {f"HWC/{b}x{b}": (batch["HWC"], (b, b)) for b in (4, 16, 12)}
    # Padded lanes: every other column, and the RGB of RGBA frames (a gap after each pixel).
    scenes["CHW::2/8x8"] = (batch["CHW"][..., ::2], (8, 8))
    rgba = meta(8, 1080, 1920, 4, dtype=dtype).permute(0, 3, 1, 2)
    scenes["RGBA-view/12x12"] = (rgba[:, :3], (12, 12))
    scenes["tiles64/64x64"] = (meta(1024, 3, 64, 64, dtype=dtype), (64, 64))
    return scenes


def plan_launch(plan: grid.LaunchPlan, label: str) -> Launch:
    """The ``Launch`` of a launcher's ``LaunchPlan`` (at Triton's default pipelining depth)."""
    kernel = jit_function(plan.kernel)
    keywords = {**plan.keywords, "num_stages": DEFAULT_STAGES}
    return Launch(
        f"{kernel.fn.__module__}:{kernel.fn.__name__}", label, launch_args(*plan.args), keywords
    )


def trimmed_scenes(
    scenes: Callable[[torch.dtype], dict[str, tuple[torch.Tensor, tuple[int, int]]]],
) -> Iterator[tuple[torch.dtype, str, torch.Tensor, tuple[int, int]]]:
    """``(dtype, scene, image, block)`` of a block kernel's ``scenes(dtype)``: every scene for
    uint8 (frames) and float32, only ``CHW/16x16`` for the other dtypes (the trimmed part)."""
    for dtype in IMAGE_DTYPES:
        full = dtype in (torch.uint8, torch.float32)
        for scene, (x, block) in scenes(dtype).items():
            if full or scene == "CHW/16x16":
                yield dtype, scene, x, block


def grid_reduce_launches() -> Iterator[Launch]:
    """Full: uint8 (frames) and float32 (Oklab tiles), every scene. Trimmed: the other dtypes,
    ``CHW/16x16``. One configuration each: ``grid.grid_reduce_plan`` for a 132-SM GPU."""
    for dtype, scene, x, block in trimmed_scenes(grid_scenes):
        n, channels, height, width = x.shape
        out = meta(n, channels, height // block[0], width // block[1])
        step = grid.GPU_WARPS * 32 * grid.lanes_per_thread_for(x)
        plan = grid.grid_reduce_plan(x, out, block, step, MIN_PROGRAMS)
        keywords = plan.keywords | {"num_stages": DEFAULT_STAGES}
        shown = tuple(k for k in ("TILE_R", "TILE_OW", "BW_CHUNK", "SPAN") if k in keywords)
        yield plan_launch(plan, f"{type_name(dtype)} {scene} {config_text(keywords, shown)}")


def block_energy_scenes(dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
    """Images and blocks of ``block_energy``: 8 frames of 1080p (the benchmark) in CHW and HWC
    at blocks 4, 14 (not a power of two: padded lanes), 16 and 32, a crop (unaligned rows),
    16 frames of 224 x 224 in patches of 14 (``adapters.patch_stream``) and a whole frame as
    one block (columns in chunks)."""
    batch = {layout: frame(layout, dtype, count=8) for layout in ("CHW", "HWC")}
    scenes = {
        f"{layout}/{b}x{b}": (frames, (b, b))
        for layout, frames in batch.items()
        for b in (4, 14, 16, 32)
    }
    scenes["crop/16x16"] = (batch["CHW"][..., 1:, 1:], (16, 16))
    scenes["clip224/14x14"] = (meta(16, 3, 224, 224, dtype=dtype), (14, 14))
    scenes["HWC/whole"] = (frame("HWC", dtype), (1080, 1920))
    return scenes


def block_energy_launches() -> Iterator[Launch]:
    """Full: uint8 and float32, every scene. Trimmed: the other dtypes, ``CHW/16x16``. One
    configuration each: ``block_energy.block_energy_plan`` for a 132-SM GPU."""
    for dtype, scene, x, block in trimmed_scenes(block_energy_scenes):
        n, _, height, width = x.shape
        out = meta(n, height // block[0], width // block[1])
        step = grid.GPU_WARPS * 32 * block_energy.LANES_PER_THREAD
        plan = block_energy.block_energy_plan(x, out, block, step, MIN_PROGRAMS)
        keywords = plan.keywords | {"num_stages": DEFAULT_STAGES}
        shown = ("TILE_OW", "BW_CHUNK")
        yield plan_launch(plan, f"{type_name(dtype)} {scene} {config_text(keywords, shown)}")


def cell_oklab_scenes() -> dict[str, tuple[torch.Tensor, tuple[int, int], int, bool]]:
    """``(frame, cell, grid, statistics)`` of the engine's and ``cell_features``' launches.

    Statistics (the frame path, one 1080p frame): cell 16 / grid 2 (the default, 1080 rows padded
    to 1088), cell 12 / grid 2 (cell width not a power of two) and cell 36 / grid 3 (the CPU
    workload's cell), on HWC and CHW frames; non-square cells 16 x 24 and 12 x 16. Means only:
    ``cell_features`` on 8 frames at blocks 4 and 16 (the benchmarks) and 12 (padded lanes),
    8 x 8 blocks of padded cells of 16 (``analyse_cells`` without colour transfer), and 1024
    tiles of 64 x 64, one block each (the pool's descriptors).
    """
    scenes = {}
    for layout in ("HWC", "CHW"):
        scenes[f"{layout} stats 16/2"] = (frame(layout), (16, 16), 2, True)
        scenes[f"{layout} stats 12/2"] = (frame(layout), (12, 12), 2, True)
        scenes[f"{layout} stats 36/3"] = (frame(layout, height=720), (36, 36), 3, True)
        for block in (4, 16, 12):
            batch = frame(layout, count=8)
            scenes[f"{layout} means {block}"] = (batch, (block, block), 1, False)
    scenes["HWC means 8 padded"] = (frame("HWC"), (8, 8), 1, False)
    # Non-square cells (3:2 and 4:3 photos: cell 24 x 16 and 16 x 12, as (height, width)).
    scenes["HWC stats 16x24/2"] = (frame("HWC"), (16, 24), 2, True)
    scenes["CHW stats 12x16/2"] = (frame("CHW"), (12, 16), 2, True)
    scenes["tiles64 means 64"] = (meta(1024, 3, 64, 64, dtype=torch.uint8), (64, 64), 1, False)
    return scenes


def cell_oklab_launches() -> Iterator[Launch]:
    """Every scene of ``cell_oklab_scenes``: ``cell_analysis.cell_oklab_plan`` for a 132-SM GPU."""
    decode_table = meta(256)
    for scene, (rgb, cell, cells_grid, statistics) in cell_oklab_scenes().items():
        n, _, height, width = rgb.shape
        if statistics or scene.endswith("padded"):
            out_h, out_w = -(-height // cell[0]), -(-width // cell[1])
        else:
            out_h, out_w = height // cell[0], width // cell[1]
        blocks = meta(n, 3, out_h * cells_grid, out_w * cells_grid)
        stats = meta(n, out_h, out_w, 3)
        step = grid.GPU_WARPS * 32 * cell_analysis.lanes_per_thread(statistics)
        plan = cell_analysis.cell_oklab_plan(
            rgb, (blocks, stats, stats), decode_table, cell, cells_grid, step, MIN_PROGRAMS,
            statistics=statistics,
        )  # fmt: skip
        keywords = plan.keywords | {"num_stages": DEFAULT_STAGES}
        yield plan_launch(plan, f"{scene} {config_text(keywords, ('TILE_OW', 'CW_CHUNK'))}")


def feature_pairs(
    dtype: torch.dtype = torch.float32,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Cell and tile descriptors ``(N, D)``, ``(M, D)`` of a 1080p frame and a 20k-tile pool.

    Contiguous with D = 12 (grid 2, the default: row stride not 16-divisible) and D = 48 (grid 4:
    16-divisible), and D = 12 column-major (feature stride N, row stride 1).
    """
    return {
        "D=12": (meta(CELLS, 12, dtype=dtype), meta(TILES, 12, dtype=dtype)),
        "D=48": (meta(CELLS, 48, dtype=dtype), meta(TILES, 48, dtype=dtype)),
        "D=12 col-major": (meta(12, CELLS, dtype=dtype).T, meta(12, TILES, dtype=dtype).T),
    }


def cost_matrix_launches() -> Iterator[Launch]:
    """Every feature pair. Full: float32 D = 12 (rows not 16-element aligned: the most registers),
    every config (their tiles). Trimmed: the others, first config."""
    for dtype in FLOAT_DTYPES:
        for pair, (a, b) in feature_pairs(dtype).items():
            n, m, d = a.shape[0], b.shape[0], a.shape[1]
            out = meta(n, m)
            full = dtype == torch.float32 and pair == "D=12"
            for config in tuned_configs(cost._cost_matrix_kernel_tuned, full):
                keywords = {**config, **DOT_KEYWORDS}
                label = f"{type_name(dtype)} {pair} {config_text(keywords, ('BLOCK_N', 'BLOCK_M'))}"
                args = (a, b, out, n, m, d, SIZE_CLASS, *a.stride(), *b.stride(), out.stride(0))
                yield Launch(
                    "kernels.cost:_cost_matrix_kernel", label, launch_args(*args), keywords
                )


def topk_variants(
    a: torch.Tensor, b: torch.Tensor, k: int, auction: bool
) -> Iterator[tuple[tuple[torch.Tensor, ...], dict[str, object]]]:
    """What both top-k kernels take for each variant their launcher runs, without and with the
    column split, and with ``auction`` the auction's (a price bias and a masked update of
    selected rows): ``(values, indices, partial, bias, selected)`` and the variant's
    constexprs (``K``, ``K_PAD``, blocks, ``WRITE_PARTIAL``, ``HAS_BIAS``, ``HAS_ROWS``)."""
    n, m = a.shape[0], b.shape[0]
    k_pad = triton.next_power_of_2(k)
    block_n, block_m = cost._topk_blocks(k_pad, compiled=True)
    values, indices = meta(n, k), meta(n, k, dtype=torch.int64)
    options = [(False, False), (True, True)] if auction else [(False, False)]
    for write_partial, (biased, masked) in itertools.product((False, True), options):
        partial = meta(n, SPLITS, k, dtype=torch.int64) if write_partial else indices
        bias = meta(m) if biased else b
        selected = meta(n, dtype=torch.uint8) if masked else indices
        constexprs = {
            "K": k,
            "K_PAD": k_pad,
            "BLOCK_N": block_n,
            "BLOCK_M": block_m,
            "WRITE_PARTIAL": write_partial,
            "HAS_BIAS": biased,
            "HAS_ROWS": masked,
        }
        yield (values, indices, partial, bias, selected), constexprs


TOPK_SHOWN = ("K", "BLOCK_N", "WRITE_PARTIAL", "HAS_BIAS", "HAS_ROWS")


def cost_topk_launches() -> Iterator[Launch]:
    """The exact path, with and without the column split, at the launcher's block sizes for
    each k.

    Full: float32 D = 12, k = 1, 16 (64-row blocks) and 17, 64 (16-row blocks), every config the
    autotuner tries; the auction's variant for k = 16. Trimmed: fp16 / bf16 / fp64 D = 12 and the
    other float32 feature pairs, k = 16 and 64, first config.
    """
    for dtype in FLOAT_DTYPES:
        for pair, (a, b) in feature_pairs(dtype).items():
            if dtype != torch.float32 and pair != "D=12":
                continue
            full = dtype == torch.float32 and pair == "D=12"
            n, m, d = a.shape[0], b.shape[0], a.shape[1]
            for k in (1, 16, 17, 64) if full else (16, 64):
                for tensors, variant in topk_variants(a, b, k, auction=full and k == 16):
                    values, indices, _, _, _ = tensors
                    biased = int(variant["HAS_BIAS"])
                    constexprs = {**DOT_KEYWORDS, **variant}
                    for config in tuned_configs(cost._cost_topk_kernel_tuned, full, **constexprs):
                        keywords = {**config, **constexprs}
                        label = f"{type_name(dtype)} {pair} {config_text(keywords, TOPK_SHOWN)}"
                        args = (
                            a, b, *tensors, n, m, d, m // SPLITS, SIZE_CLASS, *a.stride(),
                            *b.stride(), values.stride(0), indices.stride(0), biased,
                        )  # fmt: skip
                        yield Launch(
                            "kernels.cost:_cost_topk_kernel", label, launch_args(*args), keywords
                        )


def prepare_candidates_launches() -> Iterator[Launch]:
    """The filtered path's float16 copies: every feature pair in float32 (D = 12 and 48 in one
    chunk), D = 192 (three chunks of 64) and fp16 / bf16 / fp64 D = 12."""
    pairs = {f"fp32 {pair}": ab for pair, ab in feature_pairs().items()}
    pairs["fp32 D=192"] = (meta(CELLS, 192), meta(TILES, 192))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        pairs[f"{type_name(dtype)} D=12"] = feature_pairs(dtype)["D=12"]
    _, block_m = cost._topk_blocks(16, compiled=True)
    for label, (a, b) in pairs.items():
        n, m, d = a.shape[0], b.shape[0], a.shape[1]
        d_pad, block_d = cost._half_layout(d)
        rows = (triton.cdiv(n, block_m) + triton.cdiv(m, block_m)) * block_m
        keywords = {
            "D_PAD": d_pad,
            "BLOCK_R": block_m,
            "BLOCK_D": block_d,
            "SAMPLE": cost._CENTRE_SAMPLE,
            "num_warps": 4,
            "num_stages": DEFAULT_STAGES,
        }
        args = (
            a, b, meta(rows, d_pad, dtype=torch.float16), meta(rows), meta(rows),
            meta(triton.cdiv(m, block_m), 2), meta(1), n, m, d, *a.stride(), *b.stride(),
            cost._rounding_margins(d)[0],
        )  # fmt: skip
        yield Launch("kernels.cost:_prepare_candidates_kernel", label, launch_args(*args), keywords)


def filtered_topk_launches() -> Iterator[Launch]:
    """The filtered path at the launcher's block sizes, with and without the column split.

    Full: float32 D = 48 (the benchmark; the rows' copy held in registers), k = 16, every
    config. Trimmed, first config: the auction's variant of that; float32 D = 12 for k = 1, 5 (a
    padded list) and 16 with the auction's variant; fp16 and column-major D = 12; D = 192
    (copies read chunk by chunk).
    """
    pairs = {f"{type_name(dtype)} {pair}": ab for dtype in (torch.float32, torch.float16)
             for pair, ab in feature_pairs(dtype).items()}  # fmt: skip
    pairs["fp32 D=192"] = (meta(CELLS, 192), meta(TILES, 192))
    cases = [("fp32 D=48", 16, True), ("fp32 D=12", 1, False), ("fp32 D=12", 5, False)]
    cases += [("fp32 D=12", 16, False), ("fp16 D=12", 16, False)]
    cases += [("fp32 D=12 col-major", 16, False), ("fp32 D=192", 16, False)]
    for label, k, full in cases:
        a, b = pairs[label]
        n, m, d = a.shape[0], b.shape[0], a.shape[1]
        d_pad, block_d = cost._half_layout(d)
        _, block_m = cost._topk_blocks(triton.next_power_of_2(k), compiled=True)
        capacity = cost._CAPACITY_TILES * block_m
        first_column = triton.cdiv(n, block_m) * block_m
        rows = first_column + triton.cdiv(m, block_m) * block_m
        prepared = (
            meta(rows, d_pad, dtype=torch.float16), meta(rows), meta(rows),
            meta(triton.cdiv(m, block_m), 2), meta(1), meta(n, SPLITS, capacity, dtype=torch.int32),
        )  # fmt: skip
        auction = label in ("fp32 D=48", "fp32 D=12") and k == 16
        for tensors, variant in topk_variants(a, b, k, auction):
            values, indices, _, _, _ = tensors
            constexprs = {**variant, "D_PAD": d_pad, "BLOCK_D": block_d, "CAPACITY": capacity}
            every = full and not variant["HAS_BIAS"]
            for config in tuned_configs(cost._filtered_topk_kernel_tuned, every, **constexprs):
                keywords = {**config, **constexprs}
                args = (
                    a, b, *prepared, *tensors, n, m, d, first_column,
                    triton.cdiv(m, block_m * SPLITS), SIZE_CLASS, *a.stride(), *b.stride(),
                    values.stride(0), indices.stride(0), int(variant["HAS_BIAS"]),
                    *cost._rounding_margins(d)[1:],
                )  # fmt: skip
                yield Launch(
                    "kernels.cost:_filtered_topk_kernel",
                    f"{label} {config_text(keywords, TOPK_SHOWN)}",
                    launch_args(*args),
                    keywords,
                )


def merge_splits_launches() -> Iterator[Launch]:
    """The top-k split merge for k = 1, 16, 17, 64, every config; the masked one for k = 16."""
    for k in (1, 16, 17, 64):
        k_pad = triton.next_power_of_2(k)
        _, block_m = cost._topk_blocks(k_pad, compiled=True)
        values, indices = meta(CELLS, k), meta(CELLS, k, dtype=torch.int64)
        partial = meta(CELLS, SPLITS, k, dtype=torch.int64)
        # The auction's masked update of selected rows: k = 16, the first config.
        variants = [(config, False) for config in tuned_configs(cost._merge_splits_kernel_tuned)]
        if k == 16:
            variants.append((tuned_configs(cost._merge_splits_kernel_tuned, False)[0], True))
        for config, masked in variants:
            keywords = {
                **config,
                "K": k,
                "K_PAD": k_pad,
                "BLOCK_N": cost._MERGE_BLOCK_N,
                "BLOCK_M": block_m,
                "HAS_ROWS": masked,
            }
            label = config_text(keywords, ("K", "BLOCK_N", "BLOCK_M", "HAS_ROWS"))
            selected = meta(CELLS, dtype=torch.uint8) if masked else indices
            args = (
                partial, values, indices, selected, CELLS, SPLITS * k, SIZE_CLASS,
                values.stride(0), indices.stride(0),
            )  # fmt: skip
            yield Launch("kernels.cost:_merge_splits_kernel", label, launch_args(*args), keywords)


def composite_launches() -> Iterator[Launch]:
    """The 1080p mosaic (68 x 120 cells of 16 px cropped to 1080 x 1920, 10k tiles) in each
    variant. Full: colour transfer from the tiles in Oklab (the renderer's pool fits), RGB and
    YUV, every config. Trimmed, first config: plain copies, the transfer converting uint8
    tiles, channels-last tiles (strides 3) with 32 px tiles, and an odd crop (1079 x 1919); the
    source blended over the mosaic (a 960 x 540 source under 32 px tiles from 16 px cells); 3:2
    tiles (32 x 48 from cells 16 x 24)."""
    rows, cols, pool = 68, 120, 10_000
    choice = meta(rows, cols, dtype=torch.int64)
    cell_stats = (meta(rows, cols, 3), meta(rows, cols, 3))

    def launches(tiles, tile_lab, size, transfer, pixel_format, every, scene, blend=None):
        lab = meta(*tiles.shape) if tile_lab else None
        colour = None
        if transfer:
            colour = composite.ColourTransfer(
                0.5, meta(pool, 3), meta(pool, 3), *cell_stats, 2.0, 1e-4
            )
        call = composite._kernel_call(tiles, choice, colour, lab, size, pixel_format, blend)
        for config in tuned_configs(composite._composite_tuned, every):
            keywords = {**config, **call.variant}
            shown = ("BLOCK_R", "BLOCK_W", "TRANSFER", "LAB_INPUT", "BLEND", "YUV")
            label = f"{scene} {config_text(keywords, shown)}"
            yield Launch(
                "kernels.composite:_composite_kernel", label, launch_args(*call.args), keywords
            )

    tiles16 = meta(pool, 3, 16, 16, dtype=torch.uint8)
    tiles32_hwc = meta(pool, 32, 32, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    full = (1080, 1920)
    for pixel_format in composite.PIXEL_FORMATS:
        yield from launches(tiles16, True, full, True, pixel_format, True, "1080p")
        yield from launches(tiles16, False, full, True, pixel_format, False, "1080p")
        yield from launches(tiles16, False, full, False, pixel_format, False, "1080p")
        yield from launches(
            tiles32_hwc, True, (2159, 3839), True, pixel_format, False, "HWC t32 odd"
        )
        source = meta(540, 960, 3, dtype=torch.uint8).permute(2, 0, 1)  # a decoder's HWC frame
        blend = composite.Blend(source, 0.3)
        tiles32 = meta(pool, 3, 32, 32, dtype=torch.uint8)
        yield from launches(tiles32, True, full, True, pixel_format, False, "blend", blend)
        yield from launches(tiles32, False, full, False, pixel_format, False, "blend copy", blend)
        tiles_3_2 = meta(pool, 3, 32, 48, dtype=torch.uint8)
        yield from launches(tiles_3_2, True, (2160, 5760), True, pixel_format, False, "t32x48")


def auction_launches() -> Iterator[Launch]:
    """Every auction kernel at the engine's sizes (8160 cells, 20k tiles, lists of 16 + 2), for
    capacities 1 and 3 (the cascade's loop), at the launcher's block sizes, and a cold solve's
    bookkeeping (800 stages)."""
    n, m, length = CELLS, TILES, auction_lists_length()
    candidates, cost_ = meta(n, length, dtype=torch.int64), meta(n, length)
    outside, price, counts, eps = meta(n), meta(m), meta(97, dtype=torch.int32), meta()
    assigned, held_key, target, bid_key, dropped = (meta(n, dtype=torch.int64) for _ in range(5))
    stale = meta(n, dtype=torch.uint8)
    per_cell = {"BLOCK_N": auction_shared._GPU_BLOCK_N, "num_warps": 4, "num_stages": 3}
    levels = auction_shared._levels(auction_shared._GPU_BLOCK_N)
    with_lists = {**per_cell, "BLOCK_L": triton.next_power_of_2(length)}
    lists, strides = (candidates, cost_, outside, price), (length, length)
    stages, programs = 800, auction.cell_programs(n, CUDA)
    block_p = triton.next_power_of_2(programs)
    best = auction.StageBest(
        assigned, held_key, meta(stages, programs, dtype=torch.float64),
        meta(stages, dtype=torch.float64), assigned, held_key,
    )  # fmt: skip
    for capacity in (1, 3):
        slots = meta(m, capacity, dtype=torch.int64)
        label = f"capacity {capacity}"
        bid = (*lists[:3], price, assigned, slots, target, bid_key, dropped, stale, counts, eps)
        bid += (5, 6, n, length, capacity, *strides)
        yield Launch("kernels.auction.round:_bid_kernel", label, launch_args(*bid), with_lists)
        award = (assigned, held_key, slots, price, target, bid_key, dropped, stale, counts)
        award += (5, n, capacity)
        yield Launch("kernels.auction.round:_award_kernel", label, launch_args(*award), per_cell)
        rebuild = launch_args(assigned, held_key, slots, *best, n, capacity, 5, programs)
        for keep_best in (False, True):
            keywords = {"KEEP_BEST": keep_best, "BLOCK_P": block_p}
            keywords["LEVELS_P"] = auction_shared._levels(block_p)
            yield Launch(
                "kernels.auction.slots:_rebuild_kernel",
                f"{label}{' keep best' if keep_best else ''}",
                rebuild,
                {**per_cell, **keywords},
            )
    release = (*lists, assigned, held_key, stale, counts, eps, *best[:3], 5, 6, n, length)
    yield Launch(
        "kernels.auction.release:_release_kernel",
        "-",
        launch_args(*release, *strides),
        {**with_lists, "LEVELS": levels},
    )
    dual = launch_args(*lists, meta(n), n, length, *strides)
    yield Launch("kernels.auction.dual:_dual_values_kernel", "-", dual, with_lists)
    yield Launch("kernels.auction.prices:_tie_gain_kernel", "-", dual, with_lists)
    calls = stages + 2
    fell, lowest = meta(calls, dtype=torch.int32), meta(calls)
    fallen, fallen_price = meta(1024, dtype=torch.int64), meta(1024)
    dim = 48  # the engine's descriptors at grid 4: 16 blocks of 3 Oklab means
    cells, tiles = meta(n, dim), meta(m, dim)
    dual_bound = (*lists, meta(n), meta(n), stale, cells, tiles, fallen, fallen_price, fell)
    dual_bound += (lowest, meta(calls, programs, dtype=torch.float64), n, length, dim, 1024, 5)
    dual_bound += (*strides, 1, dim, 1, dim, 1)
    yield Launch(
        "kernels.auction.dual:_dual_bound_kernel",
        "-",
        launch_args(*dual_bound),
        {
            **with_lists,
            "BLOCK_S": auction_dual._FALLEN_BLOCK,
            "LEVELS": levels,
            "enable_fp_fusion": False,  # as the launcher asks
        },
    )
    price_sums = meta(calls, auction.tile_programs(m), dtype=torch.float64)
    for capacity in (1, 3):
        lower = (price, meta(m), meta(m, capacity, dtype=torch.int64), fallen, fallen_price)
        lower += (fell, lowest, price_sums, m, capacity, 1024, 5)
        yield Launch(
            "kernels.auction.prices:_lower_kernel",
            f"capacity {capacity}",
            launch_args(*lower),
            {
                "BLOCK_M": auction_shared._LOWER_BLOCK_M,
                "LEVELS": auction_shared._levels(auction_shared._LOWER_BLOCK_M),
                "num_warps": 4,
                "num_stages": 3,
            },
        )
    k = length - 2
    searched = meta(n, k)
    build = (cells, tiles, assigned, meta(n), meta(n, k, dtype=torch.int64), held_key, stale)
    build += (outside, candidates, cost_, meta(n), searched, n, k, dim, m, dim, 1, dim, 1)
    build += (1, k, length, length, k)
    for renew in (False, True):
        exact = {**with_lists, "RENEW": renew, "enable_fp_fusion": False}  # as the launcher asks
        yield Launch(
            "kernels.auction.lists:_lists_kernel",
            "renew" if renew else "-",
            launch_args(*build),
            exact,
        )


def completion_launches() -> Iterator[Launch]:
    """The auction's completion at the engine's sizes (8160 cells, 20k tiles, the module's
    candidates and passes), for capacities 1 and 3: its start, a pass that offers and the last
    (which counts), and the lightness fill's two kernels."""
    from mosaic.assign.auction import COMPLETION_CANDIDATES, COMPLETION_PASSES

    n, m, k, passes = CELLS, TILES, COMPLETION_CANDIDATES, COMPLETION_PASSES
    per_cell = {"BLOCK_N": auction_shared._GPU_BLOCK_N, "num_warps": 4, "num_stages": 3}
    blocks = {**per_cell, "BLOCK_M": auction_completion._COMPLETE_BLOCK_M}
    cells, tiles, price = meta(n, 48), meta(m, 48), meta(m)
    assigned, held_key = meta(n, dtype=torch.int64), meta(n, dtype=torch.int64)
    for capacity in (1, 3):
        label = f"capacity {capacity}"
        slots = meta(m, capacity, dtype=torch.int64)
        work = auction.completion_work(n, m, capacity, passes, k, torch.device("meta"))
        start = (assigned, slots, work.waiting, work.bias, work.offers, work.proposals)
        start += (work.totals, n, m, capacity, passes)
        yield Launch(
            "kernels.auction.complete:_complete_start_kernel", label, launch_args(*start), blocks
        )
        step = (work.distance, work.nearest, price, assigned, held_key, slots, work.offers)
        step += (work.proposals, work.free, work.totals, 2, n, m, k, capacity, k, k)
        for propose in (True, False):
            keywords = {**blocks, "BLOCK_K": k, "PROPOSE": propose}
            yield Launch(
                "kernels.auction.complete:_complete_pass_kernel",
                f"{label}{' offers' if propose else ' counts'}",
                launch_args(*step),
                keywords,
            )
        order = (cells, tiles, assigned, slots, work.proposals, work.slot_tiles, work.free)
        order += (work.totals, n, m, capacity, 48, 48)
        yield Launch(
            "kernels.auction.complete:_fill_order_kernel",
            label,
            launch_args(*order),
            {**blocks, "BLOCK_SCAN": auction_completion._SCAN_BLOCK},
        )
        fill = (price, assigned, held_key, slots, work.proposals, work.slot_tiles, work.totals)
        fill_args = launch_args(*fill, n, capacity)
        yield Launch("kernels.auction.complete:_fill_kernel", label, fill_args, per_cell)


def auction_lists_length() -> int:
    """The length of the engine's auction lists: its searched tiles, the held tile and the
    incumbent."""
    from mosaic.assign.auction import CANDIDATES

    return CANDIDATES + 2


def all_launches() -> list[Launch]:
    """Every launch, the slowest kernels (top-k) first so the process pool ends evenly."""
    return [
        *filtered_topk_launches(),
        *cost_topk_launches(),
        *cost_matrix_launches(),
        *composite_launches(),
        *merge_splits_launches(),
        *prepare_candidates_launches(),
        *auction_launches(),
        *completion_launches(),
        *cell_oklab_launches(),
        *block_energy_launches(),
        *grid_reduce_launches(),
        *oklab_launches(),
    ]


def launched_kernels() -> set[str]:
    """``"module:name"`` of every kernel a launcher runs: those wrapped in ``triton.autotune``,
    and the ``@triton.jit`` functions named ``*_kernel``."""
    found = set()
    for module in KERNEL_MODULES:
        for name, value in vars(module).items():
            if isinstance(value, Autotuner) or (
                isinstance(value, JITFunction) and name.endswith("_kernel")
            ):
                kernel = jit_function(value)
                found.add(f"{kernel.fn.__module__}:{kernel.fn.__name__}")
    return found


# --------------------------------------------------------------------------- compiling


def jit_function(kernel: object) -> JITFunction:
    """The ``JITFunction`` under ``triton.autotune`` / ``triton.heuristics`` wrappers."""
    while not isinstance(kernel, JITFunction):
        if not hasattr(kernel, "fn"):
            raise TypeError(f"{kernel!r} is not a compiled Triton kernel (TRITON_INTERPRET=1?)")
        kernel = kernel.fn
    return kernel


def ast_source(kernel: JITFunction, launch: Launch) -> tuple[ASTSource, dict[str, object]]:
    """The source a real launch would compile, and the compile options.

    Specialises like ``JITFunction.run``: an int equal to 1 becomes a constant, other ints and
    aligned pointers get ``tt.divisibility = 16`` when divisible by 16 (not the parameters in
    ``do_not_specialize``); ints are i32 unless they need 64 bits.
    """
    runtime_params = [p for p in kernel.params if not p.is_constexpr]
    if len(runtime_params) != len(launch.args):
        raise TypeError(f"{len(launch.args)} arguments for {len(runtime_params)} parameters")
    signature: dict[str, str] = {}
    constexprs: dict[str, object] = {}
    attrs: dict[tuple[int, ...], list] = {}
    values = dict(zip((p.name for p in runtime_params), launch.args, strict=True))
    for param in kernel.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = launch.keywords[param.name]
            continue
        value = values[param.name]
        if isinstance(value, Pointer):
            signature[param.name] = value.type
            divisible = value.aligned
        elif value == 1 and not param.do_not_specialize:
            signature[param.name] = "constexpr"
            constexprs[param.name] = 1
            continue
        else:
            signature[param.name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            divisible = value % 16 == 0 and not param.do_not_specialize
        if divisible:
            attrs[(param.num,)] = [["tt.divisibility", 16]]
    options = {k: v for k, v in launch.keywords.items() if k not in kernel.arg_names}
    return ASTSource(kernel, signature, constexprs, attrs), options


def resource_usage(cubin: bytes) -> tuple[int, int]:
    """``(registers, local memory bytes)`` per thread, from ``cuobjdump -res-usage``.

    Local memory: the stack frame, where ptxas spills, plus local arrays (Triton makes none).
    """
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        command = [triton.knobs.nvidia.cuobjdump.path, "-res-usage", file.name]
        usage = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    fields = dict(re.findall(r"(REG|STACK|LOCAL):(\d+)", usage))
    if fields.keys() != {"REG", "STACK", "LOCAL"}:
        raise RuntimeError(f"unexpected cuobjdump output: {usage!r}")
    return int(fields["REG"]), int(fields["STACK"]) + int(fields["LOCAL"])


def compile_launch(launch: Launch) -> Result:
    """Compile one launch for sm_90 and read its resource usage; errors become ``Result.error``."""
    module_name, name = launch.kernel.split(":")
    result = Result(launch.kernel, launch.label)
    start = time.perf_counter()
    try:
        kernel = jit_function(getattr(importlib.import_module(module_name), name))
        source, options = ast_source(kernel, launch)
        # On a ptxas failure Triton prints the whole PTX; keep it off the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            compiled = triton.compile(source, target=TARGET, options=options)
        result.registers, local_bytes = resource_usage(compiled.asm["cubin"])
        result.spills = local_bytes // 4
        result.shared_bytes = compiled.metadata.shared
    except Exception as error:  # reported per launch, so one failure does not hide the others
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def toolchain() -> tuple[str, str | None]:
    """``(versions, problem)``: the Triton and ptxas versions that build sm_90 code, and why they
    cannot here (no NVIDIA backend, no usable ptxas or cuobjdump), or None."""
    versions = f"Triton {triton.__version__}"
    if "nvidia" not in triton.backends.backends:
        return versions, "this Triton has no NVIDIA backend"
    from triton.backends.nvidia.compiler import get_ptxas

    try:
        versions += f", ptxas {get_ptxas(TARGET.arch).version}"
        versions += f", cuobjdump {triton.knobs.nvidia.cuobjdump.version}"
    except (RuntimeError, OSError) as error:
        return versions, str(error)
    return versions, None


def compile_all(jobs: int) -> list[Result]:
    """Compile every launch in ``jobs`` processes; a kernel without launches is a failure."""
    launches = all_launches()
    results = [
        Result(kernel, "-", error="no launch configurations in tests/kernels/compile_sm90.py")
        for kernel in sorted(launched_kernels() - {launch.kernel for launch in launches})
    ]
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["TRITON_CACHE_DIR"] = cache_dir
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results += pool.map(compile_launch, launches)
    return results


def is_failure(result: Result) -> bool:
    """Did not compile, or spilled registers."""
    return result.error is not None or result.spills != 0


def print_table(results: list[Result]) -> None:
    """One line per launch: kernel, config, registers, spills, shared memory, compile seconds."""
    width = max(len(r.label) for r in results)
    print(f"{'kernel':<22} {'config':<{width}} {'regs':>4} {'spills':>6} {'smem':>6} {'s':>4}")
    for r in results:
        kernel = r.kernel.split(":")[1]
        if r.error is not None:
            print(f"{kernel:<22} {r.label:<{width}} FAILED: {r.error.splitlines()[0]}")
            continue
        print(
            f"{kernel:<22} {r.label:<{width}} {r.registers:>4} {r.spills:>6} "
            f"{r.shared_bytes:>6} {r.seconds:>4.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    start = time.perf_counter()
    versions, problem = toolchain()
    results = [] if problem else compile_all(args.jobs)
    if args.json:
        report = {
            "toolchain": versions,
            "unavailable": problem,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(report))
    elif problem:
        print(f"cannot compile for sm_90 with {versions}: {problem}")
    else:
        print_table(results)
        failures = sum(map(is_failure, results))
        elapsed = time.perf_counter() - start
        print(f"{versions}: {len(results)} launches, {failures} failed or spilled, {elapsed:.0f} s")
    return 1 if any(map(is_failure, results)) else 0


if __name__ == "__main__":
    sys.exit(main())
