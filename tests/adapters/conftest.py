"""Clips shared by the adapters tests, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

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
