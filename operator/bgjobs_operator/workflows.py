"""JobWorkflow: what each step's BackgroundJob says about the step, the arguments a step
receives from its dependencies, the step's BackgroundJob manifest and the workflow's
status. Pure functions over plain data and the clock, like status.py for BackgroundJobs.

A step's state is always derived from its BackgroundJob (found through the by-workflow
index), never remembered in the workflow's status: a restarted operator, or one that missed
an event, arrives at the same state. Each resume is a *round*: the BackgroundJobs a round
creates carry its number (label bgjobs.dev/workflow-round), and a step whose newest
BackgroundJob failed in an earlier round counts as not yet run in this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api import names
from bgjobs.api.dag import sinks
from bgjobs.api.v1alpha1 import (
    API_VERSION,
    ON_FAILURE_STEP,
    JobError,
    JobWorkflowSpec,
    JobWorkflowStatus,
    Phase,
    StepPhase,
    StepStatus,
    WorkflowStep,
)
from bgjobs_operator.conditions import bound, set_condition, stamp
from bgjobs_operator.jobspec import owner_reference
from bgjobs_operator.status import describe_failure
from bgjobs_worker.batch_keys import as_item
from bgjobs_worker.canvas import call_args

RESULT_SUMMARY = 80
_ACTIVE = (StepPhase.PENDING, StepPhase.RUNNING, StepPhase.RETRYING)
_ENDED_BADLY = (StepPhase.FAILED, StepPhase.CANCELLED)
_STEP_FIELDS = {"name", "dependsOn", "immutable", "forEach", "parallelism"}


@dataclass(frozen=True)
class StepRun:
    """One step in the current round: its status line and, once it Succeeded, its result
    (or only the Redis key of a result too large for the BackgroundJob's status)."""

    status: StepStatus
    result: Any = None
    result_ref: str | None = None
    job: dict[str, Any] | None = None

    @property
    def phase(self) -> StepPhase:
        return self.status.phase


def parse_status(raw: dict[str, Any] | None) -> JobWorkflowStatus:
    try:
        return JobWorkflowStatus.model_validate(raw or {})
    except ValidationError:
        return JobWorkflowStatus.model_validate({})


def round_of(bj: dict[str, Any]) -> int:
    try:
        return int((bj["metadata"].get("labels") or {}).get(names.ROUND) or 0)
    except ValueError:
        return 0


def owned_by(obj: dict[str, Any], wf: dict[str, Any]) -> bool:
    uid = wf["metadata"].get("uid")
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or [])


def _recency(bj: dict[str, Any]) -> tuple[int, str, bool]:
    """Later rounds first; within a round, a DeadLetter replay of the step (created
    later) over the run it replays."""
    md = bj["metadata"]
    replay = bool((md.get("annotations") or {}).get(names.REPLAY_OF_ANNOTATION))
    return round_of(bj), str(md.get("creationTimestamp") or ""), replay


