"""Clips shared by the adapters tests, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.adapters.media import make_clip, make_grey_ramp


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip_with_audio(media: Path) -> Path:
    """64x48, 30000/1001 fps, 30 frames, AAC audio, in MP4."""
    return make_clip(media / "audio.mp4", rate="30000/1001", seconds=1.001)


@pytest.fixture(scope="session")
def clip_silent(media: Path) -> Path:
    """64x48, 25 fps, 25 frames, no audio, in MP4."""
    return make_clip(media / "silent.mp4", audio=None)


@pytest.fixture(scope="session")
def grey_ramp(media: Path) -> Path:
    """25 frames, frame i a solid grey 10 * i, lossless, in MKV."""
    return make_grey_ramp(media / "ramp.mkv")


RAMP_FRAMES = 60
RAMP_STEP = 4  # grey level of frame i: 4 * i


@pytest.fixture(scope="session")
def indexed_clips(media: Path) -> dict[str, Path]:
    """60 frames carrying their index as grey level 4 * i, a key frame every 12 frames with
    B-frames, in MP4 and MKV (their timestamps and seeking differ)."""
    return {
        container: make_grey_ramp(
            media / f"indexed.{container}", frames=RAMP_FRAMES, level_step=RAMP_STEP, gop=12
        )
        for container in ("mp4", "mkv")
    }


@pytest.fixture(scope="session")
def indexed_folder(media: Path) -> Path:
    """The same 60 frames as ``indexed_clips``, as PNGs shot_1.png ... shot_60.png."""
    folder = media / "indexed_frames"
    folder.mkdir()
    for index in range(RAMP_FRAMES):
        level = RAMP_STEP * index
        Image.new("RGB", (64, 48), (level,) * 3).save(folder / f"shot_{index + 1}.png")
    return folder
