"""Derive a BackgroundJob's status from what is observed: its batch Job, the Job's pods,
and what the worker left in Redis. Pure functions: the same observation always gives the
same status, so a restarted operator converges to where the old one would have."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bgjobs.api.v1alpha1 import TERMINAL_PHASES, Phase
from bgjobs_operator.conditions import now, set_condition

RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
DEAD_LETTERED, CANCELLED, INVALID = "DeadLettered", "Cancelled", "Invalid"


@dataclass
class Observation:
    """Everything the status is computed from."""

    bj: dict[str, Any]
    job: dict[str, Any] | None
    # Outcome of the last finished attempt: from Redis (the worker's result document),
    # else from the pod's termination message; None when unknown.
    outcome: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    last_output: str | None = None
    max_result_bytes: int = 8192
    result_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def job_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's final condition (Complete or Failed), if it has finished."""
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def attempts_of(job: dict[str, Any]) -> int:
    st = job.get("status", {})
    return int(st.get("failed") or 0) + int(st.get("succeeded") or 0) + int(st.get("active") or 0)


def phase_of(job: dict[str, Any]) -> Phase:
    final = job_condition(job)
    if final:
        return Phase.SUCCEEDED if final["type"] == "Complete" else Phase.FAILED
    st = job.get("status", {})
    if int(st.get("active") or 0) > 0 and int(st.get("ready") or 0) > 0:
        return Phase.RUNNING
    if int(st.get("failed") or 0) > 0:
        return Phase.RETRYING
    return Phase.PENDING


def _error(obs: Observation, final: dict[str, Any] | None) -> dict[str, Any]:
    """The error block: the worker's own account where known, the Job's reason always."""
    err: dict[str, Any] = {}
    out = obs.outcome or {}
    if out.get("status") == "FAILURE":
        worker_err = out.get("error") or {}
        err.update(
            type=worker_err.get("type"),
            message=worker_err.get("message"),
            exitCode=out.get("exitCode"),
            attempt=out.get("attempt"),
        )
    if final:
        err["reason"] = final.get("reason")
        if not err.get("message"):
            err["message"] = final.get("message")
        if not err.get("type"):
            err["type"] = final.get("reason")
    return {k: v for k, v in err.items() if v is not None}


def _result(obs: Observation) -> dict[str, Any]:
    out = obs.outcome or {}
    if out.get("status") != "SUCCESS":
        return {}
    value = out.get("result")
    if out.get("resultTruncated") or len(json.dumps(value)) > obs.max_result_bytes:
        return {"result": None, "resultRef": obs.result_key}
    return {"result": value}


def desired_status(obs: Observation) -> dict[str, Any]:
    """The status a BackgroundJob should have, given a Job that exists."""
    assert obs.job is not None
    bj, job = obs.bj, obs.job
    current = bj.get("status") or {}
    generation = bj["metadata"].get("generation")
    phase = phase_of(job)
    conditions = list(current.get("conditions") or [])
    final = job_condition(job)
    st: dict[str, Any] = {
        "phase": phase.value,
        "observedGeneration": generation,
        "jobName": job["metadata"]["name"],
        "attempts": attempts_of(job) or None,
    }
    if phase == Phase.PENDING:
        if current.get("phase") in (Phase.RUNNING, Phase.RETRYING):
            # Between a pod's end and the Job's final condition the Job shows no active
            # pod for a moment; that is not a step back to Pending.
            return dict(current)
        # Nothing new to say yet: the CRD default already shows Pending, and writing the
        # Job's name alone would cost an API write per job (README "API writes").
        return {**current, "phase": phase.value}
    start = job.get("status", {}).get("startTime")
    st["startTime"] = current.get("startTime") or start
    running = phase in (Phase.RUNNING, Phase.RETRYING)
    conditions = set_condition(
        conditions,
        RUNNING,
        phase == Phase.RUNNING,
        "AttemptRunning" if phase == Phase.RUNNING else phase.value,
        f"attempt {st['attempts']} is running" if phase == Phase.RUNNING else "",
        generation,
    )
    if phase == Phase.RETRYING or (running and int(job["status"].get("failed") or 0) > 0):
        err = _error(obs, None)
        if err:
            st["error"] = err
    if phase == Phase.SUCCEEDED:
        st.update(_result(obs))
        st["completionTime"] = current.get("completionTime") or (
            job["status"].get("completionTime") or now()
        )
        st["error"] = None
        conditions = set_condition(
            conditions, SUCCEEDED, True, "Completed", "the task returned", generation
        )
    elif phase == Phase.FAILED:
        assert final is not None
        st["completionTime"] = current.get("completionTime") or (
            final.get("lastTransitionTime") or now()
        )
        st["error"] = _error(obs, final)
        conditions = set_condition(
            conditions,
            FAILED,
            True,
            final.get("reason") or "Failed",
            describe_failure(st["error"]),
            generation,
        )
    if obs.progress:
        st["progress"] = obs.progress
    st["conditions"] = conditions
    return {**current, **st}


