"""Overlap pipeline stages with threads joined by bounded queues (memory stays flat)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Generic[T]):
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer.

    An exception in the producer is raised again in the consumer; ``close()`` stops the producer.
    """

    def __init__(self, items: Iterable[T], depth: int = 2, name: str = "prefetch") -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer
            self._error = error
        self._put(_DONE)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BackgroundConsumer(Generic[T]):
    """Feed items to ``consume`` in a background thread through a queue of ``depth`` items.

    ``put`` blocks when the consumer is behind; an exception in ``consume`` is raised again by the
    next ``put`` or by ``finish``.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 2, name: str = "consume") -> None:
        self._consume = consume
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._consume(item)  # type: ignore[arg-type]
                except BaseException as error:  # handed to the producer
                    self._error = error

    def raise_if_failed(self) -> None:
        """Raise the consumer's error if it failed (a producer waiting on something else checks
        with it)."""
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self.raise_if_failed()
        self._queue.put(item)

    def close(self) -> None:
        """Let the consumer finish what is queued, then stop it (idempotent, never raises)."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def finish(self) -> None:
        """Wait until every item is consumed; raise the consumer's error if it failed."""
        self.close()
        self.raise_if_failed()
