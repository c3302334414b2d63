"""The ``mosaic`` command line.

Only the standard library and two plain-data modules load before the arguments are checked:
torch and the engine are imported once there is work to do, so ``--help`` and usage errors
answer at once.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from adapters.backends import DECODE_DEVICES, VIDEO_BACKENDS
from adapters.errors import first_line
from mosaic.config import (
    MAX_ADAPTIVE_LEVELS,
    METHODS,
    PRESETS,
    READABLE_TILE,
    SPLIT_THRESHOLD,
    ConfigError,
    MosaicConfig,
    TemporalSettings,
    parse_size,
)

if TYPE_CHECKING:
    from mosaic.video import VideoStats

STARTED = time.perf_counter()  # the command's start, for --timing's start-up figure

EPILOG = """examples:
  mosaic --demo                                   render the built-in demo video
  mosaic photo.jpg -o mosaic.png --tiles photos/  one image
  mosaic clip.mp4 -o mosaic.mp4 --tiles photos/ --preset vivid --cell 12
  mosaic clip.mp4 -o mosaic.mp4 --tiles photos/ --encoder-preset slow --crf 18 --timing
  mosaic photo.jpg -o print.tif --tiles photos/ --tile-size 256   a print, written in strips
  mosaic pool photos/ --against photo.jpg --sheet sheet.png       what the pool holds and lacks
  mosaic videos/ -o mosaics/ --tiles photos/ --ray   every video of a folder, on Ray
  mosaic --clear-cache                            delete the tile caches

