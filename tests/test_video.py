"""render_video: stats, options, progress, frame-rate resampling, damaged inputs, and memory
that stays flat however long the video."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adapters import DecodeError, SinkError, open_sink, open_source
from mosaic import MosaicConfig, render_video
from mosaic.video import decodable_batches, pipeline_decoder, resampled_indices
from tests.adapters.media import cut_short, ffmpeg, frame_numbers, make_clip, make_grey_ramp, probe
from tests.processes import child_env
from tests.scenes import photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


def test_stats_describe_the_run(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="96x64", rate="10", seconds=1)
    output = tmp_path / "out.mp4"
    stats = render_video(
        source,
        output,
        photo_pool(200),
        MosaicConfig(cell=8, tile_size=None, device="cpu"),
        progress=False,
    )
    assert stats.frames == 10 and probe(output)["video"]["packets"] == 10
    assert stats.input_size == stats.output_size == (96, 64)
    assert stats.fps == 10
    assert stats.grid == (8, 12)
    assert stats.encoder.startswith("libx264 superfast crf 20 (")  # the sink's encoding
    assert stats.decoder == "pyav (cpu)"  # a CPU pipeline's decoder (mosaic.video.pipeline_decoder)
    assert 0.0 <= stats.churn <= 1.0 and stats.fidelity > 0
    assert stats.method in ("exact", "windows", "nearest")
    assert "10 frames" in stats.summary()
    json.dumps(stats.as_dict())  # the stats serialise for logs and benchmarks


def test_decoder_choice(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="32x32", rate="10", seconds=0.5)
    config, pool = MosaicConfig(cell=8, device="cpu"), photo_pool(50)
    chosen = render_video(
        source, tmp_path / "a.mp4", pool, config, progress=False, decoder="torchcodec"
    )
    assert chosen.decoder == "torchcodec (cpu)" and chosen.frames == 5
    with pytest.raises(ValueError, match="decoder must be one of"):
        render_video(source, tmp_path / "b.mp4", pool, config, progress=False, decoder="vlc")
    assert not (tmp_path / "b.mp4").exists()


def test_pipeline_decoder():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pipeline_decoder("auto", cpu) == "pyav"  # no torch._dynamo import (110 MiB, 1 s)
    assert pipeline_decoder("auto", cuda) == "auto"  # torchcodec, NVDEC where there is one
    assert pipeline_decoder("torchcodec", cpu) == "torchcodec"
    assert pipeline_decoder("auto", cpu, decode_device="cuda") == "auto"  # NVDEC is torchcodec's
    assert pipeline_decoder("auto", cpu, decode_device="cpu") == "pyav"


CPU = MosaicConfig(cell=8, device="cpu")


def test_options_reach_the_decoder_and_the_encoder(tmp_path: Path, monkeypatch):
    """A look by name, the decode device and the encoder's preset, each where it belongs."""
    opened: dict[str, dict] = {}

    def spy(name, real):
        def call(*args, **kwargs):
            opened[name] = kwargs
            return real(*args, **kwargs)

        monkeypatch.setattr(f"mosaic.video.{name}", call)

    spy("open_source", open_source)
    spy("open_sink", open_sink)
    source = make_clip(tmp_path / "in.mp4", size="32x32", rate="10", seconds=0.5, audio=None)
    stats = render_video(
        source,
        tmp_path / "out.mp4",
        photo_pool(50),
        "photo",
        progress=False,
        decode_device="cpu",
        encoder_preset="ultrafast",
        crf=30,
    )
    assert stats.reuse == 1  # the "photo" look: each tile at most once
    assert opened["open_source"]["decode_device"] == "cpu"
    assert (opened["open_sink"]["preset"], opened["open_sink"]["crf"]) == ("ultrafast", 30)


def test_progress_reports_every_frame(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="32x32", rate="10", seconds=1, audio=None)
    calls: list[tuple[int, int | None]] = []
    render_video(
        source,
        tmp_path / "out.mp4",
        photo_pool(50),
        CPU,
        progress=False,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(done, 10) for done in range(1, 11)]  # a CPU pipeline: one frame a batch


