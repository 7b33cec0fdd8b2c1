"""Reconcile one BackgroundJob: exactly one batch Job, status derived from it, one
DeadLetter when it finally fails. Safe to run any number of times, from any event, after
a crash at any line: every write is create-or-adopt or a patch to a computed state."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import BackgroundJobSpec, Phase
from bgjobs_operator import metrics
from bgjobs_operator import status as st
from bgjobs_operator.deadletters import build_dead_letter, dead_letter_name
from bgjobs_operator.jobspec import InvalidSpec, build_job
from bgjobs_operator.progress import progress_for_status
from bgjobs_operator.runtime import Runtime, rv
from bgjobs_worker import redis_keys
from bgjobs_worker.termination import parse_termination_message

log = logging.getLogger(__name__)
JOB_UID_ANNOTATION = "bgjobs.dev/job-uid"


def reconcile(rt: Runtime, bj: dict[str, Any]) -> None:
    md = bj["metadata"]
    if md.get("deletionTimestamp"):
        return  # the garbage collector removes the Job and its pods
    with rt.lock(md["uid"]):
        bj = rt.remember(rt.backgroundjobs, bj)
        _reconcile(rt, bj)


def _reconcile(rt: Runtime, bj: dict[str, Any]) -> None:
    md = bj["metadata"]
    ns, name = md["namespace"], md["name"]
    status = bj.get("status") or {}
    if st.is_terminal(bj):
        if st.awaits_dead_letter(status):
            # Crashed between the failure and the dead letter: finish the job now.
            _write(rt, bj, _dead_lettered(rt, bj, status, None))
        return
    try:
        spec = BackgroundJobSpec.model_validate(bj.get("spec") or {})
    except ValidationError as exc:
        return _invalid(rt, bj, f"spec is invalid: {exc}")

    job = rt.jobs.get((ns, name))
    if job is not None and not owns(job, bj):
        job = None if job["metadata"].get("deletionTimestamp") else job
    if spec.cancel:
        return _cancel(rt, bj, job)
    if job is None:
        job = _create_or_find_job(rt, bj, spec)
        if job is None:
            return
    if not owns(job, bj):
        return _invalid(
            rt,
            bj,
            f"a Job named {name} already exists and does not belong to "
            "this BackgroundJob; delete it or choose another name",
        )
    _observe_and_write(rt, bj, job)


def _create_or_find_job(
    rt: Runtime, bj: dict[str, Any], spec: BackgroundJobSpec
) -> dict[str, Any] | None:
    md = bj["metadata"]
    ns, name = md["namespace"], md["name"]
    status = bj.get("status") or {}
    was_started = status.get("jobName") or (md.get("labels") or {}).get(names.SCHEDULE)
    if was_started:
        job = rt.api.read_job(ns, name)
        if job is None:
            # Never re-create: the task may already have run (README "Restart safety").
            _write(rt, bj, st.lost_status(bj, name))
            rt.api.post_event(
                bj, "Warning", "JobLost", f"Job {name} disappeared before its outcome was observed"
            )
        return job
    try:
        manifest = build_job(bj, spec, rt.config)
    except InvalidSpec as exc:
        _invalid(rt, bj, str(exc))
        return None
    try:
        return rt.api.create_or_get_job(manifest)
    except ApiException as exc:
        if exc.status in (400, 403, 422):
            _invalid(rt, bj, f"the API server refused the Job: {_api_message(exc)}")
            return None
        raise


def owns(job: dict[str, Any], bj: dict[str, Any]) -> bool:
    uid = bj["metadata"]["uid"]
    if any(o.get("uid") == uid for o in job["metadata"].get("ownerReferences") or []):
        return True
    # A JobSchedule's run: the CronJob owns the Job, the BackgroundJob records its uid.
    annotations = bj["metadata"].get("annotations") or {}
    return bool(annotations.get(JOB_UID_ANNOTATION) == job["metadata"].get("uid"))


def observe(rt: Runtime, bj: dict[str, Any], job: dict[str, Any]) -> st.Observation:
    """Read what the status is computed from. Pods and Redis are read only when an
    attempt has finished, so a healthy running job costs no reads at all."""
    ns = job["metadata"]["namespace"]
    job_uid = job["metadata"]["uid"]
    obs = st.Observation(
        bj=bj,
        job=job,
        max_result_bytes=rt.config.max_result_bytes,
        result_key=redis_keys.result_key(ns, job_uid),
    )
    jst = job.get("status") or {}
    finished = st.job_condition(job) is not None
    if not finished and not int(jst.get("failed") or 0):
        return obs
    obs.outcome = rt.read_redis(redis_keys.read_result, ns, job_uid)
    if finished:
        obs.progress = progress_for_status(rt.read_redis(redis_keys.read_progress, ns, job_uid))
    needs_pods = obs.outcome is None or (finished and st.phase_of(job) == Phase.FAILED)
    if needs_pods:
        message = _last_termination_message(rt, ns, job["metadata"]["name"], finished)
        if message is not None:
            obs.last_output = message
            parsed = parse_termination_message(message)
            if obs.outcome is None:
                obs.outcome = parsed or {
                    "status": "FAILURE",
                    "error": {"type": "WorkerCrashed", "message": message[-1000:]},
                }
    return obs


def _last_termination_message(rt: Runtime, ns: str, job_name: str, finished: bool) -> str | None:
    """The newest finished pod's termination message (the worker's JSON outcome, or the
    tail of its output when it died without writing one)."""
    pods = [
        p
        for p in rt.api.job_pods(ns, job_name)
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    ]
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    for pod in reversed(pods):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                return str(term["message"])
    return None


def _observe_and_write(rt: Runtime, bj: dict[str, Any], job: dict[str, Any]) -> None:
    obs = observe(rt, bj, job)
    desired = st.desired_status(obs)
    if desired.get("phase") == Phase.FAILED:
        desired = _dead_lettered(rt, bj, desired, obs.last_output)
    _write(rt, bj, desired)


def _dead_lettered(
    rt: Runtime, bj: dict[str, Any], status: dict[str, Any], last_output: str | None
) -> dict[str, Any]:
    """Create the DeadLetter (or find the one made before a crash) before the status
    says Failed, so a Failed job always has exactly one."""
    manifest = build_dead_letter(bj, status, last_output)
    dl, created = rt.api.create_or_get(manifest)
    if not created and dl["spec"].get("jobUID") != bj["metadata"]["uid"]:
        log.error("DeadLetter %s belongs to another job", manifest["metadata"]["name"])
    if created:
        critical = bool(bj["spec"].get("critical"))
        metrics.DEAD_LETTERS.labels(bj["spec"]["task"], str(critical).lower()).inc()
        rt.api.post_event(
            bj,
            "Warning",
            "DeadLettered",
            f"moved to DeadLetter {dead_letter_name(bj)}: "
            f"{st.describe_failure(status.get('error') or {})}",
        )
        if critical:
            _alert(rt, bj, dl)
    return st.with_dead_letter(status, bj, dead_letter_name(bj))


def _alert(rt: Runtime, bj: dict[str, Any], dl: dict[str, Any]) -> None:
    """POST the critical failure to the configured webhook, off the handler thread."""
    url = rt.config.webhook_url
    if not url:
        return
    body = json.dumps(
        {
            "alert": "BackgroundJobDeadLettered",
            "critical": True,
            "namespace": bj["metadata"]["namespace"],
            "backgroundJob": bj["metadata"]["name"],
            "deadLetter": dl["metadata"]["name"],
            "task": bj["spec"]["task"],
            "error": dl["spec"].get("error"),
        }
    ).encode()

    def post() -> None:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except Exception as exc:  # noqa: BLE001 - an alert failure must not fail the job
            metrics.WEBHOOK_FAILURES.inc()
            log.warning("alert webhook %s failed: %s", url, exc)

    threading.Thread(target=post, name="alert-webhook", daemon=True).start()


def _cancel(rt: Runtime, bj: dict[str, Any], job: dict[str, Any] | None) -> None:
    md = bj["metadata"]
    if job is not None and st.job_condition(job) is not None:
        return _observe_and_write(rt, bj, job)  # it finished first: that outcome stands
    if job is not None or (bj.get("status") or {}).get("jobName"):
        rt.api.delete_job(md["namespace"], md["name"])
    _write(rt, bj, st.cancelled_status(bj))


def _invalid(rt: Runtime, bj: dict[str, Any], message: str) -> None:
    log.warning(
        "BackgroundJob %s/%s is invalid: %s",
        bj["metadata"]["namespace"],
        bj["metadata"]["name"],
        message,
    )
    _write(rt, bj, st.invalid_status(bj, message))


def _write(rt: Runtime, bj: dict[str, Any], desired: dict[str, Any]) -> None:
    current = bj.get("status") or {}
    patch = st.status_patch(current, desired)
    if patch is None:
        return
    md = bj["metadata"]
    log.debug("status patch for %s/%s: %s", md["namespace"], md["name"], patch)
    updated = rt.api.patch_status("BackgroundJob", md["namespace"], md["name"], patch)
    if rv(updated) > rv(bj):
        rt.remember(
            rt.backgroundjobs,
            {
                **bj,
                "metadata": {**md, "resourceVersion": updated["metadata"]["resourceVersion"]},
                "status": updated.get("status") or {},
            },
        )
    _on_transition(rt, bj, current, desired)


def _on_transition(
    rt: Runtime, bj: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
) -> None:
    """Events and metrics for changes that matter. Success is counted but not announced:
    an Event per successful job would cost an API write each (README "API writes")."""
    task = bj["spec"].get("task", "")
    before, after = old.get("phase") or Phase.PENDING, new.get("phase")
    failed_attempts = (new.get("attempts") or 0) - (old.get("attempts") or 0)
    if (
        after in (Phase.RETRYING, Phase.RUNNING)
        and new.get("error")
        and new.get("error") != old.get("error")
    ):
        metrics.RETRIES.labels(task).inc(max(1, failed_attempts))
        err = new["error"]
        rt.api.post_event(
            bj,
            "Warning",
            "Retrying",
            f"attempt {err.get('attempt') or '?'} failed "
            f"({err.get('type')}: {err.get('message')}); retrying",
        )
    if before == after:
        return
    if after in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
        metrics.JOBS_FINISHED.labels(task, after).inc()
        duration = _seconds_between(new.get("startTime"), new.get("completionTime"))
        if duration is not None:
            metrics.JOB_DURATION.labels(task).observe(duration)
    if after == Phase.CANCELLED:
        rt.api.post_event(bj, "Normal", "Cancelled", "spec.cancel is true; the Job was stopped")
    elif after == Phase.FAILED:
        rt.api.post_event(bj, "Warning", "Failed", st.describe_failure(new.get("error") or {}))


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
    except ValueError:
        return None


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
