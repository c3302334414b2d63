"""``render_video``: a video in, a mosaic video out, streamed with flat memory."""

from __future__ import annotations

import bisect
import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import torch
from tqdm import tqdm

from adapters import (
    VIDEO_BACKENDS,
    DecodeError,
    FrameSource,
    VideoInfo,
    check_output,
    open_sink,
    open_source,
)
from adapters.info import as_fraction
from adapters.pyav_source import pyav_problem
from mosaic.assign import UsageReport
from mosaic.config import ConfigError, MosaicConfig, as_config
from mosaic.engine import FrameRenderer
from mosaic.pipeline import render_frames
from mosaic.pool import TilePool
from mosaic.reports import ProgressCallback, assignment_summary, warn_if_repetitive
from mosaic.stages import StageTimer


@dataclass(frozen=True)
class VideoStats:
    """What ``render_video`` did.

    ``churn`` is the mean fraction of cells whose tile changed between consecutive frames
    (``churn_p95`` its 95th percentile over frame pairs; scene cuts excluded). The flicker a
    viewer sees is ``spurious_swaps``: the fraction of cells, in the median frame pair, whose
    tile was swapped although their part of the source was calm (its pixels changed by less than
    ``mosaic.metrics.CALM_CHANGE`` levels on average), ``spurious_swaps_p95`` its 95th
    percentile; beside it ``content_swaps``, the cells swapped where the source changed, and
    ``source_changes``, the cells whose source changed, both in the median frame pair. A tile
    that moved to a neighbouring cell with the content is not a swap; scene cuts are excluded.
    ``fidelity`` the mean Oklab distance between each cell of the source and of the mosaic,
    averaged over the first frame and every ``mosaic.pipeline.FIDELITY_EVERY``-th after it.
    ``gap_mean`` and ``gap_max`` are the mean and largest certified gap of the assignment over the
    frames (method ``"auction"``: an upper bound on how far each frame's assignment is above its
    optimum, as a fraction; 0 for exact methods; ``None`` for ``"windows"``). ``usage`` counts the
    tiles used over the video (distinct, the most used, what the spacing rule left; ``most_used``
    names that tile) and ``settings`` is the look with its ``"auto"`` settings resolved.
    ``stage_seconds`` is the wall-clock time of each pipeline stage (``"open"``: the decoder and
    encoder starting, ``"decode"``, ``"features"``, ``"assignment"``, ``"colour"``, ``"render"``,
    ``"encode"``, ``"metrics"``, the main thread's ``"waiting_input"`` and ``"waiting_output"``,
    and ``"flush"``: the last frames through the encoder and the file finished; on CUDA
    ``"upload"`` and ``"step"``, the whole frame step, in place of the four stages from
    ``"features"`` to ``"render"``) summed over the run, and ``stage_cpu_seconds`` the CPU
    time of the thread that ran it; both are empty unless ``render_video(timing=True)``.
    Stages run in several threads at once, so their times add up to more than ``seconds``.
    ``ended_early_at`` is the input frame at which a damaged or cut-short input stopped decoding
    (the mosaic holds the frames before it), ``None`` for a whole input.
    """

    frames: int
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    fps: Fraction
    seconds: float
    render_fps: float
    decoder: str
    encoder: str
    device: str
    method: str
    reuse: int
    grid: tuple[int, int]
    churn: float
    churn_p95: float
    fidelity: float
    scene_cuts: int
    ended_early_at: int | None = None
    gap_mean: float | None = None
    gap_max: float | None = None
    spurious_swaps: float = 0.0
    spurious_swaps_p95: float = 0.0
    content_swaps: float = 0.0
    source_changes: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    usage: UsageReport | None = None
    most_used: str = ""
    settings: str = ""

    def summary(self) -> str:
        (w, h), (ow, oh) = self.input_size, self.output_size
        ended = self.ended_early_at
        ended_note = "" if ended is None else f"; the input ended early, at frame {ended}"
        return (
            f"{self.frames} frames {w}x{h} -> {ow}x{oh} at {float(self.fps):.3g} fps in "
            f"{self.seconds:.1f} s ({self.render_fps:.1f} frames/s; decode {self.decoder}, "
            f"encode {self.encoder}, {self.device}); "
            f"{assignment_summary(self.grid, self.method, self.reuse)}; "
            f"churn {100 * self.churn:.1f} %, spurious swaps {100 * self.spurious_swaps:.2f} % "
            f"a frame (swaps with the content {100 * self.content_swaps:.1f} %, source changing "
            f"{100 * self.source_changes:.1f} %), fidelity {self.fidelity:.4f}, "
            f"scene cuts {self.scene_cuts}"
            + ("" if self.gap_max is None else f", certified gap <= {100 * self.gap_max:.2f} %")
            + ("" if self.usage is None else f"; {self.usage.summary(self.most_used)}")
            + ended_note
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["fps"] = str(self.fps)
        return data


def render_video(
    source: str | Path,
    output: str | Path,
    pool: TilePool,
    config: MosaicConfig | str | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    decoder: str = "auto",
    decode_device: str = "auto",
    fps: float | Fraction | None = None,
    encoder_preset: str | None = None,
    crf: int | None = None,
    timing: bool = False,
    segment: tuple[int, int] | None = None,
    warmup: int = 0,
) -> VideoStats:
    """Turn a video (or a folder of numbered frames) into a mosaic video with its audio.

    Decoding, the mosaic's stages and encoding run at once (``render_frames``), so memory stays
    flat however long the video. The output is written to a temporary file beside ``output``
    and renamed at the end.

    Args:
        config: a ``MosaicConfig``, a preset's name (``"vivid"``), or ``None`` for the defaults.
        progress: show a progress bar (tqdm) on stderr.
        on_progress: called as ``on_progress(done, total)`` from this thread after each batch
            of frames is assigned its tiles: frames done so far, and the frames to render
            (``None`` if unknown).
        decoder: the video backend (``adapters.VIDEO_BACKENDS``; see ``pipeline_decoder`` for
            ``"auto"``), ``batch_size`` the frames it decodes per call (default
            ``decode_batch_size``).
        decode_device: where the video is decoded, ``"auto"``, ``"cpu"`` or ``"cuda"`` (NVDEC,
            torchcodec), apart from ``config.device``, where the mosaic is computed.
        fps: the output's frame rate. A folder of frames plays at it (default 25); a video is
            resampled to it (each output frame shows the input frame nearest its time, as
            FFmpeg's ``fps`` filter; same duration, audio untouched) or keeps its own rate.
        encoder_preset: the encoder's speed preset, as ``VideoSink(preset=...)`` takes it (its
            default when ``None``: libx264 ``superfast``, a quarter less CPU than ``veryfast``
            at equal or better quality for larger files; ``ultrafast`` takes less still, see
            bench/README.md); ``crf`` its quality (lower is better; ``VideoSink``'s default when
            ``None``).
        timing: fill the stats' ``stage_seconds`` (on CUDA it synchronises the device around
            each stage, a little slower).
        segment: ``(start, stop)``: render only output frames ``start`` to ``stop - 1``, with
            no audio (one part of a video split for several workers, joined afterwards by
            ``adapters.concat_videos``). The ``warmup`` frames before ``start`` (as many as
            there are) go through the assignment first and are not written: from a scene cut
            among them on, the tiles are those a whole run chooses. The stats count the written
            frames.

    A damaged or cut-short input (a download that stopped) renders every frame up to where it
    stops decoding: the output is finished properly, ``VideoStats.ended_early_at`` names that
    frame and a ``RuntimeWarning`` says so in one line. An input that decodes no frame raises
    ``adapters.SourceError``.
    """
    config = as_config(config)
    if config.adaptive:
        raise ConfigError("adaptive cells are for still images; set adaptive=0 for a video")
    source, output = Path(source), Path(output)
    if segment is not None and not 0 <= segment[0] < segment[1]:
        raise ValueError(f"a segment is (start, stop) with 0 <= start < stop, got {segment}")
    check_output(output, video=True)  # a name no sink writes fails here, before any work
    renderer = FrameRenderer(pool, config)
    timer = StageTimer(renderer.device, enabled=timing)
    started = time.perf_counter()
    with timer.stage("open"):
        # Frames come as NHWC, the decoder's own layout, and are used as (3, H, W) views: no
        # copy. On a CPU the decoder gets one thread; the other stages need the cores more.
        frames_in = open_source(
            source,
            device=renderer.device,
            decode_device=decode_device,
            backend=pipeline_decoder(decoder, renderer.device, decode_device),
            batch_size=batch_size or decode_batch_size(renderer.device),
            fps=fps,
            layout="NHWC",
            num_threads=1 if renderer.device.type == "cpu" else 0,
        )
    with frames_in:
        if frames_in.device.type == "cuda" and frames_in.decode_device == "cpu":
            # Frames decoded on the CPU stay there: the GPU executor uploads them from pinned
            # memory on its own stream, where the source would copy each from pageable memory.
            frames_in.device = torch.device("cpu")
        info = frames_in.info
        out_fps = info.fps if fps is None else as_fraction(fps)
        wanted = resampled_indices(info.num_frames or 0, info.fps, out_fps)
        rows, cols = renderer.grid_shape(info.height, info.width)
        reuse = renderer.reuse_for(info.height, info.width)  # fails early if the pool is too small
        warn_if_repetitive(config, reuse, rows * cols, renderer.pool_size)
        out_h, out_w = renderer.output_size(info.height, info.width)
        audio = source if info.has_audio else None
        skipped = 0  # warm-up frames assigned but not written
        if segment is not None:
            skipped = min(warmup, segment[0])
            wanted, audio = wanted[segment[0] - skipped : segment[1]], None
        bar = tqdm(
            total=len(wanted), unit="frame", disable=not progress, smoothing=0.1, desc="mosaic"
        )
        done = 0

        def advance(frames: int) -> None:
            nonlocal done
            done += frames
            bar.update(frames)
            if on_progress is not None:
                on_progress(done, len(wanted) or None)

        stopped: list[DecodeError] = []
        with bar, contextlib.ExitStack() as closing:
            with timer.stage("open"):
                pixel_format = sink_pixel_format(renderer.device)
                sink = closing.enter_context(
                    open_sink(
                        output,
                        **encoded_size(out_w, out_h, pixel_format),
                        fps=out_fps,
                        audio_from=audio,
                        preset=encoder_preset,
                        crf=crf,
                        pixel_format=pixel_format,
                    )
                )
            frames = decodable_batches(frames_in, wanted, stopped)
            summary = render_frames(
                frames,
                renderer,
                _after(skipped, sink.write),
                timer=timer,
                on_batch=advance,
                pixel_format=pixel_format,
            )
            with timer.stage("flush"):  # the encoder's last frames and the file's index
                closing.close()
        encoder = sink.encoding  # the encoder, its preset, quality and threads
    seconds = time.perf_counter() - started
    ended_at = _ended_early_at(source, info, stopped)
    written = max(summary.frames - skipped, 0)
    usage = renderer.usage.read()
    return VideoStats(
        frames=written,
        input_size=(info.width, info.height),
        output_size=(out_w, out_h),
        fps=out_fps,
        seconds=seconds,
        render_fps=written / seconds if seconds > 0 else 0.0,
        decoder=frames_in.decoder,
        encoder=encoder,
        device=str(renderer.device),
        method=summary.method,
        reuse=reuse,
        grid=(rows, cols),
        fidelity=summary.fidelity,
        ended_early_at=ended_at,
        **asdict(summary.tally),
        stage_seconds=dict(timer.seconds),
        stage_cpu_seconds=dict(timer.cpu_seconds),
        usage=usage,
        most_used=renderer.sources[usage.most_used],
        settings=renderer.settings_summary(info.height, info.width),
    )


def _after(count: int, write: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
    """``write``, passed every call but the first ``count`` (called from one thread)."""
    if count == 0:
        return write
    remaining = count

    def write_after(image: torch.Tensor) -> None:
        nonlocal remaining
        if remaining:
            remaining -= 1
        else:
            write(image)

    return write_after


def resampled_indices(num_frames: int, fps: Fraction, target: Fraction) -> Sequence[int]:
    """The input frame each output frame shows when ``num_frames`` frames at ``fps`` play at
    ``target`` frames per second instead, as FFmpeg's ``fps`` filter picks them.

    Each input frame goes to the output slot nearest its time (halves round up); a slot shows
    the last input frame it received, or repeats the slot before it when it received none. The
    duration stays: ``round(num_frames * target / fps)`` slots. ``range(num_frames)`` when the
    rates are equal.
    """
    if target == fps or num_frames == 0:
        return range(num_frames)
    ratio = target / fps
    count = max(1, math.floor(num_frames * ratio + Fraction(1, 2)))
    # The last input i of slot j or before: i * ratio < j + 1/2.
    return [min(num_frames, math.ceil((j + Fraction(1, 2)) / ratio)) - 1 for j in range(count)]


def decodable_batches(
    source: FrameSource, indices: Sequence[int], stopped: list[DecodeError]
) -> Iterator[torch.Tensor]:
    """The frames at ``indices`` (ascending, repeats allowed), in batches, up to the first frame
    that does not decode.

    When decoding fails, the frames before the failing one that its batch lost are read again,
    the ``DecodeError`` is appended to ``stopped`` and the iteration ends; it is raised instead
    when no frame decoded at all.
    """
    position, end = 0, len(indices)
    while position < end:
        try:
            for batch in source.iter_frames(indices[position:end], mode="stream"):
                position += len(batch)
                yield batch
        except DecodeError as error:
            stopped[:] = [error]
            end = bisect.bisect_left(indices, error.frame, position, end)
    if stopped and position == 0:
        raise stopped[0]


def _ended_early_at(source: Path, info: VideoInfo, stopped: list[DecodeError]) -> int | None:
    """The input frame where a damaged or cut-short input stopped decoding, after a one-line
    warning; ``None`` when the whole input decoded."""
    if stopped:
        frame, reason = stopped[0].frame, stopped[0].reason
    elif (info.header_frames or 0) > (info.num_frames or 0):
        frame, reason = info.num_frames or 0, "the file is cut short"
    else:
        return None
    announced = info.header_frames or info.num_frames
    warnings.warn(
        f"{source} ended early, at frame {frame} of {announced} ({reason}): the mosaic stops there",
        RuntimeWarning,
        stacklevel=3,
    )
    return frame


def sink_pixel_format(device: torch.device) -> str:
    """How a pipeline on ``device`` hands its mosaics to the encoder: on CUDA the composite
    kernel writes I420 bytes (``"yuv420p"``: half the bytes of RGB to copy to the host and no
    conversion left for the encoder); on a CPU RGB, which the ffmpeg program converts in about
    2 ms a 720p frame where the pure-torch I420 path takes about 22 ms (bench/README.md,
    "Compositing")."""
    return "yuv420p" if device.type == "cuda" else "rgb"


def encoded_size(width: int, height: int, pixel_format: str) -> dict[str, int]:
    """The sink's frame size for mosaics of ``width x height``: I420 frames come padded to even
    sizes (``kernels.composite_tiles`` repeats the last row and column), RGB frames as they are
    (the sink pads them the same way)."""
    if pixel_format == "yuv420p":
        return {"width": width + width % 2, "height": height + height % 2}
    return {"width": width, "height": height}


def decode_batch_size(device: torch.device) -> int:
    """Frames a pipeline on ``device`` decodes per call: 1 on a CPU (frames are views of their
    batch, so the fewest frames stay in memory), 4 on CUDA (fewer, larger decoder calls)."""
    return 1 if device.type == "cpu" else 4


def pipeline_decoder(decoder: str, device: torch.device, decode_device: str = "auto") -> str:
    """The video backend that feeds a pipeline on ``device``: ``decoder`` itself, unless it is
    ``"auto"``: then PyAV for a CPU pipeline when it is installed (unless ``decode_device`` asks
    for CUDA), else ``"auto"`` (torchcodec, NVDEC where frames go to CUDA or it is asked for).

    Why PyAV on a CPU (measured, bench/README.md): decoding every frame of a video costs the same
    per frame with either backend on one thread, but ``import torchcodec`` also imports
    torch._dynamo and SymPy: 1 s and 110 MiB before the first frame.
    """
    if decoder not in VIDEO_BACKENDS:
        raise ValueError(f"decoder must be one of {', '.join(VIDEO_BACKENDS)}, got {decoder!r}")
    cpu_decode = device.type == "cpu" and decode_device != "cuda"
    if decoder == "auto" and cpu_decode and pyav_problem() is None:
        return "pyav"
    return decoder
