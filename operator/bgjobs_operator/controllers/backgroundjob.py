"""Reconcile one BackgroundJob: exactly one batch Job, status derived from it, one
DeadLetter when it finally fails.

observe (the reads) → decide (pure: observation and clock in, desired status and actions
out) → act (the writes, DeadLetter before the status that says Failed). Safe to run any
number of times, after a crash at any line: every write is create-or-adopt or a status
computed from what is observed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from bgjobs.api import names
from bgjobs.api.rules import route
from bgjobs.api.v1alpha1 import (
    DEFAULT_QUEUE,
    BackgroundJobSpec,
    BackgroundJobStatus,
    Phase,
    PodDefaults,
)
from bgjobs.api.v1alpha1 import is_batch as batch_spec
from bgjobs.redaction import redact
from bgjobs_operator import attempts, batches, metrics
from bgjobs_operator import status as st
from bgjobs_operator.actions import (
    Action,
    Alert,
    CreateObject,
    Decision,
    DeleteObject,
    PostEvent,
    SeedBatch,
)
from bgjobs_operator.conditions import stamp
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.deadletters import build_dead_letter, dead_letter_name
from bgjobs_operator.effects import perform
from bgjobs_operator.jobspec import InvalidSpec, Placement, build_job, items_json
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.queues import NOT_BEFORE
from bgjobs_operator.runtime import Runtime
from bgjobs_operator.schedules import build_run
from bgjobs_worker import batch_keys, redis_keys
from bgjobs_worker.termination import parse_termination_message

log = logging.getLogger(__name__)
KIND = "BackgroundJob"
# A level-based safety net per unfinished job: watch events drive everything, and this
# re-derives the status now and then in case one was missed.
RESYNC_SECONDS = 60.0
# A finished batch whose counts cannot be read (Redis down) is looked at again this soon.
BATCH_READ_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class QueueInfo:
    """The job's queue: spec.queue, else a JobQueue route, else "default"."""

    name: str = DEFAULT_QUEUE
    explicit: bool = False  # named by spec.queue
    jobqueue: dict[str, Any] | None = None  # the JobQueue of that name, if any
    legacy_limited: bool = False  # limited by --queue-limits (deprecated)
    waiting: tuple[str, str] | None = None  # (reason, message) from the queue's reconcile


@dataclass(frozen=True)
class Observed:
    bj: dict[str, Any] | None
    job: dict[str, Any] | None  # the Job of this name, ours or not
    queue: QueueInfo = QueueInfo()
    job_lost: bool = False  # the job started and the API confirms its Job is gone
    namespace_terminating: bool = False
    schedule: dict[str, Any] | None = None  # the JobSchedule of a run Job to adopt
    outcome: dict[str, Any] | None = None
    progress: Any = None
    last_output: str | None = None
    batch: batch_keys.BatchCounts | None = None  # a running batch's counts (progress pump)
    batch_result: batches.BatchResult | None = None  # a finished batch's, read at the end


def owns(job: dict[str, Any], bj: dict[str, Any]) -> bool:
    uid = bj["metadata"]["uid"]
    if any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or []):
        return True
    # A JobSchedule's run: the CronJob owns the Job, the BackgroundJob records its uid.
    annotations = bj["metadata"].get("annotations") or {}
    return bool(annotations.get(names.JOB_UID_ANNOTATION) == job["metadata"].get("uid"))


def started(bj: dict[str, Any]) -> bool:
    """Whether a Job was ever made for this job: then it is never made again (the task
    may have run; README "Restart safety")."""
    md = bj["metadata"]
    return bool(
        (bj.get("status") or {}).get("jobName")
        or (md.get("labels") or {}).get(names.SCHEDULE)
        or (md.get("annotations") or {}).get(names.JOB_UID_ANNOTATION)
    )


# --- observe ------------------------------------------------------------------------------


