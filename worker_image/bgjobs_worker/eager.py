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
from bgjobs_worker.batch_keys import as_item
from bgjobs_worker.canvas import BatchCall, Canvas, Signature, Step, call_args, flatten
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

    # Celery's AsyncResult API, so tests written for task_always_eager port unchanged.
    @property
    def state(self) -> str:
        return self.status

    @property
    def info(self) -> Any:
        """The result once it succeeded; the error otherwise (the last progress report
        while it runs, which in eager mode it never does)."""
        return self.result if self.successful else self.error

    def ready(self) -> bool:
        return True

    def failed(self) -> bool:
        return not self.successful

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        if not self.successful and propagate:
            raise TaskFailed(self.error or {})
        return self.result if self.successful else self.error


class TaskFailed(Exception):
    """``get()`` of an eager run that failed: the task's exception type and message."""

    def __init__(self, error: dict[str, str]) -> None:
        self.type = error.get("type")
        self.message = error.get("message")
        super().__init__(f"{self.type}: {self.message}")


@dataclass(frozen=True)
class EagerWorkflowResult:
    """A canvas run in process: each step's EagerResult; steps after a failure never ran."""

    steps: list[Step]
    results: dict[str, EagerResult]

    @property
    def failed_step(self) -> str | None:
        return next((n for n, r in self.results.items() if not r.successful), None)

    @property
    def state(self) -> str:
        if self.failed_step is not None:
            return "FAILURE"
        return "SUCCESS" if len(self.results) == len(self.steps) else "PENDING"

    def ready(self) -> bool:
        return True

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        failed = self.failed_step
        if failed is not None:
            if propagate:
                raise TaskFailed(self.results[failed].error or {})
            return self.results[failed].error
        needed = {d for s in self.steps for d in s.depends_on}
        ends = [self.results[s.name].result for s in self.steps if s.name not in needed]
        return ends[0] if len(ends) == 1 else ends


def run_canvas(canvas: Canvas) -> EagerResult | EagerWorkflowResult:
    """Run a signature, chain, group or chord here and now, passing results as the
    operator does (``bgjobs_worker.canvas.call_args``); the first failure stops it."""
    if isinstance(canvas, Signature):
        return _run_signature(canvas, list(canvas.args))
    steps = flatten(canvas)
    results: dict[str, EagerResult] = {}
    for step in steps:
        args = call_args(
            step.signature.args,
            [results[d].result for d in step.depends_on],
            step.signature.immutable,
        )
        results[step.name] = _run_signature(step.signature, args)
        if not results[step.name].successful:
            break
    return EagerWorkflowResult(steps, results)


@dataclass(frozen=True)
class EagerBatchResult:
    """A batch run in process: each item's EagerResult, in item order. ``get()`` returns
    the list of results (Celery's group result); a failed item raises unless
    ``propagate=False``, which puts its error in its place."""

    items: list[EagerResult]

    @property
    def successful(self) -> bool:
        return all(r.successful for r in self.items)

    @property
    def state(self) -> str:
        return "SUCCESS" if self.successful else "FAILURE"

    def ready(self) -> bool:
        return True

    def failed(self) -> bool:
        return not self.successful

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        return [r.get(propagate=propagate) for r in self.items]


def run_batch(call: BatchCall) -> EagerBatchResult:
    """Each item of a batch as its own call with the batch's retry settings, as the warm
    workers run them (a list item is positional arguments, a mapping keyword arguments)."""
    opts = call.options
    items: Iterable[Any] = call.items
    if call.producer is not None:  # the producer runs here too; its failure is the batch's
        made = run(call.producer.task, *call.producer.args, **call.producer.kwargs)
        if not made.successful:
            return EagerBatchResult([made])
        items = [as_item(i) for i in made.result or ()]
    results = []
    for item in items:
        args, kwargs = (list(item), {}) if isinstance(item, list | tuple) else ([], dict(item))
        results.append(
            run(
                call.task,
                *args,
                max_retries=int(opts.get("max_retries") or 0),
                retry_on=opts.get("retry_on"),
                permanent_on=opts.get("permanent_on"),
                **kwargs,
            )
        )
    return EagerBatchResult(results)


def _run_signature(sig: Signature, args: list[Any]) -> EagerResult:
    opts = sig.options
    return run(
        sig.task,
        *args,
        max_retries=int(opts.get("max_retries") or 0),
        retry_on=opts.get("retry_on"),
        permanent_on=opts.get("permanent_on"),
        **sig.kwargs,
    )


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
