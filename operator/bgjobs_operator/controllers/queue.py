"""The deprecated --queue-limits flag: resume queued Jobs while their queue has room
(queues.py has the rule). Reads only the Jobs of this queue in this namespace, through the
store's queue index. A JobQueue of the same name takes precedence."""

from __future__ import annotations

from bgjobs_operator.actions import Decision, PatchObject
from bgjobs_operator.queues import to_resume
from bgjobs_operator.runtime import Runtime


def decide(rt: Runtime, namespace: str, queue: str) -> Decision:
    limit = rt.config.queue_limits.get(queue)
    if not limit or rt.jobqueues.get((namespace, queue)) is not None:
        return Decision()  # a JobQueue of this name takes over (controllers/jobqueue.py)
    jobs = rt.jobs.by_index("queue", (namespace, queue))
    return Decision(
        actions=[
            PatchObject("Job", namespace, name, {"spec": {"suspend": False}})
            for name in to_resume(jobs, limit)
        ]
    )


async def admit(rt: Runtime, namespace: str, queue: str) -> None:
    for action in decide(rt, namespace, queue).actions:
        assert isinstance(action, PatchObject)
        # The response goes into the store at once, so the next admission counts this Job
        # as running even before its watch event arrives: no overshoot in a burst.
        rt.jobs.put(await rt.api.patch(action.kind, action.namespace, action.name, action.patch))
