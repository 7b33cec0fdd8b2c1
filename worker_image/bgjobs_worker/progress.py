"""Progress snapshots: what ``ctx.progress(...)`` records, as plain dictionaries.

A snapshot replaces the previous one wholesale (like Celery's ``update_state``): a field the
task leaves out this time is absent, not carried over from an older report.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from bgjobs_worker.timestamps import rfc3339

# Progress ends up in the BackgroundJob's status and in UIs; an unbounded message would make
# every status write and every Redis read pay for it.
MAX_MESSAGE_CHARS = 1024

Number = int | float


def compute_percent(
    current: Number | None, total: Number | None, percent: Number | None
) -> float | None:
    """An explicit percent wins; otherwise current/total. Clamped to 0..100, one decimal."""
    if percent is not None:
        value = float(percent)
    elif current is not None and total:
        value = float(current) / float(total) * 100.0
    else:
        return None
    if not math.isfinite(value):
        return None
    return round(min(100.0, max(0.0, value)), 1)


def build_progress(
    *,
    attempt: int,
    current: Number | None = None,
    total: Number | None = None,
    percent: Number | None = None,
    stage: str | None = None,
    message: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {
        "current": current,
        "total": total,
        "percent": compute_percent(current, total, percent),
        "stage": stage,
        "message": message,
        "updatedAt": rfc3339(now),
        "attempt": attempt,
    }
