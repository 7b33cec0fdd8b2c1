"""Dead letters: the record of a job that finally failed, and its replays. Pure builders."""

from __future__ import annotations

from typing import Any

from bgjobs.api import names
from bgjobs.api.v1alpha1 import API_VERSION, BackgroundJobStatus
from bgjobs_operator.batches import BatchResult, keys_of, replay_items, replay_upload
from bgjobs_operator.jobspec import owner_reference

MAX_OUTPUT = 8192


def dead_letter_name(bj: dict[str, Any]) -> str:
    return names.dead_letter_name(bj["metadata"]["name"], bj["metadata"]["uid"])


def build_dead_letter(
    bj: dict[str, Any],
    status: BackgroundJobStatus,
    last_output: str | None,
    batch: BatchResult | None = None,
) -> dict[str, Any]:
    md, spec = bj["metadata"], bj["spec"]
    labels = md.get("labels") or {}
    schedule = labels.get(names.SCHEDULE)
    workflow, step = labels.get(names.WORKFLOW), labels.get(names.STEP)
    dl_labels = {names.MANAGED_BY: names.MANAGER, names.BACKGROUND_JOB: md["name"]}
    if schedule:
        dl_labels[names.SCHEDULE] = schedule
    if workflow:
        dl_labels[names.WORKFLOW] = workflow
        dl_labels[names.STEP] = step or ""
        dl_labels[names.ROUND] = labels.get(names.ROUND) or "0"
    dl_spec: dict[str, Any] = {
        "jobName": md["name"],
        "jobUID": md["uid"],
        "task": spec["task"],
        "args": spec.get("args", []),
        "kwargs": spec.get("kwargs", {}),
        "originalSpec": spec,
        "error": status.error.model_dump(exclude_none=True) if status.error else None,
        "attempts": status.attempts,
        "failedAt": status.completionTime,
        "critical": bool(spec.get("critical")),
    }
    if batch is not None:
        _add_batch(dl_spec, bj, batch)
    if last_output:
        dl_spec["lastOutput"] = last_output[-MAX_OUTPUT:]
    if schedule:
        dl_spec["schedule"] = schedule
    if workflow:
        dl_spec["workflow"] = workflow
        dl_spec["workflowStep"] = step
    # Not owned by the BackgroundJob: deleting the job must not delete its failure record.
    return {
        "apiVersion": API_VERSION,
        "kind": "DeadLetter",
        "metadata": {
            "name": dead_letter_name(bj),
            "namespace": md["namespace"],
            "labels": dl_labels,
        },
        "spec": {k: v for k, v in dl_spec.items() if v is not None},
    }


def _add_batch(dl_spec: dict[str, Any], bj: dict[str, Any], batch: BatchResult) -> None:
    """One DeadLetter for the whole batch: it lists the first failed items with their
    errors, and its replay runs only the items that did not succeed."""
    spec = dl_spec["originalSpec"]
    if spec.get("itemsFrom") is not None and batch.not_succeeded:
        # Staged in Redis when the result was read (they are not in the spec to copy).
        dl_spec["originalSpec"] = {**spec, "itemsFrom": {"upload": replay_upload(bj)}}
    elif spec.get("itemsFrom") is not None:
        pass  # every produced item succeeded, the producer failed: a replay runs it all again
    else:
        items, indexes = replay_items(spec.get("items") or [], spec.get("itemIndexes"), batch)
        dl_spec["originalSpec"] = {**spec, "items": items, "itemIndexes": indexes}
    dl_spec["failedItems"] = [f.model_dump(mode="json", exclude_none=True) for f in batch.failed]
    dl_spec["failedItemsCount"] = len(batch.not_succeeded)
    dl_spec["failedItemsKey"] = keys_of(bj).failed


def replay_name(dl: dict[str, Any], n: int) -> str:
    return names.replay_name(dl["metadata"]["name"], n)


def build_replay(
    dl: dict[str, Any], n: int, workflow: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The n-th replay's BackgroundJob. A workflow step's replay (``workflow``: the
    JobWorkflow it belongs to, still there) becomes that step again: labelled as the step
    in its round and owned by the workflow, so when it succeeds the workflow continues."""
    md, spec = dl["metadata"], dl["spec"]
    job_spec = dict(spec.get("originalSpec") or {"task": spec["task"]})
    job_spec["cancel"] = False
    job_spec["args"] = spec.get("args", job_spec.get("args", []))
    job_spec["kwargs"] = spec.get("kwargs", job_spec.get("kwargs", {}))
    metadata: dict[str, Any] = {
        "name": replay_name(dl, n),
        "namespace": md["namespace"],
        "labels": {names.DEAD_LETTER: md["name"]},
        "annotations": {names.REPLAY_OF_ANNOTATION: spec["jobName"]},
    }
    dl_labels = md.get("labels") or {}
    if workflow is not None and dl_labels.get(names.STEP):
        metadata["labels"].update(
            {k: dl_labels[k] for k in (names.WORKFLOW, names.STEP, names.ROUND) if k in dl_labels}
        )
        metadata["ownerReferences"] = [owner_reference(workflow)]
    return {
        "apiVersion": API_VERSION,
        "kind": "BackgroundJob",
        "metadata": metadata,
        "spec": job_spec,
    }


def pending_replays(dl: dict[str, Any]) -> list[int]:
    """Replay numbers requested (spec.replays) but not yet recorded in status."""
    done = len((dl.get("status") or {}).get("replayedJobs") or [])
    return list(range(done + 1, int(dl["spec"].get("replays") or 0) + 1))
