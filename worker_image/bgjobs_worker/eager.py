"""Run a task in-process for unit tests, the way Celery's ``task_always_eager`` does.

The same code as the worker runs each attempt (same context API, same classification into
exit codes, same JSON round trip of the result), attempts follow each other without delay,
and every progress report is kept so a test can assert on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bgjobs_worker.attempt import Outcome, execute
from bgjobs_worker.context import JobIdentity, TaskContext
from bgjobs_worker.errors import ExitCode
from bgjobs_worker.registry import Task, get_task
from bgjobs_worker.retry_policy import Matcher

# What the Job does with each exit code by default: 1 and 4 use up a retry, the rest end it.
RETRIED_EXIT_CODES = frozenset({ExitCode.RETRYABLE, ExitCode.TIME_LIMIT})


@dataclass(frozen=True)
class EagerResult:
    status: str
    result: Any
    attempts: int
    exit_code: int
    error: dict[str, str] | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)

    @property
    def successful(self) -> bool:
        return self.status == "SUCCESS"


def run(
    task_or_name: Task | str,
    /,
    *args: Any,
    max_retries: int = 0,
    retry_on: Iterable[Matcher] | None = None,
    permanent_on: Iterable[Matcher] | None = None,
    **kwargs: Any,
) -> EagerResult:
    """Run ``task_or_name`` with up to ``max_retries`` retries; never raises for task errors.

    ``retry_on``/``permanent_on`` replace the decorator's lists, like the BackgroundJob
    spec does. An unknown task name raises ``TaskNotRegistered`` (a test bug, not a result).
    """
    task = task_or_name if isinstance(task_or_name, Task) else get_task(task_or_name)
    policy = task.policy.overridden_by(tuple(retry_on or ()), tuple(permanent_on or ()))
    identity = JobIdentity(namespace="default", job_name="eager", job_uid=str(uuid.uuid4()))
    reported: list[dict[str, Any]] = []

    outcome: Outcome | None = None
    for attempt in range(1, max_retries + 2):
        ctx = TaskContext(
            task_name=task.name,
            args=list(args),
            kwargs=dict(kwargs),
            attempt=attempt,
            max_retries=max_retries,
            identity=identity,
            report=reported.append,
        )
        outcome = execute(task, ctx, policy)
        if outcome.exit_code not in RETRIED_EXIT_CODES:
            break
    assert outcome is not None  # the loop runs at least once

    error = None
    if outcome.error is not None:
        error = {"type": outcome.error.type, "message": outcome.error.message}
    return EagerResult(
        status=outcome.status,
        result=outcome.result,
        attempts=outcome.attempt,
        exit_code=int(outcome.exit_code),
        error=error,
        progress=reported,
    )
