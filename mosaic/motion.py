"""Camera motion between consecutive frames, from the cell descriptors the frame path already has.

A frame's descriptors are the Oklab means of ``s x s`` blocks in every cell: side by side they
form a small picture of the frame (``block_image``; 8 x 8 pixels a block at cell 16, grid 2).
The motion of the content from one such picture to the next is fitted as one affine map, which
covers a pan or tilt, a zoom, a roll and the small shear of a handheld camera: the content at
block position ``x`` (centred coordinates, in blocks) moves by ``d(x) = M [1, x, y]``, ``M`` a
``(2, 3)`` tensor (``motion_field``).

The fit is Lucas and Kanade's for a global parametric model: Gauss-Newton steps on the
brightness-constancy residual with Huber weights, so that an object moving on its own does not
drag the camera's motion along, coarse to fine on a pyramid (the pictures halved down to about
``COARSEST_BLOCKS`` blocks high, so that a fast pan converges too; the finest level at most
``FINEST_BLOCKS`` high: a global motion needs no more), from the previous frame's motion (a
camera keeps moving). The fit is kept only if it explains the new picture better than no motion
does, so a frame without texture or a scene cut yields no motion rather than a wrong one.

Three things keep it unbiased on pictures this coarse, where content moves a fraction of a block
a frame (measured on the shipped photographs filmed with known motion):

- the pictures are smoothed a little first (``_smoothed``): blocks of 8 pixels alias finely
  repeated structure (a lattice tower), which made a pan read as a slight roll and zoom;
- the two pictures meet half-way (the previous one moved by ``d / 2``, the current one by
  ``-d / 2``), so both go through the same interpolation;
- the interpolation is a cubic B-spline on prefiltered pictures (exact for cubic polynomials).
  With bilinear interpolation a 1-pixel pan at cell 16 read 10-35 % too fast; grid_sample's own
  bicubic (Keys' kernel with a = -0.75) does not even reproduce a linear ramp. With the three,
  a pan of 2.2 pixels a frame reads within 0.1 % on average.

Everything is fixed-shape tensor operations on the features' device: nothing is read back to
the host (no host sync), whatever the content. The fixed tensors a picture size needs (block
coordinates, the fit's basis) are made once and kept by a ``MotionConstants`` that the caller
owns: a frame step replayed as a CUDA graph reads them at fixed addresses, so they must live as
long as the video that uses them, whatever other videos run beside it.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = [
    "MotionConstants",
    "block_image",
    "carry",
    "cell_descriptors",
    "cell_displacement",
    "descriptor_side",
    "estimate_motion",
    "motion_field",
    "warp_blocks",
]

ITERATIONS = 2  # Gauss-Newton steps per pyramid level
COARSEST_BLOCKS = 12  # the pyramid's top level is halved down to about this many blocks high
FINEST_BLOCKS = 72  # the fit's finest level: the first at most this many blocks high
HUBER = 2.0  # residuals beyond this many times the mean absolute residual get weight 1/|r|
DAMPING = 1e-3  # Levenberg damping, relative to the normal matrix's mean diagonal

# The cubic B-spline's prefilter, the inverse of the spline's [1, 4, 1] / 6 sampling: taps
# decaying as z^|k| with z = sqrt(3) - 2, cut at |k| = 8 (|z|^8 < 3e-5).
_POLE = 3**0.5 - 2
_PREFILTER_TAPS = 8


def block_image(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The descriptors ``(N, 3 s^2)`` of a ``rows x cols`` grid (row-major, as
    ``mosaic.descriptors`` lays them out) as a picture: float32 ``(3, rows * s, cols * s)``."""
    rows, cols = grid
    side = descriptor_side(features)
    blocks = features.view(rows, cols, 3, side, side).permute(2, 0, 3, 1, 4)
    return blocks.reshape(3, rows * side, cols * side)


def cell_descriptors(image: torch.Tensor, side: int) -> torch.Tensor:
    """``block_image``'s inverse: ``(3, rows * s, cols * s)`` -> ``(rows * cols, 3 s^2)``."""
    _, height, width = image.shape
    rows, cols = height // side, width // side
    cells = image.reshape(3, rows, side, cols, side).permute(1, 3, 0, 2, 4)
    return cells.reshape(rows * cols, 3 * side * side)


def descriptor_side(features: torch.Tensor) -> int:
    """``s``, the blocks per cell side of descriptors ``(N, 3 s^2)``."""
    side = round((features.shape[1] / 3) ** 0.5)
    if 3 * side * side != features.shape[1]:
        raise ValueError(f"descriptors must have 3 * s * s values, got {features.shape[1]}")
    return side