async def observe(rt: Runtime, namespace: str, name: str) -> Observed:
    bj = rt.backgroundjobs.get((namespace, name))
    job = rt.jobs.get((namespace, name))
    if bj is None:
        return await _observe_orphan_run(rt, job)
    if bj["metadata"].get("deletionTimestamp") or (
        st.is_terminal(bj) and not st.awaits_dead_letter(bj.get("status") or {})
    ):
        return Observed(bj, job)
    if st.is_terminal(bj) and is_batch(bj):
        # Failed, DeadLetter not yet made (a crash came between): it lists the items.
        return Observed(bj, job, batch_result=await _read_batch_result(rt, bj))
    if job is not None and job["metadata"].get("deletionTimestamp") and not owns(job, bj):
        job = None  # a foreign Job on its way out: ours can be made once it is gone
    if job is None and (
        started(bj) or rt.gone_jobs.get((namespace, name)) == bj["metadata"].get("uid")
    ):
        # The store may lag; the API server is the authority before declaring it lost.
        job = await rt.api.get("Job", namespace, name)
        if job is None and not started(bj):
            # Its Job was deleted before any status said it started: most often with the
            # BackgroundJob itself, whose event has not come yet. Gone (or replaced by a
            # new one of the same name, which its own events bring): nothing to do.
            live = await rt.api.get(KIND, namespace, name)
            if live is None or live["metadata"].get("uid") != bj["metadata"].get("uid"):
                return Observed(None, None)
        if job is None:
            terminating = await _namespace_terminating(rt, namespace)
            return Observed(bj, None, job_lost=not terminating, namespace_terminating=terminating)
        job = rt.jobs.put(job)
    if job is None:
        return Observed(bj, None, await _observe_queue(rt, bj, None))
    if not owns(job, bj) or st.is_terminal(bj):
        return Observed(bj, job)
    if job["spec"].get("suspend"):
        return Observed(bj, job, await _observe_queue(rt, bj, job))
    if stalled(job) and await _namespace_terminating(rt, namespace):
        return Observed(bj, job, namespace_terminating=True)
    return await _observe_attempts(rt, bj, job)


def stalled(job: dict[str, Any]) -> bool:
    """Started, unfinished, and no pod running: a moment between a failed pod and its
    replacement, or a namespace being deleted, where no replacement may be made. Only then
    is the namespace read (one GET, rarely)."""
    jst = job.get("status") or {}
    return (
        bool(jst.get("startTime"))
        and not int(jst.get("active") or 0)
        and st.job_condition(job) is None
    )


async def _observe_queue(rt: Runtime, bj: dict[str, Any], job: dict[str, Any] | None) -> QueueInfo:
    """The job's queue from the stores. Before the first Job of a namespace is made, that
    namespace's JobQueues are listed once from the API (the watch may not have delivered
    them yet after a start), so a queued or routed job is never created unqueued by
    mistake; afterwards the watch keeps the store current."""
    md, spec = bj["metadata"], bj.get("spec") or {}
    ns = md["namespace"]
    if job is not None:
        name = (job["metadata"].get("labels") or {}).get(names.QUEUE) or DEFAULT_QUEUE
        return QueueInfo(
            name, jobqueue=rt.jobqueues.get((ns, name)), waiting=rt.waiting.get((ns, md["name"]))
        )
    if ns not in rt.jobqueues_listed:
        for found in await rt.api.list("JobQueue", ns, ""):
            rt.jobqueues.put(found)
        rt.jobqueues_listed.add(ns)
    explicit = spec.get("queue")
    if explicit:
        legacy = explicit in rt.config.queue_limits
        return QueueInfo(explicit, True, rt.jobqueues.get((ns, explicit)), legacy)
    name = route(str(spec.get("task") or ""), rt.jobqueues.by_index("namespace", ns))
    name = name or DEFAULT_QUEUE
    return QueueInfo(name, False, rt.jobqueues.get((ns, name)), name in rt.config.queue_limits)


