"""``FrameStep``: a video's frame step on fixed buffers, captured as a CUDA graph on a GPU.

On a CPU the step runs eagerly through the same static input and state write-back as a replay
relies on, so these tests check that path against ``FrameRenderer`` frame by frame, that the
state stays in the same buffers once settled, and that a steady frame neither reads anything
back nor makes a tensor from host data (what a CUDA graph capture forbids). The ``cuda`` tests
check the graph itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch

import mosaic.assign.auction as auction
import mosaic.assign.spacing as spacing
from kernels.dispatch import interpreting
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.pipeline.measures import FrameMeasures
from mosaic.pipeline.step import CarriedState, FrameStep, _Node
from mosaic.temporal import TemporalCoherence
from tests.scenes import add_noise, landscape, photo_pool
from tests.syncs import count_host_data, count_syncs

needs_interpreter = pytest.mark.skipif(
    not interpreting(), reason="the kernel path: TRITON_INTERPRET=1 on a CPU"
)


@pytest.fixture
def small_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small auction budgets, and the spacing repair's fixed GPU schedule: the interpreter runs
    every launch, as a GPU would."""
    monkeypatch.setattr(auction, "COLD_STAGES", 4)
    monkeypatch.setattr(auction, "WARM_STAGES", 2)
    monkeypatch.setattr(spacing, "STOP_WHEN_CLEAR_ON_CPU", False)


def make_config(device: str = "cpu", **overrides: object) -> MosaicConfig:
    """Cells of 8, the auction, colour transfer with saturation (the hold on), reuse 2 with the
    spacing rule (20 tiles for 15 cells)."""
    settings = dict(cell=8, method="auction", reuse=2, saturation=1.3, device=device)
    return MosaicConfig(**{**settings, **overrides})


def clip(frames: int = 8, cut_at: int = 5) -> list[torch.Tensor]:
    """uint8 ``(3, 24, 40)`` frames: a camera panning 3 pixels a frame over one landscape, with
    sensor noise, then (from ``cut_at``) over another: a scene cut."""
    scenes = [landscape(24, 40 + 3 * frames, seed=3), landscape(24, 40 + 3 * frames, seed=11)]
    return [
        add_noise(scenes[index >= cut_at][:, :, 3 * index : 3 * index + 40], 2.0, seed=index)
        for index in range(frames)
    ]


def renderer_frames(renderer: FrameRenderer, frames: list[torch.Tensor], pixel_format: str):
    """What ``FrameRenderer`` makes of the frames as a video, one frame at a time: ``(tiles,
    image, gap, cut)``, as the CPU executor runs it."""
    temporal, hold = TemporalCoherence(renderer.config.temporal), renderer.colour_hold()
    for frame in frames:
        analysis = renderer.analyse(frame)
        assignment, cut = renderer.choose(analysis, temporal)
        choice = assignment.tiles.reshape(analysis.grid)
        image = renderer.compose(analysis, choice, hold=hold, pixel_format=pixel_format)
        yield assignment.tiles, image, assignment.gap, bool(cut)


@dataclass(frozen=True)
class StepRun:
    """What ``run_step_and_renderer`` saw, frame by frame."""

    step: FrameStep
    cuts: list[bool]  # the scene cuts the renderer saw
    captured: list[bool]  # whether the step replayed a graph


def run_step_and_renderer(
    frames: list[torch.Tensor], pixel_format: str, device: str = "cpu", method: str = "auction"
) -> StepRun:
    """``frames`` through a ``FrameStep`` and through ``FrameRenderer``, on ``device`` with the
    solver ``method``: the same tiles, image bytes, certified gap and scene cuts every frame,
    and the same tile usage at the end."""
    pool = photo_pool(20, tile_size=8)
    config = make_config(device, method=method)
    expected_renderer, step_renderer = FrameRenderer(pool, config), FrameRenderer(pool, config)
    step = FrameStep(step_renderer, pixel_format)
    frames = [frame.to(device) for frame in frames]
    cuts, captured = [], []
    for index, (tiles, image, gap, cut) in enumerate(
        renderer_frames(expected_renderer, frames, pixel_format)
    ):
        out = step(frames[index])
        assert torch.equal(out.assignment.tiles, tiles), f"frame {index}: tiles"
        assert torch.equal(out.choice, tiles.view(out.choice.shape)), f"frame {index}: choice"
        assert torch.equal(out.image, image), f"frame {index}: image bytes"
        assert gap is None or torch.equal(out.assignment.gap, gap), f"frame {index}: gap"
        assert bool(out.cut) == cut, f"frame {index}: scene cut"
        cuts.append(cut)
        captured.append(step.captured)
    assert step.method == method
    assert step_renderer.usage.read() == expected_renderer.usage.read()
    return StepRun(step, cuts, captured)


