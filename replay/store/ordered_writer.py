"""Writes run in order on one background thread, with what they cost.

The journal hands its inserts to an :class:`OrderedWriter` so that a replay goes on while
DuckDB writes.  A write is queued behind the ones before it; the caller waits only when
``in_flight`` writes are already queued, and a write that failed raises at the caller's next
:meth:`~OrderedWriter.submit` or :meth:`~OrderedWriter.sync`, and at every one after it: the
writes queued behind a failed one are not run (they would fail on its aborted transaction
and hide the first error behind theirs).  The writer counts the seconds
its thread spent writing and the seconds the caller spent waiting for it: on a machine with
few cores the first competes with the replay even when the second is small.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["OrderedWriter"]


class OrderedWriter:
    """One writer thread, at most ``in_flight`` writes queued before the caller waits."""

    def __init__(self, name: str, in_flight: int = 2):
        self.in_flight = in_flight
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queued: deque[Future] = deque()
        self.writer_ns = 0  # added to on the writer thread only
        self.wait_ns = 0  # the caller's time blocked on the writer
        self._failed: BaseException | None = None  # the first failed write's error

    def submit(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread after the writes before it."""
        self._raise_failed()
        while self._queued and (self._queued[0].done()
                                or len(self._queued) >= self.in_flight):
            self._wait(self._queued.popleft())
        self._queued.append(self._pool.submit(self._timed, fn, *args))

    def sync(self) -> None:
        """Wait for every queued write (raising what one raised)."""
        while self._queued:
            self._wait(self._queued.popleft())
        self._raise_failed()

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def by_caller(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` on the calling thread, counted as writing the caller waited for (a
        database's checkpoint at close)."""
        t0 = time.perf_counter_ns()
        try:
            return fn(*args)
        finally:
            spent = time.perf_counter_ns() - t0
            self.writer_ns += spent
            self.wait_ns += spent

    def shutdown(self) -> None:
        self._pool.shutdown()

    def _wait(self, write: Future) -> None:
        t0 = time.perf_counter_ns()
        try:
            write.result()
        finally:
            self.wait_ns += time.perf_counter_ns() - t0

    def _timed(self, fn: Callable, *args: Any) -> None:
        if self._failed is not None:
            return  # behind a failed write: not run
        t0 = time.perf_counter_ns()
        try:
            fn(*args)
        except BaseException as e:
            self._failed = e
            raise
        finally:
            self.writer_ns += time.perf_counter_ns() - t0
