"""What a reconciler's pure *decide* step asks for; the *act* step performs it.

Each reconciler is observe → decide → act (docs/architecture in the README): decide is a
pure function from an observation and the clock to the desired status plus a short list
of these actions, so tests can drive every case with plain data and no cluster. Act runs
them in list order, which decide chooses to keep restart safety (for example: create the
DeadLetter before writing the status that says Failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class CreateObject:
    """Create-or-adopt by deterministic name: an existing object of that name is found,
    never duplicated (Job, CronJob, BackgroundJob, DeadLetter, ...). `then` runs only when
    this create made the object, so a crash and a retry never announce it twice."""

    manifest: dict[str, Any]
    then: tuple[Action, ...] = ()


@dataclass(frozen=True)
class DeleteObject:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class PatchObject:
    """A merge patch of an object's main resource (not its status), e.g. unsuspend a Job."""

    kind: str
    namespace: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class PostEvent:
    """A Kubernetes Event on `involved` (an object with apiVersion, kind and metadata)."""

    involved: dict[str, Any]
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Alert:
    """POST a critical failure to the configured webhook."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class SeedBatch:
    """Write a batch's items to Redis once (a no-op when they are there), before its Job
    is created. Performed by the BackgroundJob reconciler, which holds the Redis client."""

    namespace: str
    bj_uid: str
    items: tuple[str, ...]  # each item's JSON
    ttl: int
    indexes: tuple[int, ...] | None = None  # spec.itemIndexes (a replay's); None: positions
    upload: str | None = None  # spec.itemsFrom.upload: seed from Redis, not from items
    producer: bool = False  # spec.itemsFrom.task: open the batch empty; a pod produces


Action = Union[CreateObject, DeleteObject, PatchObject, PostEvent, Alert, SeedBatch]  # noqa: UP007


@dataclass
class Decision:
    """The outcome of a pure decide step. `status` is the desired status as a plain dict
    (serialised from the kind's pydantic status model) or None for "unchanged";
    `actions` run before the status write, `after` once it is written;
    `requeue_after` asks the work queue to reconcile this key again after that many
    seconds (a deadline, a delayed start, a rate-limit token), None for "on events only"."""

    status: dict[str, Any] | None = None
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None
    # Announcements of the new status (Events): made only once the status is written.
    after: list[Action] = field(default_factory=list)
