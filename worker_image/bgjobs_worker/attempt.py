"""One attempt of a task: run it, and describe how it ended as an ``Outcome``.

Shared by the worker process and eager mode, so a unit test sees the same classification
(exit code, error type, JSON result) as a pod would.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from bgjobs_worker.context import TaskContext, activated
from bgjobs_worker.errors import ExitCode, ResultNotSerializable, WorkerShutdown
from bgjobs_worker.registry import Task
from bgjobs_worker.retry_policy import RetryPolicy, exit_code_for, qualified_name
from bgjobs_worker.timestamps import rfc3339

log = logging.getLogger(__name__)

TRACEBACK_LINES = 50


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        return cls(
            type=qualified_name(type(exc)),
            message=str(exc),
            traceback=last_lines("".join(traceback.format_exception(exc))),
        )


def last_lines(text: str, count: int = TRACEBACK_LINES) -> str:
    """The innermost frames and the error itself are at the end of a traceback."""
    return "\n".join(text.splitlines()[-count:])


@dataclass(frozen=True)
class Outcome:
    exit_code: ExitCode
    attempt: int
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def status(self) -> str:
        return "SUCCESS" if self.exit_code == ExitCode.SUCCESS else "FAILURE"

    @classmethod
    def failure(cls, exc: BaseException, policy: RetryPolicy, attempt: int) -> Outcome:
        return cls(exit_code_for(exc, policy), attempt, error=ErrorInfo.of(exc))


def result_document(outcome: Outcome, finished_at: str | None = None) -> dict[str, Any]:
    """The JSON stored at the result key (see redis_keys)."""
    doc: dict[str, Any] = {"status": outcome.status}
    if outcome.error is None:
        doc["result"] = outcome.result
    else:
        doc["exitCode"] = int(outcome.exit_code)
        doc["error"] = {
            "type": outcome.error.type,
            "message": outcome.error.message,
            "traceback": outcome.error.traceback,
        }
    doc["attempt"] = outcome.attempt
    doc["finishedAt"] = finished_at or rfc3339()
    return doc


def as_json_value(value: Any) -> Any:
    """The value as a reader of the stored JSON will see it (tuples become lists...)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializable(
            f"task returned a value that is not JSON-serialisable: {exc}"
        ) from exc


def execute(task: Task, ctx: TaskContext, policy: RetryPolicy) -> Outcome:
    """Run one attempt; every failure, WorkerShutdown included, becomes an Outcome."""
    started = time.monotonic()
    try:
        bound = task.bind_arguments(ctx, ctx.args, ctx.kwargs)
        with activated(ctx):
            value = task.fn(*bound.args, **bound.kwargs)
        outcome = Outcome(ExitCode.SUCCESS, ctx.attempt, result=as_json_value(value))
    except (Exception, WorkerShutdown) as exc:
        outcome = Outcome.failure(exc, policy, ctx.attempt)
        # Expected to recover (a retry, a cancelled pod) => warning; the job is lost => error.
        expected = outcome.exit_code in (ExitCode.RETRYABLE, ExitCode.SHUTDOWN)
        log.log(
            logging.WARNING if expected else logging.ERROR,
            "task %s failed after %.3fs with exit code %d: %s: %s",
            task.name,
            time.monotonic() - started,
            outcome.exit_code,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        return outcome
    log.info("task %s succeeded in %.3fs", task.name, time.monotonic() - started)
    return outcome