exit status: 0 done, 1 failed (or, with --strict, an input ended early), 2 usage error,
130 interrupted.
"""

# Options that only a video output takes (their argparse names), and the --timing table, which
# only one video prints.
VIDEO_OPTIONS = ("fps", "decoder", "decode_device", "encoder_preset", "crf", "strict")
ONE_VIDEO_OPTIONS = ("timing",)
# Settings of TemporalSettings that are options of the same name (and --no-follow-motion).
TEMPORAL_OPTIONS = ("switch_bonus", "change_threshold")
# The usage error of --adaptive for a video (the demo, a folder of videos).
ADAPTIVE_VIDEO = "--adaptive: adaptive cells are for an image, not a video"
# Settings of MosaicConfig that are options of the same name.
CONFIG_OPTIONS = (
    "cell",
    "grid",
    "tile_size",
    "min_distance",
    "color",
    "blend",
    "adaptive",
    "split_threshold",
    "saturation",
    "method",
    "device",
    "seed",
)
# The stages of VideoStats.stage_seconds in pipeline order (the dict has them as first run); on
# a GPU "upload" and "step" (the whole frame step) stand for features to render.
STAGES = (
    "open",
    "decode",
    "upload",
    "features",
    "assignment",
    "colour",
    "render",
    "step",
    "encode",
    "metrics",
    "waiting_input",
    "waiting_output",
    "flush",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaic",
        description="Rebuild an image or a video as a photo mosaic of your photos.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        nargs="?",
        help="image or video file, or a folder of videos (then OUTPUT is a folder)",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="output file (.png/.jpg/.webp for an image, .mp4/.mkv/.mov/.webm for a video)",
    )
    parser.add_argument("--tiles", metavar="DIR", help="folder of photos to build the mosaic from")
    parser.add_argument(
        "--frames", metavar="DIR", help="a folder of numbered images to render as a video"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="render the built-in demo (also what `mosaic` alone does)",
    )
    video = parser.add_argument_group("video")
    video.add_argument(
        "--fps",
        type=float,
        help="output frame rate: a --frames folder's (default 25), or a video resampled to it "
        "(default: the video's own)",
    )
    video.add_argument(
        "--decoder",
        choices=VIDEO_BACKENDS,
        default="auto",
        help="the video decoder (default auto: PyAV on a CPU, torchcodec with NVDEC on CUDA)",
    )
    video.add_argument(
        "--decode-device",
        choices=DECODE_DEVICES,
        default="auto",
        help="where videos are decoded, apart from --device (cuda: NVDEC through torchcodec; "
        "default auto: with the processing)",
    )
    video.add_argument(
        "--encoder-preset",
        metavar="NAME",
        help="the encoder's speed preset, libx264 ultrafast ... placebo or NVENC p1 ... p7 "
        "(default superfast / p4); slower is smaller at the same quality",
    )
    video.add_argument(
        "--crf",
        type=int,
        metavar="N",
        help="video quality, 0 to 51, lower is better and larger (default 20)",
    )
    video.add_argument(
        "--switch-bonus",
        type=float,
        metavar="X",
        help="how strongly a cell keeps its tile from frame to frame, in units of the last "
        f"frame's mean cost: 0 picks every frame afresh (flickers), default "
        f"{TemporalSettings.switch_bonus:g}",
    )
    video.add_argument(
        "--change-threshold",
        type=float,
        metavar="D",
        help="how far a cell's content may drift (Oklab distance) before it may change tile: "
        f"higher holds tiles longer, lower follows the content (default "
        f"{TemporalSettings.change_threshold:g})",
    )
    video.add_argument(
        "--no-follow-motion",
        action="store_true",
        help="keep every tile in its cell instead of moving the tiles with the camera",
    )
    video.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when a damaged or cut-short input ends early (its mosaic is "
        "still written up to there, with a warning)",
    )
    looks = parser.add_argument_group("look")
    looks.add_argument(
        "--preset", choices=sorted(PRESETS), help="a named look; options below override it"
    )
    looks.add_argument(
        "--cell",
        type=_size_option(),
        metavar="N|WxH",
        help="cell size in source pixels, or width x height for non-square photos (e.g. 16x12 "
        "keeps 4:3 photos whole; default 16)",
    )
    looks.add_argument(
        "--grid", type=int, help="descriptor grid per cell: 1 = mean colour, 2-3 = structure too"
    )
    looks.add_argument(
        "--tile-size",
        type=_size_option("auto"),
        metavar="N|WxH|auto",
        help=f"tile width in the output (default auto: at least {READABLE_TILE} px, so the photos "
        "read; give the cell size to keep the input's size)",
    )
    looks.add_argument(
        "--reuse",
        help="uses allowed per tile: 0 = unlimited, 1 = unique, k, or "
        '"auto" (default: the smallest cap the pool allows)',
    )
    looks.add_argument(
        "--fair",
        action="store_true",
        default=None,
        help="fair use: every tile used before any tile repeats (each floor or ceil of "
        "cells / tiles times a frame)",
    )
    looks.add_argument(
        "--min-distance",
        type=_count_or_auto,
        metavar="N|auto",
        help="the same tile never within N cells of itself (default auto: 1 when the pool "
        "allows, so no tile sits beside itself)",
    )
    looks.add_argument(
        "--color", type=float, help="colour transfer toward each cell, 0 (none) to 1 (full)"
    )
    looks.add_argument(
        "--blend",
        type=float,
        help="opacity of the source laid over the mosaic, 0 (none, default) to 1",
    )
    looks.add_argument(
        "--adaptive",
        type=int,
        metavar="LEVELS",
        help="adaptive cells for an image: cells from --cell up to 2^LEVELS times it a side, "
        f"split where the picture has detail (a quadtree; 1 to {MAX_ADAPTIVE_LEVELS}, default 0: "
        "equal cells)",
    )
    looks.add_argument(
        "--split-threshold",
        type=float,
        metavar="ENERGY",
        help="with --adaptive, the detail above which a cell is split: the mean squared luma "
        f"step between neighbouring pixels (default {SPLIT_THRESHOLD:g}; lower: more, smaller "
        "cells)",
    )
    looks.add_argument(
        "--saturation",
        type=float,
        help="chroma of the colour-transfer target: 1 keeps the source's, above 1 is punchier",
    )
    looks.add_argument(
        "--method",
        choices=METHODS,
        help="assignment solver (default auto: exact for small problems, else the auction for "
        "a video on CUDA and windows otherwise; auction: the sync-free GPU solver with a "
        "certified gap)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="videos rendered at once for a folder of videos (default 1)",
    )
    run.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=False,
        metavar="ADDRESS",
        help="render a folder of videos on a Ray cluster: ADDRESS, else the one RAY_ADDRESS "
        "names, else a new one on this machine (pip install 'triton-mosaic[ray]')",
    )
    run.add_argument("--device", help='"auto" (default), "cpu", "cuda"')
    run.add_argument("--seed", type=int, help="seed for reproducible output (default 0)")
    run.add_argument(
        "--augment",
        action="store_true",
        help="also use mirrored and brighter/darker copies of every tile",
    )
    cache = parser.add_argument_group("tile cache")
    _add_cache_options(cache)
    cache.add_argument(
        "--clear-cache",
        action="store_true",
        help="delete the tile caches (of --cache-dir if given), then do what else is asked",
    )
    output = parser.add_argument_group("messages")
    output.add_argument(
        "--timing",
        action="store_true",
        help="after one video, print where the time went: start-up, tile pool, video, and "
        "each pipeline stage per frame (even with --quiet)",
    )
    output.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    output.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def config_from_args(args: argparse.Namespace) -> MosaicConfig:
    """The config the command line asks for: the preset (if any), then each option given."""
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in CONFIG_OPTIONS if getattr(args, name) is not None
    }
    if args.fair:
        overrides["fair"] = True
    if args.reuse is not None:
        overrides["reuse"] = args.reuse if args.reuse == "auto" else _parse_reuse(args.reuse)
    temporal = {
        name: getattr(args, name) for name in TEMPORAL_OPTIONS if getattr(args, name) is not None
    }
    if args.no_follow_motion:
        temporal["follow_motion"] = False
    if temporal:
        overrides["temporal"] = TemporalSettings(**temporal)
    if args.preset:
        return MosaicConfig.from_preset(args.preset, **overrides)
    return MosaicConfig(**overrides)


def _size_option(*words: str) -> Any:
    """argparse type: ``N`` or ``WxH`` (``parse_size``), or one of ``words``."""

    def parse(text: str) -> int | tuple[int, int] | str:
        if text in words:
            return text
        try:
            return parse_size(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _count_or_auto(text: str) -> int | str:
    """argparse type: an integer, or ``"auto"``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'an integer or "auto", got {text!r}') from None