@needs_interpreter
def test_the_step_renders_what_the_renderer_renders_on_the_kernel_path(small_budgets):
    # The encoder's bytes, as on a GPU; RGB differs only inside the composite kernel.
    run = run_step_and_renderer(clip(), "yuv420p")
    assert run.cuts == [False] * 5 + [True, False, False]  # the clip has its cut where it should
    assert not any(run.captured)  # no graph on a CPU


@pytest.mark.parametrize(
    ("pixel_format", "method"),
    [("rgb", "auction"), ("yuv420p", "auction"), ("rgb", "windows"), ("rgb", "exact")],
)
def test_the_step_renders_what_the_renderer_renders_on_the_references(
    pixel_format, method, reference_path
):
    run = run_step_and_renderer(clip(), pixel_format, method=method)
    assert run.cuts == [False] * 5 + [True, False, False]


def test_measures_of_the_step_are_those_of_the_renderer(reference_path):
    # The step overwrites its outputs each frame: the measures must keep copies of what they
    # compare the next frame with (the source frame, the tiles).
    pool, config = photo_pool(20, tile_size=8), make_config()
    renderer, step = FrameRenderer(pool, config), FrameStep(FrameRenderer(pool, config))
    temporal, hold = TemporalCoherence(config.temporal), renderer.colour_hold()
    expected, measured = (FrameMeasures(renderer.device, config.cell_shape) for _ in range(2))
    for index, frame in enumerate(clip()):
        analysis = renderer.analyse(frame)
        assignment, cut = renderer.choose(analysis, temporal)
        choice = assignment.tiles.reshape(analysis.grid)
        image = renderer.compose(analysis, choice, hold=hold)
        expected.add(index, analysis, choice, image, assignment, cut)
        out = step(frame)
        measured.add(index, out.analysis, out.choice, out.image, out.assignment, out.cut)
    reading = expected.summary(8, "auction")
    assert reading.tally.churn > 0 and reading.tally.scene_cuts == 1
    assert measured.summary(8, "auction") == reading


class _StandInGraph:
    """``torch.cuda.CUDAGraph`` on a CPU: the capture (``_stand_in_capture``) runs the step
    eagerly, so the captured frame is rendered; a replay does nothing."""

    def replay(self) -> None:
        pass


_captures: list[dict] = []  # the options of each stand-in capture


@contextlib.contextmanager
def _stand_in_capture(graph: _StandInGraph, **options: object):
    _captures.append(options)
    yield


def test_frames_are_captured_once_the_state_settles_and_again_at_a_new_shape(
    reference_path, monkeypatch
):
    monkeypatch.setattr(FrameStep, "_capturable", lambda step: step.method == "auction")
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _StandInGraph)
    monkeypatch.setattr(torch.cuda, "graph", _stand_in_capture)
    _captures.clear()
    pool, config = photo_pool(20, tile_size=8), make_config()
    renderer, step = FrameRenderer(pool, config), FrameStep(FrameRenderer(pool, config))
    frames = clip()
    expected = list(renderer_frames(renderer, frames[:3], "rgb"))
    captured = []
    for index, frame in enumerate(frames[:3]):
        out = step(frame)
        captured.append(step.captured)
        assert torch.equal(out.image, expected[index][1]), f"frame {index}"
    # The first frame sets the state up; the second leaves it as it found it, so the third is
    # captured (and its capture renders it; the stand-in's replays render nothing).
    assert captured == [False, False, True]
    assert _captures == [{"capture_error_mode": "thread_local"}]
    step(frames[3])
    wider = [landscape(24, 48, seed=index) for index in range(4)]
    for index, frame in enumerate(wider):
        step(frame)
        assert step.captured == (index >= 2), f"frame {index} of the new shape"
    assert len(_captures) == 2
    assert step.renderer.usage.frames == 8  # the capture counts once, as the replay that runs it