async def _observe_orphan_run(rt: Runtime, job: dict[str, Any] | None) -> Observed:
    """A CronJob started a run whose BackgroundJob does not exist yet."""
    if job is None or job["metadata"].get("deletionTimestamp"):
        return Observed(None, job)
    schedule = (job["metadata"].get("labels") or {}).get(names.SCHEDULE)
    if not schedule:
        return Observed(None, job)
    ns = job["metadata"]["namespace"]
    sched = rt.schedules.get((ns, schedule)) or await rt.api.get("JobSchedule", ns, schedule)
    return Observed(None, job, schedule=sched)


async def _namespace_terminating(rt: Runtime, namespace: str) -> bool:
    """A job vanishing with its namespace is normal, not a loss to record."""
    try:
        ns = await rt.api.get("Namespace", None, namespace)
    except ApiError:
        return False
    return ns is None or bool(
        ns["metadata"].get("deletionTimestamp")
        or (ns.get("status") or {}).get("phase") == "Terminating"
    )


async def _observe_attempts(rt: Runtime, bj: dict[str, Any], job: dict[str, Any]) -> Observed:
    """Pods and Redis are read only when an attempt has finished, so a healthy running
    job costs no reads at all; its progress comes from the progress pump."""
    md = job["metadata"]
    ns, uid = md["namespace"], md["uid"]
    key = (ns, bj["metadata"]["name"])
    jst = job.get("status") or {}
    finished = st.job_condition(job) is not None
    if is_batch(bj):
        return await _observe_batch(rt, bj, job, finished)
    if not finished and not int(jst.get("failed") or 0):
        return Observed(bj, job, progress=rt.progress.get(key))
    outcome = await rt.read_redis(_read_result, ns, uid)
    progress = rt.progress.get(key)
    if finished:
        progress = st.progress_of(await rt.read_redis(_read_progress, ns, uid)) or progress
    last_output = None
    if outcome is None or (finished and st.phase_of(job) == Phase.FAILED):
        last_output = await _last_termination_message(rt, ns, md["name"])
        if last_output is not None and outcome is None:
            outcome = parse_termination_message(last_output) or {
                "status": "FAILURE",
                "error": {"type": "WorkerCrashed", "message": last_output[-1000:]},
            }
    if finished and outcome is not None and outcome.get("progress"):
        # The worker's last report, kept with its outcome (in Redis or the termination
        # message): Redis lost it or was down when the task reported (README "Redis
        # outages").
        progress = st.progress_of(outcome["progress"]) or progress
    return Observed(bj, job, outcome=outcome, progress=progress, last_output=last_output)


def is_batch(bj: dict[str, Any]) -> bool:
    return batch_spec(bj.get("spec") or {})


async def _observe_batch(
    rt: Runtime, bj: dict[str, Any], job: dict[str, Any], finished: bool
) -> Observed:
    """Counts come from the progress pump while the batch runs; once the Job has
    finished, the counts and the failed items are read from Redis here."""
    key = (bj["metadata"]["namespace"], bj["metadata"]["name"])
    if not finished:
        return Observed(bj, job, batch=rt.batches.get(key))
    result = await _read_batch_result(rt, bj)
    if (
        result is not None
        and (bj["metadata"].get("labels") or {}).get(names.WORKFLOW)
        and batches.all_succeeded(result.counts)
        and result.counts.total <= batches.MAX_PASSED_RESULTS
    ):  # a forEach step: its item results are what the next step receives
        results = await rt.read_redis(batches.read_results, batches.keys_of(bj))
        if results is None:
            return Observed(bj, job, batch=rt.batches.get(key))  # Redis down: wait
        result = dataclasses.replace(result, results=results)
    last_output = None
    if st.phase_of(job) == Phase.FAILED:
        last_output = await _last_termination_message(rt, key[0], job["metadata"]["name"])
    counts = result.counts if result is not None else rt.batches.get(key)
    return Observed(bj, job, batch=counts, batch_result=result, last_output=last_output)


