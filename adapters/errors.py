"""The exceptions of ``adapters``: every message is one line a user can act on."""

from __future__ import annotations

from pathlib import Path

__all__ = ["AdapterError", "DecodeError", "SinkError", "SourceError", "Terminated", "first_line"]


class AdapterError(Exception):
    """Base of the I/O errors: catch this to report any source or sink failure."""


class SourceError(AdapterError):
    """A file, folder or stream cannot be read as images or video."""


class DecodeError(SourceError):
    """Decoding ``path`` failed at frame ``frame`` (``reason`` says how) in a video that opened:
    the file is cut short or damaged there, and the frames before it may still decode."""

    def __init__(self, path: str | Path, frame: int, reason: str) -> None:
        super().__init__(f"decoding {path} failed at frame {frame}: {reason}")
        self.path, self.frame, self.reason = path, frame, reason

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str | Path, int, str]]:
        return type(self), (self.path, self.frame, self.reason)


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
