"""Queues, pure parts. The deprecated --queue-limits flag: Jobs of a limited queue are
created suspended, and the oldest waiting ones are resumed while fewer than the limit are
running (controllers/queue.py). JobQueue objects (controllers/jobqueue.py) add priorities,
rate limits, pause and routes on the same mechanism: routing and ordering live here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bgjobs.api import names
from bgjobs_operator.status import job_condition


def queue_of(job: dict[str, Any]) -> str | None:
    return (job["metadata"].get("labels") or {}).get(names.QUEUE)


def to_resume(
    jobs: Iterable[dict[str, Any]],
    limit: int,
    just_resumed: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """Names of the suspended Jobs to resume now, oldest first. `just_resumed` are Jobs
    resumed moments ago whose update the watch has not delivered yet: they count as
    running, so a burst of events cannot overshoot the limit."""
    running, waiting = 0, []
    for job in jobs:
        if job_condition(job) is not None or job["metadata"].get("deletionTimestamp"):
            continue
        name = job["metadata"]["name"]
        if job["spec"].get("suspend") and name not in just_resumed:
            waiting.append(job)
        else:
            running += 1
    waiting.sort(
        key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"])
    )
    return [j["metadata"]["name"] for j in waiting[: max(0, limit - running)]]


# --- JobQueue: routes, ordering and the reasons a job waits ----------------------------

# Why a queued job waits: the reason of its Queued condition (README "Queues").
CONCURRENCY_LIMIT = "ConcurrencyLimit"
RATE_LIMITED = "RateLimited"
QUEUE_PAUSED = "QueuePaused"
NOT_BEFORE = "NotBefore"


@dataclass(frozen=True)
class Waiting:
    """A suspended Job waiting for admission, with what orders it."""

    name: str
    priority: int
    created: str

    @property
    def order(self) -> tuple[int, str, str]:
        return (-self.priority, self.created, self.name)
