"""The exceptions of ``adapters``: every message is one line a user can act on."""

from __future__ import annotations

__all__ = ["AdapterError", "SinkError", "SourceError", "Terminated", "first_line"]


class AdapterError(Exception):
    """Base of the I/O errors: catch this to report any source or sink failure."""


class SourceError(AdapterError):
    """A file, folder or stream cannot be read as images or video."""


class SinkError(AdapterError):
    """An output cannot be written (ffmpeg missing or failing, bad path, output is the input)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a sink was open.

    A ``KeyboardInterrupt`` so that the code which cleans up after Ctrl+C also cleans up here.
    """


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): the part of a
    third-party error worth showing in a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