@given(
    frames=st.integers(0, 400),
    fps=st.fractions(Fraction(1), Fraction(120), max_denominator=1001),
    target=st.fractions(Fraction(1, 2), Fraction(120), max_denominator=1001),
)
def test_resampled_indices_keep_the_duration_and_the_order(frames, fps, target):
    indices = list(resampled_indices(frames, fps, target))
    if frames == 0 or fps == target:
        assert indices == list(range(frames))
        return
    duration = Fraction(frames) / fps  # kept within half an output frame (one frame at least)
    assert len(indices) == 1 or abs(len(indices) / target - duration) <= 1 / (2 * target)
    assert indices == sorted(indices) and indices[0] >= 0 and indices[-1] < frames
    # Output frame j shows the last input frame whose time is nearer to j's than to j + 1's.
    for slot, index in enumerate(indices):
        assert index / fps < (slot + Fraction(1, 2)) / target
        assert index == frames - 1 or (index + 1) / fps >= (slot + Fraction(1, 2)) / target


@pytest.mark.parametrize(
    ("rate", "target"),
    [("25", "10"), ("25", "30"), ("25", "7"), ("25", "24000/1001"), ("30000/1001", "12.5")],
)
def test_resampling_picks_the_frames_ffmpeg_picks(tmp_path: Path, rate: str, target: str):
    """The oracle: FFmpeg's fps filter on a clip whose frames carry their index."""
    frames = 25
    levels = (10 * np.arange(frames)).astype(np.uint8)[:, None, None, None]
    ramp = tmp_path / "ramp.mkv"
    lossless = ("-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p")
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", "16x16", "-framerate", rate),
        *("-i", "pipe:0", *lossless, str(ramp)),
        stdin=np.broadcast_to(levels, (frames, 16, 16, 3)).tobytes(),
    )
    resampled = tmp_path / "resampled.mkv"
    ffmpeg("-i", str(ramp), "-vf", f"fps={target}", *lossless, str(resampled))
    with open_source(resampled, device="cpu", backend="pyav") as source:
        expected = frame_numbers(source.get_range(), 10)
    assert list(resampled_indices(frames, Fraction(rate), Fraction(target))) == expected


def test_fps_resamples_a_video_and_keeps_its_audio(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="32x32", rate="10", seconds=2)
    output = tmp_path / "out.mp4"
    stats = render_video(source, output, photo_pool(50), CPU, progress=False, fps=4)
    found = probe(output)
    assert stats.frames == found["video"]["packets"] == 8 and stats.fps == 4
    assert found["video"]["fps"] == 4 and found["audio"] is not None


class _FailingSource:
    """Stands in for a FrameSource whose frames stop decoding at ``broken``: a batch that
    reaches it is lost whole, as a real decoder call is."""

    def __init__(self, frames: int, broken: int, batch_size: int) -> None:
        self.frames, self.broken, self.batch_size = frames, broken, batch_size

    def iter_frames(self, indices: Sequence[int], *, mode: str) -> Iterator[torch.Tensor]:
        for first in range(0, len(indices), self.batch_size):
            batch = list(indices[first : first + self.batch_size])
            if max(batch) >= self.broken:
                raise DecodeError("clip.mp4", max(min(batch), self.broken), "Invalid data")
            yield torch.tensor(batch)


@pytest.mark.parametrize("broken", [1, 5, 6, 9])
def test_decodable_batches_keep_every_frame_before_the_damage(broken: int):
    stopped: list[DecodeError] = []
    indices = [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]  # resampled: frame 2 twice
    batches = decodable_batches(_FailingSource(10, broken, batch_size=4), indices, stopped)
    delivered = torch.cat(list(batches)).tolist()
    assert delivered == [index for index in indices if index < broken]
    assert [error.frame for error in stopped] == [broken]


def test_decodable_batches_raise_when_nothing_decodes():
    with pytest.raises(DecodeError, match="failed at frame 0"):
        list(decodable_batches(_FailingSource(10, 0, batch_size=4), range(10), []))


