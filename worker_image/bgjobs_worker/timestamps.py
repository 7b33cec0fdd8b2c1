"""Timestamps in the one format every bgjobs document uses: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | None = None) -> str:
    """``2025-01-31T12:00:00.123Z``; Kubernetes and pydantic both parse it as-is."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
