"""Constants shared by the client modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from bgjobs.api.names import IDEMPOTENCY_ANNOTATION, JOB_NAME_LABEL, PLURALS, WORKER_CONTAINER

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BACKGROUND_JOBS = PLURALS["BackgroundJob"]
DEAD_LETTERS = PLURALS["DeadLetter"]
JOB_WORKFLOWS = PLURALS["JobWorkflow"]
JOB_QUEUES = PLURALS["JobQueue"]
__all__ = ["IDEMPOTENCY_ANNOTATION", "JOB_NAME_LABEL", "WORKER_CONTAINER"]