def _parse_reuse(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--reuse must be an integer >= 0 or "auto", got {text!r}'
        ) from None


def as_options(message: str) -> str:
    """A ``ConfigError`` message in the command line's terms: ``cell`` -> ``--cell``."""
    names = "|".join((*CONFIG_OPTIONS, *TEMPORAL_OPTIONS, "reuse", "fair"))
    return re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


def build_pool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaic pool",
        description="What a tile folder holds: the tiles, what was skipped and why, which "
        "colours of a picture or video it lacks, and a contact sheet of every tile.",
    )
    parser.add_argument("folder", metavar="DIR", help="the tile folder")
    against = "an image or video whose colours the pool should cover (a video: 8 of its frames)"
    parser.add_argument("--against", metavar="FILE", help=against)
    parser.add_argument("--sheet", metavar="PNG", help="write a contact sheet of every tile")
    parser.add_argument(
        "--cell", type=int, default=16, help="cell size in --against's pixels (default 16)"
    )
    parser.add_argument("--augment", action="store_true", help="as for a render")
    _add_cache_options(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def _add_cache_options(group: Any) -> None:
    """``--cache-dir`` and ``--no-cache``, for a render and for ``mosaic pool``."""
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the tile caches live (default $XDG_CACHE_HOME/triton-mosaic, else "
        "~/.cache/triton-mosaic); never inside the tile folder",
    )
    group.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pool"]:  # a subcommand; a file named "pool" is ./pool
        parser = build_pool_parser()
        args = parser.parse_args(argv[1:])
        run = lambda: _pool_command(args)
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        run = lambda: _run(parser, args)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            return run()
        except KeyboardInterrupt:
            print("mosaic: interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # every failure is one line unless --debug
            if args.debug:
                raise
            message = first_line(error)
            if isinstance(error, ConfigError):
                message = as_options(message)
            print(f"mosaic: error: {message}", file=sys.stderr)
            return 1


def entry_point() -> NoReturn:
    """The ``mosaic`` program: ``main()`` on ``sys.argv``, then ``exit_now``."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without the interpreter's teardown.

    With torch loaded, the teardown's garbage collections walk every object torch made: 1-2.5 s
    on a busy 2-core machine after the output is written, for nothing (bench/README.md). What
    of a normal exit matters here still happens: the exit handlers run and stdout and stderr are
    flushed. By then every file the command wrote is closed and renamed, and its threads have
    finished.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """Warnings as one line each, like the errors (``warnings.showwarning``'s signature)."""
    text = first_line(message) if isinstance(message, Warning) else str(message)
    print(f"mosaic: warning: {text}", file=sys.stderr)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    nothing_given = args.input is args.frames is args.output is args.tiles is None
    if args.clear_cache:
        _clear_cache(args)
        if nothing_given and not args.demo:
            return 0
    config = config_from_args(args)
    video_options = {
        "fps": args.fps,
        "decoder": args.decoder,
        "decode_device": args.decode_device,
        "encoder_preset": args.encoder_preset,
        "crf": args.crf,
    }
    if args.demo or nothing_given:
        from mosaic.demo import run_demo

        if config.adaptive:
            parser.error(ADAPTIVE_VIDEO)
        _check_encoder_options(args, Path("demo.mp4"))  # the demo writes an .mp4
        stats = run_demo(config, quiet=args.quiet, timing=args.timing, **video_options)
        return _report_video(stats, args)
    if args.input is not None and args.frames is not None:
        parser.error("give either INPUT or --frames DIR, not both")
    if (args.input is None and args.frames is None) or args.output is None or args.tiles is None:
        parser.error(
            "INPUT (or --frames DIR), -o OUTPUT and --tiles DIR are all needed (or --demo)"
        )
    if args.decoder == "pyav" and args.decode_device == "cuda":
        parser.error("--decode-device cuda: PyAV decodes on the CPU; NVDEC is torchcodec's")
    source, output = Path(args.input or args.frames), Path(args.output)
    kind = _input_kind(source, frames=args.frames is not None)
    if kind == "image":
        video_only = (*VIDEO_OPTIONS, *ONE_VIDEO_OPTIONS, *TEMPORAL_OPTIONS, "no_follow_motion")
        _refuse_options(parser, args, video_only, "for an image")
    if kind == "folder":
        _refuse_options(parser, args, ONE_VIDEO_OPTIONS, "for a folder of videos")
    if args.ray is not False:
        _check_ray(parser, args, kind)
    if kind != "image" and config.adaptive:
        parser.error(ADAPTIVE_VIDEO)
    _check_output(output, source, folder=kind == "folder")
    if kind != "folder":  # a folder's outputs are named by render_folder
        from adapters.sinks import check_output

        check_output(output, video=kind == "video")  # its container or image type, before any work
    # A folder's videos are written as .mp4 (mosaic.batch.output_path).
    _check_encoder_options(args, output / "video.mp4" if kind == "folder" else output)
    if kind == "video":
        _probe_video(source, config, args)

    from mosaic.pool import TilePool

    frame = None
    if kind == "image":  # read now: its size says whether the mosaic is drawn in strips
        from adapters import read_image

        frame = read_image(source)
    in_strips = frame is not None and _drawn_in_strips(frame, output, config)
    pool_started = time.perf_counter()
    pool = TilePool.from_dir(
        args.tiles,
        # A print's tiles are decoded at print size strip by strip: the pool only describes them.
        tile_size=_pool_tile_size(config.replace(tile_size=None) if in_strips else config),
        augment=args.augment,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    pool_seconds = time.perf_counter() - pool_started
    if not args.quiet:
        print(pool.summary(), file=sys.stderr)

    if kind == "image":
        from adapters import write_image
        from mosaic.image import render_image_with_stats
        from mosaic.print_size import render_print

        if in_strips:
            from tqdm import tqdm

            bar = tqdm(unit="strip", desc="mosaic", disable=args.quiet)
            with bar:
                image_stats = render_print(
                    frame, output, pool, config, on_progress=_bar_update(bar)
                )
        else:
            image, image_stats = render_image_with_stats(frame, pool, config)
            write_image(output, image)
        if not args.quiet:
            print(image_stats.summary(), file=sys.stderr)
            print(f"look: {image_stats.settings}", file=sys.stderr)
            print(f"wrote {output}", file=sys.stderr)
        return 0

    if kind == "folder":
        from mosaic.batch import render_folder

        report = render_folder(
            source,
            output,
            pool,
            config,
            jobs=args.jobs,
            ray=args.ray,
            progress=not args.quiet,
            log=(lambda line: None) if args.quiet else None,
            **video_options,
        )
        if not args.quiet:
            print(f"{report.summary()}; outputs in {output}", file=sys.stderr)
        return 1 if report.failed or (args.strict and report.ended_early) else 0

    from mosaic.video import render_video

    video_started = time.perf_counter()
    stats = render_video(
        source, output, pool, config, progress=not args.quiet, timing=args.timing, **video_options
    )
    video_seconds = time.perf_counter() - video_started
    split = (pool_started - STARTED, pool_seconds, video_seconds)
    code = _report_video(stats, args, split)
    if not args.quiet:
        print(f"wrote {output}", file=sys.stderr)
    return code


def _drawn_in_strips(frame: Any, output: Path, config: MosaicConfig) -> bool:
    """Whether the still's mosaic is too large to hold (``mosaic.print_size``); then the output
    must be a type written in strips (a one-line error otherwise, before any work)."""
    from adapters.strips import STRIP_SUFFIXES
    from mosaic.print_size import STRIPS_ABOVE_BYTES

    height, width = config.output_size(*frame.shape[-2:])
    if 3 * height * width <= STRIPS_ABOVE_BYTES:
        return False
    if config.adaptive:
        raise ValueError(
            f"a {width}x{height} mosaic is drawn in strips, which adaptive cells do not do yet: "
            "lower --tile-size, or leave out --adaptive"
        )
    if output.suffix.lower() not in STRIP_SUFFIXES:
        raise ValueError(
            f"a {width}x{height} mosaic is written in strips: use "
            f"{', '.join(STRIP_SUFFIXES)} for {output}"
        )
    return True


def _bar_update(bar: Any) -> Any:
    """``on_progress(done, total)`` moving a tqdm bar."""

    def update(done: int, total: int | None) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


def _pool_command(args: argparse.Namespace) -> int:
    """``mosaic pool DIR``: the pool's report on stdout, the contact sheet if asked."""
    from adapters import is_image, open_source, read_image, write_image
    from mosaic.pool import TilePool
    from mosaic.pool_report import colour_coverage, contact_sheet

    if args.sheet is not None:
        from adapters.sinks import check_output

        check_output(Path(args.sheet), video=False)
    if args.against is not None and not Path(args.against).exists():
        raise FileNotFoundError(f"--against: not found: {args.against}")
    pool = TilePool.from_dir(
        args.folder,
        augment=args.augment,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=False,
    )
    print(pool.summary())
    for path, reason in pool.skipped:
        print(f"skipped {path}: {reason}")
    if args.against is not None:
        if is_image(args.against):
            pictures = [read_image(args.against)]
        else:
            with open_source(args.against, device="cpu") as source:
                pictures = list(source.sample_uniform(min(8, len(source))))
        print(f"against {args.against}: {colour_coverage(pool, pictures, args.cell).summary()}")
    if args.sheet is not None:
        write_image(args.sheet, contact_sheet(pool))
        print(f"wrote the contact sheet {args.sheet}")
    return 0


def _report_video(
    stats: VideoStats, args: argparse.Namespace, split: tuple[float, float, float] | None = None
) -> int:
    """Print a video's summary and, with --timing, where the time went (``split``: see
    ``run_split``); return the exit status the run earns."""
    if not args.quiet:
        print(stats.summary(), file=sys.stderr)
        print(f"look: {stats.settings}", file=sys.stderr)
    if args.timing:
        if split is not None:
            print(run_split(*split, stats), file=sys.stderr)
        print(timing_table(stats), file=sys.stderr)
    return 1 if args.strict and stats.ended_early_at is not None else 0


def run_split(startup: float, pool: float, video: float, stats: VideoStats) -> str:
    """One line: seconds from the command's start to the tile pool (imports, checks, the input
    probed), loading the pool, ``render_video``, and of that the encoder's tail after the last
    frame was handed over."""
    return (
        f"start-up {startup:.2f} s, tile pool {pool:.2f} s, video {video:.2f} s "
        f"(encoder tail {stats.stage_seconds.get('flush', 0.0):.2f} s)"
    )


def timing_table(stats: VideoStats) -> str:
    """The stages' wall-clock and CPU times of a ``render_video(timing=True)`` run, in ms per
    frame, one stage a line. Stages run in parallel threads, so their times overlap."""
    names = [name for name in STAGES if name in stats.stage_seconds]
    names += sorted(set(stats.stage_seconds) - set(STAGES))
    per_frame = 1000 / max(stats.frames, 1)
    lines = [f"{'ms per frame':<16}{'wall':>8}{'cpu':>8}"]
    for name in names:
        wall = stats.stage_seconds[name] * per_frame
        cpu = stats.stage_cpu_seconds.get(name, 0.0) * per_frame
        lines.append(f"{name:<16}{wall:>8.2f}{cpu:>8.2f}")
    return "\n".join(lines)


def _clear_cache(args: argparse.Namespace) -> None:
    from mosaic.cache import cache_root, clear_cache

    root = Path(args.cache_dir).expanduser() if args.cache_dir else cache_root()
    files, size = clear_cache(root)
    if not args.quiet:
        print(f"removed {files} cache files ({size / 2**20:.1f} MiB) from {root}", file=sys.stderr)


def _refuse_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str], where: str
) -> None:
    """A usage error for any of the options ``names`` given ``where`` they do not apply."""
    given = [
        "--" + name.replace("_", "-")
        for name in names
        if getattr(args, name) != parser.get_default(name)  # given, even as 0
    ]
    if given:
        parser.error(f"{', '.join(given)}: only for a video output, not {where}")


def _check_ray(parser: argparse.ArgumentParser, args: argparse.Namespace, kind: str) -> None:
    """``--ray`` is for a folder of videos without ``--jobs``, and needs Ray installed: a usage
    error, or one line saying how to install it, before any work."""
    if kind != "folder":
        parser.error("--ray: only for a folder of videos")
    if args.jobs != parser.get_default("jobs"):
        parser.error("--jobs: local threads, not with --ray (Ray's CPUs and GPUs decide)")
    from mosaic.distributed import import_ray

    import_ray()


def _check_encoder_options(args: argparse.Namespace, video: Path) -> None:
    """Fail early, in one line, on a --crf or --encoder-preset the encoder of the output file
    ``video`` would refuse."""
    from adapters.encoders import check_crf, check_preset
    from adapters.sinks import video_encoder

    if args.crf is None and args.encoder_preset is None:
        return
    encoder = video_encoder(video)  # the one the output's container gets
    try:
        if args.crf is not None:
            check_crf(encoder, args.crf)
    except ValueError as error:
        raise ValueError(f"--crf: {error}") from None
    try:
        if args.encoder_preset is not None:
            check_preset(encoder, args.encoder_preset)
    except ValueError as error:
        raise ValueError(f"--encoder-preset: {error}") from None


def _input_kind(source: Path, *, frames: bool) -> str:
    """ "image", "video" or "folder" (of videos); fails early, in one line, on unusable input."""
    from adapters import is_image

    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    if frames:
        if not source.is_dir():
            raise NotADirectoryError(f"--frames needs a folder of numbered images: {source}")
        return "video"
    if source.is_dir():
        return "folder"
    if is_image(source):
        return "image"
    return "video"


def _probe_video(source: Path, config: MosaicConfig, args: argparse.Namespace) -> None:
    """Open the video (or folder of frames) as the pipeline will, so that a corrupt or
    non-video input fails here, in one line, before the tile pool loads."""
    from adapters import probe
    from mosaic.video import pipeline_decoder

    probe(source, backend=pipeline_decoder(args.decoder, config.torch_device(), args.decode_device))


def _check_output(output: Path, source: Path, *, folder: bool) -> None:
    """Refuse an output that is the input or cannot be written, before any work is done."""
    if output.exists() and output.resolve() == source.resolve():
        raise ValueError(f"the output is the input ({source}): refusing to overwrite it")
    target = output if folder else output.parent
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if folder and output.exists() and not output.is_dir():
        raise NotADirectoryError(f"the output for a folder of videos must be a folder: {output}")
    if not folder and not target.is_dir():
        raise FileNotFoundError(f"the output folder does not exist: {target}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {existing}")


def _pool_tile_size(config: MosaicConfig) -> int | tuple[int, int]:
    """The size tiles are loaded at, ``TilePool.from_dir``'s ``tile_size``: the output tile,
    cropped to the cell's aspect, scaled by a whole factor to at least ``READABLE_TILE`` px a
    side so descriptors stay sharp, and rounded up to a multiple of the grid."""
    (cell_h, cell_w), (height, width) = config.cell_shape, config.tile_shape
    if min(height, width) < READABLE_TILE or height % config.grid or width % config.grid:
        factor = -(-READABLE_TILE // min(cell_h, cell_w))
        height, width = cell_h * factor, cell_w * factor
    return height if height == width else (width, height)


if __name__ == "__main__":
    entry_point()
