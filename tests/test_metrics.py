"""Quality measures (``mosaic.metrics``), on the pure-torch reference path.

SSIM is checked against scikit-image's ``structural_similarity`` with Wang et al.'s settings.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from kernels import srgb_to_oklab
from mosaic.colour import cell_stats, tile_stats
from mosaic.metrics import churn, fidelity, ssim, variety
from mosaic.render import render_mosaic
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


def skimage_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255) -> float:
    """scikit-image SSIM of two ``(3, H, W)`` arrays with Wang et al.'s settings."""
    return structural_similarity(
        a.numpy(),
        b.numpy(),
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def perturbed(image: torch.Tensor, amount: int, generator: torch.Generator) -> torch.Tensor:
    """``image`` plus uniform noise of +-``amount`` levels, clamped to uint8."""
    noise = torch.randint(-amount, amount + 1, image.shape, generator=generator)
    return (image.int() + noise).clamp(0, 255).to(torch.uint8)


def flat(color: tuple[int, int, int], height: int, width: int) -> torch.Tensor:
    """uint8 ``(3, H, W)`` of one colour."""
    return torch.tensor(color, dtype=torch.uint8)[:, None, None].expand(3, height, width)


# --------------------------------------------------------------------------- ssim


def ssim_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=generator)
    picture = add_noise(landscape(64, 80), sigma=6, seed=0)
    blurred = F.avg_pool2d(picture[None].float(), 3, stride=1, padding=1)[0]
    return {
        "random vs random": (
            noise,
            torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=generator),
        ),
        "random vs perturbed": (noise, perturbed(noise, 40, generator)),
        "landscape vs perturbed": (picture, perturbed(picture, 25, generator)),
        "landscape vs blurred": (picture, blurred.round().to(torch.uint8)),
        "landscape vs shifted": (picture, picture.roll(3, dims=-1)),
        "flat vs landscape": (flat((120, 60, 200), 64, 80), picture),
        "smallest size": (noise[:, :11, :11], perturbed(noise[:, :11, :11], 30, generator)),
    }


@pytest.mark.parametrize("case", list(ssim_pairs()))
def test_ssim_matches_skimage(case: str):
    a, b = ssim_pairs()[case]
    assert ssim(a, b) == pytest.approx(skimage_ssim(a, b), abs=1e-4)


def test_ssim_of_an_image_with_itself_is_one():
    picture = add_noise(landscape(48, 40, seed=1), sigma=6, seed=1)
    assert ssim(picture, picture) == pytest.approx(1.0, abs=1e-6)
    assert ssim(picture, picture, size=(24, 20)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_after_resizing_matches_skimage_on_the_resized_pair():
    generator = torch.Generator().manual_seed(2)
    a = landscape(96, 120, seed=2)
    b = perturbed(landscape(72, 90, seed=2), 20, generator)
    resized = [
        F.interpolate(x[None].float(), size=(32, 40), mode="bilinear", antialias=True)[0] / 255
        for x in (a, b)
    ]
    expected = skimage_ssim(resized[0].double(), resized[1].double(), data_range=1.0)
    assert ssim(a, b, size=(32, 40)) == pytest.approx(expected, abs=1e-4)


def test_ssim_rejects_mismatched_or_tiny_images():
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    with pytest.raises(ValueError, match="one size"):
        ssim(image, torch.zeros(3, 20, 21, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(image[:, :10], image[:, :10])
    with pytest.raises(TypeError, match="uint8"):
        ssim(image.float(), image)


# --------------------------------------------------------------------------- fidelity


def test_fidelity_of_identical_images_is_zero():
    picture = add_noise(landscape(48, 64, seed=3), sigma=6, seed=3)
    assert fidelity(picture, picture, (6, 8)) == {"mean": 0.0, "p95": 0.0}


def test_fidelity_is_the_oklab_distance_of_cell_means():
    red, grey = (200, 40, 30), (128, 128, 128)
    lab = srgb_to_oklab(torch.tensor([red, grey], dtype=torch.uint8)[:, :, None, None])
    distance = torch.linalg.vector_norm(lab[0] - lab[1]).item()
    # Different sizes reduce to the same 4 x 5 grid of cell means.
    result = fidelity(flat(red, 40, 50), flat(grey, 24, 30), (4, 5))
    assert result["mean"] == pytest.approx(distance, rel=1e-5)
    assert result["p95"] == pytest.approx(distance, rel=1e-5)
    assert fidelity(flat(red, 40, 50), flat(red, 16, 20), (4, 5))["mean"] < 1e-6


def test_fidelity_rejects_a_grid_larger_than_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        fidelity(flat((0, 0, 0), 8, 8), flat((0, 0, 0), 8, 8), (9, 2))


def test_nearest_mean_mosaic_is_far_closer_than_a_flat_image():
    source = add_noise(landscape(96, 128, seed=4), sigma=4, seed=4)
    cell = 8
    tiles = photo_pool(300, tile_size=cell, seed=4).images
    cells = cell_stats(source, cell).mean.reshape(-1, 3)
    choice = torch.cdist(cells, tile_stats(tiles)[0]).argmin(dim=1).reshape(12, 16)
    mosaic = render_mosaic(tiles, choice)
    mean_colour = source.float().mean(dim=(1, 2)).round().to(torch.uint8)
    flat_image = mean_colour[:, None, None].expand_as(source)

    mosaic_error = fidelity(source, mosaic, (12, 16))
    flat_error = fidelity(source, flat_image, (12, 16))
    assert 0 < mosaic_error["mean"] < 0.3 * flat_error["mean"]
    assert mosaic_error["p95"] < flat_error["p95"]


# --------------------------------------------------------------------------- churn, variety


def test_churn_counts_changed_cells():
    previous = torch.tensor([[0, 1], [2, 3]])
    assert churn(previous, previous.clone()) == 0.0
    assert churn(previous, torch.tensor([[0, 1], [3, 3]])) == 0.25
    assert churn(previous, previous + 10) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        churn(previous, torch.zeros(2, 3, dtype=torch.int64))


def test_variety_counts_distinct_tiles_and_max_uses():
    assert variety(torch.tensor([[0, 0, 1], [2, 0, 1]])) == {"distinct": 3, "max_uses": 3}
    assert variety(torch.arange(12).reshape(3, 4)) == {"distinct": 12, "max_uses": 1}
    assert variety(torch.full((2, 2), 7)) == {"distinct": 1, "max_uses": 4}
