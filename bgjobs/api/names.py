"""Names that the operator and its clients must agree on, in one place."""

from __future__ import annotations

import hashlib

from bgjobs.api.v1alpha1 import MAX_JOB_NAME


def dead_letter_name(job_name: str, job_uid: str) -> str:
    """Deterministic per BackgroundJob *instance*: a recreated job of the same name gets
    its own dead letter, and a restarted operator finds the one it already made."""
    return f"{job_name}-{job_uid[:8]}"


def replay_name(dead_letter: str, n: int) -> str:
    """The BackgroundJob the n-th replay of a dead letter creates: ``<dl>-r<n>``, kept within
    the 63 characters a Job name may have."""
    suffix = f"-r{n}"
    base = dead_letter
    if len(base) + len(suffix) > MAX_JOB_NAME:
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = f"{base[: MAX_JOB_NAME - len(suffix) - 7]}-{digest}"
    return base + suffix
