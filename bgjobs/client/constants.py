"""Constants shared by the client modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BACKGROUND_JOBS = "backgroundjobs"
DEAD_LETTERS = "deadletters"
IDEMPOTENCY_ANNOTATION = "bgjobs.dev/idempotency-key"
# Set by the Job controller on every pod of a Job.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
WORKER_CONTAINER = "worker"
