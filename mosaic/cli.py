"""The ``mosaic`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from adapters import VIDEO_BACKENDS, check_output
from mosaic.config import PRESETS, MosaicConfig

if TYPE_CHECKING:
    from mosaic.video import VideoStats

EPILOG = """examples:
  mosaic --demo                                   render the built-in demo video
  mosaic photo.jpg -o mosaic.png --tiles photos/  one image
  mosaic clip.mp4 -o mosaic.mp4 --tiles photos/ --preset vivid --cell 12
  mosaic clip.mp4 -o mosaic.mp4 --tiles photos/ --encoder-preset slow --crf 18 --timing
"""

# Options that only one video or a --frames folder takes (their argparse names).
VIDEO_OPTIONS = ("fps", "decoder", "encoder_preset", "crf", "timing")
# The stages of VideoStats.stage_seconds in pipeline order (the dict has them as first run).
STAGES = (
    "open",
    "decode",
    "features",
    "assignment",
    "colour",
    "render",
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
    parser.add_argument("--fps", type=float, help="frame rate of a --frames folder (default 25)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="render the built-in demo (also what `mosaic` alone does)",
    )
    parser.add_argument(
        "--decoder",
        choices=VIDEO_BACKENDS,
        default="auto",
        help="the video decoder (default auto: PyAV on a CPU, torchcodec with NVDEC on CUDA)",
    )
    video = parser.add_argument_group("video output")
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
    looks = parser.add_argument_group("look")
    looks.add_argument(
        "--preset", choices=sorted(PRESETS), help="a named look; options below override it"
    )
    looks.add_argument("--cell", type=int, help="cell size in source pixels (default 16)")
    looks.add_argument(
        "--grid", type=int, help="descriptor grid per cell: 1 = mean colour, 2-3 = structure too"
    )
    looks.add_argument(
        "--tile-size",
        type=int,
        help="tile size in the output (default: the cell size, so the output has the input's size)",
    )
    looks.add_argument(
        "--reuse",
        help="uses allowed per tile: 0 = unlimited, 1 = unique, k, or "
        '"auto" (default: the smallest cap the pool allows)',
    )
    looks.add_argument(
        "--min-distance", type=int, help="the same tile never within this many cells of itself"
    )
    looks.add_argument(
        "--color", type=float, help="colour transfer toward each cell, 0 (none) to 1 (full)"
    )
    looks.add_argument(
        "--saturation",
        type=float,
        help="chroma of the colour-transfer target: 1 keeps the source's, above 1 is punchier",
    )
    looks.add_argument(
        "--method",
        choices=["auto", "exact", "windows"],
        help="assignment solver (default auto: by problem size)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="videos rendered at once for a folder of videos (default 1)",
    )
    run.add_argument("--device", help='"auto" (default), "cpu", "cuda"')
    run.add_argument("--seed", type=int, help="seed for reproducible output (default 0)")
    run.add_argument(
        "--augment",
        action="store_true",
        help="also use mirrored and brighter/darker copies of every tile",
    )
    run.add_argument("--no-cache", action="store_true", help="do not read or write the tile cache")
    run.add_argument(
        "--timing",
        action="store_true",
        help="print the time of each pipeline stage per frame after a video (even with --quiet)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    run.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def config_from_args(args: argparse.Namespace) -> MosaicConfig:
    """The config the command line asks for: the preset (if any), then each option given."""
    overrides = {
        name: getattr(args, name)
        for name in (
            "cell",
            "grid",
            "tile_size",
            "min_distance",
            "color",
            "saturation",
            "method",
            "device",
            "seed",
        )
        if getattr(args, name) is not None
    }
    if args.reuse is not None:
        overrides["reuse"] = args.reuse if args.reuse == "auto" else _parse_reuse(args.reuse)
    if args.preset:
        return MosaicConfig.from_preset(args.preset, **overrides)
    return MosaicConfig(**overrides)


def _parse_reuse(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--reuse must be an integer >= 0 or "auto", got {text!r}'
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except KeyboardInterrupt:
        print("mosaic: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure is one line unless --debug
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"mosaic: error: {message}", file=sys.stderr)
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.demo or (args.input is args.frames is args.output is args.tiles is None):
        from mosaic.demo import run_demo

        _refuse_video_options(parser, args, "with --demo")
        return run_demo(config_from_args(args), quiet=args.quiet)
    if args.input is not None and args.frames is not None:
        parser.error("give either INPUT or --frames DIR, not both")
    if (args.input is None and args.frames is None) or args.output is None or args.tiles is None:
        parser.error(
            "INPUT (or --frames DIR), -o OUTPUT and --tiles DIR are all needed (or --demo)"
        )
    config = config_from_args(args)
    source, output = Path(args.input or args.frames), Path(args.output)
    kind = _input_kind(source, frames=args.frames is not None)
    _check_output(output, source, folder=kind == "folder")
    if kind != "folder":  # a folder's outputs are named by render_folder
        check_output(output, video=kind == "video")  # its container or image type, before any work
    if kind != "video":
        _refuse_video_options(parser, args, "for an image" if kind == "image" else "for a folder")
    _check_encoder_options(args)

    from mosaic.pool import TilePool

    started = time.perf_counter()
    pool = TilePool.from_dir(
        args.tiles,
        tile_size=_pool_tile_size(config),
        augment=args.augment,
        cache=not args.no_cache,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(pool.summary(), file=sys.stderr)

    if kind == "image":
        from adapters import write_image
        from mosaic.image import render_image

        write_image(output, render_image(source, pool, config))
        if not args.quiet:
            print(f"wrote {output} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        return 0

    if kind == "folder":
        from mosaic.batch import render_folder

        report = render_folder(
            source,
            output,
            pool,
            config,
            jobs=args.jobs,
            progress=not args.quiet,
            log=(lambda line: None) if args.quiet else None,
        )
        if not args.quiet:
            print(f"{report.summary()}; outputs in {output}", file=sys.stderr)
        return 1 if report.failed else 0

    from mosaic.video import render_video

    stats = render_video(
        source,
        output,
        pool,
        config,
        progress=not args.quiet,
        fps=args.fps,
        decoder=args.decoder,
        preset=args.encoder_preset,
        crf=args.crf,
        timing=args.timing,
    )
    if not args.quiet:
        print(stats.summary(), file=sys.stderr)
    if args.timing:
        print(timing_table(stats), file=sys.stderr)
    if not args.quiet:
        print(f"wrote {output}", file=sys.stderr)
    return 0


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


def _refuse_video_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, where: str
) -> None:
    """A usage error for options that only one video or a --frames folder takes."""
    given = [
        "--" + name.replace("_", "-")
        for name in VIDEO_OPTIONS
        if getattr(args, name) != parser.get_default(name)  # given, even as 0
    ]
    if given:
        parser.error(f"{', '.join(given)}: only for a video or --frames output, not {where}")


def _check_encoder_options(args: argparse.Namespace) -> None:
    """Fail early, in one line, on a --crf or --encoder-preset the encoder would refuse."""
    from adapters.encoders import check_crf, check_preset
    from adapters.sinks import video_encoder

    if args.crf is None and args.encoder_preset is None:
        return
    encoder = video_encoder(args.output)  # the one the output's container gets
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
    from adapters import is_image, probe

    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    if frames:
        if not source.is_dir():
            raise NotADirectoryError(f"--frames needs a folder of numbered images: {source}")
        probe(source)  # an empty folder or unreadable frames fail here, before any work
        return "video"
    if source.is_dir():
        return "folder"
    if is_image(source):
        return "image"
    probe(source)  # a truncated, corrupt or non-video file fails here, before the pool loads
    return "video"


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


def _pool_tile_size(config: MosaicConfig) -> int:
    """Tiles are loaded at the output tile size, but at least 32 px so descriptors stay sharp."""
    size = max(config.tile_size or config.cell, 32)
    return size + (-size % config.grid)


if __name__ == "__main__":
    sys.exit(main())
