"""kopf wiring: thin handlers that feed the caches and call the reconcilers.

Only event handlers are used, so kopf itself writes nothing to the watched objects: no
progress annotations, no last-handled-configuration, no finalizers (README "API writes").
Level-based reconcilers make that safe: every event re-derives the whole state.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from bgjobs.api import names
from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs_operator import metrics, queues, runtime
from bgjobs_operator.controllers import backgroundjob, deadletter, jobschedule, queue
from bgjobs_operator.runtime import trim_job, trim_object

log = logging.getLogger(__name__)
MANAGED = {names.MANAGED_BY: names.MANAGER}


def _plain(body: Any) -> dict[str, Any]:
    """A kopf Body as plain dicts/lists (kopf hands out read-only views)."""
    if isinstance(body, dict) or hasattr(body, "items"):
        return {k: _plain(v) for k, v in body.items()}
    if isinstance(body, list | tuple):
        return [_plain(v) for v in body]  # type: ignore[return-value]
    return body


def _guard(kind: str, fn: Any, *args: Any) -> None:
    """A reconcile error is logged and counted, never raised into kopf: the next event or
    the periodic resync tries again, and a bad object can never stop the operator."""
    try:
        fn(*args)
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind).inc()
        log.exception("reconciling %s failed; will retry on the next event or resync", kind)


@kopf.on.event(GROUP, VERSION, "backgroundjobs")
def on_backgroundjob(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    rt = runtime.get()
    bj = trim_object(_plain(body))
    key = (bj["metadata"]["namespace"], bj["metadata"]["name"])
    if event.get("type") == "DELETED":
        rt.backgroundjobs.pop(key, None)
        rt.forget_lock(bj["metadata"]["uid"])
        return
    _guard("BackgroundJob", backgroundjob.reconcile, rt, bj)
    schedule = (bj["metadata"].get("labels") or {}).get(names.SCHEDULE)
    sched = rt.schedules.get((key[0], schedule)) if schedule else None
    if sched is not None:  # a run changed: the schedule's lastRun/active follow
        _guard("JobSchedule", jobschedule.reconcile, rt, sched)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def on_job(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    rt = runtime.get()
    job = trim_job(_plain(body))
    key = (job["metadata"]["namespace"], job["metadata"]["name"])
    if event.get("type") == "DELETED":
        if rt.jobs.get(key, {}).get("metadata", {}).get("uid") == job["metadata"]["uid"]:
            rt.jobs.pop(key, None)
    else:
        rt.remember(rt.jobs, job)
    if rt.config.queue_limits:
        _guard("Queue", queue.admit, rt, key[0], queues.queue_of(job))
    schedule = (job["metadata"].get("labels") or {}).get(names.SCHEDULE)
    bj = rt.backgroundjobs.get(key)
    if (
        schedule
        and event.get("type") != "DELETED"
        and (bj is None or not backgroundjob.owns(job, bj))
    ):
        _guard("JobSchedule", jobschedule.adopt_run, rt, job)
        return
    if bj is not None:
        _guard("BackgroundJob", backgroundjob.reconcile, rt, bj)


@kopf.on.event(GROUP, VERSION, "deadletters")
def on_deadletter(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    _guard("DeadLetter", deadletter.reconcile, runtime.get(), _plain(body))


@kopf.on.event(GROUP, VERSION, "jobschedules")
def on_jobschedule(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    rt = runtime.get()
    sched = trim_object(_plain(body))
    key = (sched["metadata"]["namespace"], sched["metadata"]["name"])
    if event.get("type") == "DELETED":
        rt.schedules.pop(key, None)
        return
    rt.remember(rt.schedules, sched)
    _guard("JobSchedule", jobschedule.reconcile, rt, sched)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
def on_cronjob(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    rt = runtime.get()
    cron = _plain(body)
    if event.get("type") == "DELETED":
        rt.cronjobs.pop((cron["metadata"]["namespace"], cron["metadata"]["name"]), None)
        return
    rt.remember(rt.cronjobs, cron)
    schedule = (cron["metadata"].get("labels") or {}).get(names.SCHEDULE)
    sched = rt.schedules.get((cron["metadata"]["namespace"], schedule or ""))
    if sched is not None:
        _guard("JobSchedule", jobschedule.reconcile, rt, sched, cron)
