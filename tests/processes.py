"""The environment of a fresh interpreter that a test starts (peak memory, signals, imports)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment with this checkout first on ``PYTHONPATH`` (what was there
    kept: a machine may carry packages on it), and ``overrides`` set."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **overrides}


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: the signal's default
    disposition, as at a terminal. A test run started in the background by a shell without job
    control ignores SIGINT, and a child inherits an ignored signal (Python then never raises
    ``KeyboardInterrupt``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
