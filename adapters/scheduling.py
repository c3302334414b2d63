"""Keep this process's threads at the scheduling policy they had while a library opens an encoder.

SVT-AV1 (``libsvtav1``), run as root, switches the thread that opens an encoder to real-time
``SCHED_FIFO`` scheduling at the highest priority, and every thread started afterwards inherits
it: the encoder's own threads, a pipeline's threads, and the ``ffmpeg`` children they start.
Busy real-time threads are never preempted by normal ones; on a machine with few cores the
rendering, the machine's other programs and the very threads being waited for starve (a test run
stopped for good this way after one PyAV AV1 encode). ``scheduling_kept`` puts every thread back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["scheduling_kept"]

_TASKS = "/proc/self/task"

Scheduling = tuple[int, int]  # (policy, real-time priority)


def _scheduling(thread: int) -> Scheduling | None:
    """The policy and priority of one of this process's threads; ``None`` once it has ended."""
    try:
        return os.sched_getscheduler(thread), os.sched_getparam(thread).sched_priority
    except (ProcessLookupError, PermissionError):
        return None


def _threads() -> dict[int, Scheduling]:
    """Every live thread of this process (Linux thread ids) and its scheduling."""
    found = {}
    for name in os.listdir(_TASKS):
        if (scheduling := _scheduling(int(name))) is not None:
            found[int(name)] = scheduling
    return found


@contextlib.contextmanager
def scheduling_kept() -> Iterator[None]:
    """Inside the block, a library may change how this process's threads are scheduled; at its
    end each thread that existed before has its own policy and priority back, and each thread
    started meanwhile those of the thread that entered the block (what it inherited before the
    library changed them). Does nothing where threads' scheduling cannot be read (not Linux)."""
    if not (hasattr(os, "sched_getscheduler") and os.path.isdir(_TASKS)):
        yield
        return
    before = _threads()
    inherited = _scheduling(0)
    try:
        yield
    finally:
        for thread, now in _threads().items():
            wanted = before.get(thread, inherited)
            if wanted is not None and now != wanted:
                policy, priority = wanted
                # Lowering needs no privilege; raising back (a program started under chrt)
                # needs the privilege that let the library raise it. A thread may end meanwhile.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.sched_setscheduler(thread, policy, os.sched_param(priority))
