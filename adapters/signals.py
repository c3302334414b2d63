"""Signal handling for writers that must clean up: SIGTERM as an exception, deferred signals.

Python delivers signals to the main thread only, and ``signal.signal`` may only be called there;
elsewhere both helpers do nothing (the thread that owns the main loop owns the handlers).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from adapters.errors import Terminated

__all__ = ["signals_deferred", "sigterm_raises"]


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``Terminated`` so ``finally`` and ``__exit__`` code runs.

    Installed only over the default action: an application's own SIGTERM handler (or SIG_IGN)
    stays in charge, and an enclosing block that already installed it keeps it. The default
    action is back when the block ends.
    """
    install = _in_main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if install:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if install and signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during a short cleanup, then deliver them to the usual handlers.

    Without this a second Ctrl+C during cleanup could interrupt it and leave a temporary file.
    """
    if not _in_main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back from here.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)
