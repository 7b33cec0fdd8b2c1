"""Process-wide state of a running operator: configuration, API and Redis access, the
stores the watch events keep, and the one work queue every reconcile goes through."""

from __future__ import annotations

import logging
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
from bgjobs_operator.status import awaits_dead_letter, job_condition
from bgjobs_operator.store import Store
from bgjobs_operator.workqueue import WorkQueue
from bgjobs_worker.batch_keys import BatchCounts

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
# What the work queue holds: (kind, namespace, name). Kinds are the watched ones plus
# "Queue", whose name is a queue's name (its admission is reconciled like an object).
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
    needs the spec."""
    st = bj.get("status") or {}
    if st.get("phase") not in _FINISHED or awaits_dead_letter(st):
        return trim_object(bj)
    md, spec = bj["metadata"], bj.get("spec") or {}
    return {
        "apiVersion": bj.get("apiVersion"),
        "kind": bj.get("kind"),
        "metadata": _meta(md, _ours(md)),
        "spec": {k: spec.get(k) for k in ("task", "queue", "critical")},
        "status": {k: st[k] for k in _FINISHED_STATUS_KEYS if st.get(k) is not None},
    }


def _label(obj: dict[str, Any], name: str) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(name)


def by_schedule(bj: dict[str, Any]) -> Iterable[Hashable]:
    schedule = _label(bj, names.SCHEDULE)
    return ((bj["metadata"]["namespace"], schedule),) if schedule else ()


def unfinished(bj: dict[str, Any]) -> Iterable[Hashable]:
    st = bj.get("status") or {}
    return (True,) if st.get("phase") not in _FINISHED or awaits_dead_letter(st) else ()


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
    # Latest progress per running job, as the progress pump last read it from Redis.
    progress: dict[Key, Progress] = field(default_factory=dict)
    # Latest item counts per running batch, as the progress pump last read them.
    batches: dict[Key, BatchCounts] = field(default_factory=dict)
    # Queued Jobs resumed whose update the watch has not delivered yet.
    resumed: set[Key] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.backgroundjobs.add_index("schedule", by_schedule)
        self.backgroundjobs.add_index("unfinished", unfinished)
        self.jobs.add_index("queue", by_active_queue)

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
