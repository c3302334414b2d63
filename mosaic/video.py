"""``render_video``: a video in, a mosaic video out, streamed with flat memory."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import torch
from tqdm import tqdm

from adapters import VideoSink, open_source
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.metrics import churn, fidelity
from mosaic.pool import TilePool
from mosaic.streaming import BackgroundConsumer, Prefetcher
from mosaic.temporal import TemporalCoherence


@dataclass(frozen=True)
class VideoStats:
    """What ``render_video`` did.

    ``churn`` is the mean fraction of cells whose tile changed between consecutive frames
    (``churn_p95`` its 95th percentile over frame pairs); ``fidelity`` the mean Oklab distance
    between each cell of the source and of the mosaic, averaged over frames.
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

    def summary(self) -> str:
        (w, h), (ow, oh) = self.input_size, self.output_size
        rows, cols = self.grid
        return (
            f"{self.frames} frames {w}x{h} -> {ow}x{oh} at {float(self.fps):.3g} fps in "
            f"{self.seconds:.1f} s ({self.render_fps:.1f} frames/s; decode {self.decoder}, "
            f"encode {self.encoder}, {self.device}); {rows}x{cols} cells, {self.method} "
            f"assignment, reuse {self.reuse or 'unlimited'}; churn {100 * self.churn:.1f} %, "
            f"fidelity {self.fidelity:.4f}, scene cuts {self.scene_cuts}"
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["fps"] = str(self.fps)
        return data


def render_video(
    source: str | Path,
    output: str | Path,
    pool: TilePool,
    config: MosaicConfig | None = None,
    *,
    progress: bool = True,
    batch_size: int = 4,
    fps: float | Fraction | None = None,
) -> VideoStats:
    """Turn a video (or a folder of numbered frames) into a mosaic video with its audio.

    Decoding, rendering and encoding run at once (decode and encode in background threads,
    joined by bounded queues), so memory stays flat however long the video. The output is
    written to a temporary file beside ``output`` and renamed at the end. ``fps`` sets the frame
    rate of a folder of frames (default 25); a video keeps its own.
    """
    config = config or MosaicConfig()
    source, output = Path(source), Path(output)
    renderer = FrameRenderer(pool, config)
    started = time.perf_counter()
    frames_in = open_source(source, device=renderer.device, batch_size=batch_size, fps=fps)
    with frames_in:
        info = frames_in.info
        rows, cols = renderer.grid_shape(info.height, info.width)
        reuse = renderer.reuse_for(info.height, info.width)  # fails early if the pool is too small
        tile = renderer.tiles.shape[-1]
        out_w, out_h = info.width * tile // config.cell, info.height * tile // config.cell
        temporal = TemporalCoherence(config.temporal)
        churns: list[float] = []
        fidelities: list[float] = []
        scene_cuts, frames, method = 0, 0, ""
        previous = None
        bar = tqdm(
            total=info.num_frames, unit="frame", disable=not progress, smoothing=0.1, desc="mosaic"
        )
        audio = source if info.has_audio else None
        with VideoSink(output, width=out_w, height=out_h, fps=info.fps, audio_from=audio) as sink:
            writer: BackgroundConsumer[torch.Tensor] = BackgroundConsumer(
                sink.write, depth=2, name="encode"
            )
            batches = Prefetcher(frames_in, depth=2, name="decode")
            try:
                for batch in batches:
                    rendered = []
                    for frame in batch:
                        result = renderer.render(frame, temporal)
                        rendered.append(result.image)
                        fidelities.append(fidelity(frame, result.image, (rows, cols))["mean"])
                        if previous is not None and not result.scene_cut:
                            churns.append(churn(previous, result.choice))
                        scene_cuts += result.scene_cut
                        previous, method = result.choice, result.assignment.method
                    writer.put(torch.stack(rendered))
                    frames += len(rendered)
                    bar.update(len(rendered))
                writer.finish()
            finally:
                writer.close()
                batches.close()
                bar.close()
        encoder = sink.encoder
    seconds = time.perf_counter() - started
    churn_values = torch.tensor(churns or [0.0])
    return VideoStats(
        frames=frames,
        input_size=(info.width, info.height),
        output_size=(out_w, out_h),
        fps=info.fps,
        seconds=seconds,
        render_fps=frames / seconds if seconds > 0 else 0.0,
        decoder=frames_in.decoder,
        encoder=encoder,
        device=str(renderer.device),
        method=method,
        reuse=reuse,
        grid=(rows, cols),
        churn=float(churn_values.mean()),
        churn_p95=float(churn_values.quantile(0.95)),
        fidelity=sum(fidelities) / max(len(fidelities), 1),
        scene_cuts=scene_cuts,
    )
