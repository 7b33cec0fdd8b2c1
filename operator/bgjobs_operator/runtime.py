"""Process-wide state of a running operator: configuration, API and Redis access, the
stores the watch events keep, and the one work queue every reconcile goes through."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import Progress
from bgjobs_operator.conditions import utcnow
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.kubeapi import Api
from bgjobs_operator.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from bgjobs_operator.status import awaits_dead_letter, job_condition
from bgjobs_operator.store import Store
from bgjobs_operator.workqueue import WorkQueue
from bgjobs_worker.batch_keys import BatchCounts

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
# What the work queue holds: (kind, namespace, name). Kinds are the watched ones (JobQueue
# among them) plus "Queue", a --queue-limits queue's name (deprecated; its admission is
# reconciled like an object).
WorkKey = tuple[str, str, str]

# What the stores keep of an object's metadata.
_META_KEYS = (
    "name",
    "namespace",
    "uid",
    "generation",
    "labels",
    "ownerReferences",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)
_FINISHED = ("Succeeded", "Failed", "Cancelled")
_FINISHED_STATUS_KEYS = (
    "phase",
    "deadLetter",
    "error",
    "attempts",
    "startTime",
    "completionTime",
    "jobName",
)


def _meta(md: dict[str, Any], annotations: dict[str, Any] | None) -> dict[str, Any]:
    return {**{k: md.get(k) for k in _META_KEYS}, "annotations": annotations}


def _ours(md: dict[str, Any]) -> dict[str, Any]:
    """Our own annotations only: kubectl's last-applied-configuration is a copy of the
    spec, and keeping it for every object is what makes memory grow."""
    return {k: v for k, v in (md.get("annotations") or {}).items() if k.startswith("bgjobs.dev/")}


def trim_job(job: dict[str, Any]) -> dict[str, Any]:
    """What the operator needs of a batch Job; keeps memory flat with many jobs."""
    return {
        "metadata": _meta(job["metadata"], None),
        "spec": {"suspend": (job.get("spec") or {}).get("suspend")},
        "status": job.get("status") or {},
    }


def trim_cronjob(cron: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _meta(cron["metadata"], _ours(cron["metadata"])),
        "status": cron.get("status") or {},
    }


def trim_object(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": _meta(md, _ours(md)),
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


def trim_backgroundjob(bj: dict[str, Any]) -> dict[str, Any]:
    """A finished BackgroundJob needs little more than its phase (schedule history, the
    jobs gauge). A Failed one still waiting for its DeadLetter keeps everything: that
    needs the spec. A workflow's step keeps its result too: the next steps receive it."""
    st = bj.get("status") or {}
    if st.get("phase") not in _FINISHED or awaits_dead_letter(st):
        return trim_object(bj)
    md, spec = bj["metadata"], bj.get("spec") or {}
    kept: tuple[str, ...] = _FINISHED_STATUS_KEYS
    if (md.get("labels") or {}).get(names.WORKFLOW):
        kept = (*kept, "result", "resultRef", "progress")
    return {
        "apiVersion": bj.get("apiVersion"),
        "kind": bj.get("kind"),
        "metadata": _meta(md, _ours(md)),
        "spec": {k: spec.get(k) for k in ("task", "queue", "critical")},
        "status": {k: st[k] for k in kept if st.get(k) is not None},
    }


def _label(obj: dict[str, Any], name: str) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(name)


def by_schedule(bj: dict[str, Any]) -> Iterable[Hashable]:
    schedule = _label(bj, names.SCHEDULE)
    return ((bj["metadata"]["namespace"], schedule),) if schedule else ()


def by_workflow(bj: dict[str, Any]) -> Iterable[Hashable]:
    workflow = _label(bj, names.WORKFLOW)
    return ((bj["metadata"]["namespace"], workflow),) if workflow else ()


def unfinished(bj: dict[str, Any]) -> Iterable[Hashable]:
    st = bj.get("status") or {}
    return (True,) if st.get("phase") not in _FINISHED or awaits_dead_letter(st) else ()


def by_namespace(obj: dict[str, Any]) -> Iterable[Hashable]:
    return (obj["metadata"]["namespace"],)


def by_active_queue(job: dict[str, Any]) -> Iterable[Hashable]:
    """(namespace, queue) of a Job that still counts against its queue's concurrency."""
    queue = _label(job, names.QUEUE)
    if queue is None or job_condition(job) is not None or job["metadata"].get("deletionTimestamp"):
        return ()
    return ((job["metadata"]["namespace"], queue),)


