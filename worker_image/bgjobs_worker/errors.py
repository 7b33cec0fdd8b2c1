"""Exceptions a task can raise or catch, and the exit codes they become.

The exit codes are the contract with the Job's ``podFailurePolicy`` (DESIGN.md section 2):
the operator turns exit 3 into "FailJob" and lets exit 1 and 4 count toward ``backoffLimit``.
Change them only together with the operator.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    RETRYABLE = 1
    PERMANENT = 3
    TIME_LIMIT = 4
    # 128 + SIGTERM, what a shell reports for a process killed by SIGTERM, so the code reads
    # the same whether the task cleaned up and exited or was killed outright.
    SHUTDOWN = 143


class PermanentError(Exception):
    """Raise to fail the job without retrying, whatever the retry policy says."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside the task when its soft time limit passes; catch it to clean up."""


class WorkerShutdown(BaseException):
    """Raised inside the task when the pod is being stopped (SIGTERM).

    A BaseException, like KeyboardInterrupt, so that a task's broad ``except Exception``
    (a retry loop, a "log and carry on") does not swallow the cancellation; ``finally``
    blocks and ``except WorkerShutdown`` still run.
    """


# The worker's own reasons to fail permanently. They derive from PermanentError so the one
# classification rule ("PermanentError => exit 3") covers them, in the worker and in eager mode.


class ConfigError(PermanentError):
    """The worker's environment is unusable (missing task name, malformed numbers)."""


class TaskNotRegistered(PermanentError):
    """No task is registered under the requested name."""


class TaskImportError(PermanentError):
    """A module listed in BGJOBS_TASK_MODULES failed to import."""


class InvalidArguments(PermanentError):
    """The job's args/kwargs are not valid JSON or do not fit the task's signature."""


class ResultNotSerializable(PermanentError):
    """The task returned a value that cannot be stored as JSON; retrying will not help."""


class TaskAlreadyRegistered(ValueError):
    """Another function is already registered under this task name."""


class TimeLimitExceeded(Exception):
    """The hard time limit ended the attempt; never raised, it names the error in reports."""
