"""Derive a BackgroundJob's status from what is observed: its batch Job, the Job's pods,
and what the worker left in Redis. Pure functions over the typed status model of
bgjobs/api/v1alpha1.py, with the clock passed in: the same observation always gives the
same status, so a restarted operator converges to where the old one would have.

Every field written here is bounded: a task controls its error message, progress text and
result, and one oversized field would make every status write fail (etcd's request limit),
wedging the job."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api.v1alpha1 import (
    TERMINAL_PHASES,
    BackgroundJobStatus,
    Condition,
    JobError,
    ObjectRef,
    Phase,
    Progress,
)
from bgjobs_operator.conditions import bound, set_condition, stamp

RUNNING, SUCCEEDED, FAILED, QUEUED = "Running", "Succeeded", "Failed", "Queued"
DEAD_LETTERED, CANCELLED, INVALID = "DeadLettered", "Cancelled", "Invalid"

MAX_PROGRESS_TEXT = {"stage": 256, "message": 1024, "updatedAt": 64}
MAX_ERROR_TYPE = 256
MAX_ERROR_MESSAGE = 4096


@dataclass(frozen=True)
class Observation:
    """Everything a BackgroundJob's status is computed from."""

    bj: dict[str, Any]
    job: dict[str, Any] | None
    # Outcome of the last finished attempt: from Redis (the worker's result document),
    # else from the pod's termination message; None when unknown.
    outcome: dict[str, Any] | None = None
    progress: Progress | None = None
    last_output: str | None = None
    max_result_bytes: int = 8192
    result_key: str | None = None


def parse(raw: dict[str, Any] | None) -> BackgroundJobStatus:
    """The typed status of an object as read. A status this model cannot read (written by
    a newer operator, or by hand) starts over from the fields it can."""
    try:
        return BackgroundJobStatus.model_validate(raw or {})
    except ValidationError:
        known = {k: v for k, v in (raw or {}).items() if k in ("phase", "jobName", "deadLetter")}
        try:
            return BackgroundJobStatus.model_validate(known)
        except ValidationError:
            return BackgroundJobStatus.model_validate({})


def dump(status: BackgroundJobStatus) -> dict[str, Any]:
    """The status as written. None fields are left out; values inside `result` are the
    task's own and kept exactly, nulls included."""
    return status.model_dump(mode="json", exclude_none=True)


def progress_of(snapshot: dict[str, Any] | None) -> Progress | None:
    """status.progress for a Redis snapshot: unset fields left out, text bounded, numbers
    finite."""
    if not snapshot:
        return None
    fields: dict[str, Any] = {}
    for name in ("current", "total", "percent"):
        value = snapshot.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            fields[name] = float(value)
    for name, limit in MAX_PROGRESS_TEXT.items():
        value = snapshot.get(name)
        if value is not None:
            fields[name] = bound(str(value), limit)
    return Progress(**fields) if fields else None


def job_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's final condition (Complete or Failed), if it has finished."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def attempts_of(job: dict[str, Any]) -> int:
    st = job.get("status") or {}
    return int(st.get("failed") or 0) + int(st.get("succeeded") or 0) + int(st.get("active") or 0)


def phase_of(job: dict[str, Any]) -> Phase:
    final = job_condition(job)
    if final:
        return Phase.SUCCEEDED if final["type"] == "Complete" else Phase.FAILED
    st = job.get("status") or {}
    if int(st.get("active") or 0) > 0 and int(st.get("ready") or 0) > 0:
        return Phase.RUNNING
    if int(st.get("failed") or 0) > 0:
        return Phase.RETRYING
    return Phase.PENDING


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(obs: Observation, final: dict[str, Any] | None) -> JobError | None:
    """The error block: the worker's own account where known, the Job's reason always."""
    err: dict[str, Any] = {}
    out = obs.outcome or {}
    if out.get("status") == "FAILURE":
        worker_err = out.get("error") or {}
        err.update(
            type=worker_err.get("type"),
            message=worker_err.get("message"),
            exitCode=_int(out.get("exitCode")),
            attempt=_int(out.get("attempt")),
        )
    if final:
        err["reason"] = final.get("reason")
        err["message"] = err.get("message") or final.get("message")
        err["type"] = err.get("type") or final.get("reason")
    if err.get("type") is not None:
        err["type"] = bound(str(err["type"]), MAX_ERROR_TYPE)
    if err.get("message") is not None:
        err["message"] = bound(str(err["message"]), MAX_ERROR_MESSAGE)
    if err.get("reason") is not None:
        err["reason"] = bound(str(err["reason"]), MAX_ERROR_TYPE)
    err = {k: v for k, v in err.items() if v is not None}
    return JobError(**err) if err else None


