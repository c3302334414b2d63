"""The ``mosaic`` command line: outputs checked with ffprobe, and every failure one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters import open_sink, open_source, read_image
from adapters.sinks import video_encoder
from mosaic.cli import main
from tests.adapters.media import make_clip, probe
from tests.processes import child_env
from tests.scenes import landscape

pytestmark = pytest.mark.usefixtures("reference_path")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 120 small photos-like images (gradients over the colour cube)."""
    folder = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    for index in range(120):
        base = rng.integers(0, 256, 3)
        ramp = np.linspace(-40, 40, 24)[None, :, None] * rng.uniform(-1, 1, 3)
        pixels = np.clip(base + ramp + rng.normal(0, 6, (24, 24, 3)), 0, 255).astype(np.uint8)
        suffix = "jpg" if index % 2 else "png"
        Image.fromarray(pixels).save(folder / f"tile_{index:03d}.{suffix}")
    return folder


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("picture") / "landscape.png"
    Image.fromarray(landscape(64, 96).permute(1, 2, 0).numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s, 10 fps, 96 x 64, with an AAC sine tone."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", size="96x64", rate="10")


def run(*argv: str) -> int:
    """The CLI in-process on CPU, quiet, uncached; options in ``argv`` override these."""
    return main(["--quiet", "--device", "cpu", "--cell", "8", "--no-cache", *argv])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("mosaic: error: ")
    return lines[0]


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]


def test_image_to_png(tiles: Path, picture: Path, tmp_path: Path):
    output = tmp_path / "out.png"
    assert run(str(picture), "-o", str(output), "--tiles", str(tiles)) == 0
    image = read_image(output)
    assert image.shape == (3, 64, 96)
    assert no_partial_files(tmp_path)


def test_image_with_larger_output_tiles_and_preset(tiles: Path, picture: Path, tmp_path: Path):
    output = tmp_path / "print.jpg"
    code = run(
        str(picture),
        "-o",
        str(output),
        "--tiles",
        str(tiles),
        "--tile-size",
        "16",
        "--preset",
        "vivid",
    )
    assert code == 0
    assert read_image(output).shape == (3, 128, 192)


def test_video_keeps_frames_rate_size_and_audio(tiles: Path, clip: Path, tmp_path: Path):
    output = tmp_path / "out.mp4"
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles)) == 0
    info = probe(output)
    video = info["video"]
    assert video["codec_name"] == "h264"
    assert (video["width"], video["height"]) == (96, 64)
    assert video["fps"] == 10
    assert video["packets"] == 10
    assert info["audio"] is not None
    assert no_partial_files(tmp_path)


def test_frames_folder_as_video(tiles: Path, tmp_path: Path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(6):
        pixels = landscape(48, 64, seed=index).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(frames / f"frame{index + 1}.png")
    output = tmp_path / "frames.mp4"
    code = main(
        [
            "--frames",
            str(frames),
            "-o",
            str(output),
            "--tiles",
            str(tiles),
            "--fps",
            "12",
            "--quiet",
            "--device",
            "cpu",
            "--cell",
            "8",
            "--no-cache",
        ]
    )
    assert code == 0
    video = probe(output)["video"]
    assert video["packets"] == 6
    assert video["fps"] == 12


def test_folder_of_videos_skips_finished_and_reports_failures(
    tiles: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "a.mp4").write_bytes(clip.read_bytes())
    (inputs / "b.mp4").write_bytes(clip.read_bytes())
    (inputs / "broken.mp4").write_text("not a video")
    code = main(
        [
            str(inputs),
            "-o",
            str(outputs),
            "--tiles",
            str(tiles),
            "--device",
            "cpu",
            "--cell",
            "8",
            "--no-cache",
            "--jobs",
            "2",
        ]
    )
    assert code == 1  # one input failed
    assert sorted(p.name for p in outputs.iterdir()) == ["a.mp4", "b.mp4"]
    assert "failed: broken.mp4" in capsys.readouterr().err
    before = (outputs / "a.mp4").stat().st_mtime_ns
    (inputs / "broken.mp4").unlink()
    assert (
        main(
            [
                str(inputs),
                "-o",
                str(outputs),
                "--tiles",
                str(tiles),
                "--quiet",
                "--device",
                "cpu",
                "--cell",
                "8",
                "--no-cache",
            ]
        )
        == 0
    )
    assert (outputs / "a.mp4").stat().st_mtime_ns == before  # finished outputs are skipped


def test_encoder_preset_and_crf_reach_the_encoder(
    tiles: Path, clip: Path, tmp_path: Path, monkeypatch
):
    opened = []

    def sink(*args, **kwargs):
        opened.append(kwargs)
        return open_sink(*args, **kwargs)

    monkeypatch.setattr("mosaic.video.open_sink", sink)
    output = tmp_path / "out.mp4"
    # a preset of the encoder the sink picks: NVENC where it works, else libx264
    preset = "p1" if video_encoder(output).name == "h264_nvenc" else "ultrafast"
    options = ["--encoder-preset", preset, "--crf", "35"]
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles), *options) == 0
    assert [(kwargs["preset"], kwargs["crf"]) for kwargs in opened] == [(preset, 35)]
    assert probe(output)["video"]["packets"] == 10