@pytest.mark.parametrize("damage", ["index beyond the data", "frame that does not decode"])
def test_a_cut_short_video_renders_up_to_where_it_stops(tmp_path: Path, damage: str):
    if damage == "index beyond the data":  # every frame still held decodes
        whole = make_clip(tmp_path / "clip.mp4", size="32x32", rate="10", seconds=3)
        cut, reason = cut_short(whole, keep=0.6), "the file is cut short"
    else:  # the last frame held is incomplete
        whole = make_grey_ramp(tmp_path / "clip.mp4", frames=60, level_step=4, gop=12)
        cut, reason = cut_short(whole, keep=0.8), "(?!the file is cut short).+"  # the decoder's
    output = tmp_path / "out.mp4"
    with pytest.warns(RuntimeWarning, match=rf"ended early, at frame \d+ of \d+ \({reason}\)"):
        stats = render_video(cut, output, photo_pool(50), CPU, progress=False)
    assert (
        stats.ended_early_at is not None
        and 0 < stats.ended_early_at < probe(whole)["video"]["packets"]
    )
    assert stats.frames == probe(output)["video"]["packets"] == stats.ended_early_at
    assert f"the input ended early, at frame {stats.ended_early_at}" in stats.summary()


# Runs render_video on one clip in a fresh interpreter and prints its peak resident memory.
_PEAK_RSS_SCRIPT = """
import resource, sys
from mosaic import MosaicConfig, render_video
from tests.scenes import photo_pool
render_video(sys.argv[1], sys.argv[2], photo_pool(300), MosaicConfig(cell=8, device="cpu"),
             progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(source: Path, output: Path) -> int:
    env = child_env(TRITON_INTERPRET="0")
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, str(source), str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_however_long_the_video(tmp_path: Path):
    short = make_clip(tmp_path / "10s.mp4", size="160x96", rate="10", seconds=10, audio=None)
    long = make_clip(tmp_path / "60s.mp4", size="160x96", rate="10", seconds=60, audio=None)
    short_peak = peak_rss_kib(short, tmp_path / "10s-out.mp4")
    long_peak = peak_rss_kib(long, tmp_path / "60s-out.mp4")
    print(f"peak RSS: 10 s clip {short_peak / 1024:.0f} MiB, 60 s clip {long_peak / 1024:.0f} MiB")
    assert long_peak <= 1.10 * short_peak


def test_an_output_no_sink_writes_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def decode(*args, **kwargs):
        pytest.fail("the input was opened before the output was checked")

    monkeypatch.setattr("mosaic.video.open_source", decode)
    with pytest.raises(SinkError, match=r"not a video container the sinks write \(\.avi\)"):
        render_video(tmp_path / "in.mp4", tmp_path / "out.avi", photo_pool(20), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_yuv_frames_are_the_rgb_mosaics_in_i420(reference_path):
    """A pipeline handing I420 bytes to the encoder (what CUDA does) writes the same mosaics as
    the RGB one, converted as the sinks define it, and measures about the same fidelity."""
    from adapters.yuv import rgb_to_yuv420
    from mosaic.engine import FrameRenderer
    from mosaic.pipeline import render_frames
    from tests.scenes import add_noise, landscape

    frames = [add_noise(landscape(48, 64, seed=1), 2.0, seed=i).permute(1, 2, 0) for i in range(3)]
    config = MosaicConfig(cell=8, tile_size=None, device="cpu")
    written: dict[str, list[torch.Tensor]] = {"rgb": [], "yuv420p": []}
    summaries = {}
    for pixel_format, out in written.items():
        renderer = FrameRenderer(photo_pool(60), config)
        summaries[pixel_format] = render_frames(
            [frame[None] for frame in frames],
            renderer,
            lambda image, out=out: out.append(image.clone()),
            pixel_format=pixel_format,
        )
    for rgb, yuv in zip(written["rgb"], written["yuv420p"], strict=True):
        assert yuv.shape == (48 * 3 // 2, 64)
        assert (yuv.int() - rgb_to_yuv420(rgb).int()).abs().max() <= 1
    rgb_fidelity, yuv_fidelity = summaries["rgb"].fidelity, summaries["yuv420p"].fidelity
    assert abs(yuv_fidelity - rgb_fidelity) <= 0.05 * rgb_fidelity


def test_adaptive_cells_are_refused_for_a_video(tmp_path):
    from mosaic.config import ConfigError

    config = MosaicConfig(cell=8, device="cpu", adaptive=2)
    with pytest.raises(ConfigError, match="adaptive cells are for still images"):
        render_video(tmp_path / "in.mp4", tmp_path / "out.mp4", photo_pool(20), config)
    assert list(tmp_path.iterdir()) == []
