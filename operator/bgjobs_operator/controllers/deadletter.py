"""Reconcile one DeadLetter: each requested replay becomes exactly one new BackgroundJob
(deterministic names: a replay created before a crash is found, not doubled)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bgjobs.api.v1alpha1 import DeadLetterStatus
from bgjobs_operator.actions import Action, CreateObject, Decision, PostEvent
from bgjobs_operator.deadletters import build_replay, pending_replays, replay_name
from bgjobs_operator.effects import perform
from bgjobs_operator.runtime import Runtime

KIND = "DeadLetter"


def decide(dl: dict[str, Any] | None, workflow: dict[str, Any] | None = None) -> Decision:
    if dl is None or dl["metadata"].get("deletionTimestamp"):
        return Decision()
    todo = pending_replays(dl)
    if not todo:
        return Decision()
    actions: list[Action] = [
        CreateObject(
            build_replay(dl, n, workflow),
            then=(
                PostEvent(dl, "Normal", "Replayed", f"created BackgroundJob {replay_name(dl, n)}"),
            ),
        )
        for n in todo
    ]
    try:
        current = DeadLetterStatus.model_validate(dl.get("status") or {})
    except ValidationError:
        current = DeadLetterStatus()
    replays = int(dl["spec"].get("replays") or 0)
    desired = current.model_copy(
        update={
            "replayedJobs": [replay_name(dl, n) for n in range(1, replays + 1)],
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
        await perform(rt.api, action)
    if dl is not None and decision.status is not None:
        rt.deadletters.put(await rt.api.replace_status(KIND, namespace, name, decision.status))
