"""The task's view of its job: identity, attempt number, arguments and progress reporting."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bgjobs_worker.progress import Number, build_progress

log = logging.getLogger(__name__)

ProgressSink = Callable[[dict[str, Any]], object]


@dataclass(frozen=True)
class JobIdentity:
    """Which BackgroundJob (and which pod of its Job) this process works for."""

    namespace: str = ""
    job_name: str = ""
    job_uid: str = ""
    pod_name: str = ""


def _discard(_snapshot: dict[str, Any]) -> None:
    return None


@dataclass
class TaskContext:
    """Passed as the first argument to ``bind=True`` tasks; ``current_task()`` otherwise."""

    task_name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    max_retries: int = 0
    # False when Redis could not count attempts: ``attempt`` is then a guess of 1.
    attempt_known: bool = True
    identity: JobIdentity = field(default_factory=JobIdentity)
    report: ProgressSink = field(default=_discard, repr=False)

    @property
    def namespace(self) -> str:
        return self.identity.namespace

    @property
    def job_name(self) -> str:
        return self.identity.job_name

    @property
    def job_uid(self) -> str:
        return self.identity.job_uid

    @property
    def pod_name(self) -> str:
        return self.identity.pod_name

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now would not be retried.

        With an unknown attempt number only ``max_retries == 0`` is certain; otherwise say
        False, so a task does not take its last-resort fallback while retries remain.
        Pod disruptions (evictions: SIGTERM) give their attempt number back, as the Job
        does not count them either (runner.disrupted). Only a pod deleted outright, which
        the Job counts, leaves this one attempt late, and a disrupted task that outlives
        its grace period (SIGKILL) one attempt early.
        """
        if not self.attempt_known:
            return self.max_retries == 0
        return self.attempt >= self.max_retries + 1

    def progress(
        self,
        current: Number | None = None,
        total: Number | None = None,
        percent: Number | None = None,
        stage: str | None = None,
        message: str | None = None,
    ) -> None:
        """Report progress; ``percent`` is computed from current/total when not given.

        Never raises: losing a progress report must not fail the work it describes.
        """
        try:
            snapshot = build_progress(
                attempt=self.attempt,
                current=current,
                total=total,
                percent=percent,
                stage=stage,
                message=message,
            )
            self.report(snapshot)
        except Exception:
            log.warning("progress report dropped", exc_info=True)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "bgjobs_current_task", default=None
)


def active_context() -> TaskContext | None:
    return _current.get()


def current_task() -> TaskContext:
    """The context of the task running now (for tasks registered without ``bind=True``)."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_task() called outside a running bgjobs task")
    return ctx


@contextlib.contextmanager
def activated(ctx: TaskContext) -> Iterator[TaskContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
