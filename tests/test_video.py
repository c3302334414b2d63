"""render_video: stats, and memory that stays flat however long the video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters import SinkError
from mosaic import MosaicConfig, render_video
from mosaic.video import pipeline_decoder
from tests.adapters.media import make_clip, probe
from tests.processes import child_env
from tests.scenes import photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")


def test_stats_describe_the_run(tmp_path: Path):
    source = make_clip(tmp_path / "in.mp4", size="96x64", rate="10", seconds=1)
    output = tmp_path / "out.mp4"
    stats = render_video(
        source, output, photo_pool(200), MosaicConfig(cell=8, device="cpu"), progress=False
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


# Runs render_video on one clip in a fresh interpreter and prints its peak resident memory.
_PEAK_RSS_SCRIPT = """
import resource, sys
from adapters import SinkError
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