@pytest.mark.parametrize(
    "option, expected",
    [(("--encoder-preset", "bogus"), "'bogus'"), (("--crf", "52"), "--crf")],
    ids=["preset", "crf"],
)
def test_bad_encoder_options_are_one_line(
    tiles: Path, clip: Path, tmp_path: Path, capsys, option, expected
):
    output = tmp_path / "out.mp4"
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles), *option) == 1
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # refused before any work


@pytest.mark.parametrize("decoder", ["torchcodec", "pyav"])
def test_decoder_option_picks_the_decoder(
    tiles: Path, clip: Path, tmp_path: Path, monkeypatch, decoder
):
    opened = []

    def source(*args, **kwargs):
        opened.append(open_source(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr("mosaic.video.open_source", source)
    output = tmp_path / "out.mp4"
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles), "--decoder", decoder) == 0
    assert [opened_source.decoder for opened_source in opened] == [f"{decoder} (cpu)"]
    assert probe(output)["video"]["packets"] == 10


@pytest.mark.parametrize(
    "option",
    [
        ("--crf", "0"),
        ("--encoder-preset", "slow"),
        ("--timing",),
        ("--fps", "5"),
        ("--decoder", "pyav"),
    ],
)
def test_video_options_are_a_usage_error_for_an_image_or_a_folder(
    tiles: Path, picture: Path, tmp_path: Path, capsys, option
):
    for source, output in ((picture, tmp_path / "o.png"), (tmp_path, tmp_path / "out")):
        with pytest.raises(SystemExit) as exit_:
            run(str(source), "-o", str(output), "--tiles", str(tiles), *option)
        assert exit_.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"mosaic: error: {option[0]}: only for a video"), last
        assert not output.exists()


def test_timing_prints_the_stage_table(
    tiles: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert run(str(clip), "-o", str(tmp_path / "out.mp4"), "--tiles", str(tiles), "--timing") == 0
    lines = capsys.readouterr().err.strip().splitlines()  # --quiet: the table alone
    assert lines[0].split() == ["ms", "per", "frame", "wall", "cpu"]
    stages = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[1:]}
    assert list(stages)[:2] == ["open", "decode"]  # pipeline order
    assert {"features", "assignment", "render", "encode", "flush"} <= set(stages)
    assert all(len(times) == 2 and min(times) >= 0 for times in stages.values())


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: d / "missing.mp4", "input not found"),
        (lambda d: _write(d / "notes.mp4", b"just some text"), "notes.mp4"),
        (lambda d: _truncated_clip(d), "truncated.mp4"),
    ],
    ids=["missing", "not-a-video", "truncated"],
)
def test_bad_input_is_one_line_and_nonzero(
    tiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_input, expected
):
    source = make_input(tmp_path)
    assert run(str(source), "-o", str(tmp_path / "out.mp4"), "--tiles", str(tiles)) != 0
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_missing_and_empty_tile_folders(picture: Path, tmp_path: Path, capsys):
    assert run(str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(tmp_path / "no")) != 0
    one_error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(empty)) != 0
    one_error_line(capsys)


