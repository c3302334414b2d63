"""``mosaic --demo``: a short mosaic video from photographs shipped in the package.

No network and no files of the user's: the input clip is a slow pan and zoom over one of the
photographs in ``mosaic/assets/photos`` (CC0 / public domain, see ``assets/LICENSES.md``), written
first so the demo also exercises decoding, and the tile pool is cut from the others: the
subject is never built from pieces of itself.
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from adapters import open_sink, read_image, writable_folder
from mosaic.config import MosaicConfig, as_config
from mosaic.imageops import resize
from mosaic.pool import TilePool
from mosaic.video import VideoStats, render_video

DEMO_SIZE = (640, 360)  # width, height of the demo clip
DEMO_FPS = Fraction(25)
DEMO_SECONDS = 4
DEMO_SUBJECT = "coffee.jpg"
TILE_SIZE = 32


def asset_photos() -> list[Path]:
    """The shipped photographs, sorted by name."""
    folder = resources.files("mosaic") / "assets" / "photos"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jpg"))


def demo_pool(tile_size: int = TILE_SIZE) -> TilePool:
    """About a thousand tiles: square crops of every shipped photo but the clip's subject, at
    three scales."""
    crops, sources = [], []
    for path in asset_photos():
        if path.name == DEMO_SUBJECT:
            continue
        photo = read_image(path)
        height, width = photo.shape[-2:]
        for fraction in (0.5, 0.25, 0.125):
            side = int(min(height, width) * fraction)
            step = max(side // 2, 1)
            for top in range(0, height - side + 1, step):
                for left in range(0, width - side + 1, step):
                    crops.append(resize(photo[:, top : top + side, left : left + side], tile_size))
                    sources.append(path.name)
    return TilePool.from_tensor(torch.stack(crops), sources)


def demo_clip(path: Path) -> None:
    """Write the demo input: a slow zoom and pan over one shipped photograph."""
    photo = read_image(next(p for p in asset_photos() if p.name == DEMO_SUBJECT))
    height, width = photo.shape[-2:]
    out_w, out_h = DEMO_SIZE
    frames = int(DEMO_SECONDS * DEMO_FPS)
    with open_sink(path, width=out_w, height=out_h, fps=DEMO_FPS) as sink:
        for index in range(frames):
            t = index / max(frames - 1, 1)
            zoom = 1.0 - 0.35 * t  # fraction of the photo's width in view
            crop_w = int(width * zoom)
            crop_h = min(int(crop_w * out_h / out_w), height)
            left = int((width - crop_w) * t)
            top = int((height - crop_h) * (0.5 - 0.3 * t))
            view = photo[:, top : top + crop_h, left : left + crop_w]
            sink.write(resize(view, (out_h, out_w))[None])


def run_demo(
    config: MosaicConfig | str | None = None, *, quiet: bool = False, **video_options: Any
) -> VideoStats:
    """Render the demo into ``./mosaic-demo`` (or a temporary folder) and say where.

    ``config`` is a ``MosaicConfig``, a preset's name, or ``None`` (the defaults: cells of 16,
    tiles of 32, a 1280 x 720 mosaic); ``video_options`` go to ``render_video``
    (``encoder_preset``, ``crf``, ``decoder``, ``timing``, ...).
    """
    config = as_config(config)
    folder = _writable_folder()
    clip, output = folder / "demo-input.mp4", folder / "demo-mosaic.mp4"
    if not quiet:
        print(f"mosaic demo: writing the input clip to {clip}", file=sys.stderr)
    demo_clip(clip)
    pool = demo_pool()
    stats = render_video(clip, output, pool, config, progress=not quiet, **video_options)
    print(f"mosaic demo: wrote {output}")
    return stats


def _writable_folder() -> Path:
    folder = Path.cwd() / "mosaic-demo"
    if writable_folder(folder):
        return folder
    return Path(tempfile.mkdtemp(prefix="mosaic-demo-"))