@contextlib.contextmanager
def _failing_capture(graph: _StandInGraph, **options: object):
    _captures.append(options)
    raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
    yield  # never reached


def test_a_step_that_cannot_be_captured_runs_eagerly_with_one_warning(reference_path, monkeypatch):
    monkeypatch.setattr(FrameStep, "_capturable", lambda step: not step._capture_failed)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _StandInGraph)
    monkeypatch.setattr(torch.cuda, "graph", _failing_capture)
    _captures.clear()
    with pytest.warns(UserWarning) as warned:
        run = run_step_and_renderer(clip(), "rgb")
    assert not any(run.captured) and len(_captures) == 1  # tried once, at the third frame
    assert [str(warning.message) for warning in warned] == [
        "the frame step could not be captured as a CUDA graph (operation not permitted when "
        "stream is capturing); frames run without one"
    ]


def state_buffers(step: FrameStep) -> dict[str, int]:
    """Every tensor the step's state holds, by attribute path, and the address of its data."""
    found = {}

    def walk(node, path):
        for name, value in node.values.items():
            if isinstance(value, torch.Tensor):
                found[f"{path}.{name}"] = value.data_ptr()
            elif isinstance(value, _Node):  # a nested state object
                walk(value, f"{path}.{name}")

    for index, node in enumerate(step._state.snapshot()):
        walk(node, str(index))
    return found


def test_the_state_stays_in_the_same_buffers_once_settled(reference_path):
    renderer = FrameRenderer(photo_pool(20, tile_size=8), make_config())
    step = FrameStep(renderer, "rgb")
    frames = clip(frames=9, cut_at=7)
    for frame in frames[:2]:  # the cold frame, then the first warm one settles the state
        step(frame)
    settled = state_buffers(step)
    assert len(settled) > 20  # temporal coherence, the auction, the colour hold, usage
    for frame in frames[2:]:  # a scene cut at 7 too
        step(frame)
        assert state_buffers(step) == settled
    assert renderer.usage.frames == len(frames)


@needs_interpreter
def test_ten_steady_frames_read_nothing_back_and_copy_nothing_from_the_host(small_budgets):
    renderer = FrameRenderer(photo_pool(20, tile_size=8), make_config())
    step = FrameStep(renderer, "yuv420p")  # what a GPU pipeline asks for
    scene = landscape(24, 40, seed=3)
    frames = [add_noise(scene, 2.0, seed=index) for index in range(12)]
    for frame in frames[:2]:  # until the state has settled: where a GPU captures
        step(frame)
    with count_syncs() as syncs, count_host_data() as host_data:
        for frame in frames[2:]:
            step(frame)
    assert not syncs, f"host syncs in steady frames: {dict(syncs)}"
    assert not host_data, f"tensors from host data in steady frames: {dict(host_data)}"


def test_the_host_data_counter_sees_what_a_capture_forbids():
    values = torch.ones(3)
    with count_host_data() as counts:
        torch.tensor([1.0, 2.0])
        torch.as_tensor(0.5)
        values.to(torch.float64)  # same device: not counted
        torch.where(values > 0, 0.0, values)  # a Python scalar operand: not counted
        values.to("meta")
    assert counts == {"aten::lift_fresh": 2, "aten::_to_copy cpu -> meta": 1}


class _Toy:
    """A stand-in state object of this package (``CarriedState`` walks ``mosaic.`` objects)."""


_Toy.__module__ = "mosaic.toy"


