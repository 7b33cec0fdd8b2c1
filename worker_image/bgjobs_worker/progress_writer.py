"""Delivers progress snapshots to Redis from a background thread, newest snapshot wins.

``ctx.progress()`` only hands a dict over, so a task reporting in a tight loop is not slowed
by Redis round trips, nor stalled by a Redis that accepts connections but never answers.
Only the latest snapshot matters to readers, so unsent older ones are simply replaced, and
writes are paced to at most one per ``min_interval`` (the operator coalesces to one status
write per second anyway).

A snapshot Redis did not take (``write`` returned False: Redis down) stays pending and is
tried again with backoff (``retry_initial`` doubling to ``retry_max``) unless a newer one
replaced it: otherwise the last progress reported during an outage never lands when Redis
returns, and a task that reports rarely shows stale progress for the rest of its run.
Nothing accumulates: the pending slot holds one snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ProgressWriter:
    def __init__(
        self,
        write: Callable[[dict[str, Any]], bool],
        *,
        min_interval: float = 0.1,
        retry_initial: float = 0.5,
        retry_max: float = 5.0,
    ):
        self._write = write
        self._min_interval = min_interval
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, snapshot: dict[str, Any]) -> None:
        with self._cond:
            if self._closing:
                return
            self._pending = snapshot
            if self._thread is None:  # started lazily: most tasks never report progress
                self._thread = threading.Thread(
                    target=self._run, name="bgjobs-progress", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        pause = self._min_interval
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closing)
                snapshot, self._pending = self._pending, None
                closing = self._closing
            if snapshot is not None and not self._write(snapshot):
                with self._cond:
                    if self._pending is None:  # a newer snapshot wins over the retry
                        self._pending = snapshot
                # Back off while Redis is away; closing gives it one more try, not a wait.
                pause = self._retry_initial if pause < self._retry_initial else pause * 2
                pause = min(pause, self._retry_max)
            else:
                pause = self._min_interval
            if closing:
                return
            with self._cond:
                self._cond.wait_for(lambda: self._closing, timeout=pause)

    def close(self, timeout: float = 2.0) -> None:
        """Send the last pending snapshot (waiting at most ``timeout``) and stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
