"""Kubernetes-convention conditions and timestamps. Pure: the clock is passed in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from bgjobs.api.v1alpha1 import Condition

# A condition's message is for people; one that grew without bound (a task's error
# message, say) could make the whole status write too large for etcd.
MAX_CONDITION_MESSAGE = 1024


def stamp(at: datetime) -> str:
    """RFC 3339 to the second, as the API server writes timestamps."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with condition type_ set, keeping its lastTransitionTime when its status
    did not change and its place in the list (so an unchanged condition never causes a
    status write, whatever order conditions are set in)."""
    value: Literal["True", "False"] = "True" if status else "False"
    old = next((c for c in conditions if c.type == type_), None)
    transition = (
        old.lastTransitionTime if old and old.status == value and old.lastTransitionTime else None
    )
    new = Condition(
        type=type_,
        status=value,
        reason=reason,
        message=bound(message, MAX_CONDITION_MESSAGE),
        lastTransitionTime=transition or stamp(now),
        observedGeneration=generation,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def is_true(conditions: list[Condition], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions)


def bound(text: str | None, limit: int) -> str | None:
    """text cut to at most limit characters, marked as cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 14] + " …[truncated]"
