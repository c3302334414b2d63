"""Counting the operations that would stop the host until a GPU catches up (host syncs).

On a CPU nothing waits, so the frame path's promise of "no host syncs" is checked by watching
which operations it calls: ``count_syncs`` records every torch operation that reads a value back
(``.item()``, ``bool(tensor)``, ``int(tensor)``, ``.tolist()``) or whose output shape depends on
the data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``, ``bincount``,
``repeat_interleave`` with tensor repeats), from any thread.

``count_launches`` counts what a GPU would launch one by one: every torch operation and every
Triton kernel (the auction's benchmark reports it per solve).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

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


def _is_boolean_index(func: object, args: tuple) -> bool:
    """``x[mask]`` with a bool mask: aten::index with a bool index tensor."""
    if func.name() not in ("aten::index.Tensor", "aten::index_put_", "aten::index_put"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class _SyncCounter(TorchDispatchMode):
    def __init__(self, counts: Counter) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in _SYNCING_OPS and not (name == "aten::repeat_interleave" and _int_repeats(args)):
            self.counts[name] += 1
        elif _is_boolean_index(func, args):
            self.counts["boolean-mask indexing"] += 1
        return func(*args, **(kwargs or {}))


def _int_repeats(args: tuple) -> bool:
    """``repeat_interleave(x, k)`` with a Python int: a fixed shape."""
    return len(args) > 1 and isinstance(args[1], int)


@contextlib.contextmanager
def count_syncs() -> Iterator[Counter]:
    """Context: count sync-forcing operations in this thread and the threads it starts (a
    ``TorchDispatchMode`` per thread, installed through ``threading.settrace``-free wrapping of
    ``threading.Thread.run``) and ``Tensor.tolist`` calls. Yields the ``Counter``."""
    counts: Counter = Counter()
    original_run = threading.Thread.run
    original_tolist = torch.Tensor.tolist

    def run(thread: threading.Thread) -> None:
        with _SyncCounter(counts):
            original_run(thread)

    def tolist(tensor: torch.Tensor):
        counts["Tensor.tolist"] += 1
        return original_tolist(tensor)

    threading.Thread.run = run
    torch.Tensor.tolist = tolist
    try:
        with _SyncCounter(counts):
            yield counts
    finally:
        threading.Thread.run = original_run
        torch.Tensor.tolist = original_tolist


class _OpCounter(TorchDispatchMode):
    def __init__(self, counts: Counter, launching: threading.local) -> None:
        super().__init__()
        self.counts = counts
        self.launching = launching

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not getattr(self.launching, "depth", 0):
            self.counts["torch ops"] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_launches() -> Iterator[Counter]:
    """Context: count what a GPU would launch, in this thread: every aten operation (a
    ``TorchDispatchMode``: ``"torch ops"``) and every Triton kernel launch (``"triton"``, and one
    entry per kernel name), compiled or in the interpreter. What the interpreter does inside a
    launch is not counted. Yields the ``Counter``; ``launches(counts)`` is the total."""
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
            launching.depth = getattr(launching, "depth", 0) + 1
            try:
                return run(function, *args, **kwargs)
            finally:
                launching.depth -= 1

        return counted_run

    for cls, run in originals.items():
        cls.run = wrap(run)
    try:
        with _OpCounter(counts, launching):
            yield counts
    finally:
        for cls, run in originals.items():
            cls.run = run


def launches(counts: Counter) -> int:
    """The launches a ``count_launches`` counter saw: torch operations plus Triton kernels."""
    return counts["torch ops"] + counts["triton"]
