"""Reconcile one JobSchedule: own one CronJob, give every run a BackgroundJob (the run's
adoption is the BackgroundJob reconciler's, keyed by the run Job's name), keep the history
within its limits, and report schedule status. The CronJob controller does the timing;
this operator runs no clock of its own for firing runs.

observe (store reads through the by-schedule index) → decide (pure) → act.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api.rules import route
from bgjobs.api.v1alpha1 import DEFAULT_QUEUE, JobScheduleSpec
from bgjobs_operator.actions import Action, CreateObject, Decision, DeleteObject, PostEvent
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.controllers.backgroundjob import QueueInfo, placement
from bgjobs_operator.effects import perform
from bgjobs_operator.jobspec import Placement
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.runtime import Runtime
from bgjobs_operator.schedules import (
    SPEC_HASH,
    build_cronjob,
    invalid_schedule_status,
    parse_status,
    runs_to_prune,
    schedule_status,
)

log = logging.getLogger(__name__)
KIND = "JobSchedule"
RESYNC_SECONDS = 300.0


@dataclass(frozen=True)
class Observed:
    sched: dict[str, Any] | None
    cron: dict[str, Any] | None
    runs: list[dict[str, Any]]
    placement: Placement | None = None  # the runs' queue (None: as spec.queue names it)


def observe(rt: Runtime, namespace: str, name: str) -> Observed:
    sched = rt.schedules.get((namespace, name))
    return Observed(
        sched=sched,
        cron=rt.cronjobs.get((namespace, name)),
        runs=rt.backgroundjobs.by_index("schedule", (namespace, name)),
        placement=_placement(rt, namespace, sched) if sched is not None else None,
    )


def _placement(rt: Runtime, namespace: str, sched: dict[str, Any]) -> Placement | None:
    """Runs go to the template's queue, else a JobQueue route for the task, else default;
    a JobQueue there admits them (its changes re-reconcile the namespace's schedules)."""
    template = (sched.get("spec") or {}).get("template") or {}
    explicit = template.get("queue")
    queue = explicit or route(
        str(template.get("task") or ""), rt.jobqueues.by_index("namespace", namespace)
    )
    queue = queue or DEFAULT_QUEUE
    info = QueueInfo(
        queue, bool(explicit), rt.jobqueues.get((namespace, queue)), queue in rt.config.queue_limits
    )
    try:
        return placement(info)
    except ValidationError:
        return None


def spec_hash(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(SPEC_HASH)


def cronjob_patch(manifest: dict[str, Any]) -> dict[str, Any]:
    """Bring an existing CronJob to the manifest: replace what we own, keep what the
    controller owns. The spec hash decides when: comparing specs would see the API
    server's defaults as differences and patch forever."""
    md = manifest["metadata"]
    return {
        "metadata": {"annotations": md["annotations"], "labels": md["labels"]},
        "spec": manifest["spec"],
    }


def decide(obs: Observed, now: datetime, config: OperatorConfig) -> Decision:
    sched = obs.sched
    if sched is None or sched["metadata"].get("deletionTimestamp"):
        return Decision()
    md = sched["metadata"]
    current = parse_status(sched.get("status"))
    try:
        spec = JobScheduleSpec.model_validate(sched["spec"])
        manifest = build_cronjob(sched, spec, config, obs.placement)
    except (ValidationError, ValueError) as exc:
        desired = invalid_schedule_status(sched, str(exc), now)
        if desired == current:
            return Decision()
        return Decision(
            status=desired.model_dump(mode="json", exclude_none=True),
            after=[PostEvent(sched, "Warning", "InvalidSchedule", str(exc))],
        )
    actions: list[Action] = []
    cron = obs.cron
    if cron is None or spec_hash(cron) != spec_hash(manifest):
        actions.append(CreateObject(manifest))  # act patches one that exists, outdated
    runs = list(obs.runs)
    for old in runs_to_prune(runs, spec.successfulRunsHistoryLimit, spec.failedRunsHistoryLimit):
        actions.append(DeleteObject("BackgroundJob", md["namespace"], old["metadata"]["name"]))
        runs.remove(old)
    desired = schedule_status(sched, spec, cron or manifest, runs, now)
    return Decision(
        status=None if desired == current else desired.model_dump(mode="json", exclude_none=True),
        actions=actions,
        requeue_after=RESYNC_SECONDS,
    )


async def reconcile(rt: Runtime, namespace: str, name: str) -> float | None:
    obs = observe(rt, namespace, name)
    decision = decide(obs, rt.clock(), rt.config)
    sched = obs.sched
    for action in decision.actions:
        try:
            done = await perform(rt.api, action)
        except ApiError as exc:
            if exc.namespace_terminating:
                return None
            raise
        if done is not None and isinstance(action, CreateObject):
            cron, created = done
            if not created and spec_hash(cron) != spec_hash(action.manifest):
                cron = await rt.api.patch(
                    "CronJob", namespace, name, cronjob_patch(action.manifest)
                )
            rt.cronjobs.put(cron)
    if sched is not None and decision.status is not None:
        updated = await rt.api.replace_status(KIND, namespace, name, decision.status)
        rt.schedules.put(updated)
        for action in decision.after:
            await perform(rt.api, action)
    return decision.requeue_after
