"""Metadata read once per version of a file: file stamps and the in-process ``VideoInfo`` cache.

A source reads its ``VideoInfo`` when it opens and keeps it with its decoder, together with the
``FileStamp`` of the file it read (real path, size, modification time, inode). Before every read
it compares the stamp with the file's current one and reopens the file if they differ, so a
replaced or rewritten file is never decoded with stale metadata.

The torchcodec source, whose metadata costs an ``ffprobe`` run (for the audio), also shares what
it reads through ``INFO_CACHE``, keyed by backend and stamp, so opening the same unchanged video
again in this process (a dataset that probes its videos and then reads them, threads, forked
workers) skips that work. (PyAV reads the same facts from the container it opens anyway, and
images and folders from their first frame.) A changed file has a new stamp and so misses the
cache; old entries age out of the bounded LRU.

The cache is deliberately not written to disk: recomputing an entry costs about 0.1 s (one
``ffprobe`` run), far less than decoding the video, while a file beside the user's media would
need a writable media folder and could outlive the file it describes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.errors import SourceError
from adapters.info import VideoInfo

__all__ = ["INFO_CACHE", "FileStamp", "InfoCache", "file_stamp"]


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file or folder: any change to it changes the stamp.

    A folder's stamp changes when entries are added, removed or renamed in it, not when a file in
    it is rewritten in place.
    """

    path: str
    size: int
    mtime_ns: int
    inode: int


def file_stamp(path: str | Path) -> FileStamp:
    """The current stamp of ``path`` (links followed). Raises SourceError if it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"no such file or folder: {path}") from None
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error.strerror or error}") from None
    return FileStamp(os.path.realpath(path), status.st_size, status.st_mtime_ns, status.st_ino)


class InfoCache:
    """A thread-safe LRU map from ``(backend, FileStamp)`` to ``VideoInfo``."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, FileStamp], VideoInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, backend: str, stamp: FileStamp, read: Callable[[], VideoInfo]) -> VideoInfo:
        """The cached info of this file version, or ``read()``'s, which is then cached.

        ``read`` runs outside the lock: two threads missing at once may both read.
        """
        key = (backend, stamp)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        info = read()
        with self._lock:
            self._entries[key] = info
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return info

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


INFO_CACHE = InfoCache()
