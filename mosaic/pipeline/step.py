"""``FrameStep``: one video frame's whole step on the device (analyse, choose with temporal
coherence, compose with the colour hold), on fixed buffers, replayed as a CUDA graph on a GPU.

A step reads a frame, the state the previous frames left (``TemporalCoherence``, the auction's
``AuctionState``, ``ColourHold``, the renderer's ``TileUsage``) and writes a mosaic and the next
state. The engine's state objects reassign their tensors each frame; a CUDA graph, though,
reads and writes fixed addresses. ``CarriedState`` bridges the two without changing the engine:
after each step it copies every new state tensor into the buffer the same attribute held before
and puts that buffer back, so from one frame to the next the state lives in the same buffers.

The first frames of a frame shape run eagerly: they set up the state (the first frame has no
incumbents and starts the auction cold) and autotune the kernels for these sizes. Once a step
leaves the state's layout as it found it (the same attributes, shapes, dtypes and Python-side
values: same grid, incumbents present, the auction warm; from the second frame of a shape), the
next frame is captured on CUDA (``torch.cuda.graph``, which captures on a side stream into the
graph's private memory pool) and every frame after it is a copy into the static input and one
replay. Only the auction reads nothing back from the device, so only frames it solves are
captured (``method="auction"``, which ``"auto"`` picks on CUDA above the exact solver's size;
``"exact"`` and ``"windows"`` run the same step eagerly). On a CPU every frame runs eagerly,
through the same input buffer and write-back, which is how the tests cover this path. A scene
cut needs no host decision: ``TemporalCoherence`` drops every incumbent and the auction's
holders and prices with ``torch.where`` on the device, inside the graph. A new frame shape drops
the graph, runs eagerly until the state settles and captures again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from kernels.composite import PIXEL_FORMATS
from mosaic.assign import Assignment
from mosaic.checks import check_image
from mosaic.engine import FrameAnalysis, FrameRenderer
from mosaic.pipeline.measures import CutFlag
from mosaic.temporal import TemporalCoherence

__all__ = ["CarriedState", "FrameStep", "StepOutput"]

# Python counters among the state's attributes (``TileUsage.frames``): a replay cannot advance
# them, so the step does, and they are no part of the state's layout.
_COUNTERS = frozenset({"frames"})


@dataclass(frozen=True)
class StepOutput:
    """What ``FrameStep`` made of one frame. Its tensors are the step's static buffers: valid
    until the next call, which overwrites them.

    Attributes:
        analysis: the frame's ``FrameAnalysis`` (``analysis.frame`` is the step's input buffer).
        assignment: its ``Assignment`` (tiles, total cost, certified gap on the device).
        cut: whether temporal coherence saw a scene cut before it (a ``()`` bool tensor, or
            ``False`` when there was nothing to compare).
        choice: int64 ``(rows, cols)`` tile of each cell.
        image: the mosaic, uint8 ``(3, H_out, W_out)`` RGB, or with ``"yuv420p"`` the I420
            bytes ``(H_out' * 3 // 2, W_out')`` (``FrameRenderer.compose``).
    """

    analysis: FrameAnalysis
    assignment: Assignment
    cut: CutFlag
    choice: torch.Tensor
    image: torch.Tensor


class _Node:
    """One state object and the values of its attributes when the snapshot was taken (nested
    state objects as nodes of their own)."""

    def __init__(self, owner: object, skip: frozenset[str]) -> None:
        self.owner = owner
        self.skip = skip
        self.values: dict[str, Any] = {
            name: _Node(value, skip) if _is_state(value) else value
            for name, value in vars(owner).items()
            if name not in skip
        }

    def layout(self) -> tuple:
        """What the step's Python code sees of this state: types, tensor shapes, dtypes and
        devices, and the other values themselves."""
        return (
            type(self.owner),
            tuple((name, _layout_of(value)) for name, value in self.values.items()),
        )


def _is_state(value: object) -> bool:
    """A nested state object (``AuctionState`` in ``TemporalCoherence``...): an object of this
    package with attributes, walked like the roots."""
    return hasattr(value, "__dict__") and type(value).__module__.startswith("mosaic.")


def _layout_of(value: object) -> object:
    if isinstance(value, _Node):
        return value.layout()
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device)
    return value


class CarriedState:
    """The tensors a sequence of frame steps carries, kept in the same buffers frame after
    frame (the module docstring says why).

    ``roots`` are the state objects (their attributes are walked, and those of the objects of
    this package they hold); attributes named in ``skip`` are left alone (a Python counter
    that a graph replay cannot advance). ``snapshot()`` before a step, ``write_back(snapshot)``
    after it: each tensor attribute whose new value has the shape, dtype and device of the
    buffer it held is copied into that buffer and the buffer put back (likewise a nested object
    replaced by one of the same layout); anything else keeps its new value, which the next
    step's snapshot takes as its buffer. Copies are device operations, so inside a CUDA graph
    capture they are recorded with the step.
    """

    def __init__(self, *roots: object, skip: frozenset[str] = frozenset()) -> None:
        self.roots = roots
        self.skip = skip

    def snapshot(self) -> list[_Node]:
        """Every state attribute as it is now."""
        return [_Node(root, self.skip) for root in self.roots]

    @staticmethod
    def layout(snapshot: list[_Node]) -> tuple:
        """The layout of a ``snapshot`` (``_Node.layout``): the same before and after a step
        that changed only tensor values."""
        return tuple(node.layout() for node in snapshot)

    def write_back(self, before: list[_Node]) -> None:
        """Put the state that a step produced into the buffers of the state it found
        (``before``, its ``snapshot()``)."""
        copies: list[tuple[torch.Tensor, torch.Tensor]] = []
        for node in before:
            _restore(node, node.owner, copies)
        # A buffer is written once (the first attribute that held it claims it), and a new value
        # that lives in a buffer (a tensor the step kept under another name) is cloned before
        # any buffer is overwritten.
        targets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for buffer, new in copies:
            targets.setdefault(id(buffer), (buffer, new))
        storages = {_storage(buffer) for buffer, _ in targets.values()}
        pending = [
            (buffer, new.clone() if _storage(new) in storages else new)
            for buffer, new in targets.values()
        ]
        for buffer, new in pending:
            buffer.copy_(new)

    @staticmethod
    def put_back(before: list[_Node]) -> None:
        """Give every state object the attributes it had at ``before`` (its ``snapshot()``):
        after a step that never ran, such as a failed capture (its operations were recorded,
        not run, so the buffers still hold the state it found)."""
        for node in before:
            _put_back(node)


def _put_back(node: _Node) -> None:
    for name, value in node.values.items():
        if isinstance(value, _Node):
            _put_back(value)
            value = value.owner
        object.__setattr__(node.owner, name, value)


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _restore(before: _Node, now: object, copies: list) -> bool:
    """Make ``before.owner`` hold the values of ``now`` (the same object after the step, or the
    object that replaced it) in ``before``'s buffers, adding the copies to ``copies``. Returns
    whether ``before.owner`` now stands for ``now``: always for the same object (attributes
    that do not fit keep their new values), for a replaced one only when every attribute fits
    (then nothing of ``now`` is lost)."""
    same = now is before.owner
    names = {name for name in vars(now) if name not in before.skip}
    if not same and (type(now) is not type(before.owner) or names != set(before.values)):
        return False
    own: list[tuple[torch.Tensor, torch.Tensor]] = []
    values: dict[str, object] = {}
    for name, old in before.values.items():
        new = getattr(now, name)
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor) and _fits(old, new):
            if new is not old:
                own.append((old, new))
            values[name] = old
        elif isinstance(old, _Node) and _is_state(new) and _restore(old, new, own):
            values[name] = old.owner
        elif same or _layout_of(old) == _layout_of(new):
            values[name] = new
        else:
            return False
    copies.extend(own)
    for name, value in values.items():
        if getattr(before.owner, name) is not value:
            object.__setattr__(before.owner, name, value)  # frozen dataclasses too
    return True


def _fits(buffer: torch.Tensor, value: torch.Tensor) -> bool:
    return (
        buffer.shape == value.shape
        and buffer.dtype == value.dtype
        and buffer.device == value.device
    )


class FrameStep:
    """A video's frames through ``renderer``, one call a frame, in order, with the state frames
    carry (temporal coherence, the auction's prices, the colour hold, tile usage) kept on the
    device in fixed buffers; on CUDA with the auction solver, one CUDA graph replay a frame once
    the state has settled (module docstring).

    ``step(frame)`` takes a uint8 ``(3, H, W)`` frame on ``renderer.device`` (any strides; it is
    copied into the step's static input) and returns a ``StepOutput`` whose tensors stay valid
    until the next call: a caller enqueues what reads them (a copy to the host, the measures) on
    the same stream before calling again. ``pixel_format`` is the output's (``"rgb"`` or
    ``"yuv420p"``). ``method`` is the solver the frames ran (``""`` before the first);
    ``captured`` whether frames now replay a graph. Frames must come from one video; the
    renderer's ``usage`` counts them.
    """

    def __init__(self, renderer: FrameRenderer, pixel_format: str = "rgb") -> None:
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {pixel_format!r}"
            )
        self.renderer = renderer
        self.pixel_format = pixel_format
        self.method = ""
        self.temporal = TemporalCoherence(renderer.config.temporal)
        self.hold = renderer.colour_hold()
        # TileUsage counts frames in Python, which a replay does not run: the step counts them.
        roots = [root for root in (self.temporal, self.hold, renderer.usage) if root is not None]
        self._state = CarriedState(*roots, skip=_COUNTERS)
        self._input: torch.Tensor | None = None  # uint8 (3, H, W), the static input
        self._settled = False  # whether the last eager step left the state's layout unchanged
        self._capture_failed = False  # for this frame shape: it runs eagerly
        self._graph: torch.cuda.CUDAGraph | None = None
        self._output: StepOutput | None = None  # what the graph writes

    @property
    def captured(self) -> bool:
        """Whether frames now replay a CUDA graph."""
        return self._graph is not None

    def __call__(self, frame: torch.Tensor) -> StepOutput:
        """One frame's step (class docstring)."""
        check_image(frame, "frame", ndim=3)
        device = self.renderer.device
        if frame.device != device:
            raise ValueError(f"frame is on {frame.device}, the renderer on {device}")
        if self._input is None or self._input.shape != frame.shape:
            self._input = torch.empty(frame.shape, dtype=torch.uint8, device=device)
            self._graph = self._output = None
            self._settled = self._capture_failed = False
        self._input.copy_(frame)
        if self._graph is None and self._settled and self._capturable():
            self._capture()
        if self._graph is not None:
            self._graph.replay()
            self.renderer.usage.frames += 1
            return self._output
        before = self._state.snapshot()
        output = self._run()
        self._state.write_back(before)
        layout = CarriedState.layout
        self._settled = layout(self._state.snapshot()) == layout(before)
        return output

    def _capturable(self) -> bool:
        cuda = self.renderer.device.type == "cuda"
        return cuda and self.method == "auction" and not self._capture_failed

    def _run(self) -> StepOutput:
        """The step on the static input: ``FrameRenderer``'s analyse, choose and compose."""
        renderer = self.renderer
        analysis = renderer.analyse(self._input)
        assignment, cut = renderer.choose(analysis, self.temporal)
        choice = assignment.tiles.view(analysis.grid)
        image = renderer.compose(analysis, choice, hold=self.hold, pixel_format=self.pixel_format)
        self.method = assignment.method
        return StepOutput(analysis, assignment, cut, choice, image)

    def _capture(self) -> None:
        """Record the step, its write-back included, as a CUDA graph (replayed by the caller).

        Captured with ``capture_error_mode="thread_local"``: other threads of a pipeline
        (decoding, copies to the host) may keep using CUDA meanwhile. An operation that cannot
        be captured leaves the state as it was and frames of this shape run eagerly, with a
        warning: slower, not wrong."""
        graph = torch.cuda.CUDAGraph()
        frames = self.renderer.usage.frames
        before = self._state.snapshot()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self._run()
                self._state.write_back(before)
        except RuntimeError as error:
            CarriedState.put_back(before)
            self._capture_failed = True
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            warnings.warn(
                f"the frame step could not be captured as a CUDA graph ({reason}); "
                "frames run without one",
                stacklevel=3,
            )
            return
        finally:
            self.renderer.usage.frames = frames  # the capture ran no frame
        self._graph, self._output = graph, output
