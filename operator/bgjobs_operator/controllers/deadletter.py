"""Reconcile one DeadLetter: each requested replay becomes exactly one new BackgroundJob."""

from __future__ import annotations

from typing import Any

from bgjobs_operator.deadletters import build_replay, pending_replays, replay_name
from bgjobs_operator.runtime import Runtime


def reconcile(rt: Runtime, dl: dict[str, Any]) -> None:
    md = dl["metadata"]
    if md.get("deletionTimestamp"):
        return
    todo = pending_replays(dl)
    if not todo:
        return
    with rt.lock(md["uid"]):
        for n in todo:
            # Deterministic names: a replay created before a crash is found, not doubled.
            _, created = rt.api.create_or_get(build_replay(dl, n))
            if created:
                rt.api.post_event(
                    dl, "Normal", "Replayed", f"created BackgroundJob {replay_name(dl, n)}"
                )
        replays = int(dl["spec"].get("replays") or 0)
        rt.api.patch_status(
            "DeadLetter",
            md["namespace"],
            md["name"],
            {
                "replayedJobs": [replay_name(dl, n) for n in range(1, replays + 1)],
                "observedGeneration": md.get("generation"),
            },
        )