def _with_result(status: BackgroundJobStatus, obs: Observation) -> BackgroundJobStatus:
    out = obs.outcome or {}
    if out.get("status") != "SUCCESS":
        return status
    value = out.get("result")
    too_big = len(json.dumps(value, ensure_ascii=False).encode()) > obs.max_result_bytes
    if out.get("resultTruncated") or too_big:
        return status.model_copy(update={"result": None, "resultRef": obs.result_key})
    return status.model_copy(update={"result": value, "resultRef": None})


def desired_status(obs: Observation, now: datetime) -> BackgroundJobStatus:
    """The status a BackgroundJob should have, given a Job that exists."""
    assert obs.job is not None
    bj, job = obs.bj, obs.job
    current = parse(bj.get("status"))
    generation = bj["metadata"].get("generation")
    phase = phase_of(job)
    if phase == Phase.PENDING:
        if current.phase in (Phase.RUNNING, Phase.RETRYING):
            # Between a pod's end and the Job's final condition the Job shows no active
            # pod for a moment; that is not a step back to Pending.
            return current
        # Nothing new to say yet: the CRD default already shows Pending, and writing the
        # Job's name alone would cost an API write per job (README "API writes").
        return current.model_copy(update={"phase": Phase.PENDING})
    jst = job.get("status") or {}
    final = job_condition(job)
    attempts = attempts_of(job) or None
    update: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": generation,
        "jobName": job["metadata"]["name"],
        "attempts": attempts,
        "startTime": current.startTime or jst.get("startTime"),
    }
    conditions = set_condition(
        current.conditions,
        RUNNING,
        phase == Phase.RUNNING,
        "AttemptRunning" if phase == Phase.RUNNING else phase.value,
        f"attempt {attempts} is running" if phase == Phase.RUNNING else "",
        generation,
        now,
    )
    running = phase in (Phase.RUNNING, Phase.RETRYING)
    if running and int(jst.get("failed") or 0) > 0:
        err = _error(obs, None)
        if err is not None:
            update["error"] = err
    status = current
    if phase == Phase.SUCCEEDED:
        update["completionTime"] = current.completionTime or jst.get("completionTime") or stamp(now)
        update["error"] = None
        conditions = set_condition(
            conditions, SUCCEEDED, True, "Completed", "the task returned", generation, now
        )
        status = _with_result(current, obs)
    elif phase == Phase.FAILED:
        assert final is not None
        update["completionTime"] = (
            current.completionTime or final.get("lastTransitionTime") or stamp(now)
        )
        update["error"] = _error(obs, final)
        conditions = set_condition(
            conditions,
            FAILED,
            True,
            final.get("reason") or "Failed",
            describe_failure(update["error"]),
            generation,
            now,
        )
    if obs.progress is not None:
        update["progress"] = obs.progress
    update["conditions"] = conditions
    return status.model_copy(update=update)


def batch_failed_conditions(
    conditions: list[Condition], error: JobError, generation: int | None, now: datetime
) -> list[Condition]:
    """A batch whose Job completed with failed items: Failed, not Succeeded."""
    conditions = set_condition(conditions, RUNNING, False, "Failed", "", generation, now)
    conditions = set_condition(conditions, SUCCEEDED, False, "ItemsFailed", "", generation, now)
    return set_condition(
        conditions, FAILED, True, "ItemsFailed", error.message or "", generation, now
    )


def describe_failure(err: JobError | None) -> str:
    err = err or JobError()
    what = {
        "BackoffLimitExceeded": "retries exhausted",
        "PodFailurePolicy": "permanent error, not retried",
        "DeadlineExceeded": "activeDeadlineSeconds passed",
        "ItemsFailed": "items failed",
    }.get(err.reason or "", err.reason or "failed")
    detail = ": ".join(x for x in (err.type, err.message) if x)
    return bound(f"{what}; {detail}" if detail else what, 1024) or what


