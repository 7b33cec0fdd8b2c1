"""Event handlers that only keep the stores and enqueue keys: BackgroundJob and Job events
come from the operator's own informers (informer.py), the other kinds through kopf.

Only event handlers are used, so kopf itself writes nothing to the watched objects: no
progress annotations, no last-handled-configuration, no finalizers (README "API writes").
Every reconcile happens on the work queue (runtime.py, workqueue.py); a handler costs a
trim of the event's object and a dict update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf

from bgjobs.api import names
from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs_operator import status as st
from bgjobs_operator.runtime import Runtime
from bgjobs_operator.store import Store

MANAGED = {names.MANAGED_BY: names.MANAGER}
_runtime: Runtime | None = None


def install(rt: Runtime) -> None:
    global _runtime
    _runtime = rt


def _rt() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator runtime is not installed (bgjobs_operator.main)")
    return _runtime


def _apply(store: Store, event: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the store in step with one watch event; returns the event's object. kopf's raw
    event is used as is (a Body view would be copied field by field); the store trims it."""
    obj = cast(dict[str, Any], event["object"])
    if event.get("type") == "DELETED":
        store.remove(obj)
    else:
        store.put(obj)
    return obj


def _apply_and_enqueue(kind: str, store: Store, event: Mapping[str, Any]) -> None:
    """The common case: keep the store, and reconcile the object itself unless it is gone
    (its owned objects follow through garbage collection)."""
    obj = _apply(store, event)
    if event.get("type") != "DELETED":
        _rt().queue.add((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))


def _where(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _label(obj: dict[str, Any], name: str) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(name)


def on_backgroundjob(event: Mapping[str, Any]) -> None:
    """BackgroundJob events, from the operator's own informer (informer.py), not kopf."""
    rt = _rt()
    obj = _apply(rt.backgroundjobs, event)
    ns, name = _where(obj)
    if event.get("type") == "DELETED" or st.is_terminal(obj):
        rt.gone_jobs.pop((ns, name), None)
    if event.get("type") == "DELETED":
        rt.progress.pop((ns, name), None)
        rt.waiting.pop((ns, name), None)
    else:
        rt.queue.add(("BackgroundJob", ns, name))
    queue = (obj.get("status") or {}).get("queue") or (obj.get("spec") or {}).get("queue")
    if queue and rt.jobqueues.get((ns, queue)) is not None:
        rt.queue.add(("JobQueue", ns, queue))  # a waiting job's priority may have changed
    schedule = _label(obj, names.SCHEDULE)
    if schedule:  # a run changed: the schedule's lastRun/active follow
        rt.queue.add(("JobSchedule", ns, schedule))
    workflow = _label(obj, names.WORKFLOW)
    if workflow:  # a step changed: the next steps may start, the workflow's status follows
        rt.queue.add(("JobWorkflow", ns, workflow))


def on_job(event: Mapping[str, Any]) -> None:
    """Events of the Jobs this operator made, from its own informer (informer.py)."""
    rt = _rt()
    obj = _apply(rt.jobs, event)
    ns, name = _where(obj)
    if event.get("type") == "DELETED":
        _remember_gone(rt, obj)
    rt.queue.add(("BackgroundJob", ns, name))  # same name: its job, or a run to adopt
    queue = _label(obj, names.QUEUE)
    if queue and rt.jobqueues.get((ns, queue)) is not None:
        rt.queue.add(("JobQueue", ns, queue))
    elif queue and queue in rt.config.queue_limits:
        rt.queue.add(("Queue", ns, queue))


def _remember_gone(rt: Runtime, job: dict[str, Any]) -> None:
    """A deleted Job of an unfinished BackgroundJob: that job started, even if no status
    said so yet (Pending is never written), so it must never get a second Job; the
    BackgroundJob's own deletion, whose event may come later, is often why."""
    ns, name = _where(job)
    bj = rt.backgroundjobs.get((ns, name))
    if bj is None or st.is_terminal(bj):
        return
    uid = bj["metadata"].get("uid")
    if any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or []):
        rt.gone_jobs[(ns, name)] = uid


@kopf.on.event(GROUP, VERSION, "jobschedules")
async def on_jobschedule(event: kopf.RawEvent, **_: Any) -> None:
    _apply_and_enqueue("JobSchedule", _rt().schedules, event)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
async def on_cronjob(event: kopf.RawEvent, **_: Any) -> None:
    rt = _rt()
    obj = _apply(rt.cronjobs, event)
    schedule = _label(obj, names.SCHEDULE)
    if schedule:
        rt.queue.add(("JobSchedule", obj["metadata"]["namespace"], schedule))


@kopf.on.event(GROUP, VERSION, "deadletters")
async def on_deadletter(event: kopf.RawEvent, **_: Any) -> None:
    _apply_and_enqueue("DeadLetter", _rt().deadletters, event)


@kopf.on.event(GROUP, VERSION, "jobworkflows")
async def on_jobworkflow(event: kopf.RawEvent, **_: Any) -> None:
    _apply_and_enqueue("JobWorkflow", _rt().workflows, event)


@kopf.on.event(GROUP, VERSION, "jobqueues")
async def on_jobqueue(event: kopf.RawEvent, **_: Any) -> None:
    rt = _rt()
    ns, name = _where(_apply(rt.jobqueues, event))
    # Deleted too: its waiting Jobs then run unqueued (or under --queue-limits).
    rt.queue.add(("JobQueue", ns, name))
    # Schedules whose runs it routes or admits bring their CronJob's template along.
    for _ns, sched_name in rt.schedules.keys("namespace", ns):
        rt.queue.add(("JobSchedule", ns, sched_name))
    if name in rt.config.queue_limits:
        rt.queue.add(("Queue", ns, name))
