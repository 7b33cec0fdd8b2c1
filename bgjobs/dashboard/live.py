"""Live updates: what one changed object looks like on a page, and the coalescer that lets
each object through at most once per second. Pure: the clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bgjobs.dashboard.present import job_row, pending_reason, queue_row, workflow_steps

MIN_INTERVAL = 1.0  # seconds between two messages about one object


@dataclass
class Coalescer:
    """Changed keys in, keys due out: a key sent less than MIN_INTERVAL ago waits (once,
    however often it changes meanwhile) until its second is over."""

    interval: float = MIN_INTERVAL
    _sent: dict[Any, float] = field(default_factory=dict)
    _waiting: set[Any] = field(default_factory=set)

    def offer(self, keys: list[Any]) -> None:
        self._waiting.update(keys)

    def due(self, now: float) -> list[Any]:
        out = [k for k in self._waiting if now - self._sent.get(k, float("-inf")) >= self.interval]
        for k in out:
            self._waiting.discard(k)
            self._sent[k] = now
        if len(self._sent) > 50000:  # forget long-quiet objects
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.interval}
        return out


def message(plural: str, obj: dict[str, Any] | None, key: tuple[str, str]) -> dict[str, Any]:
    """The JSON a page needs to update one object in place."""
    out: dict[str, Any] = {"kind": plural, "key": f"{key[0]}/{key[1]}"}
    if obj is None:
        out["deleted"] = True
        return out
    if plural == "backgroundjobs":
        row = job_row(obj)
        out.update(phase=row["phase"], percent=row["percent"], pendingReason=pending_reason(obj))
    elif plural == "jobworkflows":
        out["phase"] = (obj.get("status") or {}).get("phase") or "Pending"
        out["steps"] = {s["name"]: s["phase"] for s in workflow_steps(obj)}
    elif plural == "jobqueues":
        out.update(queue_row(obj))
    else:
        out["phase"] = (obj.get("status") or {}).get("phase")
    return out