def newest_jobs(step_jobs: list[dict[str, Any]], wf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each step's newest BackgroundJob (latest round, then a replay of it), among those
    this workflow owns (a deleted workflow's steps may linger under the same name until
    collected)."""
    newest: dict[str, dict[str, Any]] = {}
    for bj in step_jobs:
        step = (bj["metadata"].get("labels") or {}).get(names.STEP)
        if not step or not owned_by(bj, wf):
            continue
        if step not in newest or _recency(bj) > _recency(newest[step]):
            newest[step] = bj
    return newest


def summarize(value: Any) -> str | None:
    return bound(json.dumps(value, ensure_ascii=False, separators=(",", ":")), RESULT_SUMMARY)


def step_run(name: str, bj: dict[str, Any] | None, round_: int) -> StepRun:
    """What a step's BackgroundJob says about it in round ``round_``. A step whose job
    failed in an earlier round has not run in this one (a resume runs it anew); one that
    Succeeded in any round keeps its result."""
    if bj is None:
        return StepRun(StepStatus(name=name))
    st = bj.get("status") or {}
    phase = StepPhase(st.get("phase") or StepPhase.PENDING)
    if phase in _ENDED_BADLY and round_of(bj) < round_:
        return StepRun(StepStatus(name=name))
    percent = ((st.get("progress") or {}).get("percent")) if phase != StepPhase.SUCCEEDED else 100
    error = None
    if phase == StepPhase.FAILED and st.get("error"):
        error = JobError.model_validate(st["error"])
    elif phase == StepPhase.CANCELLED:
        error = JobError(
            type="Cancelled", message=f"BackgroundJob {bj['metadata']['name']} was cancelled"
        )
    result, ref = st.get("result"), st.get("resultRef")
    summary = None
    if phase == StepPhase.SUCCEEDED:
        summary = f"in Redis: {ref}" if ref and result is None else summarize(result)
    status = StepStatus(
        name=name,
        phase=phase,
        jobName=bj["metadata"]["name"],
        attempts=st.get("attempts"),
        progress=round(float(percent), 1) if isinstance(percent, int | float) else None,
        startTime=st.get("startTime"),
        completionTime=st.get("completionTime"),
        result=bound(summary, RESULT_SUMMARY),
        error=error,
    )
    return StepRun(status, result=result, result_ref=ref, job=bj)


def step_args(
    step: WorkflowStep,
    runs: Mapping[str, StepRun],
    sizes: Mapping[str, int],
    limit: int,
) -> list[Any] | JobError:
    """The step's positional arguments with its dependencies' results (Celery's rules):
    one dependency, its result first; several, the list of their results (in dependsOn
    order) first; ``immutable``, nothing added. A result kept only in Redis because it
    was larger than ``limit`` bytes is not passed: the step fails, saying so."""
    if step.immutable or not step.dependsOn:
        return list(step.args)
    results = []
    for dep in step.dependsOn:
        run = runs[dep]
        if run.result is None and run.result_ref:
            size = sizes.get(run.result_ref)
            how_big = f"{size} bytes" if size is not None else "too large"
            return JobError(
                type="ResultTooLarge",
                reason="ResultTooLarge",
                message=(
                    f"the result of step {dep} is {how_big}, above the {limit}-byte limit "
                    "for results passed between steps (--max-result-bytes); return a "
                    "reference instead (an object-storage URL or key), or mark this step "
                    "immutable"
                ),
            )
        results.append(run.result)
    if step.forEach:
        (items,) = results
        if not isinstance(items, list) or not items:
            got = "an empty list" if items == [] else type(items).__name__
            return JobError(
                type="InvalidSpec",
                reason="NotAList",
                message=(
                    f"step {step.name} runs forEach over the result of step "
                    f"{step.dependsOn[0]}, which must be a non-empty list; it is {got}"
                ),
            )
        return [as_item(item) for item in items]
    return call_args(step.args, results, step.immutable)


def build_step(
    wf: dict[str, Any], step: WorkflowStep, args: list[Any], round_: int
) -> dict[str, Any]:
    """The step's BackgroundJob: owned by the workflow (deleted with it), named
    deterministically, labelled so its events reach the workflow."""
    md = wf["metadata"]
    spec = step.model_dump(mode="json", exclude=_STEP_FIELDS, exclude_none=True)
    if step.forEach:  # a batch: one call per element of the dependency's result
        spec.update(args=[], kwargs={}, items=args)
        if step.parallelism is not None:
            spec["parallelism"] = step.parallelism
    else:
        spec["args"] = args
    return {
        "apiVersion": API_VERSION,
        "kind": "BackgroundJob",
        "metadata": {
            "name": names.step_job_name(md["name"], step.name, round_),
            "namespace": md["namespace"],
            "labels": {
                names.WORKFLOW: md["name"],
                names.STEP: step.name,
                names.ROUND: str(round_),
            },
            "ownerReferences": [owner_reference(wf)],
        },
        "spec": spec,
    }


def on_failure_run(
    wf: dict[str, Any],
    spec: JobWorkflowSpec,
    job: dict[str, Any] | None,
    failure: tuple[str, JobError],
    round_: int,
) -> tuple[StepStatus, dict[str, Any] | None]:
    """The onFailure task's status line, and its BackgroundJob to create if it has not run
    in this round (its deterministic name makes it run once per failure, crash or not)."""
    if job is not None and round_of(job) < round_:
        job = None  # it ran for an earlier failure; this round's failure gets its own run
    run = step_run(ON_FAILURE_STEP, job, round_)
    if run.phase != StepPhase.WAITING or spec.onFailure is None:
        return run.status, None
    step, error = failure
    template = spec.onFailure.model_dump(exclude_none=True)
    handler = WorkflowStep.model_validate({**template, "name": ON_FAILURE_STEP})
    context = {
        "workflow": wf["metadata"]["name"],
        "step": step,
        "error": error.model_dump(mode="json", exclude_none=True),
    }
    manifest = build_step(wf, handler, [context, *handler.args], round_)
    pending = run.status.model_copy(
        update={"phase": StepPhase.PENDING, "jobName": manifest["metadata"]["name"]}
    )
    return pending, manifest


def first_failure(
    spec: JobWorkflowSpec, runs: Mapping[str, StepRun], previous: str | None
) -> tuple[str, JobError] | None:
    """The step whose failure fails the workflow: the one already named if it still
    failed, else the first failed step, else the first cancelled one."""
    if previous is not None and previous in runs and runs[previous].phase in _ENDED_BADLY:
        return previous, runs[previous].status.error or JobError()
    for phase in _ENDED_BADLY:
        for step in spec.steps:
            if runs[step.name].phase == phase:
                return step.name, runs[step.name].status.error or JobError()
    return None


def workflow_status(
    wf: dict[str, Any],
    spec: JobWorkflowSpec,
    runs: Mapping[str, StepRun],
    failure: tuple[str, JobError] | None,
    current: JobWorkflowStatus,
    now: datetime,
    on_failure: StepStatus | None = None,
) -> JobWorkflowStatus:
    generation = wf["metadata"].get("generation")
    lines = [runs[s.name].status for s in spec.steps]
    done = sum(1 for line in lines if line.phase == StepPhase.SUCCEEDED)
    running = any(line.phase in _ACTIVE for line in [*lines, *([on_failure] if on_failure else [])])
    if spec.cancel:
        phase = Phase.CANCELLED
    elif failure is not None:
        phase = Phase.FAILED
    elif done == len(lines):
        phase = Phase.SUCCEEDED
    elif any(line.phase != StepPhase.WAITING for line in lines):
        phase = Phase.RUNNING
    else:
        phase = Phase.PENDING
    finished = phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED) and not running
    progress = sum(line.progress or 0.0 for line in lines) / len(lines)
    result = None
    if phase == Phase.SUCCEEDED:
        ends = [runs[name].result for name in sinks({s.name: s.dependsOn for s in spec.steps})]
        result = ends[0] if len(ends) == 1 else ends
    failed_step, error = failure if failure is not None else (None, None)
    conditions = current.conditions
    for type_, on, reason, message in (
        ("Running", phase == Phase.RUNNING or (running and not finished), "StepsRunning", ""),
        ("Succeeded", phase == Phase.SUCCEEDED, "AllStepsSucceeded", f"{done} steps succeeded"),
        (
            "Failed",
            phase == Phase.FAILED,
            "StepFailed",
            f"step {failed_step} failed: {describe_failure(error)}" if failed_step else "",
        ),
        ("Cancelled", phase == Phase.CANCELLED, "CancelRequested", "spec.cancel is true"),
    ):
        if on or any(c.type == type_ for c in conditions):
            conditions = set_condition(
                conditions, type_, on, reason if on else "", message if on else "", generation, now
            )
    conditions = [c for c in conditions if c.type != "Invalid"]
    started = current.startTime or (stamp(now) if phase != Phase.PENDING else None)
    return current.model_copy(
        update={
            "phase": phase,
            "stepsDone": f"{done}/{len(lines)}",
            "progress": round(progress, 1),
            "steps": lines,
            "onFailure": on_failure,
            "failedStep": failed_step,
            "error": error,
            "result": result,
            "resumes": spec.resumes,
            "startTime": started,
            "completionTime": (current.completionTime or stamp(now)) if finished else None,
            "conditions": conditions,
            "observedGeneration": generation,
        }
    )


def invalid_status(
    current: JobWorkflowStatus, generation: int | None, message: str, now: datetime
) -> JobWorkflowStatus:
    message = bound(message, 4096) or ""
    conditions = set_condition(
        current.conditions, "Invalid", True, "InvalidSpec", message, generation, now
    )
    conditions = set_condition(conditions, "Failed", True, "InvalidSpec", message, generation, now)
    return current.model_copy(
        update={
            "phase": Phase.FAILED,
            "error": JobError(type="InvalidSpec", reason="Invalid", message=message),
            "completionTime": current.completionTime or stamp(now),
            "conditions": conditions,
            "observedGeneration": generation,
        }
    )
