"""Reconcile one JobWorkflow: each step is a BackgroundJob the workflow owns, created by the
watch event that shows its last dependency Succeeded; the workflow's status is derived from
its steps' BackgroundJobs.

observe (the by-workflow index; Redis only for the size of a result too large to pass) →
decide (pure) → act (create steps or cancel them, then one status write, Events last).
Safe after a crash at any line: step names are deterministic and creation is
create-or-adopt, so no step runs twice; results are read from the steps' own status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api.v1alpha1 import (
    ON_FAILURE_STEP,
    BackgroundJobSpec,
    JobError,
    JobWorkflowSpec,
    JobWorkflowStatus,
    Phase,
    StepPhase,
)
from bgjobs.redaction import redact
from bgjobs_operator.actions import Action, CreateObject, Decision, PatchObject, PostEvent
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.effects import perform
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.runtime import Runtime
from bgjobs_operator.status import describe_failure
from bgjobs_operator.workflows import (
    StepRun,
    build_step,
    first_failure,
    invalid_status,
    newest_jobs,
    on_failure_run,
    owned_by,
    parse_status,
    step_args,
    step_run,
    workflow_status,
)

log = logging.getLogger(__name__)
KIND = "JobWorkflow"
# Watch events drive every step; this only re-derives an unfinished workflow's status now
# and then in case an event was missed.
RESYNC_SECONDS = 300.0
_ACTIVE = (StepPhase.PENDING, StepPhase.RUNNING, StepPhase.RETRYING)


@dataclass(frozen=True)
class Observed:
    wf: dict[str, Any] | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    # Redis result key -> its size, for succeeded steps whose result was too large for
    # their status (and so cannot be passed on).
    result_sizes: dict[str, int] = field(default_factory=dict)


# --- observe ------------------------------------------------------------------------------


async def observe(rt: Runtime, namespace: str, name: str) -> Observed:
    wf = rt.workflows.get((namespace, name))
    if wf is None:
        return Observed(None)
    steps = rt.backgroundjobs.by_index("workflow", (namespace, name))
    sizes: dict[str, int] = {}
    for bj in steps:
        st = bj.get("status") or {}
        ref = st.get("resultRef")
        if st.get("phase") == Phase.SUCCEEDED and ref and st.get("result") is None:
            size = await rt.read_redis(_strlen, ref)
            if size is not None:
                sizes[ref] = int(size)
    return Observed(wf, steps, sizes)


async def _strlen(client: Any, key: str) -> int:
    return int(await client.strlen(key))


# --- decide (pure) ------------------------------------------------------------------------


def decide(obs: Observed, now: datetime, config: OperatorConfig) -> Decision:
    wf = obs.wf
    if wf is None or wf["metadata"].get("deletionTimestamp"):
        return Decision()  # the garbage collector removes the steps
    current = parse_status(wf.get("status"))
    try:
        spec = JobWorkflowSpec.model_validate(wf.get("spec") or {})
    except ValidationError as exc:
        message = "; ".join(str(e["msg"]) for e in exc.errors())
        return _invalid(wf, current, f"spec is invalid: {message}", now)
    round_ = spec.resumes
    jobs = newest_jobs(obs.steps, wf)
    runs: dict[str, StepRun] = {
        s.name: step_run(s.name, jobs.get(s.name), round_) for s in spec.steps
    }
    failure = first_failure(spec, runs, current.failedStep)
    actions: list[Action] = []
    if failure is None and not spec.cancel:
        actions, failure = _start_ready_steps(wf, spec, runs, obs, config, round_)
    if failure is not None or spec.cancel:
        actions += _stop(wf, spec, runs)
    handler = None
    if failure is not None and not spec.cancel and spec.onFailure is not None:
        handler, create = on_failure_run(wf, spec, jobs.get(ON_FAILURE_STEP), failure, round_)
        if create is not None:
            actions.append(CreateObject(create))
    desired = workflow_status(wf, spec, runs, failure, current, now, handler)
    after = _announcements(wf, current, desired, len(spec.steps))
    unfinished = desired.completionTime is None
    return Decision(
        status=_dump(desired) if desired != current else None,
        actions=actions,
        after=after,
        requeue_after=RESYNC_SECONDS if unfinished else None,
    )


def _start_ready_steps(
    wf: dict[str, Any],
    spec: JobWorkflowSpec,
    runs: dict[str, StepRun],
    obs: Observed,
    config: OperatorConfig,
    round_: int,
) -> tuple[list[Action], tuple[str, JobError] | None]:
    """Create the steps whose dependencies have all Succeeded, with their results as
    arguments; updates ``runs``. A step that cannot start (a result too large to pass, a
    spec the API server would refuse) fails the workflow, and then none starts."""
    creates: list[tuple[str, dict[str, Any]]] = []
    failure: tuple[str, JobError] | None = None
    for step in spec.steps:
        run = runs[step.name]
        if run.phase != StepPhase.WAITING or not all(
            runs[d].phase == StepPhase.SUCCEEDED for d in step.dependsOn
        ):
            continue
        args = step_args(step, runs, obs.result_sizes, config.max_result_bytes)
        manifest = build_step(wf, step, args, round_) if isinstance(args, list) else None
        error = args if isinstance(args, JobError) else _refused(manifest or {})
        if error is not None:
            runs[step.name] = StepRun(
                run.status.model_copy(update={"phase": StepPhase.FAILED, "error": error})
            )
            failure = failure or (step.name, error)
        elif manifest is not None:
            creates.append((step.name, manifest))
    if failure is not None:
        return [], failure
    for name, manifest in creates:
        pending = {"phase": StepPhase.PENDING, "jobName": manifest["metadata"]["name"]}
        runs[name] = StepRun(runs[name].status.model_copy(update=pending))
    return [CreateObject(manifest) for _, manifest in creates], None


def _stop(wf: dict[str, Any], spec: JobWorkflowSpec, runs: dict[str, StepRun]) -> list[Action]:
    """After a failure or a cancel: steps not started are Skipped; running ones are
    cancelled with failFast or cancel (once: a step already asked is not asked again)."""
    actions: list[Action] = []
    for name, run in runs.items():
        if run.phase == StepPhase.WAITING:
            runs[name] = StepRun(run.status.model_copy(update={"phase": StepPhase.SKIPPED}))
        elif (
            (spec.failFast or spec.cancel)
            and run.job is not None
            and run.phase in _ACTIVE
            and not (run.job.get("spec") or {}).get("cancel")
        ):
            cancel = {"spec": {"cancel": True}}
            ns, job = wf["metadata"]["namespace"], run.job["metadata"]["name"]
            actions.append(PatchObject("BackgroundJob", ns, job, cancel))
    return actions


def _refused(manifest: dict[str, Any]) -> JobError | None:
    """What the API server would refuse in a step's BackgroundJob (the same rules, checked
    in Python): with results added, its args may break a limit the template kept."""
    try:
        BackgroundJobSpec.model_validate(manifest.get("spec") or {})
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JobError(type="InvalidSpec", reason="Invalid", message=message)
    return None


def _dump(status: JobWorkflowStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude_none=True)


def _announcements(
    wf: dict[str, Any], current: JobWorkflowStatus, desired: JobWorkflowStatus, total: int
) -> list[Action]:
    """Events for what changed: a resume, a failure, the end. One per transition, and
    only after the status that records it is written."""
    after: list[Action] = []
    if (current.resumes or 0) < (desired.resumes or 0):
        after.append(
            PostEvent(
                wf,
                "Normal",
                "Resumed",
                f"resume {desired.resumes}: failed and skipped steps run again",
            )
        )
    if desired.phase == current.phase:
        return after
    if desired.phase == Phase.FAILED:
        skipped = sum(1 for s in desired.steps if s.phase == StepPhase.SKIPPED)
        after.append(
            PostEvent(
                wf,
                "Warning",
                "StepFailed",
                f"step {desired.failedStep} failed: {describe_failure(desired.error)}; "
                f"{skipped} step(s) skipped",
            )
        )
    elif desired.phase == Phase.SUCCEEDED:
        after.append(PostEvent(wf, "Normal", "Succeeded", f"all {total} steps succeeded"))
    elif desired.phase == Phase.CANCELLED:
        after.append(PostEvent(wf, "Normal", "Cancelled", "spec.cancel is true; no step starts"))
    return after


def _invalid(
    wf: dict[str, Any], current: JobWorkflowStatus, message: str, now: datetime
) -> Decision:
    desired = invalid_status(current, wf["metadata"].get("generation"), message, now)
    if desired == current:
        return Decision()
    return Decision(status=_dump(desired), after=[PostEvent(wf, "Warning", "InvalidSpec", message)])


# --- act ----------------------------------------------------------------------------------


async def reconcile(rt: Runtime, namespace: str, name: str) -> float | None:
    obs = await observe(rt, namespace, name)
    decision = decide(obs, rt.clock(), rt.config)
    return await act(rt, obs, decision)


async def act(rt: Runtime, obs: Observed, decision: Decision) -> float | None:
    wf = obs.wf
    for action in decision.actions:
        try:
            done = await perform(rt.api, action, rt.config.webhook_url)
        except ApiError as exc:
            if exc.namespace_terminating:
                return None
            raise
        if done is None or wf is None:
            continue
        obj, created = done
        if not created and not owned_by(obj, wf):
            # Not ours: never adopted (it may be anything). Retried with backoff, loudly.
            raise ApiError(
                409,
                {
                    "reason": "AlreadyExists",
                    "message": redact(
                        f"a BackgroundJob named {obj['metadata']['name']} already exists and "
                        "does not belong to this workflow; delete it to let the step run"
                    ),
                },
            )
        put = rt.backgroundjobs.put(obj)
        if created:  # its Job next, without waiting for the watch to bring it back
            rt.queue.add(("BackgroundJob", put["metadata"]["namespace"], put["metadata"]["name"]))
    if wf is not None and decision.status is not None:
        md = wf["metadata"]
        updated = await rt.api.replace_status(KIND, md["namespace"], md["name"], decision.status)
        rt.workflows.put(updated)
        for action in decision.after:
            await perform(rt.api, action, rt.config.webhook_url)
    return decision.requeue_after
