"""The ``mosaic`` command line: outputs checked with ffprobe, and every failure one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from adapters import open_sink, open_source, read_image
from adapters.sinks import video_encoder
from mosaic.cache import folder_cache_dir
from mosaic.cli import build_parser, config_from_args, main
from mosaic.config import MosaicConfig, TemporalSettings
from tests.adapters.media import cut_short, make_clip, probe
from tests.processes import child_env, interruptible
from tests.scenes import landscape, photo_pool, write_photos

pytestmark = pytest.mark.usefixtures("reference_path")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 120 small photos-like images (gradients over the colour cube)."""
    return write_photos(tmp_path_factory.mktemp("tiles"), 120, (24, 24), suffixes=("png", "jpg"))


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
    """The CLI in-process on CPU, quiet, uncached, outputs at the input's size; options in
    ``argv`` override these."""
    options = ["--quiet", "--device", "cpu", "--cell", "8", "--tile-size", "8", "--no-cache"]
    return main([*options, *argv])


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


@pytest.fixture
def sinks_opened(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The keyword arguments of every sink that render_video opens."""
    opened: list[dict] = []

    def sink(*args, **kwargs):
        opened.append(kwargs)
        return open_sink(*args, **kwargs)

    monkeypatch.setattr("mosaic.video.open_sink", sink)
    return opened


def encoder_options() -> tuple[list[str], tuple[str, int]]:
    """--encoder-preset and --crf for the encoder an .mp4 gets (NVENC where it works, else
    libx264), and what the sink should receive."""
    preset = "p1" if video_encoder(Path("out.mp4")).name == "h264_nvenc" else "ultrafast"
    return ["--encoder-preset", preset, "--crf", "35"], (preset, 35)


def test_encoder_preset_and_crf_reach_the_encoder(
    tiles: Path, clip: Path, tmp_path: Path, sinks_opened: list[dict]
):
    output = tmp_path / "out.mp4"
    options, expected = encoder_options()
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles), *options) == 0
    assert [(kwargs["preset"], kwargs["crf"]) for kwargs in sinks_opened] == [expected]
    assert probe(output)["video"]["packets"] == 10


def test_video_options_apply_to_a_folder_of_videos_and_the_demo(
    tiles: Path, clip: Path, tmp_path: Path, sinks_opened: list[dict], monkeypatch
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (inputs / name).write_bytes(clip.read_bytes())
    options, expected = encoder_options()
    folder = [str(inputs), "-o", str(tmp_path / "out"), "--tiles", str(tiles), "--fps", "5"]
    assert run(*folder, *options) == 0
    assert [(kwargs["preset"], kwargs["crf"]) for kwargs in sinks_opened] == [expected] * 2
    assert probe(tmp_path / "out" / "a.mp4")["video"]["packets"] == 5  # resampled to 5 fps

    sinks_opened.clear()
    monkeypatch.chdir(tmp_path)  # the demo writes into ./mosaic-demo
    monkeypatch.setattr("mosaic.demo.DEMO_SIZE", (64, 48))  # a short, small demo
    monkeypatch.setattr("mosaic.demo.DEMO_SECONDS", 0.2)
    monkeypatch.setattr("mosaic.demo.demo_pool", lambda: photo_pool(100, tile_size=32))
    assert main(["--demo", "--quiet", "--device", "cpu", *options]) == 0
    assert [(kwargs["preset"], kwargs["crf"]) for kwargs in sinks_opened] == [expected]
    assert probe(tmp_path / "mosaic-demo" / "demo-mosaic.mp4")["video"]["packets"] == 5


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
def test_decoder_options_pick_the_decoder(
    tiles: Path, clip: Path, tmp_path: Path, monkeypatch, decoder
):
    opened = []

    def source(*args, **kwargs):
        opened.append((open_source(*args, **kwargs), kwargs["decode_device"]))
        return opened[-1][0]

    monkeypatch.setattr("mosaic.video.open_source", source)
    output = tmp_path / "out.mp4"
    options = ["--decoder", decoder, "--decode-device", "cpu"]
    assert run(str(clip), "-o", str(output), "--tiles", str(tiles), *options) == 0
    assert [(src.decoder, device) for src, device in opened] == [(f"{decoder} (cpu)", "cpu")]
    assert probe(output)["video"]["packets"] == 10


@pytest.mark.parametrize(
    "option",
    [
        ("--crf", "0"),
        ("--encoder-preset", "slow"),
        ("--timing",),
        ("--fps", "5"),
        ("--decoder", "pyav"),
        ("--decode-device", "cpu"),
        ("--strict",),
        ("--switch-bonus", "0.5"),
        ("--change-threshold", "0.1"),
        ("--no-follow-motion",),
    ],
)
def test_video_options_are_a_usage_error_for_an_image(
    tiles: Path, picture: Path, tmp_path: Path, capsys, option
):
    output = tmp_path / "o.png"
    with pytest.raises(SystemExit) as exit_:
        run(str(picture), "-o", str(output), "--tiles", str(tiles), *option)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"mosaic: error: {option[0]}: only for a video output, not for an image"
    assert not output.exists()


def test_nvdec_with_pyav_is_a_usage_error(tiles: Path, clip: Path, tmp_path: Path, capsys):
    options = ["--decoder", "pyav", "--decode-device", "cuda"]
    with pytest.raises(SystemExit) as exit_:
        run(str(clip), "-o", str(tmp_path / "o.mp4"), "--tiles", str(tiles), *options)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        last
        == "mosaic: error: --decode-device cuda: PyAV decodes on the CPU; NVDEC is torchcodec's"
    )


def test_timing_is_for_one_video(tiles: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(str(tmp_path), "-o", str(tmp_path / "out"), "--tiles", str(tiles), "--timing")
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "mosaic: error: --timing: only for a video output, not for a folder of videos"


def test_timing_prints_the_split_and_the_stage_table(
    tiles: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert run(str(clip), "-o", str(tmp_path / "out.mp4"), "--tiles", str(tiles), "--timing") == 0
    lines = capsys.readouterr().err.strip().splitlines()  # --quiet: the timing alone
    split = re.fullmatch(
        r"start-up ([\d.]+) s, tile pool ([\d.]+) s, video ([\d.]+) s "
        r"\(encoder tail ([\d.]+) s\)",
        lines[0],
    )
    assert split is not None, lines[0]
    assert float(split[4]) <= float(split[3])
    lines = lines[1:]
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
    ids=["missing", "not-a-video", "no-frame-decodes"],
)
def test_bad_input_is_one_line_and_nonzero(
    tiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_input, expected
):
    source = make_input(tmp_path)
    assert run(str(source), "-o", str(tmp_path / "out.mp4"), "--tiles", str(tiles)) != 0
    line = one_error_line(capsys)
    assert line.count(expected) == 1, line  # named once
    assert not (tmp_path / "out.mp4").exists()


def test_a_cut_short_video_is_rendered_up_to_where_it_ends(
    tiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    whole = make_clip(tmp_path / "download.mp4", size="96x64", rate="10", seconds=3)
    cut = cut_short(whole, keep=0.6)  # a stopped download: the index announces 30 frames
    output = tmp_path / "out.mp4"
    assert run(str(cut), "-o", str(output), "--tiles", str(tiles)) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()  # --quiet: the warning alone
    ended = re.fullmatch(
        rf"mosaic: warning: {re.escape(str(cut))} ended early, at frame (\d+) of 30 \(.+\): "
        "the mosaic stops there",
        line,
    )
    assert ended is not None, line
    found = probe(output)
    assert found["video"]["packets"] == int(ended[1]) and found["audio"] is not None

    assert run(str(cut), "-o", str(output), "--tiles", str(tiles), "--strict") == 1
    assert capsys.readouterr().err.strip() == line  # the same line; the output is still there
    assert probe(output)["video"]["packets"] == int(ended[1])

    folder = tmp_path / "videos"
    folder.mkdir()
    cut.rename(folder / cut.name)
    common = [str(folder), "-o", str(tmp_path / "mosaics"), "--tiles", str(tiles)]
    assert run(*common, "--strict") == 1  # in a folder of videos too
    assert (tmp_path / "mosaics" / "download-cut.mp4").exists()
    assert main([*common, "--device", "cpu", "--cell", "8", "--no-cache"]) == 0  # done: skipped
    assert "0 rendered, 1 already done, 0 failed" in capsys.readouterr().err


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


def test_bad_option_values_are_one_line_in_the_options_terms(
    tiles: Path, picture: Path, tmp_path: Path, capsys
):
    common = [str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(tiles)]
    assert run(*common, "--color", "2") != 0
    assert one_error_line(capsys) == "mosaic: error: --color must be between 0 and 1, got 2.0"
    assert run(*common, "--cell", "7") != 0
    assert one_error_line(capsys) == (
        "mosaic: error: --cell 7 is not a multiple of --grid 2: "
        "--grid 1 (mean colour only) allows it"
    )
    assert run(*common, "--cell", "7", "--grid", "1") == 0


def test_help_and_usage_errors_answer_before_torch_loads(tiles: Path, tmp_path: Path):
    """Torch takes seconds to import: nothing that only checks the arguments waits for it."""
    script = (
        "import sys\n"
        "from mosaic.cli import main\n"
        "for argv in (['--help'], ['in.mp4'], ['in.mp4', '-o', 'o.mp4', '--tiles', 't', "
        "'--cell', '7'], ['--decoder', 'vlc']):\n"
        "    try:\n"
        "        code = main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        code = exit_.code\n"
        "    assert code in (0, 1, 2) and 'torch' not in sys.modules, (argv, code)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env=child_env(),
        check=True,
        timeout=120,
        capture_output=True,
        cwd=tmp_path,
    )


def test_the_program_exits_with_main_s_status_and_nothing_more(
    tiles: Path, picture: Path, tmp_path: Path
):
    """``mosaic`` ends without the interpreter's teardown (``exit_now``): the status, the output
    and the messages are main()'s alone, with Triton loaded too (the interpreter runs kernels)."""
    options = ["-o", str(tmp_path / "o.png"), "--tiles", str(tiles), "--device", "cpu"]
    options += ["--cell", "8", "--tile-size", "8", "--no-cache", "--quiet"]
    for source, status, messages in ((picture, 0, 0), (tmp_path / "missing.png", 1, 1)):
        done = subprocess.run(
            [sys.executable, "-m", "mosaic.cli", str(source), *options],
            env=child_env(TRITON_INTERPRET="1"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == status and done.stdout == ""
        assert len(done.stderr.splitlines()) == messages, done.stderr
    assert read_image(tmp_path / "o.png").shape == (3, 64, 96)


def test_the_image_summary_and_the_repetition_warning(
    picture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    few = tmp_path / "few"
    few.mkdir()
    for index, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (8, 8), colour).save(few / f"{index}.png")
    output = tmp_path / "o.png"
    # 64 x 96 at cell 4: 16 x 24 = 384 cells for 3 tiles
    assert main([str(picture), "-o", str(output), "--tiles", str(few), "--cell", "4"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "3 tiles from 3 files in " + str(few)
    assert lines[1] == (
        "mosaic: warning: 3 tiles for 384 cells: each tile may fill up to 128 cells of a "
        "frame; add photos, or augment the pool (--augment), for a less repetitive mosaic"
    )
    # The default tiles are readable: 32 px for cells of 4, the output 8 times the input.
    assert re.fullmatch(
        r"96x64 -> 768x512 in [\d.]+ s \(cpu\); 16x24 cells, \w+ assignment, reuse 128, "
        r"3 of 3 tiles used, the most used \d\.png \(128 cells\); fidelity [\d.]+",
        lines[2],
    ), lines[2]
    # What the defaults chose: spacing is off with 3 tiles (too few to keep copies apart).
    assert lines[3] == (
        "look: cells 4x4 px, tiles 32x32 px (output 768x512), grid 2, colour 0.6, "
        "reuse 128 (auto), min distance 0 (auto)"
    )
    assert lines[4:] == [f"wrote {output}"]


def test_the_cache_goes_where_asked_and_is_cleared(
    tiles: Path, picture: Path, tmp_path: Path, cache_home: Path, capsys
):
    before = sorted(tiles.iterdir())
    common = [str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(tiles), "--quiet"]
    assert main([*common, "--device", "cpu", "--cell", "8"]) == 0
    assert folder_cache_dir(tiles).parent == cache_home / "triton-mosaic"
    assert (folder_cache_dir(tiles) / "manifest.json").exists()
    elsewhere = tmp_path / "caches"
    assert main([*common, "--device", "cpu", "--cell", "8", "--cache-dir", str(elsewhere)]) == 0
    assert (folder_cache_dir(tiles, elsewhere) / "manifest.json").exists()
    assert sorted(tiles.iterdir()) == before  # nothing written beside the photos

    assert main(["--clear-cache", "--cache-dir", str(elsewhere)]) == 0  # no demo after it
    assert not elsewhere.exists() and folder_cache_dir(tiles).exists()
    assert re.fullmatch(
        rf"removed 3 cache files \([\d.]+ MiB\) from {re.escape(str(elsewhere))}",
        capsys.readouterr().err.strip(),
    )
    assert main(["--clear-cache", "--quiet"]) == 0
    assert not (cache_home / "triton-mosaic").exists()


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
        preexec_fn=interruptible,
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


def test_makers_options_reach_the_config(tiles: Path, picture: Path, tmp_path: Path, capsys):
    """--cell WxH, --tile-size WxH, --blend, --fair and --min-distance: what the look line says,
    and the size of what is written."""
    output = tmp_path / "o.png"
    options = ["--cell", "8x6", "--tile-size", "16x12", "--blend", "0.25", "--fair"]
    options += ["--min-distance", "2"]
    options += ["--device", "cpu", "--no-cache", "--tiles", str(tiles)]
    assert main([str(picture), "-o", str(output), *options]) == 0
    assert read_image(output).shape == (3, 128, 192)
    look = capsys.readouterr().err.splitlines()[-2]
    assert look == (
        "look: cells 8x6 px, tiles 16x12 px (output 192x128), grid 2, colour 0.6, "
        "fair use: each tile 1-2 times, min distance 2, blend 0.25"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--cell", "8x"), "argument --cell: expected N or WIDTHxHEIGHT, got '8x'"),
        (("--tile-size", "big"), "argument --tile-size: expected N or WIDTHxHEIGHT, got 'big'"),
        (("--min-distance", "far"), 'argument --min-distance: an integer or "auto", got'),
        (("--blend", "1.5"), "--blend must be between 0 and 1, got 1.5"),
        (
            ("--cell", "8x6", "--tile-size", "10"),
            "--tile-size 10 does not have the aspect of the cells",
        ),
    ],
)
def test_bad_makers_options_are_one_line(
    tiles: Path, picture: Path, tmp_path: Path, capsys, option, message
):
    try:
        code = run(str(picture), "-o", str(tmp_path / "o.png"), "--tiles", str(tiles), *option)
    except SystemExit as exit_:  # a usage error
        code = exit_.code
    assert code in (1, 2)
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_temporal_options_reach_the_config_over_a_preset():
    given = ["--preset", "vivid", "--switch-bonus", "0.5", "--change-threshold", "0.1"]
    args = build_parser().parse_args(
        ["in.mp4", "-o", "out.mp4", "--tiles", "t", *given, "--no-follow-motion"]
    )
    config = config_from_args(args)
    assert config.preset == "vivid" and config.color == MosaicConfig.from_preset("vivid").color
    assert config.temporal == TemporalSettings(
        switch_bonus=0.5, change_threshold=0.1, follow_motion=False
    )
    plain = config_from_args(build_parser().parse_args(["in.mp4", "-o", "o.mp4", "--tiles", "t"]))
    assert plain.temporal == TemporalSettings()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--switch-bonus", "nan"), "mosaic: error: --switch-bonus must be >= 0, got nan"),
        (("--change-threshold", "0"), "mosaic: error: --change-threshold must be > 0, got 0.0"),
    ],
)
def test_bad_temporal_options_are_one_line(
    tiles: Path, clip: Path, tmp_path: Path, capsys, option, message
):
    assert run(str(clip), "-o", str(tmp_path / "o.mp4"), "--tiles", str(tiles), *option) == 1
    assert one_error_line(capsys) == message
    assert not (tmp_path / "o.mp4").exists()


def test_pool_subcommand_reports_skips_coverage_and_writes_a_sheet(
    tiles: Path, picture: Path, tmp_path: Path, capsys
):
    folder = tmp_path / "pool"
    folder.mkdir()
    for path in sorted(tiles.iterdir())[:30]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a picture")
    sheet = tmp_path / "sheet.png"
    command = ["pool", str(folder), "--against", str(picture), "--sheet", str(sheet)]
    assert main([*command, "--no-cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"30 tiles from 31 files in {folder} (1 unreadable skipped)"
    assert lines[1].startswith("skipped broken.jpg: ")
    assert re.fullmatch(
        rf"against {re.escape(str(picture))}: \d+ % of 24 cells have a tile within 0.08 \(Oklab\)"
        r"(; lacks .+)?",
        lines[2],
    )
    assert lines[3] == f"wrote the contact sheet {sheet}"
    assert read_image(sheet).shape == (3, 5 * 32, 6 * 32)  # 30 tiles, nearly square
    assert main(["pool", str(tmp_path / "missing")]) == 1
    assert one_error_line(capsys).endswith("does not exist")


def test_pool_coverage_against_a_video_samples_its_frames(tiles: Path, clip: Path, capsys):
    assert main(["pool", str(tiles), "--against", str(clip), "--cell", "8", "--no-cache"]) == 0
    # 8 of the clip's 10 frames, 8 x 12 cells each
    assert " % of 768 cells have a tile within 0.08" in capsys.readouterr().out


def test_the_clip_is_the_demo_s_subject_and_its_pool_the_other_photos():
    from mosaic.demo import DEMO_SUBJECT, asset_photos, demo_pool

    pool = demo_pool(tile_size=8)
    names = {path.name for path in asset_photos()}
    assert set(pool.sources) == names - {DEMO_SUBJECT}