def estimate_motion(
    previous: torch.Tensor,
    current: torch.Tensor,
    start: torch.Tensor,
    margin: int,
    constants: MotionConstants,
) -> torch.Tensor:
    """The affine motion ``M`` float32 ``(2, 3)`` that carries ``previous`` onto ``current``.

    Args:
        previous, current: float32 ``(3, h, w)`` block pictures (``block_image``) of two
            consecutive frames.
        start: float32 ``(2, 3)``, where the fit starts (the previous frame's motion).
        margin: blocks at each edge left out of the fit (the last cells of a frame whose size is
            not a multiple of the cell repeat its edge).
        constants: where the fit's fixed tensors are made and kept.

    Returns:
        The fitted motion, or zeros when it explains ``current`` no better than no motion.
    """
    levels = [_smoothed(torch.stack([previous, current]))]  # (2, 3, h, w) each
    while levels[-1].shape[-2] >= 2 * COARSEST_BLOCKS:
        levels.append(F.avg_pool2d(levels[-1], 2))
    finest = next(level for level, x in enumerate(levels) if x.shape[-2] <= FINEST_BLOCKS)
    # Coarse to fine; at each level the translation (column 0) is in that level's blocks.
    halving = _filters(start.device).halving
    motion = start * halving ** (len(levels) - 1)
    for level in reversed(range(finest, len(levels))):
        level_constants = constants.get(
            *levels[level].shape[-2:], max(margin >> level, 1), start.device
        )
        coefficients = _spline_coefficients(levels[level])
        for _ in range(ITERATIONS):
            motion = motion + _gauss_newton_step(coefficients, motion, level_constants)
        if level > finest:
            motion = motion / halving
    candidates = torch.stack([motion, torch.zeros_like(motion)])
    before, after = _meet_half_way(coefficients, candidates, level_constants)
    error = ((after - before).square().sum(1) * level_constants.inside).sum((1, 2))
    return torch.where(error[0] < error[1], motion / halving**finest, 0.0)


def motion_field(
    motion: torch.Tensor, height: int, width: int, constants: MotionConstants
) -> torch.Tensor:
    """Displacement of the content at every block, float32 ``(2, h, w)`` (x and y), under
    ``motion`` ``(2, 3)`` (or a batch ``(B, 2, 3)`` -> ``(B, 2, h, w)``)."""
    basis = constants.get(height, width, 0, motion.device).basis
    return torch.einsum("...ik,khw->...ihw", motion, basis)


def warp_blocks(
    image: torch.Tensor, displacement: torch.Tensor, constants: MotionConstants
) -> torch.Tensor:
    """``image`` ``(3, h, w)`` with its content moved by ``displacement`` float32 ``(2, h, w)``
    (x and y, in blocks, per output block): output block ``x`` shows ``image`` at
    ``x - displacement(x)``, interpolated bilinearly, the edge repeated beyond it (cheaper than
    the fit's spline, and as good for comparing content with a threshold)."""
    _, height, width = image.shape
    picture = constants.get(height, width, 0, image.device)
    source = (picture.centres - displacement) / picture.size * 2 - 1
    return F.grid_sample(
        image[None], source.permute(1, 2, 0)[None], align_corners=False, padding_mode="border"
    )[0]


def cell_displacement(
    motion: torch.Tensor, grid: tuple[int, int], side: int, constants: MotionConstants
) -> torch.Tensor:
    """Displacement of each cell under ``motion`` (in blocks, ``side`` blocks a cell side), in
    cells: float32 ``(rows * cols, 2)``, x and y (the mean over the cell's blocks, which for an
    affine motion is the displacement of its centre)."""
    rows, cols = grid
    field = motion_field(motion, rows * side, cols * side, constants)
    cells = F.avg_pool2d(field[None], side)[0]
    return cells.permute(1, 2, 0).reshape(rows * cols, 2) / side


