"""Per-attempt time limits, Celery style.

* Soft limit: SIGALRM raises ``SoftTimeLimitExceeded`` in the main thread, where the task
  runs, so it can catch it and clean up.
* Hard limit: a watchdog thread ends the process at the deadline whatever the task is doing.
  It cannot interrupt C code that holds the GIL; the Job's ``activeDeadlineSeconds`` is the
  backstop for that.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType

from bgjobs_worker.errors import SoftTimeLimitExceeded


@contextlib.contextmanager
def soft_time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded(f"soft time limit of {seconds:g}s exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def hard_time_limit(seconds: float | None, on_expire: Callable[[], None]) -> Iterator[None]:
    """Call ``on_expire`` from a watchdog thread if the block is still running after seconds.

    ``on_expire`` is expected to end the process (``os._exit``); the block cannot be
    interrupted from another thread any other way.
    """
    if not seconds:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        if not finished.wait(seconds):
            on_expire()

    watchdog = threading.Thread(target=watch, name="bgjobs-time-limit", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        finished.set()


def main_thread_stack() -> str:
    """Where the main thread (the task) is right now: the hard limit's "traceback"."""
    main = threading.main_thread().ident
    frame = sys._current_frames().get(main) if main is not None else None
    return "".join(traceback.format_stack(frame)) if frame is not None else ""
