"""Where a run's time goes: ``StageTimer`` sums the wall-clock seconds of named pipeline stages.

Cheap enough to leave in the pipeline for good: a disabled timer (``NO_TIMER``) hands back one
shared do-nothing context manager, and an enabled one reads the clock twice per stage. Stages may
run in several threads (decode, render, encode); their times are summed per name, so stages that
overlap add up to more than the run's wall-clock time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar

import torch

__all__ = ["NO_TIMER", "StageTimer", "timed_iteration"]

T = TypeVar("T")


class StageTimer:
    """Seconds spent in each named stage, summed over a run.

    ``with timer.stage("features"): ...`` adds the block's wall-clock time to
    ``seconds["features"]`` and the CPU time of the thread that ran it to
    ``cpu_seconds["features"]`` (work of torch's own worker threads is not in it: run torch with
    one thread to see all of it). On a busy machine the CPU time is the steadier of the two. On
    CUDA (``device``), each stage first waits for the work queued
    before it and finishes by waiting for its own, so asynchronous kernels count in the stage
    that launched them; those waits slow the pipeline a little, hence timing is optional.
    """

    def __init__(self, device: torch.device | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._cuda = device if device is not None and device.type == "cuda" else None
        self._lock = threading.Lock()

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Context manager that adds the time of its block to stage ``name``."""
        return self._measure(name) if self.enabled else _NOTHING

    @contextmanager
    def _measure(self, name: str) -> Iterator[None]:
        self._synchronize()
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self._synchronize()
            self.add(name, time.perf_counter() - start, time.thread_time() - start_cpu)

    def add(self, name: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        """Add times measured elsewhere to stage ``name`` (thread-safe)."""
        if self.enabled:
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + seconds
                self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu_seconds

    def _synchronize(self) -> None:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)


_NOTHING = nullcontext()

NO_TIMER = StageTimer(enabled=False)
"""The timer to pass when nothing is measured: records nothing."""


def timed_iteration(items: Iterable[T], timer: StageTimer, name: str) -> Iterator[T]:
    """Yield ``items``, adding the time spent producing each one to stage ``name``."""
    iterator = iter(items)
    while True:
        with timer.stage(name):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item  # type: ignore[misc]


_END = object()