async def _read_batch_result(rt: Runtime, bj: dict[str, Any]) -> batches.BatchResult | None:
    """A finished batch's outcome; for an uploaded batch with items to replay, those items
    are staged as the upload its DeadLetter replays (they are not in the spec to copy)."""
    keys = batches.keys_of(bj)
    result: batches.BatchResult | None = await rt.read_redis(batches.read_result, keys)
    spec = bj.get("spec") or {}
    if result is not None and result.not_succeeded and spec.get("itemsFrom") is not None:
        ttl = batch_keys.batch_ttl(int(spec.get("resultTTLSeconds") or 0))
        staged = await rt.read_redis(
            batches.stage_replay,
            keys,
            bj["metadata"]["namespace"],
            batches.replay_upload(bj),
            result.not_succeeded,
            ttl,
        )
        if staged is None:  # Redis down: no DeadLetter that could not replay; retried
            return None
    return result


async def _read_result(client: Any, ns: str, uid: str) -> dict[str, Any] | None:
    return redis_keys.decode_result(await client.get(redis_keys.result_key(ns, uid)))


async def _read_progress(client: Any, ns: str, uid: str) -> dict[str, Any] | None:
    return redis_keys.decode_progress(await client.hgetall(redis_keys.progress_key(ns, uid)))


async def _last_termination_message(rt: Runtime, ns: str, job_name: str) -> str | None:
    """The newest finished pod's termination message (the worker's JSON outcome, or the
    tail of its output when it died without writing one)."""
    pods = [
        p
        for p in await rt.api.list("Pod", ns, f"{names.JOB_NAME_LABEL}={job_name}")
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    ]
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(pods):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                return str(term["message"])
    return None


# --- decide (pure) ------------------------------------------------------------------------


