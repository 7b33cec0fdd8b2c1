"""Reconcile one JobSchedule: own one CronJob, give every run a BackgroundJob, keep the
history within its limits, and report schedule status. The CronJob controller does the
timing; this operator runs no clock of its own for firing runs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import JobScheduleSpec
from bgjobs_operator import status as st
from bgjobs_operator.controllers import backgroundjob
from bgjobs_operator.runtime import Runtime, trim_object
from bgjobs_operator.schedules import (
    SPEC_HASH,
    build_cronjob,
    build_run,
    invalid_schedule_status,
    runs_to_prune,
    schedule_status,
)

log = logging.getLogger(__name__)


def reconcile(rt: Runtime, sched: dict[str, Any], cron: dict[str, Any] | None = None) -> None:
    md = sched["metadata"]
    if md.get("deletionTimestamp"):
        return
    with rt.lock(md["uid"]):
        sched = rt.schedules.get((md["namespace"], md["name"]), sched)
        try:
            spec = JobScheduleSpec.model_validate(sched["spec"])
            manifest = build_cronjob(sched, spec, rt.config)
        except (ValidationError, ValueError) as exc:
            return _invalid(rt, sched, str(exc))
        cron = cron or rt.cronjobs.get((md["namespace"], md["name"]))
        if cron is None or _hash(cron) != _hash(manifest):
            cron = _apply_cronjob(rt, manifest)
        runs = [
            bj
            for (ns, _), bj in list(rt.backgroundjobs.items())
            if ns == md["namespace"]
            and (bj["metadata"].get("labels") or {}).get(names.SCHEDULE) == md["name"]
        ]
        for old in runs_to_prune(
            runs, spec.successfulRunsHistoryLimit, spec.failedRunsHistoryLimit
        ):
            rt.api.delete_custom("BackgroundJob", md["namespace"], old["metadata"]["name"])
            runs.remove(old)
        desired = schedule_status(sched, spec, cron, runs, datetime.now(UTC))
        _write(rt, sched, desired)


def _hash(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(SPEC_HASH)


def _apply_cronjob(rt: Runtime, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the CronJob, or bring an existing one to the manifest. The spec hash decides:
    comparing specs would see the API server's defaults as differences and patch forever."""
    md = manifest["metadata"]
    created = rt.api.create_cronjob(manifest)
    if created is not None:
        return rt.remember(rt.cronjobs, created)
    existing = rt.api.read_cronjob(md["namespace"], md["name"])
    if _hash(existing) == _hash(manifest):
        return rt.remember(rt.cronjobs, existing)
    # It exists with an older spec: replace what we own, keep what the controller owns.
    patch = {
        "metadata": {"annotations": md["annotations"], "labels": md["labels"]},
        "spec": manifest["spec"],
    }
    return rt.remember(rt.cronjobs, rt.api.patch_cronjob(md["namespace"], md["name"], patch))


def adopt_run(rt: Runtime, job: dict[str, Any]) -> None:
    """A CronJob just started a run's Job: create the BackgroundJob that reports it."""
    jmd = job["metadata"]
    schedule = (jmd.get("labels") or {})[names.SCHEDULE]
    sched = rt.schedules.get((jmd["namespace"], schedule))
    if sched is None:
        found = rt.api.get_custom("JobSchedule", jmd["namespace"], schedule)
        if found is None:
            return  # the schedule is gone; its CronJob and Jobs follow
        sched = trim_object(found)
    bj, _ = rt.api.create_or_get(build_run(sched, job, backgroundjob.JOB_UID_ANNOTATION))
    backgroundjob.reconcile(rt, rt.remember(rt.backgroundjobs, trim_object(bj)))


def _invalid(rt: Runtime, sched: dict[str, Any], message: str) -> None:
    desired = invalid_schedule_status(sched, message)
    if _write(rt, sched, desired):
        rt.api.post_event(sched, "Warning", "InvalidSchedule", message)


def _write(rt: Runtime, sched: dict[str, Any], desired: dict[str, Any]) -> bool:
    patch = st.status_patch(sched.get("status") or {}, desired)
    if patch is None:
        return False
    md = sched["metadata"]
    updated = rt.api.patch_status("JobSchedule", md["namespace"], md["name"], patch)
    rt.remember(rt.schedules, trim_object(updated))
    return True
