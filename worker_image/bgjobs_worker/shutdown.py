"""SIGTERM (pod deleted, job cancelled) becomes ``WorkerShutdown`` raised inside the task.

Kubernetes sends SIGTERM, waits the grace period, then SIGKILLs. Raising an exception lets
the task's ``finally``/``except WorkerShutdown`` release what it holds in that window.
"""

from __future__ import annotations

import signal
from types import FrameType

from bgjobs_worker.errors import WorkerShutdown


class ShutdownSignal:
    def __init__(self) -> None:
        self.requested = False
        self._raising = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def stop_raising(self) -> None:
        """Once the task has finished, let the worker report its outcome undisturbed."""
        self._raising = False

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        first = not self.requested
        self.requested = True
        # Raise once only: a second SIGTERM must not break the task's clean-up of the first.
        if first and self._raising:
            raise WorkerShutdown("received SIGTERM: the pod is being stopped")