def decide(obs: Observed, now: datetime, config: OperatorConfig) -> Decision:
    bj = obs.bj
    if bj is None:
        if obs.schedule is not None and obs.job is not None:
            return Decision(actions=[CreateObject(build_run(obs.schedule, obs.job))])
        return Decision()
    md = bj["metadata"]
    if md.get("deletionTimestamp"):
        return Decision()  # the garbage collector removes the Job and its pods
    if obs.namespace_terminating and obs.job is not None:
        # The namespace goes, and its content with it; not a failure to record. The Job is
        # deleted now because Kubernetes may not get to it: namespace deletion removes pods
        # first and waits for them, while the Job controller keeps the tracking finalizer
        # of a batch's failed pod until it makes the replacement, which a terminating
        # namespace refuses. Without the Job, its pods are released and the wait ends.
        return Decision(actions=[DeleteObject("Job", md["namespace"], md["name"])])
    current = st.parse(bj.get("status"))
    generation = md.get("generation")
    if st.is_terminal(bj):
        if st.awaits_dead_letter(current):
            # Crashed between the failure and the dead letter: finish the job now.
            return _dead_letter(bj, current, current, obs.last_output, now, obs.batch_result)
        return Decision()
    try:
        spec = BackgroundJobSpec.model_validate(bj.get("spec") or {})
    except ValidationError as exc:
        return _invalid(bj, current, f"spec is invalid: {exc}", now)
    job = obs.job
    ours = job is not None and owns(job, bj)
    if spec.cancel and not (ours and job is not None and st.job_condition(job) is not None):
        actions: list[Action] = []
        if ours or current.jobName:
            actions.append(DeleteObject("Job", md["namespace"], md["name"]))
        return _transition(bj, current, st.cancelled_status(current, generation, now), actions)
    if job is None:
        if obs.namespace_terminating:
            return Decision()
        if obs.job_lost:
            lost = st.lost_status(current, generation, md["name"], now)
            decision = _dead_letter(bj, current, lost, None, now)
            message = lost.error.message if lost.error else "Job lost"
            decision.actions.insert(0, PostEvent(bj, "Warning", "JobLost", message or ""))
            return decision
        due = start_time(spec, md.get("creationTimestamp"))
        if due is not None and now < due:
            # Delayed start: the Job is made only when due, so a cancel before then
            # leaves nothing behind; the work queue brings the key back on time.
            desired = st.queued_status(
                current, generation, NOT_BEFORE, f"starts at {stamp(due)}", obs.queue.name, now
            )
            decision = _transition(bj, current, desired, [])
            decision.requeue_after = (due - now).total_seconds()
            return decision
        try:
            manifest = build_job(bj, spec, config, placement(obs.queue))
            seed = _seed(bj, spec, config)
        except InvalidSpec as exc:
            return _invalid(bj, current, str(exc), now)
        announce: tuple[Action, ...] = ()
        q = obs.queue
        if q.explicit and q.name != DEFAULT_QUEUE and q.jobqueue is None and not q.legacy_limited:
            announce = (
                PostEvent(
                    bj,
                    "Warning",
                    "QueueNotFound",
                    f"no JobQueue {q.name} in this namespace: the job runs unqueued",
                ),
            )
        return Decision(
            actions=[*seed, CreateObject(manifest, announce)], requeue_after=RESYNC_SECONDS
        )
    if not ours:
        return _invalid(
            bj,
            current,
            f"a Job named {md['name']} already exists and does not belong to this "
            "BackgroundJob; delete it or choose another name",
            now,
        )
    observation = st.Observation(
        bj=bj,
        job=job,
        outcome=obs.outcome,
        progress=obs.progress,
        last_output=obs.last_output,
        max_result_bytes=config.max_result_bytes,
        result_key=redis_keys.result_key(md["namespace"], job["metadata"]["uid"]),
    )
    desired = st.desired_status(observation, now)
    if spec.is_batch:
        if st.job_condition(job) is not None and obs.batch_result is None:
            # Finished, but what the items did is in Redis, which did not answer.
            return Decision(requeue_after=BATCH_READ_RETRY_SECONDS)
        desired = _batch_status(desired, obs, job, now, config.max_result_bytes)
    if desired.phase == Phase.PENDING and job["spec"].get("suspend") and obs.queue.waiting:
        reason, message = obs.queue.waiting
        desired = st.queued_status(desired, generation, reason, message, obs.queue.name, now)
    elif desired.phase != Phase.PENDING:
        desired = st.admitted_status(desired, generation, now)
    if desired != current:  # the queue rides on a write that happens anyway
        queue = (job["metadata"].get("labels") or {}).get(names.QUEUE)
        desired = desired.model_copy(update={"queue": queue or DEFAULT_QUEUE})
    if desired.phase == Phase.FAILED:
        return _dead_letter(bj, current, desired, obs.last_output, now, obs.batch_result)
    return _transition(bj, current, desired, [])


def start_time(spec: BackgroundJobSpec, created: str | None) -> datetime | None:
    """When a delayed job may start: spec.startAt, or creation + countdownSeconds."""
    if spec.startAt:
        return datetime.fromisoformat(spec.startAt)
    if spec.countdownSeconds and created:
        return datetime.fromisoformat(created) + timedelta(seconds=spec.countdownSeconds)
    return None


def placement(q: QueueInfo) -> Placement:
    """A JobQueue's (or a --queue-limits queue's) Jobs are created suspended; the queue's
    reconcile admits them. The JobQueue's pod defaults go into the pod template."""
    pod = None
    if q.jobqueue is not None:
        raw = (q.jobqueue.get("spec") or {}).get("podTemplate")
        pod = PodDefaults.model_validate(raw) if raw else None
    return Placement(q.name, suspend=q.jobqueue is not None or q.legacy_limited, pod=pod)