def carry(
    move: torch.Tensor, grid: tuple[int, int], priority: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each cell's tile by ``move`` int64 ``(N, 2)`` cells (x and y, per cell of the
    ``rows x cols`` grid, row-major): where each cell's tile now comes from.

    Tiles that leave the grid are dropped; where several land on one cell, the one of lowest
    ``priority`` float ``(N,)`` (``>= 0``; then of lowest index) stays and the others are dropped;
    a cell no tile lands on has none. Fixed shapes, deterministic, no host sync.

    Returns:
        ``(source, landed)``: int64 ``(N,)``, the cell each cell's tile comes from (the cell
        itself where none lands), and bool ``(N,)``, whether one landed.
    """
    rows, cols = grid
    cells = rows * cols
    index = torch.arange(cells, device=move.device)
    row = index // cols + move[:, 1]
    col = index % cols + move[:, 0]
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    destination = torch.where(inside, row * cols + col, cells)  # one bin past the grid
    # One key per tile, ordered by priority, then index: the smallest key of a cell wins.
    rank = (priority * 1024).round().long().clamp(0, 2**30) * cells + index
    unclaimed = torch.iinfo(torch.int64).max
    best = torch.full((cells + 1,), unclaimed, dtype=torch.int64, device=move.device)
    best.scatter_reduce_(0, destination, rank, "amin")
    landed = best[:cells] != unclaimed
    return torch.where(landed, best[:cells] % cells, index), landed


class _Constants:
    """What every step on an ``h x w`` picture uses, made once per size and device."""

    def __init__(self, height: int, width: int, margin: int, device: torch.device) -> None:
        x = torch.arange(width, device=device, dtype=torch.float32)
        y = torch.arange(height, device=device, dtype=torch.float32)
        indices = torch.stack(torch.meshgrid(x, y, indexing="xy"))  # (2, h, w): column, row
        self.indices = indices
        self.centres = indices + 0.5
        self.size = torch.tensor([width, height], device=device, dtype=torch.float32)[:, None, None]
        centred = self.centres - self.size / 2
        self.basis = torch.cat([torch.ones_like(centred[:1]), centred])  # (3, h, w): 1, x, y
        flat = self.basis.flatten(1)
        self.flat_basis = flat.T.contiguous()  # (h * w, 3)
        self.pairs = (flat[:, None] * flat[None]).reshape(9, -1).T.contiguous()  # (h * w, 9)
        inside = torch.zeros(height, width, device=device)
        inside[margin : height - margin, margin : width - margin] = 1.0
        self.inside = inside
        self.eye = torch.eye(6, dtype=torch.float64, device=device)


class MotionConstants:
    """The fixed tensors of the motion functions, made on first use for each picture size,
    margin and device and kept as long as this object (one per video: ``TemporalCoherence``)."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, int, int, torch.device], _Constants] = {}

    def get(self, height: int, width: int, margin: int, device: torch.device) -> _Constants:
        """Those of a ``height x width`` picture fitted without ``margin`` blocks at its
        edges."""
        key = (height, width, margin, device)
        if key not in self._made:
            self._made[key] = _Constants(height, width, margin, device)
        return self._made[key]


