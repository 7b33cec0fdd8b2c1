"""One keyed work queue on the event loop, in the shape of client-go's workqueue.

* A key waits at most once: adding a key that is already waiting does nothing (dedupe).
* A key is never processed by two workers at once: a key added while it is being
  processed is marked dirty and queued again when that reconcile ends.
* A failed key is retried with per-key exponential backoff (1 s doubling to 60 s, like
  client-go's default item rate limiter); success forgets its failures.
* A reconcile may ask to be run again later (`add_after`): deadlines, delayed starts,
  rate-limit tokens and the per-object resync all go through here instead of a global scan.

Everything runs on one asyncio loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)

BASE_DELAY = 1.0
MAX_DELAY = 60.0


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay, self.max_delay, self.clock = base_delay, max_delay, clock
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()  # in _ready
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing
        self._failures: dict[K, int] = {}
        # Delayed adds: (due, seq, key); the earliest due time per key wins.
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._processing)

    def add(self, key: K) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: K, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        due = self.clock() + seconds
        if self._due.get(key, float("inf")) <= due:
            return  # already due sooner
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._seq), key))
        self._wake.set()

    def add_rate_limited(self, key: K) -> float:
        """Requeue a failed key after its backoff; returns the delay chosen."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.max_delay, self.base_delay * (2**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        key = await self._ready.get()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_timer(self) -> None:
        """Move delayed keys to the ready queue when they fall due."""
        while True:
            now = self.clock()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:
                    del self._due[key]
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)


Reconcile = Callable[[K], Awaitable[float | None]]
OnError = Callable[[K, Exception, float], None]


class Gate(Protocol):
    def is_open(self) -> bool: ...
    async def wait_open(self) -> None: ...


async def worker(
    queue: WorkQueue[K], reconcile: Reconcile[K], on_error: OnError[K], gate: Gate | None = None
) -> None:
    """Drain the queue forever. reconcile(key) returns the seconds after which the key wants
    to be seen again (None: on events only); an exception retries it with backoff and is
    reported to on_error(key, exception, delay). While `gate` is closed (a standby replica,
    standby.py) keys wait in the queue, deduped, and none is reconciled."""
    while True:
        if gate is not None:
            await gate.wait_open()
        key = await queue.get()
        if gate is not None and not gate.is_open():  # closed while this worker waited
            queue.done(key)
            queue.add(key)
            continue
        try:
            again = await reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad object must never stop the operator
            on_error(key, exc, queue.add_rate_limited(key))
        else:
            queue.forget(key)
            if again is not None:
                queue.add_after(key, again)
        finally:
            queue.done(key)