def _seed(bj: dict[str, Any], spec: BackgroundJobSpec, config: OperatorConfig) -> list[Action]:
    if not spec.is_batch:
        return []
    if not config.redis_url:
        raise InvalidSpec("a batch (spec.items) needs Redis: the operator runs without --redis-url")
    md = bj["metadata"]
    ttl = batch_keys.batch_ttl(spec.resultTTLSeconds)
    if spec.itemsFrom is not None:
        source = spec.itemsFrom
        return [
            SeedBatch(
                md["namespace"],
                md["uid"],
                (),
                ttl,
                upload=source.upload,
                producer=bool(source.task),
            )
        ]
    indexes = tuple(spec.itemIndexes) if spec.itemIndexes is not None else None
    return [SeedBatch(md["namespace"], md["uid"], tuple(items_json(spec, config)), ttl, indexes)]


def _batch_status(
    desired: BackgroundJobStatus,
    obs: Observed,
    job: dict[str, Any],
    now: datetime,
    max_result_bytes: int,
) -> BackgroundJobStatus:
    """The item counts, and the batch's own verdict: Succeeded only when every item did."""
    assert obs.bj is not None
    counts = obs.batch
    if counts is None:
        return desired
    start = desired.startTime or (job.get("status") or {}).get("startTime")
    finished = st.job_condition(job) is not None
    outcomes_key = batches.keys_of(obs.bj).outcomes
    update: dict[str, Any] = {
        "batch": batches.batch_status(counts, outcomes_key, start),
        # The items as progress too, so `kubectl get` and every progress view show them.
        "progress": batches.items_progress(counts),
    }
    result = obs.batch_result
    if finished and result is not None and not batches.all_succeeded(result.counts):
        final = st.job_condition(job) or {}
        reason = final.get("reason") if final.get("type") == "Failed" else None
        error = batches.failure_error(result, reason)
        update.update(
            phase=Phase.FAILED,
            error=error,
            result=None,
            resultRef=None,
            conditions=st.batch_failed_conditions(
                desired.conditions, error, obs.bj["metadata"].get("generation"), now
            ),
        )
    elif finished and desired.phase == Phase.SUCCEEDED:
        # Results are per item, in the outcomes hash (status.batch.outcomesKey). A workflow
        # step's (forEach) are also the result passed on, when they are few and small;
        # otherwise resultRef says they stay in Redis and the next step is told so.
        passed = result.results if result is not None else None
        if passed is not None and len(json.dumps(passed)) <= max_result_bytes:
            update.update(result=passed, resultRef=None)
        elif passed is not None or (result is not None and _in_workflow(obs.bj)):
            update.update(result=None, resultRef=outcomes_key)
        else:
            update.update(result=None, resultRef=None)
    return desired.model_copy(update=update)


def _in_workflow(bj: dict[str, Any]) -> bool:
    return bool((bj["metadata"].get("labels") or {}).get(names.WORKFLOW))


def _transition(
    bj: dict[str, Any],
    current: BackgroundJobStatus,
    desired: BackgroundJobStatus,
    actions: list[Action],
) -> Decision:
    """The status write (if anything changed) and the Events announcing what changed.
    Success is not announced: an Event per successful job would cost an API write each
    (README "API writes")."""
    after: list[Action] = []
    if (
        desired.phase in (Phase.RUNNING, Phase.RETRYING)
        and desired.error is not None
        and desired.error != current.error
    ):
        err = desired.error
        after.append(
            PostEvent(
                bj,
                "Warning",
                "Retrying",
                f"attempt {err.attempt or '?'} failed ({err.type}: {err.message}); retrying",
            )
        )
    if desired.phase != current.phase:
        if desired.phase == Phase.CANCELLED:
            after.append(
                PostEvent(bj, "Normal", "Cancelled", "spec.cancel is true; the Job was stopped")
            )
        elif desired.phase == Phase.FAILED:
            after.append(PostEvent(bj, "Warning", "Failed", st.describe_failure(desired.error)))
    terminal = desired.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
    return Decision(
        status=st.dump(desired) if desired != current else None,
        actions=actions,
        after=after,
        requeue_after=None if terminal else RESYNC_SECONDS,
    )


