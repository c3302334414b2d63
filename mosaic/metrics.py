"""Quality measures of a mosaic: colour fidelity, structural similarity, churn, tile swaps and
variety.

All take tensors on any device. ``tile_swaps`` returns tensors on that device, so a video's frame
loop can add it up without reading anything back (``mosaic.tally``); the others return plain
Python numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import cell_features, grid_reduce

__all__ = [
    "CALM_CHANGE",
    "TileSwaps",
    "churn",
    "fidelity",
    "source_change",
    "ssim",
    "tile_swaps",
    "variety",
]

CALM_CHANGE = 6.0
"""A source cell is calm from one frame to the next while its pixels change by less than this on
average (mean absolute difference over its pixels and channels, in levels of 255): sensor noise
and compression artefacts stay under it, a moving edge or a change of light does not."""

# SSIM as Wang et al. (2004): Gaussian window with sigma 1.5 truncated at radius 5 (11 taps,
# skimage's truncate=3.5), K1 = 0.01, K2 = 0.03, population covariances.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def fidelity(source: torch.Tensor, mosaic: torch.Tensor, grid: tuple[int, int]) -> dict:
    """Oklab distance between each cell's mean colour in the source and in the mosaic.

    Each image is cut into ``rows x cols`` cells of ``(H // rows) x (W // cols)`` pixels from its
    top-left corner (the remainder at the bottom and right is ignored, as in ``grid_reduce``), so
    the two images may have different sizes (a mosaic's tiles need not be the source's cells).

    Args:
        source: uint8 ``(3, H, W)`` sRGB.
        mosaic: uint8 ``(3, H', W')`` sRGB, on the same device.
        grid: ``(rows, cols)``, at most the smaller image's height and width.

    Returns:
        ``{"mean": float, "p95": float}``: mean and 95th percentile of the per-cell Euclidean
        Oklab distances (a just-noticeable difference is about 0.02).
    """
    _check_image(source, "source")
    _check_image(mosaic, "mosaic")
    _check_same_device(source, mosaic)
    distance = torch.linalg.vector_norm(
        _cell_means(source, grid) - _cell_means(mosaic, grid), dim=0
    ).flatten()
    return {"mean": distance.mean().item(), "p95": torch.quantile(distance, 0.95).item()}


def ssim(a: torch.Tensor, b: torch.Tensor, *, size: tuple[int, int] | None = None) -> float:
    """Mean structural similarity of two sRGB images, per RGB channel, averaged over channels.

    Wang et al. (2004): Gaussian window (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, data range
    255, population covariances; the mean is over the pixels at least 5 from the border, so no
    padding is involved. Equal to ``skimage.metrics.structural_similarity(a, b, channel_axis=0,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`` on the
    ``(3, H, W)`` arrays.

    Args:
        a, b: uint8 ``(3, H, W)`` sRGB on one device; same size unless ``size`` is given.
        size: ``(height, width)`` both images are first resized to (bilinear, antialiased, kept
            in float), for example a few pixels per cell to compare structure at cell scale.

    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    _check_image(a, "a")
    _check_image(b, "b")
    _check_same_device(a, b)
    if size is None and a.shape != b.shape:
        raise ValueError(
            f"ssim needs images of one size (or size=...), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    x, y = (_to_unit_float(image, size) for image in (a, b))
    window = 2 * _SSIM_RADIUS + 1
    if min(x.shape[-2:]) < window:
        raise ValueError(
            f"ssim needs images of at least {window}x{window}, got {tuple(x.shape[-2:])}"
        )

    # Five local statistics of the three channels, blurred as one 15-channel image.
    moments = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y])[None])[0]
    mean_x, mean_y, xx, yy, xy = moments.split(3)
    var_x = xx - mean_x * mean_x
    var_y = yy - mean_y * mean_y
    cov_xy = xy - mean_x * mean_y
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # data range 1 after the division by 255
    similarity = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / (
        (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
    )
    return similarity.double().mean().item()


def churn(previous: torch.Tensor, current: torch.Tensor) -> float:
    """Fraction of cells whose tile changed between two frames.

    Args:
        previous, current: integer ``(rows, cols)`` tile index per cell, on one device.

    Returns:
        A fraction in [0, 1].
    """
    _check_choice(previous, "previous")
    _check_choice(current, "current")
    if previous.shape != current.shape:
        raise ValueError(
            f"churn needs two grids of one shape, got {tuple(previous.shape)} and "
            f"{tuple(current.shape)}"
        )
    _check_same_device(previous, current)
    return (previous != current).float().mean().item()


@dataclass(frozen=True)
class TileSwaps:
    """How the tiles of a frame changed from the previous one, as cell counts: ``()`` int64
    tensors on the frames' device.

    ``calm``: cells whose tile was swapped although their source was calm (the flicker a viewer
    sees as spurious); ``moving``: cells whose tile was swapped where the source changed;
    ``changed``: cells whose source changed (swapped or not). A cell is *swapped* when its new
    tile is neither its own previous tile nor the previous tile of one of its eight neighbours:
    a tile that moved one cell with the content is not a swap.
    """

    calm: torch.Tensor
    moving: torch.Tensor
    changed: torch.Tensor


def source_change(
    previous: torch.Tensor, current: torch.Tensor, cell: int | tuple[int, int]
) -> torch.Tensor:
    """Mean absolute change of every cell between two frames, in levels of 255.

    Args:
        previous, current: uint8 ``(3, H, W)`` sRGB on one device, any strides.
        cell: the cell's side in pixels, or its ``(height, width)``; the grid is
            ``ceil(H / height) x ceil(W / width)``, and the cells of the last row and column
            average over the pixels they have.

    Returns:
        float32 ``(rows, cols)`` on the frames' device.
    """
    cell_h, cell_w = (cell, cell) if isinstance(cell, int) else cell
    height, width = current.shape[-2:]
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    # |a - b| in uint8 without a wider copy: the larger minus the smaller.
    difference = torch.maximum(previous, current) - torch.minimum(previous, current)
    padded = F.pad(difference, (0, cols * cell_w - width, 0, rows * cell_h - height))
    means = grid_reduce(padded[None], (cell_h, cell_w))[0].sum(0)  # (rows, cols), padded cells
    device = current.device
    cell_rows = (height - cell_h * torch.arange(rows, device=device)).clamp_max(cell_h)
    cell_cols = (width - cell_w * torch.arange(cols, device=device)).clamp_max(cell_w)
    pixels = cell_rows[:, None] * cell_cols[None, :]
    return means * (cell_h * cell_w / 3) / pixels


def tile_swaps(
    previous_choice: torch.Tensor,
    choice: torch.Tensor,
    change: torch.Tensor,
    calm: float = CALM_CHANGE,
) -> TileSwaps:
    """Count the swapped cells of a frame, calm or not (``TileSwaps``), on the device.

    Args:
        previous_choice, choice: int64 ``(rows, cols)`` tile of every cell in two consecutive
            frames.
        change: float ``(rows, cols)``, the source's ``source_change`` between those frames.
        calm: the change under which a source cell counts as calm.
    """
    rows, cols = choice.shape
    # The previous tiles of each cell's 3 x 3 neighbourhood, -1 outside the grid.
    around = F.pad(previous_choice, (1, 1, 1, 1), value=-1)
    neighbours = torch.stack(
        [around[dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)]
    )
    swapped = (neighbours != choice).all(0)
    still = change < calm
    return TileSwaps(
        calm=(swapped & still).sum(),
        moving=(swapped & ~still).sum(),
        changed=(~still).sum(),
    )


def variety(choice: torch.Tensor) -> dict:
    """How varied a frame's tiles are.

    Args:
        choice: integer ``(rows, cols)`` tile index per cell.

    Returns:
        ``{"distinct": int, "max_uses": int}``: the number of different tiles used and the most
        cells any one tile covers.
    """
    _check_choice(choice, "choice")
    _, counts = torch.unique(choice, return_counts=True)
    return {"distinct": counts.numel(), "max_uses": int(counts.max())}


def _cell_means(image: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """float32 ``(3, rows, cols)`` mean Oklab colour of each cell of a ``(3, H, W)`` image."""
    if not (
        isinstance(grid, tuple)
        and len(grid) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in grid)
    ):
        raise TypeError(f"grid must be a (rows, cols) tuple of ints, got {grid!r}")
    rows, cols = grid
    height, width = image.shape[-2:]
    if not (1 <= rows <= height and 1 <= cols <= width):
        raise ValueError(f"grid {grid} does not fit a {height}x{width} image")
    return cell_features(image[None], (height // rows, width // cols))[0, :, :rows, :cols]


def _to_unit_float(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """float32 ``(3, H, W)`` in [0, 1], resized to ``size`` (bilinear, antialiased) if given."""
    image = image.to(torch.float32) / 255.0
    if size is None:
        return image
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


def _gaussian_blur_valid(images: torch.Tensor) -> torch.Tensor:
    """Separable SSIM Gaussian over ``(1, C, H, W)`` float32, no padding: ``(1, C, H-10, W-10)``."""
    offsets = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, device=images.device)
    taps = torch.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    taps = (taps / taps.sum()).to(images.dtype)
    channels = images.shape[1]
    vertical = F.conv2d(images, taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(vertical, taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)


def _check_image(x: object, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {x.dtype}")
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must have shape (3, H, W), got {tuple(x.shape)}")


def _check_choice(x: object, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer tile indices, got {x.dtype}")
    if x.ndim != 2 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty (rows, cols) grid, got {tuple(x.shape)}")


def _check_same_device(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.device != b.device:
        raise ValueError(f"tensors must be on one device, got {a.device} and {b.device}")