def test_write_back_keeps_the_buffers_when_a_step_moves_tensors_between_names():
    state, nested = _Toy(), _Toy()
    state.a, state.b, state.count, state.nested = torch.zeros(2), torch.ones(2), 0, nested
    nested.c = torch.full((3,), 5.0)
    buffers = state.a, state.b, nested.c
    carried = CarriedState(state, skip=frozenset({"count"}))
    before = carried.snapshot()
    # A step: b takes a's old tensor, a a new one, the nested object is replaced, count moves.
    state.a, state.b, state.count = torch.full((2,), 7.0), state.a, 1
    replaced = _Toy()
    replaced.c = torch.full((3,), 9.0)
    state.nested = replaced
    carried.write_back(before)
    assert (state.a, state.b, state.nested.c) == buffers
    assert state.nested is nested and state.count == 1
    assert state.a.tolist() == [7.0, 7.0] and state.b.tolist() == [0.0, 0.0]
    assert nested.c.tolist() == [9.0] * 3
    assert CarriedState.layout(carried.snapshot()) == CarriedState.layout(before)


def test_write_back_keeps_a_new_shape():
    state = _Toy()
    state.a = torch.zeros(2)
    carried = CarriedState(state)
    before = carried.snapshot()
    state.a = torch.ones(3)
    carried.write_back(before)
    assert state.a.tolist() == [1.0] * 3
    assert CarriedState.layout(carried.snapshot()) != CarriedState.layout(before)


def test_put_back_gives_the_state_its_attributes_again():
    state, nested = _Toy(), _Toy()
    state.a, state.nested, nested.c = torch.zeros(2), nested, torch.ones(3)
    carried = CarriedState(state)
    before = carried.snapshot()
    a = state.a
    state.a, state.nested = torch.full((2,), 4.0), _Toy()  # a step that never ran
    nested.c = torch.zeros(1)
    CarriedState.put_back(before)
    assert state.a is a and state.nested is nested and nested.c.tolist() == [1.0] * 3


def test_a_frame_of_the_wrong_kind_is_refused_in_one_line():
    step = FrameStep(FrameRenderer(photo_pool(20, tile_size=8), make_config()))
    with pytest.raises(TypeError, match="frame must be uint8"):
        step(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"frame must have shape \(3, H, W\)"):
        step(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="frame is on meta, the renderer on cpu"):
        step(torch.zeros(3, 8, 8, dtype=torch.uint8, device="meta"))
    with pytest.raises(ValueError, match="pixel_format must be one of rgb, yuv420p"):
        FrameStep(step.renderer, "nv12")


# On a GPU: the graph itself. The GPU round selects these with ``-k cuda``.


@pytest.mark.cuda
@pytest.mark.parametrize("pixel_format", ["rgb", "yuv420p"])
def test_cuda_replays_render_what_the_renderer_renders_through_a_scene_cut(pixel_format):
    run = run_step_and_renderer(clip(), pixel_format, "cuda")
    assert run.cuts == [False] * 5 + [True, False, False]
    # Captured at the third frame: the cut (frame 5) restarted the auction inside the graph.
    assert run.captured == [False, False] + [True] * 6


@pytest.mark.cuda
def test_cuda_a_new_frame_shape_is_captured_again():
    wider = [landscape(24, 48, seed=index) for index in range(4)]
    run = run_step_and_renderer(clip()[:4] + wider, "yuv420p", "cuda")
    assert run.captured == [False, False, True, True] * 2


@pytest.mark.cuda
def test_cuda_a_captured_frame_is_one_graph_launch():
    from torch.profiler import ProfilerActivity, profile

    step = FrameStep(FrameRenderer(photo_pool(20, tile_size=8), make_config("cuda")), "yuv420p")
    frames = [frame.cuda() for frame in clip()]
    for frame in frames[:3]:
        step(frame)
    assert step.captured
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiled:
        step(frames[3])
        torch.cuda.synchronize()
    names = [event.name for event in profiled.events()]
    launches = [name for name in names if name.startswith(("cudaLaunch", "cuLaunch"))]
    assert names.count("cudaGraphLaunch") == 1, sorted(set(names))
    assert not launches, launches  # the input copy is a memcpy, the rest the graph