def _dead_letter(
    bj: dict[str, Any],
    current: BackgroundJobStatus,
    failed: BackgroundJobStatus,
    last_output: str | None,
    now: datetime,
    batch: batches.BatchResult | None = None,
) -> Decision:
    """Create the DeadLetter (or find the one made before a crash) before the status says
    Failed, so a Failed job always has exactly one."""
    md, spec = bj["metadata"], bj.get("spec") or {}
    dl_name = dead_letter_name(bj)
    announce: list[Action] = [
        PostEvent(
            bj,
            "Warning",
            "DeadLettered",
            f"moved to DeadLetter {dl_name}: {st.describe_failure(failed.error)}",
        )
    ]
    if spec.get("critical"):
        announce.append(
            Alert(
                {
                    "alert": "BackgroundJobDeadLettered",
                    "critical": True,
                    "namespace": md["namespace"],
                    "backgroundJob": md["name"],
                    "deadLetter": dl_name,
                    "task": spec.get("task"),
                    "error": failed.error.model_dump(exclude_none=True) if failed.error else None,
                }
            )
        )
    create = CreateObject(build_dead_letter(bj, failed, last_output, batch), then=tuple(announce))
    desired = st.with_dead_letter(failed, md.get("generation"), dl_name, now)
    decision = _transition(bj, current, desired, [create])
    return decision


def _invalid(
    bj: dict[str, Any], current: BackgroundJobStatus, message: str, now: datetime
) -> Decision:
    desired = st.invalid_status(current, bj["metadata"].get("generation"), message, now)
    decision = _transition(bj, current, desired, [])
    if decision.status is not None:
        decision.after = [PostEvent(bj, "Warning", "InvalidSpec", message)]
    return decision


# --- act ----------------------------------------------------------------------------------


async def reconcile(rt: Runtime, namespace: str, name: str) -> float | None:
    obs = await observe(rt, namespace, name)
    decision = decide(obs, rt.clock(), rt.config)
    return await act(rt, obs, decision)


async def act(rt: Runtime, obs: Observed, decision: Decision) -> float | None:
    bj = obs.bj
    for action in decision.actions:
        if isinstance(action, SeedBatch):
            if not await _seed_batch(rt, action) and bj is not None:
                upload = action.upload or ""
                key = batch_keys.upload_keys(action.namespace, upload)[0]
                await _refused(
                    rt,
                    bj,
                    f"spec.itemsFrom.upload {upload}: nothing uploaded under {key} (never "
                    "written, or expired); upload the items first (Client.map does)",
                )
                return None
            continue
        try:
            done = await perform(rt.api, action, rt.config.webhook_url)
        except ApiError as exc:
            if exc.namespace_terminating:
                log.debug("namespace terminating, nothing more to do: %s", exc)
                return None
            if (
                bj is not None
                and isinstance(action, CreateObject)
                and action.manifest["kind"] == "Job"
                and exc.status in (400, 403, 422)
            ):
                await _refused(rt, bj, f"the API server refused the Job: {exc.message}")
                return None
            raise
        if done is None or not isinstance(action, CreateObject):
            continue
        obj, created = done
        kind = action.manifest["kind"]
        if kind == "Job" and bj is not None:
            if not created and not owns(obj, bj):
                await _refused(
                    rt,
                    bj,
                    f"a Job named {obj['metadata']['name']} already exists and does not "
                    "belong to this BackgroundJob; delete it or choose another name",
                )
                return None
            rt.jobs.put(obj)
        elif kind == "BackgroundJob":  # a schedule's run, adopted: reconcile it next
            put = rt.backgroundjobs.put(obj)
            rt.queue.add((KIND, put["metadata"]["namespace"], put["metadata"]["name"]))
        elif kind == "DeadLetter" and bj is not None:
            if not created and obj.get("spec", {}).get("jobUID") != bj["metadata"]["uid"]:
                log.error("DeadLetter %s belongs to another job", obj["metadata"]["name"])
            if created:
                critical = str(bool(bj["spec"].get("critical"))).lower()
                metrics.DEAD_LETTERS.labels(bj["spec"].get("task", ""), critical).inc()
    if bj is not None and obs.job is not None:
        await _keep_attempt_floor(rt, bj, obs.job)
    if bj is not None and decision.status is not None:
        await _write(rt, bj, decision.status)
        for action in decision.after:
            await perform(rt.api, action, rt.config.webhook_url)
    return decision.requeue_after