def _separable(pictures: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``(B, 3, h, w)`` convolved with the odd kernel ``taps`` along each axis, the edge
    repeated beyond the picture."""
    pad = len(taps) // 2
    kernel = taps.repeat(3, 1)[:, None]  # (3, 1, K): each channel on its own
    rows = F.pad(pictures, (pad, pad, 0, 0), mode="replicate")
    rows = F.conv2d(rows, kernel[..., None, :], groups=3)
    return F.conv2d(F.pad(rows, (0, 0, pad, pad), mode="replicate"), kernel[..., None], groups=3)


def _smoothed(pictures: torch.Tensor) -> torch.Tensor:
    """``(B, 3, h, w)`` pictures through a [1, 2, 1] / 4 filter along each axis."""
    return _separable(pictures, _filters(pictures.device).smoothing)


def _spline_coefficients(pictures: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients of ``(B, 3, h, w)`` pictures: the spline through them
    interpolates every block."""
    return _separable(pictures, _filters(pictures.device).prefilter)


class _Filters:
    """The fixed kernels, on one device (made once: no copy from the host in a frame)."""

    def __init__(self, device: torch.device) -> None:
        self.smoothing = torch.tensor([0.25, 0.5, 0.25], device=device)
        taps = torch.arange(-_PREFILTER_TAPS, _PREFILTER_TAPS + 1, device=device)
        prefilter = _POLE ** taps.abs().float()
        self.prefilter = prefilter / prefilter.sum()
        self.halving = torch.tensor([0.5, 1.0, 1.0], device=device)  # the translation column


@functools.cache  # per device, as the kernels' tables: never evicted while a graph reads them
def _filters(device: torch.device) -> _Filters:
    return _Filters(device)


def _sample(
    coefficients: torch.Tensor, displacement: torch.Tensor, constants: _Constants
) -> torch.Tensor:
    """The splines of ``coefficients`` ``(P, 3, h, w)`` read at every block plus
    ``displacement`` ``(P, B, 2, h, w)`` (blocks): ``(P, B, 3, h, w)``.

    A cubic B-spline's four weights per axis are positive, so each axis takes two bilinear
    reads at offsets between the taps (Sigg and Hadwiger's trick): four ``grid_sample`` reads
    per block instead of sixteen.
    """
    count, _, height, width = coefficients.shape
    batch = displacement.shape[1]
    position = displacement + constants.indices
    base = position.floor()
    t = position - base
    # The spline's weights of the taps at base - 1, base, base + 1 and base + 2, summed in pairs.
    t2 = t * t
    w1 = (3 * t2 * t - 6 * t2 + 4) / 6
    w3 = t2 * t / 6
    low = (1 - t).pow(3) / 6 + w1
    reads = torch.stack([base - 1 + w1 / low, base + 1 + w3 / (1 - low)])  # (2, P, B, 2, h, w)
    weights = torch.stack([low, 1 - low])
    # The four reads: (low, high) in y times (low, high) in x.
    read_x, read_y = reads[:, None, :, :, 0], reads[None, :, :, :, 1]  # (2, 1, ...), (1, 2, ...)
    grid = torch.stack(torch.broadcast_tensors(read_x, read_y), -1)  # (2, 2, P, B, h, w, 2)
    grid = (grid + 0.5) / constants.size.view(2) * 2 - 1
    product = weights[:, None, :, :, 0] * weights[None, :, :, :, 1]  # (2, 2, P, B, h, w)
    images = coefficients.expand(4 * batch, count, 3, height, width).transpose(0, 1)
    read = F.grid_sample(
        images.reshape(-1, 3, height, width),
        grid.permute(2, 0, 1, 3, 4, 5, 6).reshape(-1, height, width, 2),
        align_corners=False,
        padding_mode="border",
    ).view(count, 4, batch, 3, height, width)
    product = product.permute(2, 0, 1, 3, 4, 5).reshape(count, 4, batch, 1, height, width)
    return (read * product).sum(1)


def _meet_half_way(
    coefficients: torch.Tensor, motions: torch.Tensor, constants: _Constants
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous picture moved by half of each motion of ``motions`` ``(B, 2, 3)`` and the
    current one back by the other half: ``(B, 3, h, w)`` each."""
    half = torch.einsum("bik,khw->bihw", motions, constants.basis) / 2  # (B, 2, h, w)
    moved = _sample(coefficients, torch.stack([-half, half]), constants)
    return moved[0], moved[1]


def _gauss_newton_step(
    coefficients: torch.Tensor, motion: torch.Tensor, constants: _Constants
) -> torch.Tensor:
    """A damped, Huber-weighted Gauss-Newton update of ``motion`` (float32 ``(2, 3)``)."""
    before, after = _meet_half_way(coefficients, motion[None], constants)
    residual = (after - before)[0]  # (3, h, w)
    # d residual / d d(x): the mean of both pictures' gradients (central differences, 0 on the
    # edge, which the margin leaves out).
    both = (after + before)[0] / 2
    gradient = torch.zeros(2, *both.shape, device=both.device)  # (x and y, 3, h, w)
    gradient[0, ..., 1:-1] = (both[..., 2:] - both[..., :-2]) / 2
    gradient[1, ..., 1:-1, :] = (both[..., 2:, :] - both[..., :-2, :]) / 2
    magnitude = residual.abs().sum(0)  # (h, w)
    inside = constants.inside
    huber = HUBER * (magnitude * inside).sum() / inside.sum() + 1e-12
    weight = inside * huber / torch.maximum(magnitude, huber)
    # The residual's derivative by M[i, k] is gradient_i * basis_k (i: x, y; k: 1, x, y): the
    # normal equations' sums, over channels first, then over the blocks with the basis.
    weighted = gradient * weight
    products = (weighted[:, None] * gradient[None]).sum(2).flatten(2)  # (2, 2, h * w)
    normal = (products @ constants.pairs).view(2, 2, 3, 3).permute(0, 2, 1, 3)
    rhs = (weighted * residual).sum(1).flatten(1) @ constants.flat_basis  # (2, 3)
    normal = normal.reshape(6, 6).double()
    damped = normal + DAMPING * normal.diagonal().mean().clamp_min(1e-12) * constants.eye
    # A step delta changes the residual by about J delta: it solves (J^T W J) delta = -J^T W r.
    step = _solve_positive_definite(damped, rhs.reshape(6, 1).double())
    return -step.view(2, 3).float()


def _solve_positive_definite(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``matrix^-1 rhs`` for a small symmetric positive definite ``(n, n)`` matrix and
    ``(n, k)`` right-hand sides, by Gauss-Jordan elimination without pivoting (stable for such
    a matrix). Elementwise operations only: torch.linalg's solvers call cuSOLVER or MAGMA on a
    GPU, which a CUDA graph capture may refuse."""
    n = matrix.shape[0]
    augmented = torch.cat([matrix, rhs], 1)
    rows = torch.arange(n, device=matrix.device)[:, None]
    for k in range(n):
        pivot = augmented[k] / augmented[k, k]
        eliminated = augmented - augmented[:, k : k + 1] * pivot
        augmented = torch.where(rows == k, pivot, eliminated)
    return augmented[:, n:]