def invalid_status(
    current: BackgroundJobStatus, generation: int | None, message: str, now: datetime
) -> BackgroundJobStatus:
    message = bound(message, MAX_ERROR_MESSAGE) or ""
    conditions = set_condition(
        current.conditions, INVALID, True, "InvalidSpec", message, generation, now
    )
    conditions = set_condition(conditions, FAILED, True, "InvalidSpec", message, generation, now)
    return current.model_copy(
        update={
            "phase": Phase.FAILED,
            "observedGeneration": generation,
            "error": JobError(type="InvalidSpec", reason="Invalid", message=message),
            "completionTime": current.completionTime or stamp(now),
            "conditions": conditions,
        }
    )


def cancelled_status(
    current: BackgroundJobStatus, generation: int | None, now: datetime
) -> BackgroundJobStatus:
    conditions = set_condition(current.conditions, RUNNING, False, "Cancelled", "", generation, now)
    conditions = set_condition(
        conditions, CANCELLED, True, "CancelRequested", "spec.cancel is true", generation, now
    )
    return current.model_copy(
        update={
            "phase": Phase.CANCELLED,
            "observedGeneration": generation,
            "completionTime": current.completionTime or stamp(now),
            "conditions": conditions,
        }
    )


def lost_status(
    current: BackgroundJobStatus, generation: int | None, job_name: str, now: datetime
) -> BackgroundJobStatus:
    """The Job vanished before its outcome was recorded (deleted by hand, or its TTL
    passed while the operator was down). Never re-run it: the task may have run."""
    message = f"Job {job_name} disappeared before its outcome was observed"
    conditions = set_condition(
        current.conditions, FAILED, True, "JobLost", message, generation, now
    )
    return current.model_copy(
        update={
            "phase": Phase.FAILED,
            "error": JobError(type="JobLost", reason="Lost", message=message),
            "completionTime": current.completionTime or stamp(now),
            "conditions": conditions,
        }
    )


def with_dead_letter(
    status: BackgroundJobStatus, generation: int | None, dl_name: str, now: datetime
) -> BackgroundJobStatus:
    conditions = set_condition(
        status.conditions,
        DEAD_LETTERED,
        True,
        "DeadLetterCreated",
        f"DeadLetter {dl_name} records the failure; replay it to run the task again",
        generation,
        now,
    )
    return status.model_copy(
        update={"deadLetter": ObjectRef(name=dl_name), "conditions": conditions}
    )


def awaits_dead_letter(status: BackgroundJobStatus | dict[str, Any]) -> bool:
    """Failed, but the DeadLetter is not recorded yet (a crash came in between). Invalid
    specs never ran, so they get none."""
    if isinstance(status, dict):
        phase, dl = status.get("phase"), status.get("deadLetter")
        reason = (status.get("error") or {}).get("reason")
    else:
        phase, dl = status.phase, status.deadLetter
        reason = status.error.reason if status.error else None
    return phase == Phase.FAILED and not dl and reason != "Invalid"


def is_terminal(bj: dict[str, Any]) -> bool:
    return (bj.get("status") or {}).get("phase") in {p.value for p in TERMINAL_PHASES}


def queued_status(
    current: BackgroundJobStatus,
    generation: int | None,
    reason: str,
    message: str,
    queue: str,
    now: datetime,
) -> BackgroundJobStatus:
    """The Queued condition saying why the job waits. Unchanged while the reason is: a new
    position in the queue alone ("3 ahead" becoming "2 ahead") is not worth a write."""
    old = next((c for c in current.conditions if c.type == QUEUED), None)
    if old is not None and old.status == "True" and old.reason == reason:
        return current
    conditions = set_condition(current.conditions, QUEUED, True, reason, message, generation, now)
    return current.model_copy(update={"conditions": conditions, "queue": queue})


def admitted_status(
    status: BackgroundJobStatus, generation: int | None, now: datetime
) -> BackgroundJobStatus:
    """Queued turns False once the job runs; rides on the write that says Running."""
    if not any(c.type == QUEUED and c.status == "True" for c in status.conditions):
        return status
    conditions = set_condition(
        status.conditions, QUEUED, False, "Admitted", "admitted", generation, now
    )
    return status.model_copy(update={"conditions": conditions})
