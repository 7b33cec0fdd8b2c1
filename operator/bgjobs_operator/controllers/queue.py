"""Resume queued Jobs while their queue has room (see queues.py for the rule)."""

from __future__ import annotations

from bgjobs_operator.queues import queue_of, to_resume
from bgjobs_operator.runtime import Runtime


def admit(rt: Runtime, namespace: str, queue: str | None) -> None:
    limit = rt.config.queue_limits.get(queue or "")
    if not limit:
        return
    with rt.lock(f"queue/{namespace}/{queue}"):
        jobs = [
            j for (ns, _), j in list(rt.jobs.items()) if ns == namespace and queue_of(j) == queue
        ]
        present = {j["metadata"]["name"]: j for j in jobs}
        for key in [k for k in rt.resumed if k[0] == namespace]:
            job = present.get(key[1])
            if job is None or not job["spec"].get("suspend"):
                rt.resumed.discard(key)  # the watch has caught up (or the Job is gone)
        just = {name for ns, name in rt.resumed if ns == namespace}
        for name in to_resume(jobs, limit, just):
            rt.api.resume_job(namespace, name)
            rt.resumed.add((namespace, name))
