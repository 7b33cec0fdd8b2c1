"""Reading status into JobView/DeadLetterView, and Celery's state names: pure.

Status is parsed into the same pydantic models the operator writes it from
(``bgjobs.api.v1alpha1``), so the client reads what the CRD declares; the flat fields of a
view are derived from that model for callers that want plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bgjobs.api.v1alpha1 import (
    TERMINAL_PHASES,
    BackgroundJobStatus,
    DeadLetterStatus,
    Phase,
)
from bgjobs.client.constants import IDEMPOTENCY_ANNOTATION

# --- reading status (pure) ------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def read_status(model: type[M], data: Mapping[str, Any] | None) -> M:
    """``data`` as the status model. A client older than the operator may meet fields it
    does not know: they are dropped rather than refused (the models forbid extra fields, which
    is right for specs a user writes and wrong for status a newer operator wrote). What still
    does not validate reads as the model's defaults, so one odd object never breaks a list."""
    data = data or {}
    try:
        return model.model_validate(data)
    except ValidationError:
        known = {k: v for k, v in data.items() if k in model.model_fields}
        try:
            return model.model_validate(known)
        except ValidationError:
            return model()


def _plain(value: BaseModel | None) -> dict[str, Any]:
    """A nested status model as the API's plain dict, unset fields left out."""
    return value.model_dump(mode="json", exclude_none=True) if value is not None else {}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (``2025-01-02T03:04:05Z``) as an aware datetime."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def percent_of(progress: Mapping[str, Any] | None) -> float | None:
    """The progress in percent: as reported, else current/total; None when unknown."""
    if not progress:
        return None
    reported = progress.get("percent")
    if isinstance(reported, int | float):
        return reported
    current, total = progress.get("current"), progress.get("total")
    if current is not None and total:
        return max(0.0, min(100.0, 100.0 * float(current) / float(total)))
    return None


CELERY_STATES = {
    Phase.PENDING: "PENDING",
    Phase.RUNNING: "STARTED",
    Phase.RETRYING: "RETRY",
    Phase.SUCCEEDED: "SUCCESS",
    Phase.FAILED: "FAILURE",
    Phase.CANCELLED: "REVOKED",
}


def celery_state(phase: str | None) -> str:
    """Celery's state name for a phase, for apps and dashboards written against Celery's
    ``AsyncResult.state``: Pending->PENDING, Running->STARTED, Retrying->RETRY,
    Succeeded->SUCCESS, Failed->FAILURE, Cancelled->REVOKED."""
    try:
        return CELERY_STATES[Phase(phase or Phase.PENDING)]
    except ValueError:
        return "PENDING"


@dataclass(frozen=True)
class JobView:
    """A BackgroundJob as the client sees it: spec essentials and parsed status."""

    name: str
    namespace: str
    task: str
    phase: str
    attempts: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    # A batch's item counts: total, succeeded, failed, running, executions, ratePerSecond.
    batch: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    result_ref: str | None = None
    error: dict[str, Any] | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    dead_letter: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None
    queue: str = "default"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    job_name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    status: BackgroundJobStatus = field(
        default_factory=lambda: read_status(BackgroundJobStatus, None), compare=False
    )
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobView:
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        # No status yet reads as Pending, like the CRD's default.
        st = read_status(BackgroundJobStatus, obj.get("status"))
        return cls(
            name=str(md.get("name") or ""),
            namespace=str(md.get("namespace") or ""),
            task=str(spec.get("task") or ""),
            phase=st.phase.value,
            attempts=st.attempts or 0,
            progress=_plain(st.progress),
            batch=_plain(st.batch),
            result=st.result,
            result_ref=st.resultRef,
            error=_plain(st.error) or None,
            conditions=[_plain(c) for c in st.conditions],
            dead_letter=st.deadLetter.name if st.deadLetter else None,
            created=parse_time(md.get("creationTimestamp")),
            started=parse_time(st.startTime),
            completed=parse_time(st.completionTime),
            queue=str(spec.get("queue") or "default"),
            args=list(spec.get("args") or []),
            kwargs=dict(spec.get("kwargs") or {}),
            cancel_requested=bool(spec.get("cancel")),
            job_name=st.jobName,
            uid=md.get("uid"),
            resource_version=md.get("resourceVersion"),
            labels=dict(md.get("labels") or {}),
            annotations=dict(md.get("annotations") or {}),
            status=st,
            raw=dict(obj),
        )

    @property
    def terminal(self) -> bool:
        """Succeeded, Failed or Cancelled: the phase will not change any more."""
        return self.phase in {p.value for p in TERMINAL_PHASES}

    @property
    def succeeded(self) -> bool:
        return self.phase == Phase.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.phase == Phase.FAILED

    @property
    def cancelled(self) -> bool:
        return self.phase == Phase.CANCELLED

    @property
    def percent(self) -> float | None:
        """Progress in percent; for a batch, items finished (succeeded or failed)."""
        total = self.batch.get("total")
        if total:
            done = int(self.batch.get("succeeded") or 0) + int(self.batch.get("failed") or 0)
            return 100.0 * done / total
        return percent_of(self.progress)

    @property
    def celery_state(self) -> str:
        return celery_state(self.phase)

    @property
    def idempotency_key(self) -> str | None:
        return self.annotations.get(IDEMPOTENCY_ANNOTATION)

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.conditions if c.get("type") == type_), None)


@dataclass(frozen=True)
class DeadLetterView:
    """A DeadLetter: the record of a BackgroundJob that finally failed."""

    name: str
    namespace: str
    job_name: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    attempts: int = 0
    failed_at: datetime | None = None
    critical: bool = False
    replays: int = 0
    replayed_jobs: list[str] = field(default_factory=list)
    last_output: str | None = None
    schedule: str | None = None
    created: datetime | None = None
    resource_version: str | None = None
    status: DeadLetterStatus = field(
        default_factory=lambda: read_status(DeadLetterStatus, None), compare=False
    )
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeadLetterView:
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        st = read_status(DeadLetterStatus, obj.get("status"))
        return cls(
            name=str(md.get("name") or ""),
            namespace=str(md.get("namespace") or ""),
            job_name=str(spec.get("jobName") or ""),
            task=str(spec.get("task") or ""),
            args=list(spec.get("args") or []),
            kwargs=dict(spec.get("kwargs") or {}),
            error=dict(spec["error"]) if spec.get("error") else None,
            attempts=int(spec.get("attempts") or 0),
            failed_at=parse_time(spec.get("failedAt")),
            critical=bool(spec.get("critical")),
            replays=int(spec.get("replays") or 0),
            replayed_jobs=list(st.replayedJobs),
            last_output=spec.get("lastOutput"),
            schedule=spec.get("schedule"),
            created=parse_time(md.get("creationTimestamp")),
            resource_version=md.get("resourceVersion"),
            status=st,
            raw=dict(obj),
        )
