"""Reconcile one DeadLetter: each requested replay becomes exactly one new BackgroundJob
(deterministic names: a replay created before a crash is found, not doubled)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bgjobs.api.v1alpha1 import DeadLetterStatus
from bgjobs.redaction import redact
from bgjobs_operator.actions import Action, CreateObject, Decision, PostEvent
from bgjobs_operator.conditions import set_condition
from bgjobs_operator.deadletters import build_replay, pending_replays, replay_name
from bgjobs_operator.effects import perform
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.runtime import Runtime

KIND = "DeadLetter"
REPLAY_FAILED = "ReplayFailed"


def _status(dl: dict[str, Any]) -> DeadLetterStatus:
    try:
        return DeadLetterStatus.model_validate(dl.get("status") or {})
    except ValidationError:
        return DeadLetterStatus()


def refused(dl: dict[str, Any], message: str, now: datetime) -> Decision:
    """The API server refused a replay (a task name, originalSpec or args no BackgroundJob
    may have): say so in a condition and an Event, and try nothing more until the spec
    changes, instead of retrying a request that cannot succeed."""
    current = _status(dl)
    generation = dl["metadata"].get("generation")
    conditions = set_condition(
        current.conditions, REPLAY_FAILED, True, "Refused", message, generation, now
    )
    desired = current.model_copy(update={"conditions": conditions})
    return Decision(
        status=desired.model_dump(mode="json", exclude_none=True),
        after=[PostEvent(dl, "Warning", REPLAY_FAILED, message)],
    )


def decide(dl: dict[str, Any] | None, workflow: dict[str, Any] | None = None) -> Decision:
    if dl is None or dl["metadata"].get("deletionTimestamp"):
        return Decision()
    todo = pending_replays(dl)
    if not todo:
        return Decision()
    current = _status(dl)
    failed = next((c for c in current.conditions if c.type == REPLAY_FAILED), None)
    if (
        failed is not None
        and failed.status == "True"
        and failed.observedGeneration == dl["metadata"].get("generation")
    ):
        return Decision()  # refused for this spec already; a spec change tries again
    actions: list[Action] = [
        CreateObject(
            build_replay(dl, n, workflow),
            then=(
                PostEvent(dl, "Normal", "Replayed", f"created BackgroundJob {replay_name(dl, n)}"),
            ),
        )
        for n in todo
    ]
    replays = int(dl["spec"].get("replays") or 0)
    desired = current.model_copy(
        update={
            "replayedJobs": [replay_name(dl, n) for n in range(1, replays + 1)],
            "conditions": [c for c in current.conditions if c.type != REPLAY_FAILED],
            "observedGeneration": dl["metadata"].get("generation"),
        }
    )
    return Decision(status=desired.model_dump(mode="json", exclude_none=True), actions=actions)


async def reconcile(rt: Runtime, namespace: str, name: str) -> None:
    dl = rt.deadletters.get((namespace, name))
    workflow = None
    if dl is not None and (dl.get("spec") or {}).get("workflow"):
        workflow = rt.workflows.get((namespace, dl["spec"]["workflow"]))
    decision = decide(dl, workflow)
    for action in decision.actions:
        try:
            await perform(rt.api, action)
        except ApiError as exc:
            if dl is None or exc.namespace_terminating or exc.status not in (400, 403, 422):
                raise
            decision = refused(
                dl, redact(f"the API server refused the replay: {exc.message}"), rt.clock()
            )
            break
    if dl is not None and decision.status is not None:
        rt.deadletters.put(await rt.api.replace_status(KIND, namespace, name, decision.status))
        for action in decision.after:
            await perform(rt.api, action)
