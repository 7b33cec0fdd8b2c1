"""Reconcile one JobQueue: admit (unsuspend) its waiting Jobs, highest priority first, then
oldest, while concurrency, pause and the cluster-wide rate allow; say why the others wait;
keep the queue's status.

observe (the queue's Jobs through the store's queue index, their BackgroundJobs for the
priority) → decide (pure: who may be admitted, why the rest wait, the status) → act (one
rate token, then one unsuspend patch, per admission; the patch's response goes into the
store at once, so a burst of reconciles never overshoots the cap).

Restart safety: everything but the rate is recomputed from the Jobs (suspended = waiting,
unsuspended and unfinished = running); the rate's state is in Redis. A Job is admitted
by one merge patch of spec.suspend, so it is never admitted twice, and a waiting Job stays
in the index until it is admitted, so none is skipped.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis.exceptions import LockError, RedisError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import JobQueueSpec, JobQueueStatus
from bgjobs_operator import metrics
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.queues import (
    CONCURRENCY_LIMIT,
    QUEUE_PAUSED,
    RATE_LIMITED,
    Waiting,
)
from bgjobs_operator.ratelimit import parse_rate, rate_key
from bgjobs_operator.runtime import Runtime

log = logging.getLogger(__name__)
KIND = "JobQueue"
WINDOW = timedelta(seconds=60)
# A busy queue's status changes with every admission; it is written at most this often.
STATUS_INTERVAL = 5.0
# The admission lock outlives any admission round (a few patches) by far; a crashed holder
# frees it by expiry.
LOCK_SECONDS = 30.0
LOCK_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    jq: dict[str, Any] | None
    running: int
    waiting: list[Waiting]  # in admission order
    admitted: tuple[datetime, ...] = ()  # admissions of the last minute, oldest first
    legacy_limit: int | None = None  # --queue-limits for this name (deprecated)


@dataclass
class QueueDecision:
    admit: list[str] = field(default_factory=list)  # in order, before the rate limit
    # Why each other waiting Job waits: name -> (reason, message).
    reasons: dict[str, tuple[str, str]] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    requeue_after: float | None = None


def _created(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("creationTimestamp") or "")


def observe(rt: Runtime, namespace: str, name: str, now: datetime) -> Observed:
    running, waiting = 0, []
    for job in rt.jobs.by_index("queue", (namespace, name)):
        job_name = job["metadata"]["name"]
        if not job["spec"].get("suspend"):
            running += 1
            continue
        bj = rt.backgroundjobs.get((namespace, job_name))
        priority = int(((bj or {}).get("spec") or {}).get("priority") or 0)
        waiting.append(Waiting(job_name, priority, _created(bj) or _created(job)))
    waiting.sort(key=lambda w: w.order)
    admitted = rt.admissions.get((namespace, name), deque())
    while admitted and now - admitted[0] >= WINDOW:
        admitted.popleft()
    return Observed(
        namespace,
        name,
        rt.jobqueues.get((namespace, name)),
        running,
        waiting,
        tuple(admitted),
        rt.config.queue_limits.get(name),
    )


def _ahead(n: int, queue: str) -> str:
    return f"{n} ahead in queue {queue}"


def decide(obs: Observed, now: datetime) -> QueueDecision:
    if obs.jq is None:
        if obs.legacy_limit is not None:
            return QueueDecision()  # the deprecated flag's controller admits these
        # The JobQueue is gone: its Jobs run unqueued, as when it never existed.
        return QueueDecision(admit=[w.name for w in obs.waiting])
    try:
        spec = JobQueueSpec.model_validate(obs.jq.get("spec") or {})
    except ValidationError as exc:  # refused by the CRD; kept for objects from elsewhere
        log.warning("JobQueue %s/%s is invalid: %s", obs.namespace, obs.name, exc)
        return QueueDecision()
    queue, decision = obs.name, QueueDecision()
    if spec.paused:
        for i, w in enumerate(obs.waiting):
            decision.reasons[w.name] = (QUEUE_PAUSED, f"{_ahead(i, queue)}; the queue is paused")
    else:
        slots = len(obs.waiting)
        if spec.concurrency is not None:
            slots = max(0, spec.concurrency - obs.running)
        decision.admit = [w.name for w in obs.waiting[:slots]]
        running = obs.running + len(decision.admit)
        for i, w in enumerate(obs.waiting[slots:]):
            decision.reasons[w.name] = (
                CONCURRENCY_LIMIT,
                f"{_ahead(i, queue)}; {running} of {spec.concurrency} running",
            )
    status = JobQueueStatus(
        running=obs.running + len(decision.admit),
        waiting=len(obs.waiting) - len(decision.admit),
        admittedLastMinute=len(obs.admitted),
        oldestWaiting=min((w.created for w in obs.waiting if w.created), default=None),
        observedGeneration=(obs.jq.get("metadata") or {}).get("generation"),
    )
    decision.status = status.model_dump(mode="json", exclude_none=True)
    if obs.admitted:  # admittedLastMinute goes down as admissions leave the window
        decision.requeue_after = max(1.0, (obs.admitted[0] + WINDOW - now).total_seconds())
    return decision


def rate_message(i: int, queue: str, rate: str) -> str:
    return f"{_ahead(i, queue)}; rate {rate} reached"


def admissions_key(namespace: str, queue: str) -> str:
    """Redis sorted set of the queue's recent admissions (member: Job name, score: epoch
    seconds), shared by every replica: admittedLastMinute counts all of them, and a
    restarted or newly active replica starts from it instead of from zero."""
    return f"bgjobs:{namespace}:queue:{queue}:admitted"


async def _load_admissions(rt: Runtime, namespace: str, name: str, now: datetime) -> None:
    """Once per process (and after a standby takes over), the last minute's admissions of
    every replica, from Redis."""
    if rt.redis is None or (namespace, name) in rt.admissions:
        return
    since = (now - WINDOW).timestamp()
    try:
        rows: list[Any] = await rt.redis.zrangebyscore(
            admissions_key(namespace, name), since, "+inf", withscores=True
        )
    except (RedisError, OSError) as exc:  # informational: the count starts from here
        log.warning("reading queue %s/%s admissions from Redis: %s", namespace, name, exc)
        rows = []
    times = sorted(datetime.fromtimestamp(score, tz=now.tzinfo) for _, score in rows)
    rt.admissions[(namespace, name)] = deque(times)


async def _record_admissions(
    rt: Runtime, namespace: str, name: str, jobs: list[str], now: datetime
) -> None:
    if rt.redis is None or not jobs:
        return
    key, score = admissions_key(namespace, name), now.timestamp()
    pipe = rt.redis.pipeline(transaction=False)
    pipe.zadd(key, dict.fromkeys(jobs, score))
    pipe.zremrangebyscore(key, "-inf", (now - WINDOW).timestamp())
    pipe.expire(key, int(WINDOW.total_seconds()) * 2)
    try:
        await pipe.execute()
    except (RedisError, OSError) as exc:  # the admissions happened; only the count suffers
        log.warning("recording queue %s/%s admissions in Redis: %s", namespace, name, exc)


async def reconcile(rt: Runtime, namespace: str, name: str) -> float | None:
    now = rt.clock()
    await _load_admissions(rt, namespace, name, now)
    obs = observe(rt, namespace, name, now)
    if obs.jq is None and obs.waiting and obs.legacy_limit is None:
        # About to let the queue's Jobs run unqueued: make sure it is gone, not merely
        # not yet delivered by the watch.
        found = await rt.api.get(KIND, namespace, name)
        if found is not None:
            rt.jobqueues.put(found)
            obs = observe(rt, namespace, name, now)
    decision = decide(obs, now)
    if decision.admit and rt.redis is not None:
        return await _admit_exclusively(rt, namespace, name, now)
    return await act(rt, obs, decision, now)


async def _admit_exclusively(rt: Runtime, namespace: str, name: str, now: datetime) -> float | None:
    """Admit under the queue's lock in Redis, counting from the API's own list of the
    queue's Jobs: two operator replicas (or one working from a store that stopped
    following the watch, as a paused kopf peer's does) can then never admit past the cap.
    Costs one read per admitting reconcile; without Redis the store alone decides."""
    assert rt.redis is not None
    lock = rt.redis.lock(
        f"bgjobs:{namespace}:queue:{name}:lock", timeout=LOCK_SECONDS, blocking_timeout=1
    )
    try:
        acquired = await lock.acquire()
    except LockError:
        acquired = False
    if not acquired:
        return LOCK_RETRY_SECONDS  # another replica is admitting: look again shortly
    try:
        for job in await rt.api.list("Job", namespace, f"{names.QUEUE}={name}"):
            rt.jobs.put(job)
        obs = observe(rt, namespace, name, now)
        return await act(rt, obs, decide(obs, now), now)
    finally:
        with contextlib.suppress(LockError):
            await lock.release()


async def act(rt: Runtime, obs: Observed, decision: QueueDecision, now: datetime) -> float | None:
    ns, name = obs.namespace, obs.name
    spec = (obs.jq or {}).get("spec") or {}
    rate = parse_rate(spec["rateLimit"]) if spec.get("rateLimit") else None
    reasons = dict(decision.reasons)
    requeue = decision.requeue_after
    admitted = 0
    waits = {w.name: w for w in obs.waiting}
    done: list[str] = []
    for i, job_name in enumerate(decision.admit):
        if rate is not None:
            wait = await rt.rate_limiter().take(rate_key(ns, name), rate)
            if wait > 0:
                for j, rest in enumerate(decision.admit[i:]):
                    reasons[rest] = (RATE_LIMITED, rate_message(j, name, spec["rateLimit"]))
                requeue = wait if requeue is None else min(requeue, wait)
                break
        try:
            job = await rt.api.patch("Job", ns, job_name, {"spec": {"suspend": False}})
        except ApiError as exc:
            if exc.status != 404:  # 404: cancelled or deleted meanwhile
                raise
            continue
        rt.jobs.put(job)
        admitted += 1
        done.append(job_name)
        rt.admissions.setdefault((ns, name), deque()).append(now)
        metrics.QUEUE_ADMITTED.labels(ns, name).inc()
        waited = _seconds_since(waits[job_name].created, now)
        if waited is not None:
            metrics.QUEUE_WAIT_SECONDS.labels(ns, name).observe(waited)
    await _record_admissions(rt, ns, name, done, now)
    _note_reasons(rt, ns, obs, reasons)
    if decision.status is not None and obs.jq is not None:
        status = {
            **decision.status,
            "running": obs.running + admitted,
            "waiting": len(obs.waiting) - admitted,
            "admittedLastMinute": len(rt.admissions.get((ns, name), ())),
        }
        later = await _write_status(rt, obs.jq, status)
        if later is not None:
            requeue = later if requeue is None else min(requeue, later)
        if status["admittedLastMinute"] and requeue is None:
            requeue = WINDOW.total_seconds()
    return requeue


def _seconds_since(created: str, now: datetime) -> float | None:
    try:
        return max(0.0, (now - datetime.fromisoformat(created)).total_seconds())
    except (TypeError, ValueError):
        return None


def _note_reasons(rt: Runtime, ns: str, obs: Observed, reasons: dict[str, tuple[str, str]]) -> None:
    """Record why each Job waits; a BackgroundJob whose reason changed is reconciled, and
    writes its Queued condition (once per reason, not once per admission of another)."""
    for w in obs.waiting:
        key = (ns, w.name)
        new = reasons.get(w.name)
        old = rt.waiting.get(key)
        if new is None:
            rt.waiting.pop(key, None)
        else:
            rt.waiting[key] = new
        if (old or ("",))[0] != (new or ("",))[0]:
            rt.queue.add(("BackgroundJob", ns, w.name))


async def _write_status(rt: Runtime, jq: dict[str, Any], status: dict[str, Any]) -> float | None:
    """Write the queue's status if it changed, at most every STATUS_INTERVAL seconds;
    returns when to come back for a write held back."""
    current = jq.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()) and set(current) <= set(status):
        return None
    md = jq["metadata"]
    key = (md["namespace"], md["name"])
    since = rt.monotonic() - rt.queue_status_written.get(key, float("-inf"))
    if since < STATUS_INTERVAL:
        return STATUS_INTERVAL - since
    rt.queue_status_written[key] = rt.monotonic()
    rt.jobqueues.put(await rt.api.replace_status(KIND, md["namespace"], md["name"], status))
    return None
