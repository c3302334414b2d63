"""Generated test scenes and pools: frames with structure, and tiles that look like photos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mosaic.config import MosaicConfig
from mosaic.pool import TilePool
from mosaic.tally import TallyReading

T = TypeVar("T")


def landscape(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``(3, H, W)``: sky gradient, sun, hills and a few coloured blobs."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    sky = torch.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y])
    hills = 0.45 + 0.08 * torch.sin(x * 9.0 + 1.0) + 0.05 * torch.sin(x * 23.0)
    ground = torch.stack([0.25 + 0.2 * x, 0.5 - 0.2 * y, 0.15 + 0.1 * x])
    image = torch.where((y > hills)[None], ground, sky)
    for _ in range(6):
        cy, cx, radius = torch.rand(3, generator=generator) * torch.tensor([1.0, 1.0, 0.15])
        colour = torch.rand(3, generator=generator)
        blob = ((y - cy) ** 2 + (x - cx) ** 2) < (radius + 0.03) ** 2
        image = torch.where(blob[None], colour[:, None, None], image)
    return (image * 255).round().clamp(0, 255).to(torch.uint8)


def photo_pool(count: int, tile_size: int = 16, seed: int = 0) -> TilePool:
    """A pool of ``count`` tiles: colour gradients with texture, spread over the colour cube."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(count, 3, 1, 1, generator=generator)
    slope = (torch.rand(count, 3, 1, 1, generator=generator) - 0.5) * 0.4
    ramp = torch.linspace(-0.5, 0.5, tile_size)
    gradient = slope * (ramp[None, None, :, None] + ramp[None, None, None, :])
    texture = torch.randn(count, 3, tile_size, tile_size, generator=generator) * 0.03
    images = ((base + gradient + texture).clamp(0, 1) * 255).round().to(torch.uint8)
    return TilePool.from_tensor(images)


