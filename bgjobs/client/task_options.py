"""What a task's decorator says about where it runs, as the client reads it on submit.

``@task(queue="heavy")`` routes a submission that names no queue; ``@task(rate_limit="10/m")``
is a promise the client checks: rates are enforced cluster-wide by the rateLimit of the
JobQueue the job goes to (Celery's are per worker), so a submission whose queue does not
enforce exactly that rate is refused with what to apply, never sent to run unthrottled.
Only tasks this process has imported are known; the worker never talks to the API server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bgjobs.api.rules import RATE_LIMIT_PATTERN, route


@dataclass(frozen=True)
class Declared:
    queue: str | None = None
    rate_limit: str | None = None


def declared(task: str) -> Declared:
    """The options of ``@task(...)`` for `task` when this process has imported it."""
    try:
        from bgjobs_worker.registry import registered_tasks
    except ImportError:
        return Declared()
    registered = registered_tasks().get(task)
    if registered is None:
        return Declared()
    return Declared(registered.queue, getattr(registered, "rate_limit", None))


def rate_limit_problem(
    task: str,
    rate: str,
    queue: str | None,
    jobqueues: Iterable[dict[str, Any]],
    namespace: str,
) -> str | None:
    """Why a submission of `task`, declared with ``rate_limit=rate`` and sent to `queue`
    (None: the JobQueues' routes decide, as the operator does), would not be held to that
    rate; None when its JobQueue enforces exactly it."""
    where = f"@task(rate_limit={rate!r}) of {task}"
    if not re.fullmatch(RATE_LIMIT_PATTERN, rate):
        return f"{where}: not N/s, N/m or N/h with N from 1 to 999999"
    queues = list(jobqueues)
    name = queue or route(task, queues)
    fix = f"a JobQueue with spec.rateLimit: {rate}"
    if name is None:
        return (
            f"{where}: the job goes to no queue, and rates are enforced per JobQueue; give the "
            f"task queue=... (or a route) and apply {fix} in namespace {namespace}"
        )
    jq = next((q for q in queues if q["metadata"]["name"] == name), None)
    if jq is None:
        return f"{where}: queue {name!r} has no JobQueue in namespace {namespace}; apply {fix}"
    actual = (jq.get("spec") or {}).get("rateLimit")
    if actual != rate:
        return (
            f"{where}: JobQueue {name} in namespace {namespace} has rateLimit "
            f"{actual or 'none'}; make it {rate} or change the decorator"
        )
    return None