def describe_failure(err: dict[str, Any]) -> str:
    reason = err.get("reason")
    what = {
        "BackoffLimitExceeded": "retries exhausted",
        "PodFailurePolicy": "permanent error, not retried",
        "DeadlineExceeded": "activeDeadlineSeconds passed",
    }.get(reason or "", reason or "failed")
    detail = ": ".join(x for x in (err.get("type"), err.get("message")) if x)
    return f"{what}; {detail}" if detail else what


def invalid_status(bj: dict[str, Any], message: str) -> dict[str, Any]:
    current = bj.get("status") or {}
    generation = bj["metadata"].get("generation")
    conditions = set_condition(
        list(current.get("conditions") or []), INVALID, True, "InvalidSpec", message, generation
    )
    conditions = set_condition(conditions, FAILED, True, "InvalidSpec", message, generation)
    return {
        **current,
        "phase": Phase.FAILED.value,
        "observedGeneration": generation,
        "error": {"type": "InvalidSpec", "reason": "Invalid", "message": message},
        "completionTime": current.get("completionTime") or now(),
        "conditions": conditions,
    }


def cancelled_status(bj: dict[str, Any]) -> dict[str, Any]:
    current = bj.get("status") or {}
    generation = bj["metadata"].get("generation")
    conditions = set_condition(
        list(current.get("conditions") or []), RUNNING, False, "Cancelled", "", generation
    )
    conditions = set_condition(
        conditions, CANCELLED, True, "CancelRequested", "spec.cancel is true", generation
    )
    return {
        **current,
        "phase": Phase.CANCELLED.value,
        "observedGeneration": generation,
        "completionTime": current.get("completionTime") or now(),
        "conditions": conditions,
    }


def lost_status(bj: dict[str, Any], job_name: str) -> dict[str, Any]:
    """The Job vanished before its outcome was recorded (deleted by hand, or its TTL
    passed while the operator was down). Never re-run it: the task may have run."""
    current = bj.get("status") or {}
    generation = bj["metadata"].get("generation")
    message = f"Job {job_name} disappeared before its outcome was observed"
    conditions = set_condition(
        list(current.get("conditions") or []), FAILED, True, "JobLost", message, generation
    )
    return {
        **current,
        "phase": Phase.FAILED.value,
        "error": {"type": "JobLost", "reason": "Lost", "message": message},
        "completionTime": current.get("completionTime") or now(),
        "conditions": conditions,
    }


def with_dead_letter(status: dict[str, Any], bj: dict[str, Any], dl_name: str) -> dict[str, Any]:
    generation = bj["metadata"].get("generation")
    conditions = set_condition(
        list(status.get("conditions") or []),
        DEAD_LETTERED,
        True,
        "DeadLetterCreated",
        f"DeadLetter {dl_name} records the failure; replay it to run the task again",
        generation,
    )
    return {**status, "deadLetter": {"name": dl_name}, "conditions": conditions}


def awaits_dead_letter(status: dict[str, Any]) -> bool:
    """Failed, but the DeadLetter is not recorded yet (a crash came in between). Invalid
    specs never ran, so they get none."""
    return (
        status.get("phase") == Phase.FAILED
        and not status.get("deadLetter")
        and (status.get("error") or {}).get("reason") != "Invalid"
    )


def is_terminal(bj: dict[str, Any]) -> bool:
    return (bj.get("status") or {}).get("phase") in {p.value for p in TERMINAL_PHASES}


def status_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch taking current to desired, or None when nothing changed. A merge
    patch merges nested objects, so fields that vanished from one (an older progress
    message, say) are sent as null to remove them."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if old == value:
            continue
        if isinstance(value, dict) and isinstance(old, dict):
            value = {**dict.fromkeys(set(old) - set(value)), **value}
        patch[key] = value
    return patch or None
