"""bgjobs.dev/v1alpha1: BackgroundJob, JobSchedule and DeadLetter.

These pydantic models are the single source of truth: `make crds` turns them into the CRD
YAML in crds/ (see crdgen.py). Field descriptions become `kubectl explain` text. Each model's
`rules()` (and `transition_rules()`, for updates) come from bgjobs/api/rules.py: the API
server enforces them as CEL at `kubectl apply` time, and validating a model runs the same
checks in Python, so contradictions never reach the operator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from bgjobs.api.rules import (
    SCHEDULE_RULES,
    TASK_TEMPLATE_RULES,
    Rule,
    TransitionRule,
    immutable_fields,
    only_grows,
    stays_true,
    violations,
    x_validations,
)

GROUP = "bgjobs.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "bgjobs.dev/v1alpha1"
CATEGORY = "bgjobs"

# The BackgroundJob's name is also its batch Job's name, and Job names end up in a label
# value (job-name), so they are limited to 63 characters; a CronJob appends 11 characters
# to its name for each run's Job, so schedules are limited to 52.
MAX_JOB_NAME = 63
MAX_SCHEDULE_NAME = 52
# Args and kwargs travel to the worker in environment variables; keep them small (large
# inputs belong in object storage, passed by reference).
MAX_ARGS = 64
# Every duration in seconds fits an int32 (68 years): the Job's ttlSecondsAfterFinished is
# one, the Job controller's deadlines overflow Go's time.Duration (~292 years, in
# nanoseconds) beyond about 9.2e9 s and then fail the Job at once, Redis refuses an expiry
# that overflows, and the pod deadline adds a grace period to hardSeconds.
MAX_SECONDS = 2**31 - 1
# The pod's activeDeadlineSeconds (hardSeconds plus the operator's 30 s grace) must also fit
# an int32 (pod validation), so hardSeconds stops 30 s short.
HARD_LIMIT_GRACE_SECONDS = 30
MAX_HARD_SECONDS = MAX_SECONDS - HARD_LIMIT_GRACE_SECONDS


# An element of args: any JSON value, null included. Without `nullable`, CEL cannot read a
# list holding a null, so every rule comparing specs (immutability) failed on such a spec,
# and with it every status write of the job (it stayed Pending while its task ran).
NULLABLE_ANY: Final[JsonDict] = {"x-kubernetes-preserve-unknown-fields": True, "nullable": True}


def _cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """The model's rules as the schema node's CEL rules (pydantic calls this per model)."""
    if not issubclass(cls, Model):
        return
    declared: list[Rule | TransitionRule] = [*cls.rules(), *cls.transition_rules()]
    if declared:
        schema["x-kubernetes-validations"] = x_validations(declared)


class Model(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_cel_rules,
    )

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        """Rules on this node: CEL in the CRD, checked in Python by validation."""
        return ()

    @classmethod
    def transition_rules(cls) -> tuple[TransitionRule, ...]:
        """Rules on updates (CEL transition rules; ``rules.transition_violations`` in Python)."""
        return ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        if declared := self.rules():
            broken = violations(self, declared)
            if broken:
                raise ValueError("; ".join(broken))
        return self


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})

ExceptionName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
]
Quantity = Annotated[
    int | str,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class RetryPolicy(Model):
    """How failed attempts are retried (Celery's autoretry_for / max_retries)."""

    maxRetries: int = Field(3, ge=0, le=100)
    """Retries after the first attempt; becomes the Job's backoffLimit. The Job controller
    waits 10s, 20s, 40s... (capped at 6 minutes) between attempts."""
    retryOn: list[ExceptionName] = Field(default_factory=list, max_length=32)
    """Exception class names that are retried (a bare name matches any class of that name
    in the exception's hierarchy, a dotted name matches module.Class). Empty: every
    exception is retried except those in permanentOn."""
    permanentOn: list[ExceptionName] = Field(default_factory=list, max_length=32)
    """Exception class names that fail the job at once, without retries (exit code 3)."""
    retryOnSoftTimeLimit: bool = True
    """Whether an attempt that exceeded its soft time limit without handling it (exit
    code 4) is retried."""


class TimeLimits(Model):
    """Per-attempt time limits (Celery's soft_time_limit / time_limit)."""

    softSeconds: int | None = Field(None, ge=1, le=MAX_HARD_SECONDS)
    """Seconds after which SoftTimeLimitExceeded is raised inside the task, so it can
    clean up or save partial work."""
    hardSeconds: int | None = Field(None, ge=1, le=MAX_HARD_SECONDS)
    """Seconds after which the attempt is ended (exit code 4); the pod's
    activeDeadlineSeconds backs it up."""


class ResourceRequirements(Model):
    """Compute resources for the worker container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Minimum resources, e.g. {cpu: 100m, memory: 128Mi}."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources, e.g. {memory: 512Mi}."""


class EnvVar(Model):
    """An environment variable for the worker container, as in a Pod spec. Put secrets
    here (valueFrom.secretKeyRef), never into args or kwargs."""

    name: str = Field(min_length=1, max_length=256)
    """Variable name."""
    value: str | None = Field(None, pattern=r"^[^\x00]*$")
    """Literal value (no NUL character: no process environment can hold one)."""
    valueFrom: dict[str, Any] | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A source for the value (secretKeyRef, configMapKeyRef, fieldRef), as in a Pod spec."""


class EnvFromSource(Model):
    """A Secret or ConfigMap whose keys all become environment variables."""

    prefix: str | None = None
    """Prefix added to every key."""
    secretRef: dict[str, Any] | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """{name: <secret>, optional: bool}"""
    configMapRef: dict[str, Any] | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """{name: <configmap>, optional: bool}"""


class TaskTemplate(Model):
    """What to run and how: shared by BackgroundJob.spec and JobSchedule.spec.template."""

    task: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    """Registered task name in the worker (the name given to @task)."""
    args: list[Any] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        json_schema_extra={"items": NULLABLE_ANY},
    )
    """Positional arguments, any JSON values."""
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "maxProperties": MAX_ARGS},
    )
    """Keyword arguments, a JSON object."""
    image: str | None = Field(None, min_length=1, max_length=512)
    """Worker image. Default: the operator's --default-image."""
    queue: str = Field(
        "default", min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """Queue name: a label on the Job and its pods (bgjobs.dev/queue), used to select
    workers' node pools and to report backlog per queue."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # type: ignore[arg-type]
    """Retry policy (backoffLimit and podFailurePolicy)."""
    timeLimits: TimeLimits | None = None
    """Per-attempt soft and hard time limits."""
    activeDeadlineSeconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    """Deadline for the whole job, all attempts included; the Job fails with
    DeadlineExceeded when it passes."""
    ttlSecondsAfterFinished: int | None = Field(3600, ge=0, le=MAX_SECONDS)
    """Seconds the finished batch Job and its pods are kept; the BackgroundJob and its
    status stay until deleted."""
    resultTTLSeconds: int = Field(86400, ge=60, le=MAX_SECONDS)
    """Seconds the full result is kept in Redis (Celery's result_expires)."""
    resources: ResourceRequirements | None = None
    """Worker container resources."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables for the worker."""
    envFrom: list[EnvFromSource] = Field(default_factory=list, max_length=16)
    """Secrets/ConfigMaps whose keys become environment variables."""
    critical: bool = False
    """A critical job that is dead-lettered raises an alert (metric and webhook)."""

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        return TASK_TEMPLATE_RULES


# The BackgroundJob spec fields an update may change: the only ones read after the Job exists.
MUTABLE_JOB_FIELDS = ("cancel",)


class BackgroundJobSpec(TaskTemplate):
    """One run of a task, executed as a batch/v1 Job."""

    cancel: bool = False
    """Set to true to stop the job: its pods are killed and it ends Cancelled."""

    @classmethod
    def transition_rules(cls) -> tuple[TransitionRule, ...]:
        # The operator reads the spec once, when it creates the Job: an edit would be
        # accepted and never take effect. Only cancel has an effect later (README).
        return (
            *immutable_fields(
                cls, MUTABLE_JOB_FIELDS, "BackgroundJob", "submit a new BackgroundJob"
            ),
            stays_true("cancel", "a cancelled job cannot be resumed"),
        )


class Progress(Model):
    """The latest progress the task reported (coalesced to one status write per second)."""

    current: float | None = None
    """Units done."""
    total: float | None = None
    """Units in all."""
    percent: float | None = None
    """0-100."""
    stage: str | None = None
    """Free-form stage name."""
    message: str | None = None
    """Free-form message."""
    updatedAt: str | None = None
    """When the worker reported it (RFC 3339)."""


class JobError(Model):
    """Why the job failed."""

    type: str | None = None
    """Exception type, or a Kubernetes reason such as DeadlineExceeded."""
    message: str | None = None
    """Error message."""
    exitCode: int | None = None
    """The worker's exit code (see the exit-code contract)."""
    attempt: int | None = None
    """The attempt that failed last."""
    reason: str | None = None
    """The Job controller's reason: BackoffLimitExceeded, PodFailurePolicy,
    DeadlineExceeded; or Invalid, Lost."""


class Condition(Model):
    """A standard Kubernetes condition."""

    type: str
    """Condition type."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str | None = None
    """CamelCase reason."""
    message: str | None = None
    """Human-readable detail."""
    lastTransitionTime: str | None = None
    """When status last changed."""
    observedGeneration: int | None = None
    """The generation this condition was computed from."""


class ObjectRef(Model):
    """A reference to another object in the same namespace."""

    name: str
    """Its name."""


class BackgroundJobStatus(Model):
    """Observed state, computed by the operator from the Job, its pods and Redis."""

    phase: Phase = Phase.PENDING
    """Pending, Running, Retrying, Succeeded, Failed or Cancelled (a summary for humans;
    conditions carry the detail)."""
    attempts: int | None = None
    """Attempts started so far."""
    progress: Progress | None = None
    """Latest reported progress."""
    result: Any = Field(None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """The task's return value when small (see resultRef otherwise)."""
    resultRef: str | None = None
    """Redis key holding a result too large for status."""
    error: JobError | None = None
    """Why the job failed."""
    jobName: str | None = None
    """The batch/v1 Job running this task."""
    startTime: str | None = None
    """When the first attempt started running."""
    completionTime: str | None = None
    """When the job reached its final phase."""
    deadLetter: ObjectRef | None = None
    """The DeadLetter created when the job finally failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Running, Succeeded, Failed, DeadLettered, Cancelled, Invalid."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class ObjectMeta(Model):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    namespace: str | None = None


class BackgroundJob(Model):
    """A background task run, executed as one batch/v1 Job with retries."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["BackgroundJob"] = "BackgroundJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackgroundJobSpec
    status: BackgroundJobStatus | None = None


# --- JobSchedule ---------------------------------------------------------------------


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class JobScheduleSpec(Model):
    """A periodic task (Celery beat), executed by a batch/v1 CronJob."""

    schedule: str = Field(min_length=1, max_length=100)
    """A 5-field cron expression ("*/15 * * * *"), a macro (@hourly), or an interval such as
    "every 15m" / "every 2h" that divides an hour or a day evenly."""
    timeZone: str | None = Field(None, max_length=64)
    """IANA time zone the schedule is evaluated in (default UTC)."""
    concurrencyPolicy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    """Allow, Forbid (skip a tick while a run is active) or Replace."""
    startingDeadlineSeconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    """A tick missed by more than this many seconds is skipped."""
    suspend: bool = False
    """Stop starting new runs (active runs go on)."""
    successfulRunsHistoryLimit: int = Field(3, ge=0, le=100)
    """Succeeded runs (BackgroundJobs) kept."""
    failedRunsHistoryLimit: int = Field(3, ge=0, le=100)
    """Failed runs kept (their DeadLetters are kept regardless)."""
    template: TaskTemplate
    """The task each run executes, with the same fields as a BackgroundJob spec."""

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        return SCHEDULE_RULES


class RunRef(Model):
    """One run of a schedule."""

    name: str
    """The BackgroundJob's name."""
    phase: Phase | None = None
    """Its phase."""


class JobScheduleStatus(Model):
    """Observed state of the schedule and its runs."""

    cronSchedule: str | None = None
    """The cron expression the CronJob uses (intervals converted)."""
    cronJobName: str | None = None
    """The batch/v1 CronJob firing the runs."""
    lastScheduleTime: str | None = None
    """When the last run was started."""
    nextScheduleTime: str | None = None
    """When the next run will start, computed in the schedule's time zone."""
    lastRun: RunRef | None = None
    """The most recent run."""
    active: list[RunRef] = Field(default_factory=list)
    """Runs not yet finished."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready, Invalid, Suspended."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class JobSchedule(Model):
    """A periodic task: a CronJob whose every run appears as a BackgroundJob."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["JobSchedule"] = "JobSchedule"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobScheduleSpec
    status: JobScheduleStatus | None = None


# --- DeadLetter ----------------------------------------------------------------------


class DeadLetterSpec(Model):
    """A job that finally failed, with everything needed to understand and replay it."""

    jobName: str
    """The failed BackgroundJob's name."""
    jobUID: str
    """The failed BackgroundJob's uid."""
    task: str
    """Task name."""
    args: list[Any] = Field(
        default_factory=list,
        json_schema_extra={"items": NULLABLE_ANY},
    )
    """Positional arguments of the failed run."""
    kwargs: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Keyword arguments of the failed run."""
    originalSpec: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The BackgroundJob's full spec, used for replays."""
    error: JobError | None = None
    """The final error."""
    attempts: int | None = None
    """Attempts made."""
    failedAt: str | None = None
    """When the job failed (RFC 3339)."""
    lastOutput: str | None = Field(None, max_length=8192)
    """Tail of the last attempt's output (its termination message), where available."""
    schedule: str | None = None
    """The JobSchedule that started the run, if any."""
    critical: bool = False
    """Whether the job was critical (alerted)."""
    replays: int = Field(0, ge=0, le=100)
    """Replays requested. Raise it by one (kubectl bgjobs replay) to run the task again:
    each increment creates one new BackgroundJob named <deadletter>-r<N>."""

    @classmethod
    def transition_rules(cls) -> tuple[TransitionRule, ...]:
        return (
            *immutable_fields(
                cls, ("replays",), "DeadLetter", "it records a failure; replays run it again"
            ),
            only_grows("replays", "replays can only grow"),
        )


class DeadLetterStatus(Model):
    """Replays performed."""

    replayedJobs: list[str] = Field(default_factory=list)
    """BackgroundJobs created by replays, oldest first."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class DeadLetter(Model):
    """The record of a BackgroundJob that finally failed."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["DeadLetter"] = "DeadLetter"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DeadLetterSpec
    status: DeadLetterStatus | None = None
