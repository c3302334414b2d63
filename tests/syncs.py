"""Counting what a frame step asks of a device, from any thread: the host syncs and host data it
must not make, and the launches it should keep few.

On a CPU nothing waits and nothing is copied between devices, so the frame path's promises are
checked by watching which torch operations it calls (a ``TorchDispatchMode`` per thread):

- ``count_syncs``: operations that would stop the host until a GPU catches up (host syncs):
  those that read a value back (``.item()``, ``bool(tensor)``, ``int(tensor)``, ``.tolist()``)
  or whose output shape depends on the data (``nonzero``, boolean-mask indexing,
  ``masked_select``, ``unique``, ``bincount``, ``repeat_interleave`` with tensor repeats).
- ``count_host_data``: operations that make a tensor from host data: ``torch.tensor`` and
  ``torch.as_tensor`` of Python numbers or lists, ``torch.from_numpy`` (``lift_fresh``), and
  copies from another device. On a GPU each is a host-to-device copy; inside a CUDA graph capture
  it fails, or freezes the value of the frame that was captured.
- ``count_launches``: what a GPU would launch one by one: every torch operation and every
  Triton kernel (the auction's benchmark reports it per solve), optionally as a sequence of
  signatures: two runs that launch the same sequence are what one CUDA graph could replay.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operations whose output shape, or whose Python result, depends on tensor values.
_SYNCING_OPS = {
    "aten::_local_scalar_dense",  # item(), bool(), int(), float() of a tensor
    "aten::nonzero",
    "aten::nonzero_static",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::bincount",
    "aten::repeat_interleave",  # the Tensor-repeats overload: its size is their sum
}

# Operations that wrap host data (a Python number or list, a NumPy array) as a tensor.
_HOST_DATA_OPS = {"aten::lift_fresh", "aten::lift_fresh_copy"}

# Classifies one dispatched operation: the name it is counted under, or None.
Classifier = Callable[[object, tuple, dict], str | None]


def _is_boolean_index(func: object, args: tuple) -> bool:
    """``x[mask]`` with a bool mask: aten::index with a bool index tensor."""
    if func.name() not in ("aten::index.Tensor", "aten::index_put_", "aten::index_put"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def _int_repeats(args: tuple) -> bool:
    """``repeat_interleave(x, k)`` with a Python int: a fixed shape."""
    return len(args) > 1 and isinstance(args[1], int)


def _sync(func: object, args: tuple, kwargs: dict) -> str | None:
    name = func._schema.name
    if name in _SYNCING_OPS and not (name == "aten::repeat_interleave" and _int_repeats(args)):
        return name
    if _is_boolean_index(func, args):
        return "boolean-mask indexing"
    return None


def _host_data(func: object, args: tuple, kwargs: dict) -> str | None:
    name = func._schema.name
    if name in _HOST_DATA_OPS:
        return name
    if name == "aten::_to_copy" and "device" in kwargs:
        source, target = args[0].device, torch.device(kwargs["device"])
        return f"{name} {source.type} -> {target.type}" if source != target else None
    if name == "aten::copy_" and args[0].device != args[1].device:
        return f"{name} {args[1].device.type} -> {args[0].device.type}"
    return None


class _CountingMode(TorchDispatchMode):
    def __init__(self, counts: Counter, classify: Classifier) -> None:
        super().__init__()
        self.counts = counts
        self.classify = classify

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self.classify(func, args, kwargs)
        if name is not None:
            self.counts[name] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def _counting(classify: Classifier) -> Iterator[Counter]:
    """Context: count the operations ``classify`` names, in this thread and the threads it
    starts (a mode per thread, installed by wrapping ``threading.Thread.run``)."""
    counts: Counter = Counter()
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        with _CountingMode(counts, classify):
            original_run(thread)

    threading.Thread.run = run
    try:
        with _CountingMode(counts, classify):
            yield counts
    finally:
        threading.Thread.run = original_run


@contextlib.contextmanager
def count_syncs() -> Iterator[Counter]:
    """Context: count sync-forcing operations in this thread and the threads it starts, and
    ``Tensor.tolist`` calls. Yields the ``Counter``."""
    original_tolist = torch.Tensor.tolist

    def tolist(tensor: torch.Tensor):
        counts["Tensor.tolist"] += 1
        return original_tolist(tensor)

    torch.Tensor.tolist = tolist
    try:
        with _counting(_sync) as counts:
            yield counts
    finally:
        torch.Tensor.tolist = original_tolist


@contextlib.contextmanager
def count_host_data() -> Iterator[Counter]:
    """Context: count the operations that make tensors from host data (module docstring) in
    this thread and the threads it starts. Yields the ``Counter``."""
    with _counting(_host_data) as counts:
        yield counts


def _signature(name: str, args: tuple, kwargs: dict) -> tuple:
    """A launch as a graph would record it, less the addresses: its name, each tensor
    argument's shape, dtype and strides, every other argument's value."""

    def describe(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.dtype, value.stride())
        if isinstance(value, (list, tuple)):
            return tuple(describe(item) for item in value)
        return value if isinstance(value, (int, float, bool, str, type(None))) else repr(value)

    return name, describe(args), tuple(sorted((key, describe(v)) for key, v in kwargs.items()))


class _OpCounter(TorchDispatchMode):
    def __init__(self, counts: Counter, launching: threading.local, log: list | None) -> None:
        super().__init__()
        self.counts = counts
        self.launching = launching
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not getattr(self.launching, "depth", 0):
            self.counts["torch ops"] += 1
            if self.log is not None:
                self.log.append(_signature(str(func), args, kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_launches(log: list | None = None) -> Iterator[Counter]:
    """Context: count what a GPU would launch, in this thread: every aten operation (a
    ``TorchDispatchMode``: ``"torch ops"``) and every Triton kernel launch (``"triton"``, and one
    entry per kernel name), compiled or in the interpreter. What the interpreter does inside a
    launch is not counted. Yields the ``Counter``; ``launches(counts)`` is the total. ``log``:
    a list that gets each launch's signature in order (name, the tensors' shapes, dtypes and
    strides, the other arguments' values)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    counts: Counter = Counter()
    launching = threading.local()
    originals = {cls: cls.run for cls in (InterpretedFunction, JITFunction)}

    def wrap(run):
        def counted_run(function, *args, **kwargs):
            if kwargs.get("warmup"):
                return run(function, *args, **kwargs)
            counts["triton"] += 1
            counts[f"triton {function.fn.__name__}"] += 1
            if log is not None:
                log.append(_signature(function.fn.__name__, args, kwargs))
            launching.depth = getattr(launching, "depth", 0) + 1
            try:
                return run(function, *args, **kwargs)
            finally:
                launching.depth -= 1

        return counted_run

    for cls, run in originals.items():
        cls.run = wrap(run)
    try:
        with _OpCounter(counts, launching, log):
            yield counts
    finally:
        for cls, run in originals.items():
            cls.run = run


def launches(counts: Counter) -> int:
    """The launches a ``count_launches`` counter saw: torch operations plus Triton kernels."""
    return counts["torch ops"] + counts["triton"]
