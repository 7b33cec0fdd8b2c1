"""JobSchedule -> batch/v1 CronJob, and the schedule's status: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from bgjobs.api import names
from bgjobs.api.v1alpha1 import TERMINAL_PHASES, JobScheduleSpec, Phase
from bgjobs.schedule import next_fire_times, parse_schedule, validate_time_zone
from bgjobs_operator.conditions import set_condition
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.jobspec import job_labels, job_spec, owner_reference

SPEC_HASH = "bgjobs.dev/spec-hash"


def cron_expression(spec: JobScheduleSpec) -> str:
    """The CronJob schedule; raises ScheduleError (a ValueError) with a message for users."""
    if spec.timeZone:
        validate_time_zone(spec.timeZone)
    return parse_schedule(spec.schedule)


def build_cronjob(
    sched: dict[str, Any], spec: JobScheduleSpec, config: OperatorConfig
) -> dict[str, Any]:
    md = sched["metadata"]
    name = md["name"]
    run_labels = {**job_labels(spec.template), names.SCHEDULE: name}
    cron_spec: dict[str, Any] = {
        "schedule": cron_expression(spec),
        "concurrencyPolicy": spec.concurrencyPolicy.value,
        "suspend": spec.suspend,
        "successfulJobsHistoryLimit": spec.successfulRunsHistoryLimit,
        "failedJobsHistoryLimit": spec.failedRunsHistoryLimit,
        "jobTemplate": {
            "metadata": {
                "labels": run_labels,
                "annotations": {names.TASK_ANNOTATION: spec.template.task},
            },
            "spec": job_spec(spec.template, config, {names.SCHEDULE: name}),
        },
    }
    if spec.timeZone:
        cron_spec["timeZone"] = spec.timeZone
    if spec.startingDeadlineSeconds:
        cron_spec["startingDeadlineSeconds"] = spec.startingDeadlineSeconds
    digest = hashlib.sha256(json.dumps(cron_spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": md["namespace"],
            "labels": {names.MANAGED_BY: names.MANAGER, names.SCHEDULE: name},
            # Compared instead of the spec itself, which the API server fills with defaults.
            "annotations": {SPEC_HASH: digest},
            "ownerReferences": [owner_reference(sched)],
        },
        "spec": cron_spec,
    }


def build_run(
    sched: dict[str, Any], job: dict[str, Any], job_uid_annotation: str
) -> dict[str, Any]:
    """The BackgroundJob standing for one CronJob run: same name as the run's Job, owned
    by the schedule, adopting the Job the CronJob controller already created."""
    md = sched["metadata"]
    spec = dict(sched["spec"]["template"])
    spec["cancel"] = False
    return {
        "apiVersion": sched["apiVersion"],
        "kind": "BackgroundJob",
        "metadata": {
            "name": job["metadata"]["name"],
            "namespace": md["namespace"],
            "labels": {names.SCHEDULE: md["name"]},
            "annotations": {job_uid_annotation: job["metadata"]["uid"]},
            "ownerReferences": [owner_reference(sched)],
        },
        "spec": spec,
    }


def runs_to_prune(
    runs: list[dict[str, Any]], keep_succeeded: int, keep_failed: int
) -> list[dict[str, Any]]:
    """Finished runs beyond the history limits, oldest first."""

    def finished(phase: Phase) -> list[dict[str, Any]]:
        chosen = [r for r in runs if (r.get("status") or {}).get("phase") == phase]
        return sorted(chosen, key=lambda r: r["metadata"].get("creationTimestamp") or "")

    ok = finished(Phase.SUCCEEDED) + finished(Phase.CANCELLED)
    ok.sort(key=lambda r: r["metadata"].get("creationTimestamp") or "")
    failed = finished(Phase.FAILED)
    return ok[: max(0, len(ok) - keep_succeeded)] + failed[: max(0, len(failed) - keep_failed)]


def schedule_status(
    sched: dict[str, Any],
    spec: JobScheduleSpec,
    cron: dict[str, Any] | None,
    runs: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    current = sched.get("status") or {}
    generation = sched["metadata"].get("generation")
    expr = cron_expression(spec)
    runs = sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp") or "")
    terminal = {p.value for p in TERMINAL_PHASES}
    active = [
        {
            "name": r["metadata"]["name"],
            "phase": (r.get("status") or {}).get("phase") or Phase.PENDING.value,
        }
        for r in runs
        if (r.get("status") or {}).get("phase") not in terminal
    ]
    last = runs[-1] if runs else None
    nxt = None if spec.suspend else next_fire_times(expr, now, spec.timeZone)[0]
    conditions = set_condition(
        list(current.get("conditions") or []),
        "Ready",
        True,
        "CronJobReady",
        f"runs on {expr!r}",
        generation,
    )
    conditions = [c for c in conditions if c["type"] != "Invalid"]
    conditions = set_condition(
        conditions,
        "Suspended",
        spec.suspend,
        "Suspended" if spec.suspend else "Active",
        "",
        generation,
    )
    st: dict[str, Any] = {
        "cronSchedule": expr,
        "cronJobName": cron["metadata"]["name"] if cron else None,
        "lastScheduleTime": ((cron or {}).get("status") or {}).get("lastScheduleTime"),
        "nextScheduleTime": nxt.strftime("%Y-%m-%dT%H:%M:%SZ") if nxt else None,
        "lastRun": {
            "name": last["metadata"]["name"],
            "phase": (last.get("status") or {}).get("phase") or "Pending",
        }
        if last
        else None,
        "active": active,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    return {**current, **st}


def invalid_schedule_status(sched: dict[str, Any], message: str) -> dict[str, Any]:
    current = sched.get("status") or {}
    generation = sched["metadata"].get("generation")
    conditions = set_condition(
        list(current.get("conditions") or []),
        "Invalid",
        True,
        "InvalidSchedule",
        message,
        generation,
    )
    conditions = set_condition(conditions, "Ready", False, "InvalidSchedule", message, generation)
    return {**current, "conditions": conditions, "observedGeneration": generation}
