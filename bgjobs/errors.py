"""Typed errors raised by the bgjobs client (and reported by the kubectl plugin).

Every error is a ``BgJobsError``, so application code can catch the family at once, and
each carries the fields a caller needs to react (the job's name, its error block, the API
server's message) rather than a string to parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol


class JobState(Protocol):
    """What the errors read of a job: ``bgjobs.client.JobView`` has it. A protocol, so that
    this module (which the client imports) imports nothing of the client."""

    @property
    def name(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def terminal(self) -> bool: ...
    @property
    def error(self) -> Mapping[str, Any] | None: ...
    @property
    def dead_letter(self) -> str | None: ...


class BgJobsError(Exception):
    """Base class of every error the client raises."""


class ConfigurationError(BgJobsError):
    """No usable Kubernetes configuration (no kubeconfig, not running in a cluster)."""


class ClusterUnreachable(BgJobsError):
    """The Kubernetes API server could not be reached at all."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"cannot reach the Kubernetes API server at {server}: {reason}")


class ApiError(BgJobsError):
    """The API server answered with an error the client has no better type for."""

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")


class NotFound(BgJobsError):
    """The named object does not exist in the namespace."""

    def __init__(self, kind: str, name: str, namespace: str) -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        super().__init__(f'{kind.lower()} "{name}" not found in namespace "{namespace}"')


class InvalidSpec(BgJobsError):
    """The API server refused the object (422): schema or CEL validation failed.

    ``message`` is the server's own text, e.g. ``... timeLimits.softSeconds must be less
    than timeLimits.hardSeconds``; ``causes`` lists the individual field errors."""

    def __init__(self, message: str, causes: list[dict[str, Any]] | None = None) -> None:
        self.message = message
        self.causes = causes or []
        super().__init__(message)


class RateLimitNotEnforced(BgJobsError):
    """A task declared ``@task(rate_limit=...)`` and the JobQueue its job would go to does
    not enforce that rate; nothing was submitted (the message says what to apply)."""


class Conflict(BgJobsError):
    """The object already exists and is not the one asked for (e.g. an idempotency key
    reused for a different task), or an update kept losing an optimistic-concurrency race."""


class JobTimeout(BgJobsError):
    """The job did not reach a final phase in time. It keeps running; ``last`` is the
    last state seen."""

    def __init__(self, name: str, timeout: float, last: JobState | None) -> None:
        self.name = name
        self.timeout = timeout
        self.last = last
        phase = last.phase if last else "unknown"
        super().__init__(f"backgroundjob {name!r} still {phase} after {timeout:g}s")


class JobFailed(BgJobsError):
    """The job ended Failed. ``error`` is its status.error block (type, message, exitCode,
    attempt, reason); ``dead_letter`` the DeadLetter recording it, if any."""

    def __init__(self, view: JobState) -> None:
        self.name = view.name
        self.view = view
        self.error: dict[str, Any] = dict(view.error or {})
        self.dead_letter = view.dead_letter
        super().__init__(f"backgroundjob {view.name!r} failed: {describe_error(self.error)}")


class JobCancelled(BgJobsError):
    """The job ended Cancelled (spec.cancel was set)."""

    def __init__(self, view: JobState) -> None:
        self.name = view.name
        self.view = view
        super().__init__(f"backgroundjob {view.name!r} was cancelled")


def describe_error(error: dict[str, Any] | None) -> str:
    """One line for a status.error block: ``Type: message (reason, exit code N, attempt k)``."""
    if not error:
        return "no error recorded"
    head = ": ".join(str(x) for x in (error.get("type"), error.get("message")) if x)
    extra = [str(error["reason"])] if error.get("reason") else []
    if error.get("exitCode") is not None:
        extra.append(f"exit code {error['exitCode']}")
    if error.get("attempt") is not None:
        extra.append(f"attempt {error['attempt']}")
    tail = f" ({', '.join(extra)})" if extra else ""
    return (head or "failed") + tail


def status_message(body: str | bytes | None) -> tuple[str, list[dict[str, Any]]]:
    """The message and causes of a Kubernetes ``Status`` body; the raw text otherwise."""
    if body is None:
        return "", []
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip(), []
    if not isinstance(doc, dict):
        return text.strip(), []
    causes = (doc.get("details") or {}).get("causes") or []
    return str(doc.get("message") or text.strip()), [c for c in causes if isinstance(c, dict)]


class WorkflowFailed(BgJobsError):
    """A JobWorkflow ended Failed (or Cancelled). ``failed_step`` names the step whose
    failure failed it and ``error`` is that step's error block; resume it once fixed."""

    def __init__(self, name: str, phase: str, failed_step: str | None, error: Any) -> None:
        self.name = name
        self.phase = phase
        self.failed_step = failed_step
        self.error: dict[str, Any] = dict(error or {})
        what = (
            f"step {failed_step!r} failed: {describe_error(self.error)}" if failed_step else phase
        )
        super().__init__(f"jobworkflow {name!r} {phase.lower()}: {what}")