@dataclass
class Runtime:
    config: OperatorConfig
    api: Api
    redis: aioredis.Redis | None = None
    clock: Callable[[], datetime] = utcnow
    queue: WorkQueue[WorkKey] = field(default_factory=WorkQueue)
    backgroundjobs: Store = field(default_factory=lambda: Store(trim_backgroundjob))
    jobs: Store = field(default_factory=lambda: Store(trim_job))
    schedules: Store = field(default_factory=lambda: Store(trim_object))
    cronjobs: Store = field(default_factory=lambda: Store(trim_cronjob))
    deadletters: Store = field(default_factory=lambda: Store(trim_object))
    workflows: Store = field(default_factory=lambda: Store(trim_object))
    jobqueues: Store = field(default_factory=lambda: Store(trim_object))
    # Latest progress per running job, as the progress pump last read it from Redis.
    progress: dict[Key, Progress] = field(default_factory=dict)
    # Latest item counts per running batch, as the progress pump last read them.
    batches: dict[Key, BatchCounts] = field(default_factory=dict)
    # Queued Jobs resumed whose update the watch has not delivered yet.
    resumed: set[Key] = field(default_factory=set)
    # Why each queued Job waits, as its JobQueue's last reconcile decided: (reason, message).
    # The BackgroundJob reconciler turns it into the Queued condition.
    waiting: dict[Key, tuple[str, str]] = field(default_factory=dict)
    # Admission times per JobQueue (namespace, queue), for status.admittedLastMinute: every
    # replica's, loaded from Redis once, then this process's own added as it admits.
    admissions: dict[Key, deque[datetime]] = field(default_factory=dict)
    # When each JobQueue's status was last written (monotonic seconds), to coalesce writes.
    queue_status_written: dict[Key, float] = field(default_factory=dict)
    # Jobs seen deleted while their BackgroundJob was unfinished: (namespace, name) -> the
    # owner's uid. Such a job started, status or not, so its Job is never made again
    # (backgroundjob.py); dropped when the BackgroundJob finishes or goes.
    gone_jobs: dict[Key, str] = field(default_factory=dict)
    # Namespaces whose JobQueues were listed from the API once (backgroundjob.py).
    jobqueues_listed: set[str] = field(default_factory=set)
    monotonic: Callable[[], float] = time.monotonic
    limiter: Limiter | None = None

    def __post_init__(self) -> None:
        self.backgroundjobs.add_index("schedule", by_schedule)
        self.backgroundjobs.add_index("workflow", by_workflow)
        self.backgroundjobs.add_index("unfinished", unfinished)
        self.jobs.add_index("queue", by_active_queue)
        self.jobqueues.add_index("namespace", by_namespace)
        self.schedules.add_index("namespace", by_namespace)

    def forget_cluster_state(self) -> None:
        """Empty every store and what was derived from them, as at a fresh start: a replica
        that stood by (standby.py) lists the cluster again instead of trusting copies that
        stopped following it. The work queue's keys stay; reconciling a key whose object is
        not listed yet does nothing, and its listing enqueues it again."""
        for store in (
            self.backgroundjobs,
            self.jobs,
            self.schedules,
            self.cronjobs,
            self.deadletters,
            self.workflows,
            self.jobqueues,
        ):
            store.clear()
        for memory in (
            self.progress,
            self.batches,
            self.resumed,
            self.waiting,
            self.gone_jobs,
            self.queue_status_written,
            self.jobqueues_listed,
            self.admissions,  # reloaded from Redis (controllers/jobqueue.py)
        ):
            memory.clear()

    def rate_limiter(self) -> Limiter:
        """Redis' GCRA when Redis is configured (cluster-wide), else one in memory."""
        if self.limiter is None:
            if self.redis is not None:
                self.limiter = RedisLimiter(self.redis)
            else:
                log.warning("no Redis: JobQueue rate limits hold per operator process only")
                self.limiter = MemoryLimiter(self.monotonic)
        return self.limiter

    def queued_jobs(self) -> list[tuple[Key, bool]]:
        """((namespace, queue), suspended) of every unfinished Job with a queue: the
        queue gauge, read at scrape time."""
        return [
            (value, bool(job["spec"].get("suspend")))
            for job in self.jobs.values()
            for value in by_active_queue(job)
            if isinstance(value, tuple)
        ]

    def unfinished_jobs(self) -> list[Key]:
        return sorted(self.backgroundjobs.keys("unfinished", True))

    async def read_redis(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Await an async Redis read; None when Redis is absent or down (progress and
        results then come from termination messages)."""
        if self.redis is None:
            return None
        try:
            return await fn(self.redis, *args)
        except (RedisError, OSError) as exc:
            log.debug("Redis read failed: %s", exc)
            return None