def photo_pan(
    frames: int, step: tuple[int, int] = (1, 2), grid: tuple[int, int] = (20, 30)
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A real photograph panned over, against real photo tiles: the demo clip's subject seen
    through a ``rows x cols`` grid of 8-pixel cells, moving ``step`` (down, right) pixels a
    frame, and the 2,624 tiles ``mosaic.demo`` cuts from the other shipped photographs.

    Returns ``(views, tiles)``: the descriptors (defaults of ``MosaicConfig``: 2 x 2 Oklab
    blocks) of each frame's cells, float32 ``(rows * cols, 12)``, and of the tiles, float32
    ``(2624, 12)``, on CPU, computed by the pure-torch references (the interpreter would take
    minutes).
    """
    from adapters import read_image
    from mosaic.demo import DEMO_SUBJECT, asset_photos, demo_pool
    from mosaic.engine import FrameRenderer

    (rows, cols), (down, right) = grid, step
    height, width = 8 * rows, 8 * cols
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "0")
        renderer = FrameRenderer(demo_pool(tile_size=8), MosaicConfig(cell=8, color=0))
        subject = read_image(next(p for p in asset_photos() if p.name == DEMO_SUBJECT))
        size = (height + down * frames, width + right * frames)
        picture = F.interpolate(subject[None].float(), size=size, mode="area")[0]
        picture = picture.round().to(torch.uint8)
        views = [
            renderer.analyse(
                picture[:, down * k : down * k + height, right * k : right * k + width]
            ).features
            for k in range(frames)
        ]
    return views, renderer.tile_features


def write_photos(
    folder: Path, count: int, size: tuple[int, int], seed: int = 0, suffixes: tuple = ("jpg",)
) -> Path:
    """``count`` photo-like files of ``size`` (width, height) in ``folder``: a colour with a
    gradient across and noise, named ``tile_000.jpg``..., the suffixes taken in turn."""
    rng = np.random.default_rng(seed)
    width, height = size
    for index in range(count):
        ramp = np.linspace(-40, 40, width)[None, :, None] * rng.uniform(-1, 1, 3)
        pixels = rng.integers(0, 256, 3) + ramp + rng.normal(0, 6, (height, width, 3))
        suffix = suffixes[index % len(suffixes)]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"tile_{index:03d}.{suffix}")
    return folder


def add_noise(frame: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """The frame with Gaussian sensor noise of ``sigma`` levels."""
    generator = torch.Generator().manual_seed(seed)
    noisy = frame.float() + torch.randn(frame.shape, generator=generator) * sigma
    return noisy.round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- shipped photographs

CROP_SCALES = (0.5, 0.25, 0.125, 0.0625)  # of a photo's short side; step half a crop


def square_crops(scales: tuple[float, ...]) -> Iterator[torch.Tensor]:
    """uint8 ``(3, s, s)`` square crops of every shipped photograph, ``s`` each of ``scales``
    times its short side, a step of half a crop apart (views of the photographs)."""
    from adapters import read_image
    from mosaic.demo import asset_photos

    for path in asset_photos():
        photo = read_image(path)
        height, width = photo.shape[-2:]
        for scale in scales:
            side = int(min(height, width) * scale)
            step = max(side // 2, 1)
            for top in range(0, height - side + 1, step):
                for left in range(0, width - side + 1, step):
                    yield photo[:, top : top + side, left : left + side]


def spread(items: list[T], count: int) -> list[T]:
    """``count`` of ``items``, spread evenly over them."""
    if count > len(items):
        raise ValueError(f"{count} asked for, {len(items)} available")
    return [items[i] for i in torch.linspace(0, len(items) - 1, count).round().long().tolist()]


def crop_pool(count: int, tile_size: int) -> TilePool:
    """``count`` tiles spread evenly over every square crop of the shipped photographs at
    ``CROP_SCALES`` (about 13,600 crops), resized to ``tile_size``: a pool that looks like a
    user's photo folder."""
    from mosaic.imageops import resize

    crops = spread(list(square_crops(CROP_SCALES)), count)
    return TilePool.from_tensor(torch.stack([resize(crop, tile_size) for crop in crops]))


# --------------------------------------------------------------------------- footage-like clips

FOOTAGE_MOTIONS = ("pan", "zoom", "shake")
# The shipped photograph each motion films: a pan across the launch pad (a dark sky over towers
# and lights), a zoom into the coffee cup (wood grain, the cup's smooth rim), a handheld shot of
# the astronaut (flag, suit, a flat grey background).
FOOTAGE_SUBJECTS = {"pan": "rocket.jpg", "zoom": "coffee.jpg", "shake": "astronaut.jpg"}
FOOTAGE_CRF = 28


@dataclass(frozen=True)
class Footage:
    """A clip filmed by a virtual camera over a photograph, as a camera and an encoder leave it.

    ``frames``: uint8 ``(T, 3, H, W)``, decoded from H.264. ``centre``: float64 ``(T, 2)``, the
    photo point (x, y) at the centre of each frame; ``scale``: float64 ``(T,)``, photo pixels
    per frame pixel.
    """

    frames: torch.Tensor
    centre: torch.Tensor
    scale: torch.Tensor

    def follow(self, points: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Where the content at frame pixels ``points`` (float ``(..., 2)``, x and y) of frame
        ``start`` is in frame ``end``."""
        height, width = self.frames.shape[-2:]
        half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
        photo = self.centre[start] + (points.double() - half) * self.scale[start]
        return (photo - self.centre[end]) / self.scale[end] + half

    def followed(self, first: torch.Tensor, last: torch.Tensor, cell: int) -> float:
        """Of the tiles of ``first`` (int64 ``(rows, cols)``, the clip's first frame) that are
        also in ``last`` (its last frame) and whose content is still in the frame, the share
        that sits within one cell (Chebyshev) of where that content went."""
        height, width = self.frames.shape[-2:]
        cols = first.shape[1]
        at_end = {tile: divmod(i, cols) for i, tile in enumerate(last.flatten().tolist())}
        near = total = 0
        for index, tile in enumerate(first.flatten().tolist()):
            row, col = divmod(index, cols)
            centre = torch.tensor([(col + 0.5) * cell, (row + 0.5) * cell])
            x, y = self.follow(centre, 0, len(self.frames) - 1).tolist()
            if tile not in at_end or not (0 <= x < width and 0 <= y < height):
                continue
            end_row, end_col = at_end[tile]
            total += 1
            near += max(abs(int(y // cell) - end_row), abs(int(x // cell) - end_col)) <= 1
        return near / max(total, 1)


def camera_path(
    motion: str, frames: int, seed: int = 0, speed: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera's offset from its first position, in frame pixels ``(T, 2)``, and its zoom
    (frame pixels per photo pixel, relative to the first frame) ``(T,)``, both float64.

    ``"pan"``: 2.2 pixels a frame to the right and 0.6 down; ``"zoom"``: in by 0.2 % a frame;
    ``"shake"``: a handheld camera, a random walk pulled back to its start (each frame 0.9 of the
    last offset plus a step of 1 pixel's standard deviation: about 2.3 pixels from the start).
    ``speed`` scales each motion (the pan's step, the zoom's rate, the shake's steps).
    """
    steps = torch.arange(frames, dtype=torch.float64)
    offset = torch.zeros(frames, 2, dtype=torch.float64)
    zoom = torch.ones(frames, dtype=torch.float64)
    if motion == "pan":
        offset = steps[:, None] * torch.tensor([2.2, 0.6], dtype=torch.float64) * speed
    elif motion == "zoom":
        zoom = 1.002 ** (steps * speed)
    elif motion == "shake":
        generator = torch.Generator().manual_seed(seed)
        kicks = torch.randn(frames, 2, generator=generator, dtype=torch.float64) * speed
        for index in range(1, frames):
            offset[index] = 0.9 * offset[index - 1] + kicks[index]
    else:
        raise ValueError(f"motion must be one of {FOOTAGE_MOTIONS}, got {motion!r}")
    return offset, zoom


def footage(
    motion: str,
    width: int,
    height: int,
    frames: int,
    folder: Path,
    *,
    noise: float = 3.0,
    speed: float = 1.0,
    seed: int = 0,
) -> Footage:
    """A real-footage-like clip: a camera ``motion`` (``camera_path`` at ``speed``) over the
    shipped photograph of ``FOOTAGE_SUBJECTS``, Gaussian sensor noise of ``noise`` levels, then
    H.264 at CRF ``FOOTAGE_CRF`` (libx264 ``medium``) written into ``folder`` and decoded again.

    The photo is sampled bilinearly, at most one photo pixel per frame pixel (never minified, so
    nothing aliases), with the whole path inside it. ``width`` and ``height`` must be even.
    """
    from adapters import open_sink, open_source, read_image
    from mosaic.demo import asset_photos

    photo = read_image(next(p for p in asset_photos() if p.name == FOOTAGE_SUBJECTS[motion]))
    photo_h, photo_w = photo.shape[-2:]
    offset, zoom = camera_path(motion, frames, seed, speed)
    # The largest view (in frame pixels at the first frame's scale) the path needs, and the
    # photo scale that fits it.
    low, high = offset.amin(0), offset.amax(0)
    reach = high - low + torch.tensor([width, height]) / zoom.amin()
    scale = min(1.0, photo_w / float(reach[0]), photo_h / float(reach[1]))
    centre = torch.tensor([photo_w / 2, photo_h / 2]) + (offset - (low + high) / 2) * scale
    scales = scale / zoom
    grain = torch.Generator().manual_seed(seed)
    filmed = []
    for index in range(frames):
        x = (torch.arange(width) + 0.5 - width / 2) * scales[index] + centre[index, 0]
        y = (torch.arange(height) + 0.5 - height / 2) * scales[index] + centre[index, 1]
        grid = torch.stack(torch.meshgrid(y / photo_h * 2 - 1, x / photo_w * 2 - 1, indexing="ij"))
        view = F.grid_sample(
            photo[None].float(), grid.flip(0).permute(1, 2, 0)[None].float(), align_corners=False
        )[0]
        view += torch.randn(view.shape, generator=grain) * noise
        filmed.append(view.round().clamp(0, 255).to(torch.uint8))
    clip = folder / f"{motion}-{speed}-{noise}-{width}x{height}-{frames}-{seed}.mp4"
    with open_sink(
        clip, width=width, height=height, fps=25, crf=FOOTAGE_CRF, preset="medium"
    ) as sink:
        sink.write(torch.stack(filmed))
    with open_source(clip, device="cpu", backend="pyav") as source:
        decoded = torch.cat(list(source))
    return Footage(decoded, centre, scales)


@dataclass(frozen=True)
class FootageRun:
    """A clip rendered frame by frame (``render_footage``).

    ``choices``: int64 ``(rows, cols)`` tiles of every frame; ``reading``: the flicker tally
    (``mosaic.tally.TallyReading``); ``fidelity``: the mean over every frame;
    ``assignment_ms``: the assignment stage (temporal plan and solve) per frame.
    """

    choices: list[torch.Tensor]
    reading: TallyReading
    fidelity: float
    assignment_ms: float
    images: list[torch.Tensor]


def render_footage(
    frames: torch.Tensor, pool: TilePool, config: MosaicConfig, keep: range = range(0)
) -> FootageRun:
    """Render uint8 ``(T, 3, H, W)`` frames in order as a video would be (temporal coherence
    and the colour hold carried), with the flicker tally and fidelity of every frame; the
    mosaics of the frames in ``keep`` are kept (``images``)."""
    from mosaic.engine import FrameRenderer
    from mosaic.metrics import fidelity, source_change
    from mosaic.pipeline import torch_threads
    from mosaic.stages import StageTimer
    from mosaic.tally import FrameTally
    from mosaic.temporal import TemporalCoherence

    renderer = FrameRenderer(pool, config)
    temporal, tally = TemporalCoherence(config.temporal), FrameTally(renderer.device)
    hold, timer = renderer.colour_hold(), StageTimer(renderer.device)
    choices, fidelities, images = [], [], []
    with torch_threads(renderer.device):  # as a video's render runs
        for index, frame in enumerate(frames):
            result = renderer.render(frame, temporal, timer, hold)
            fidelities.append(fidelity(frame, result.image, result.choice.shape)["mean"])
            if index:
                change = source_change(frames[index - 1], frame, config.cell_shape)
                tally.add(choices[-1], result.choice, result.scene_cut, None, change)
            choices.append(result.choice)
            if index in keep:
                images.append(result.image.clone())
    return FootageRun(
        choices,
        tally.read(),
        sum(fidelities) / len(fidelities),
        1e3 * timer.seconds["assignment"] / len(frames),
        images,
    )