async def _keep_attempt_floor(rt: Runtime, bj: dict[str, Any], job: dict[str, Any]) -> None:
    """A retrying Job's failed attempts, as a floor under the workers' attempt counter
    (attempts.py). Best effort: Redis down only costs the numbering it protects."""
    failed = attempts.counted_failures(job)
    if (
        rt.redis is None
        or failed == 0
        or st.job_condition(job) is not None
        or is_batch(bj)  # a batch counts per item
        or not owns(job, bj)
    ):
        return
    md = job["metadata"]
    try:
        if await attempts.keep_floor(rt.redis, md["namespace"], md["uid"], failed):
            log.info("attempt counter of %s/%s raised to %d", md["namespace"], md["name"], failed)
    except (RedisError, OSError) as exc:
        log.debug("attempt floor of %s/%s not kept: %s", md["namespace"], md["name"], exc)


async def _seed_batch(rt: Runtime, action: SeedBatch) -> bool:
    """Seed the items before the Job exists; Redis down raises, and the work queue retries
    (the Job is not created without its items). False: the upload to seed from is missing."""
    if rt.redis is None:
        raise RuntimeError("a batch needs Redis and the operator has no --redis-url")
    keys = batch_keys.BatchKeys.of(action.namespace, action.bj_uid)
    if action.producer:
        if await batches.open_for_producer(rt.redis, keys, action.ttl):
            log.info("opened batch %s for its producer", keys.counts)
        return True
    if action.upload is not None:
        n = await batches.seed_from_upload(
            rt.redis, keys, action.namespace, action.upload, action.ttl
        )
        if n > 0:
            log.info("seeded %d uploaded items of batch %s", n, keys.counts)
        return n >= 0
    indexes = list(action.indexes) if action.indexes is not None else None
    if await batches.seed(rt.redis, keys, list(action.items), action.ttl, indexes):
        log.info("seeded %d items of batch %s", len(action.items), keys.counts)
    return True


async def _refused(rt: Runtime, bj: dict[str, Any], message: str) -> None:
    message = redact(message)
    log.warning(
        "BackgroundJob %s/%s is invalid: %s",
        bj["metadata"]["namespace"],
        bj["metadata"]["name"],
        message,
    )
    decision = _invalid(bj, st.parse(bj.get("status")), message, rt.clock())
    if decision.status is not None:
        await _write(rt, bj, decision.status)
        for action in decision.after:
            await perform(rt.api, action)


async def _write(rt: Runtime, bj: dict[str, Any], status: dict[str, Any]) -> None:
    md = bj["metadata"]
    old = bj.get("status") or {}
    updated = await rt.api.replace_status(KIND, md["namespace"], md["name"], status)
    rt.backgroundjobs.put(updated)
    _count_transition(bj, old, status)


def _count_transition(bj: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    task = (bj.get("spec") or {}).get("task", "")
    before, after = old.get("phase") or Phase.PENDING, new.get("phase")
    if (
        after in (Phase.RUNNING, Phase.RETRYING)
        and new.get("error")
        and new.get("error") != old.get("error")
    ):
        failed = (new.get("attempts") or 0) - (old.get("attempts") or 0)
        metrics.RETRIES.labels(task).inc(max(1, failed))
    if before == after or after not in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
        return
    metrics.JOBS_FINISHED.labels(task, after).inc()
    duration = _seconds_between(new.get("startTime"), new.get("completionTime"))
    if duration is not None:
        metrics.JOB_DURATION.labels(task).observe(duration)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
    except ValueError:
        return None
