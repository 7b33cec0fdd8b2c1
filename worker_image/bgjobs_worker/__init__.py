"""bgjobs worker runtime: define tasks with ``@task``; the worker pod runs one by name.

    from bgjobs_worker import task, PermanentError

    @task(name="reports.export", retry_on=(ConnectionError,), bind=True)
    def export(ctx, report_id: int):
        ctx.progress(current=1, total=2, stage="rows")
        return {"url": "..."}

Only the standard library and ``redis`` are imported, so worker images stay small.
"""

from bgjobs_worker.context import JobIdentity, TaskContext, current_task
from bgjobs_worker.errors import (
    ExitCode,
    PermanentError,
    SoftTimeLimitExceeded,
    TaskAlreadyRegistered,
    TaskNotRegistered,
    WorkerShutdown,
)
from bgjobs_worker.registry import Task, get_task, registered_tasks, task
from bgjobs_worker.retry_policy import RetryPolicy

__all__ = [
    "ExitCode",
    "JobIdentity",
    "PermanentError",
    "RetryPolicy",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskAlreadyRegistered",
    "TaskContext",
    "TaskNotRegistered",
    "WorkerShutdown",
    "current_task",
    "get_task",
    "registered_tasks",
    "task",
]