def test_pool_too_small_says_how_many_tiles(tiles: Path, picture: Path, tmp_path: Path, capsys):
    code = run(
        str(picture),
        "-o",
        str(tmp_path / "o.png"),
        "--tiles",
        str(tiles),
        "--cell",
        "4",
        "--reuse",
        "1",
    )
    assert code != 0
    line = one_error_line(capsys)
    assert "384" in line and "120" in line  # 16 x 24 cells need 384 tiles; the pool has 120


def test_unwritable_output_folder(tiles: Path, picture: Path, tmp_path: Path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(
            "mosaic.cli.os.access",
            lambda p, mode: False if Path(p) == locked else real_access(p, mode),
        )
    assert run(str(picture), "-o", str(locked / "o.png"), "--tiles", str(tiles)) != 0
    assert "cannot write" in one_error_line(capsys)


def test_missing_output_folder(tiles: Path, picture: Path, tmp_path: Path, capsys):
    assert run(str(picture), "-o", str(tmp_path / "nope" / "o.png"), "--tiles", str(tiles)) != 0
    assert "does not exist" in one_error_line(capsys)


def test_output_equal_to_input_is_refused(tiles: Path, clip: Path, tmp_path: Path, capsys):
    copy = tmp_path / "clip.mp4"
    copy.write_bytes(clip.read_bytes())
    before = copy.read_bytes()
    assert run(str(copy), "-o", str(copy), "--tiles", str(tiles)) != 0
    assert "input" in one_error_line(capsys)
    assert copy.read_bytes() == before


def test_debug_shows_the_traceback(tiles: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        run(
            str(tmp_path / "missing.mp4"),
            "-o",
            str(tmp_path / "o.mp4"),
            "--tiles",
            str(tiles),
            "--debug",
        )


def test_bad_option_values_are_one_line(tiles: Path, picture: Path, tmp_path: Path, capsys):
    assert (
        run(str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(tiles), "--color", "2") != 0
    )
    assert "color" in one_error_line(capsys)


def test_interrupted_video_leaves_nothing_behind(tiles: Path, tmp_path: Path):
    source = make_clip(tmp_path / "long.mp4", size="160x96", rate="25", seconds=20, audio=None)
    output = tmp_path / "out" / "mosaic.mp4"
    output.parent.mkdir()
    env = child_env(TRITON_INTERPRET="0")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosaic.cli",
            str(source),
            "-o",
            str(output),
            "--tiles",
            str(tiles),
            "--device",
            "cpu",
            "--cell",
            "8",
            "--no-cache",
            "--quiet",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any(output.parent.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the encoder has started writing its temporary file
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "interrupted" in stderr
    assert list(output.parent.iterdir()) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_clip(folder: Path) -> Path:
    whole = make_clip(folder / "whole.mp4", size="96x64", rate="10", audio=None)
    data = whole.read_bytes()
    return _write(folder / "truncated.mp4", data[: len(data) // 2])


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("video", "out.jpg", "not a video container the sinks write (.jpg)"),
        ("video", "out.avi", "a video output needs .mp4, .m4v, .mov, .mkv, .webm"),
        ("image", "out.mp4", "unknown image type"),
    ],
)
def test_output_type_is_refused_before_any_work(
    tiles: Path,
    clip: Path,
    picture: Path,
    tmp_path: Path,
    capsys,
    monkeypatch,
    kind,
    name,
    expected,
):
    def load_pool(*args, **kwargs):
        pytest.fail("the tile pool was loaded before the output was checked")

    monkeypatch.setattr("mosaic.pool.TilePool.from_dir", load_pool)
    source = clip if kind == "video" else picture
    assert run(str(source), "-o", str(tmp_path / name), "--tiles", str(tiles)) == 1
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_webm_output_is_vp9_with_opus(tiles: Path, clip: Path, tmp_path: Path):
    output = tmp_path / "out.webm"
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles)) == 0
    found = probe(output)
    assert found["video"]["codec_name"] == "vp9" and found["audio"]["codec_name"] == "opus"
    assert no_partial_files(tmp_path)
