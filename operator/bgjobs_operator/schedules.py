"""JobSchedule -> batch/v1 CronJob, and the schedule's status: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import TERMINAL_PHASES, JobScheduleSpec, JobScheduleStatus, Phase, RunRef
from bgjobs.schedule import next_fire_times, parse_schedule, validate_time_zone
from bgjobs_operator.conditions import set_condition, stamp
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.jobspec import (
    Placement,
    job_labels,
    job_spec,
    legacy_placement,
    owner_reference,
)

SPEC_HASH = "bgjobs.dev/spec-hash"


def cron_expression(spec: JobScheduleSpec) -> str:
    """The CronJob schedule; raises ScheduleError (a ValueError) with a message for users."""
    if spec.timeZone:
        validate_time_zone(spec.timeZone)
    return parse_schedule(spec.schedule)


def build_cronjob(
    sched: dict[str, Any],
    spec: JobScheduleSpec,
    config: OperatorConfig,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The schedule's CronJob. With a JobQueue for the template's queue, every run's Job
    starts suspended with the queue's pod defaults, and the queue admits it."""
    md = sched["metadata"]
    name = md["name"]
    placement = placement or legacy_placement(spec.template, config)
    run_labels = {**job_labels(placement.queue), names.SCHEDULE: name}
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
            "spec": job_spec(spec.template, config, {names.SCHEDULE: name}, placement),
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


def build_run(sched: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The BackgroundJob standing for one CronJob run: same name as the run's Job, owned
    by the schedule, adopting the Job the CronJob controller already created."""
    md = sched["metadata"]
    spec = dict(sched["spec"]["template"])
    spec["cancel"] = False
    if sched["spec"].get("priority"):  # the template has no priority: runs take the schedule's
        spec["priority"] = sched["spec"]["priority"]
    return {
        "apiVersion": sched["apiVersion"],
        "kind": "BackgroundJob",
        "metadata": {
            "name": job["metadata"]["name"],
            "namespace": md["namespace"],
            "labels": {names.SCHEDULE: md["name"]},
            "annotations": {names.JOB_UID_ANNOTATION: job["metadata"]["uid"]},
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
) -> JobScheduleStatus:
    current = parse_status(sched.get("status"))
    generation = sched["metadata"].get("generation")
    expr = cron_expression(spec)
    runs = sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp") or "")
    terminal = {p.value for p in TERMINAL_PHASES}

    def ref(run: dict[str, Any]) -> RunRef:
        phase = (run.get("status") or {}).get("phase") or Phase.PENDING.value
        return RunRef(name=run["metadata"]["name"], phase=Phase(phase))

    active = [ref(r) for r in runs if (r.get("status") or {}).get("phase") not in terminal]
    nxt = None if spec.suspend else next_fire_times(expr, now, spec.timeZone)[0]
    conditions = set_condition(
        current.conditions, "Ready", True, "CronJobReady", f"runs on {expr!r}", generation, now
    )
    conditions = [c for c in conditions if c.type != "Invalid"]
    conditions = set_condition(
        conditions,
        "Suspended",
        spec.suspend,
        "Suspended" if spec.suspend else "Active",
        "",
        generation,
        now,
    )
    return current.model_copy(
        update={
            "cronSchedule": expr,
            "cronJobName": cron["metadata"]["name"] if cron else None,
            "lastScheduleTime": ((cron or {}).get("status") or {}).get("lastScheduleTime"),
            "nextScheduleTime": stamp(nxt) if nxt else None,
            "lastRun": ref(runs[-1]) if runs else None,
            "active": active,
            "conditions": conditions,
            "observedGeneration": generation,
        }
    )


def invalid_schedule_status(
    sched: dict[str, Any], message: str, now: datetime
) -> JobScheduleStatus:
    current = parse_status(sched.get("status"))
    generation = sched["metadata"].get("generation")
    conditions = set_condition(
        current.conditions, "Invalid", True, "InvalidSchedule", message, generation, now
    )
    conditions = set_condition(
        conditions, "Ready", False, "InvalidSchedule", message, generation, now
    )
    return current.model_copy(update={"conditions": conditions, "observedGeneration": generation})


def parse_status(raw: dict[str, Any] | None) -> JobScheduleStatus:
    try:
        return JobScheduleStatus.model_validate(raw or {})
    except ValidationError:
        return JobScheduleStatus()
