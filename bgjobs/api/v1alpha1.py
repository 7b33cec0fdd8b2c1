"""bgjobs.dev/v1alpha1: BackgroundJob, JobSchedule, DeadLetter, JobWorkflow and JobQueue.

These pydantic models are the single source of truth: `make crds` turns them into the CRD
YAML in crds/ (see crdgen.py). Field descriptions become `kubectl explain` text. Each model's
`rules()` (and `transition_rules()`, for updates) come from bgjobs/api/rules.py: the API
server enforces them as CEL at `kubectl apply` time, and validating a model runs the same
checks in Python, so contradictions never reach the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict

from bgjobs.api.dag import find_cycle
from bgjobs.api.rules import (
    BACKGROUND_JOB_RULES,
    BATCH_RULES,
    ITEMS_FROM_RULES,
    JOB_QUEUE_RULES,
    RATE_LIMIT_PATTERN,
    SCHEDULE_RULES,
    TASK_TEMPLATE_RULES,
    WORKFLOW_RULES,
    AnyRule,
    Rule,
    TransitionRule,
    all_of,
    immutable_fields,
    only_grows,
    stays_true,
    violations,
    x_validations,
)
from bgjobs.api.rules import ON_FAILURE_STEP as ON_FAILURE_STEP

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
# A batch's inline items live in etcd with the BackgroundJob (and once more in its
# DeadLetter, failed items only): the count is bounded here, their JSON size by the
# operator's --max-items-bytes (default 1 MiB, under etcd's 1.5 MiB request limit).
MAX_ITEMS = 10_000
MAX_PARALLELISM = 100
MAX_CHUNK_SIZE = 1000

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
    declared: list[AnyRule | TransitionRule] = [*cls.rules(), *cls.transition_rules()]
    if cel := x_validations(declared):
        schema["x-kubernetes-validations"] = cel
    if openapi := all_of(declared):
        schema["allOf"] = openapi


class Model(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_cel_rules,
    )

    @classmethod
    def rules(cls) -> tuple[AnyRule, ...]:
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
    queue: str | None = Field(
        None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """Queue name: a label on the Job and its pods (bgjobs.dev/queue). A JobQueue of this
    name in the namespace admits the job (concurrency, rate limit, pause, pod defaults).
    Unset: the queue of the first JobQueue whose routes match the task, else "default"."""
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
    def rules(cls) -> tuple[AnyRule, ...]:
        return TASK_TEMPLATE_RULES


DEFAULT_QUEUE = "default"
# Delayed starts further out than this belong in a JobSchedule or the application's own store.
MAX_COUNTDOWN_SECONDS = 30 * 86400
# The BackgroundJob spec fields an update may change: the only ones read after the Job exists.
MUTABLE_JOB_FIELDS = ("cancel", "priority")


# An upload's name: what follows bgjobs:{namespace}:upload: in Redis.
UPLOAD_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,98}[a-z0-9])?$"


class ItemsFrom(Model):
    """Where a batch's items come from when they are not inline: an upload, or a producer
    task whose return value (a list) or generator yields them."""

    upload: str | None = Field(None, min_length=1, max_length=100, pattern=UPLOAD_PATTERN)
    """Items uploaded to Redis before the job was created: the list
    ``bgjobs:{namespace}:upload:{upload}``, one item's JSON per entry (``Client.map`` writes
    it for item lists over the inline limit). Read once, when the batch is seeded."""
    task: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$"
    )
    """A producer task (registered in the same worker image): one of the batch's pods calls
    it and streams what it returns or yields into the batch while the pods run the items
    (Celery's "loop over every subscription", made parallel). Deterministic order, please:
    a producer re-run after its pod died skips the items already produced, by count."""
    args: list[Any] = Field(
        default_factory=list, max_length=MAX_ARGS, json_schema_extra={"items": NULLABLE_ANY}
    )
    """The producer's positional arguments."""
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "maxProperties": MAX_ARGS},
    )
    """The producer's keyword arguments."""

    @classmethod
    def rules(cls) -> tuple[AnyRule, ...]:
        return ITEMS_FROM_RULES


def is_batch(spec: Mapping[str, Any]) -> bool:
    """Whether a BackgroundJob spec (as JSON) is a batch: inline or uploaded items."""
    return spec.get("items") is not None or spec.get("itemsFrom") is not None


class BackgroundJobSpec(TaskTemplate):
    """One run of a task, executed as a batch/v1 Job; with items, a batch: the task is
    called once per item by warm workers (one Indexed Job)."""

    cancel: bool = False
    """Set to true to stop the job: its pods are killed and it ends Cancelled."""
    priority: int = Field(0, ge=-1000, le=1000)
    """Admission order within a JobQueue: higher first, then older first. May be changed
    while the job waits."""
    startAt: str | None = Field(None, max_length=64, json_schema_extra={"format": "date-time"})
    """Start no earlier than this time (RFC 3339; Celery's eta=, RQ's enqueue_at). The Job
    is created when the time comes; until then the job is Pending with a Queued condition
    (reason NotBefore)."""
    countdownSeconds: int | None = Field(None, ge=0, le=MAX_COUNTDOWN_SECONDS)
    """Start no earlier than this many seconds after the BackgroundJob was created (Celery's
    countdown=, RQ's enqueue_in)."""

    @field_validator("startAt")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError("startAt needs a time zone (e.g. 2026-03-01T12:00:00Z)")
        return value

    items: list[Any] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ITEMS,
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    """A batch: one task call per item, each item a list (positional arguments) or an
    object (keyword arguments). At most 10,000 items and --max-items-bytes of JSON
    (default 1 MiB). Exclusive with args and kwargs."""
    parallelism: int | None = Field(None, ge=1, le=MAX_PARALLELISM)
    """Batches: worker pods running items at once (default 1)."""
    chunkSize: int | None = Field(None, ge=1, le=MAX_CHUNK_SIZE)
    """Batches: items a worker leases per Redis round trip (default: the batch spread in
    about 20 chunks per pod, between 1 and 100)."""
    maxFailedItems: int | None = Field(None, ge=0)
    """Batches: fail the batch early once more items than this have failed (default: run
    every item)."""
    itemsFrom: ItemsFrom | None = None
    """Batches: items from an upload to Redis or from a producer task instead of inline (any
    number, no etcd size limit). Exclusive with items, args and kwargs."""
    itemIndexes: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, max_length=MAX_ITEMS, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Batches: each item's number in outcomes, failures and the DeadLetter when it is not
    the item's position: a DeadLetter's replay keeps the original batch's numbers. One per
    item, each used once."""

    @model_validator(mode="after")
    def _one_index_per_item(self) -> Self:
        if self.itemIndexes is not None:
            if len(self.itemIndexes) != len(self.items or ()):
                raise ValueError(
                    f"spec.itemIndexes has {len(self.itemIndexes)} numbers for "
                    f"{len(self.items or ())} items: give one per item"
                )
            if len(set(self.itemIndexes)) != len(self.itemIndexes):
                raise ValueError("spec.itemIndexes uses a number twice")
        return self

    @field_validator("items")
    @classmethod
    def _items_are_calls(cls, items: list[Any] | None) -> list[Any] | None:
        for index, item in enumerate(items or ()):
            if not isinstance(item, list | dict):
                raise ValueError(
                    f"items[{index}] must be a list (args) or an object (kwargs), "
                    f"not {type(item).__name__}"
                )
        return items

    @classmethod
    def rules(cls) -> tuple[AnyRule, ...]:
        return (*BACKGROUND_JOB_RULES, *BATCH_RULES)

    @property
    def is_batch(self) -> bool:
        return self.items is not None or self.itemsFrom is not None

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


class BatchStatus(Model):
    """Item counts of a batch (coalesced to one status write per second)."""

    total: int = 0
    """Items in the batch."""
    succeeded: int = 0
    """Items whose call returned."""
    failed: int = 0
    """Items that failed permanently or ran out of retries."""
    running: int | None = None
    """Items leased by a worker right now."""
    executions: int | None = None
    """Calls made, retries and re-runs after a lost lease included (at-least-once)."""
    ratePerSecond: float | None = None
    """Items finished per second since the batch started."""
    outcomesKey: str | None = None
    """Redis hash holding every item's outcome by index (kept for the result TTL)."""
    producing: bool | None = None
    """True while a producer task (spec.itemsFrom.task) is still adding items: total grows."""


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


# Every kind's status.conditions: a list keyed by type, so a server-side apply or a strategic
# merge treats each condition as its own entry.
CONDITIONS_LIST: Final[JsonDict] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


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
    batch: BatchStatus | None = None
    """Batches: items done, failed and total, and the rate."""
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
    queue: str | None = None
    """The queue the job runs in: spec.queue, else the queue a JobQueue route chose, else
    "default"."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_LIST,
    )
    """Queued, Running, Succeeded, Failed, DeadLettered, Cancelled, Invalid."""
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
    priority: int = Field(0, ge=-1000, le=1000)
    """Each run's spec.priority: its admission order in a JobQueue (higher first). A change
    applies to runs created after it."""

    @classmethod
    def rules(cls) -> tuple[AnyRule, ...]:
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
        json_schema_extra=CONDITIONS_LIST,
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


class FailedItem(Model):
    """One failed item of a batch."""

    index: int
    """Its index in spec.items of the failed BackgroundJob."""
    item: Any = Field(None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """Its arguments."""
    error: JobError | None = None
    """Its final error."""
    attempts: int | None = None
    """Calls made for it."""


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
    workflow: str | None = None
    """The JobWorkflow the failed job was a step of, if any."""
    workflowStep: str | None = None
    """The step of that workflow."""
    failedItems: list[FailedItem] = Field(default_factory=list, max_length=100)
    """Batches: the first failed items with their errors (all of them are replayed; the
    full list is in Redis, failedItemsKey)."""
    failedItemsCount: int | None = None
    """Batches: items not succeeded (failed, or never run when the batch stopped early)."""
    failedItemsKey: str | None = None
    """Batches: the Redis list of every failed item's index (outcomes in outcomesKey)."""
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
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_LIST,
    )
    """ReplayFailed: the API server refused the replay's BackgroundJob (the message says why);
    nothing more is tried until the DeadLetter's spec changes."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class DeadLetter(Model):
    """The record of a BackgroundJob that finally failed."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["DeadLetter"] = "DeadLetter"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DeadLetterSpec
    status: DeadLetterStatus | None = None


# --- JobWorkflow -----------------------------------------------------------------------

# Steps per workflow: each is a BackgroundJob, and the CEL rules over the step graph are
# quadratic in it (the API server bounds their cost by these limits).
MAX_STEPS = 50
MAX_STEP_NAME = 40
# A workflow's name is a label value on its steps' BackgroundJobs.
MAX_WORKFLOW_NAME = 63


class WorkflowStep(TaskTemplate):
    """One step: a task template (every field a BackgroundJob spec takes) plus its place
    in the graph. It runs as a BackgroundJob named <workflow>-<step>."""

    name: str = Field(
        min_length=1, max_length=MAX_STEP_NAME, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """Step name, unique in the workflow (a DNS label)."""
    dependsOn: list[Annotated[str, Field(max_length=MAX_STEP_NAME)]] = Field(
        default_factory=list, max_length=MAX_STEPS
    )
    """Steps that must have Succeeded before this one starts. With one dependency, its
    result is passed as the first positional argument (Celery's chain); with several,
    the list of their results in this order (Celery's chord body)."""
    immutable: bool = False
    """Receive no result from the dependencies (Celery's .si())."""
    forEach: bool = False
    """Run the task once per element of its one dependency's result (a list), as a batch:
    Celery's group over a dynamic list. Each element is a call's arguments (a list
    positional, an object keyword, any other value the one argument); the step's result,
    passed on, is the list of the item results. Needs exactly one dependency and no args
    or kwargs of its own."""
    parallelism: int | None = Field(None, ge=1, le=MAX_PARALLELISM)
    """forEach steps: worker pods running items at once (default 1)."""

    @model_validator(mode="after")
    def _for_each_takes_its_items_from_one_dependency(self) -> Self:
        if self.forEach and (len(self.dependsOn) != 1 or self.immutable):
            raise ValueError(
                f"step {self.name}: forEach runs over one dependency's result; give it "
                "exactly one dependsOn and no immutable"
            )
        if self.forEach and (self.args or self.kwargs):
            raise ValueError(
                f"step {self.name}: a forEach step's arguments are its dependency's result "
                "elements; remove its args and kwargs"
            )
        if self.parallelism is not None and not self.forEach:
            raise ValueError(f"step {self.name}: parallelism applies to forEach steps only")
        return self


class JobWorkflowSpec(Model):
    """A graph of steps, each run as a BackgroundJob once its dependencies have Succeeded
    (Celery's chain, group and chord)."""

    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)
    """The steps, at most 50. Order does not matter beyond display."""
    failFast: bool = False
    """When a step fails: cancel the steps still running (default: let them finish)."""
    onFailure: TaskTemplate | None = None
    """A task run once when the workflow fails (Celery's link_error), as the BackgroundJob
    <workflow>-on-failure. Its first argument is {workflow, step, error}: the workflow's
    name, the failed step's name and its error."""
    cancel: bool = False
    """Set to true to stop the workflow: running steps are cancelled, none start."""
    resumes: int = Field(0, ge=0, le=100)
    """Resumes requested. Raise it by one (kubectl bgjobs resume) to run a failed workflow
    again from where it failed: failed and skipped steps run anew (as
    <workflow>-<step>-r<N>), succeeded steps keep their results."""

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        return WORKFLOW_RULES

    @classmethod
    def transition_rules(cls) -> tuple[TransitionRule, ...]:
        return (
            *immutable_fields(
                cls,
                ("cancel", "resumes", "failFast"),
                "JobWorkflow",
                "create a new JobWorkflow",
            ),
            only_grows("resumes", "resumes can only grow"),
        )

    @model_validator(mode="after")
    def _acyclic(self) -> Self:
        cycle = find_cycle({s.name: s.dependsOn for s in self.steps})
        if cycle:
            raise ValueError(f"the steps form a cycle: {' -> '.join(cycle)}")
        return self


class StepPhase(StrEnum):
    WAITING = "Waiting"
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"


class StepStatus(Model):
    """One step as observed from its BackgroundJob."""

    name: str
    """Step name."""
    phase: StepPhase = StepPhase.WAITING
    """Waiting (for its dependencies), Pending, Running, Retrying, Succeeded, Failed,
    Cancelled, or Skipped (never ran because the workflow failed or was cancelled)."""
    jobName: str | None = None
    """The BackgroundJob running the step."""
    attempts: int | None = None
    """Attempts started."""
    progress: float | None = None
    """Percent done, as the task reports it."""
    startTime: str | None = None
    """When its first attempt started."""
    completionTime: str | None = None
    """When it finished."""
    result: str | None = None
    """A short summary of its result (the full result is in the BackgroundJob)."""
    error: JobError | None = None
    """Why it failed."""


class JobWorkflowStatus(Model):
    """Observed state of the workflow and each of its steps."""

    phase: Phase = Phase.PENDING
    """Pending, Running, Succeeded, Failed or Cancelled."""
    stepsDone: str | None = None
    """Steps succeeded of all steps, e.g. 2/4."""
    progress: float | None = None
    """Percent done: the mean over the steps (a running step counts its own progress)."""
    steps: list[StepStatus] = Field(default_factory=list)
    """Each step's phase, attempts, progress, times, result summary and error."""
    onFailure: StepStatus | None = None
    """The onFailure task's run, once the workflow failed."""
    failedStep: str | None = None
    """The step whose failure failed the workflow."""
    error: JobError | None = None
    """That step's error."""
    result: Any = Field(None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """The result of the last step (of each last step, as a list, when several end the
    graph), once the workflow Succeeded."""
    resumes: int | None = None
    """The resumes performed (spec.resumes observed)."""
    startTime: str | None = None
    """When the first step was created."""
    completionTime: str | None = None
    """When the workflow reached its final phase and no step ran any more."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_LIST,
    )
    """Running, Succeeded, Failed, Cancelled, Invalid."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class JobWorkflow(Model):
    """A DAG of tasks (Celery's chain, group and chord), each step a BackgroundJob."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["JobWorkflow"] = "JobWorkflow"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobWorkflowSpec
    status: JobWorkflowStatus | None = None


# --- JobQueue ------------------------------------------------------------------------

TaskGlob = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:*?-]+$")]


class PodDefaults(Model):
    """Pod settings given to every Job of the queue (a job's own resources win)."""

    nodeSelector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must match, as in a Pod spec."""
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    """Tolerations, as in a Pod spec."""
    affinity: dict[str, Any] | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Affinity, as in a Pod spec."""
    priorityClassName: str | None = Field(None, max_length=253)
    """PriorityClass of the pods."""
    resources: ResourceRequirements | None = None
    """Worker container resources for jobs that set none."""


class JobQueueSpec(Model):
    """Admission of the BackgroundJobs of one queue in this namespace: their Jobs are created
    suspended and resumed while concurrency and rate allow, highest priority first."""

    concurrency: int | None = Field(None, ge=1, le=100000)
    """The most Jobs of this queue running at once. Unset: no cap."""
    rateLimit: str | None = Field(None, max_length=16, pattern=RATE_LIMIT_PATTERN)
    """Admissions per second, minute or hour ("10/m"), across all operator replicas: a
    GCRA in Redis, spaced evenly (burst 1). Unset: no rate limit."""
    paused: bool = False
    """Admit nothing new; running Jobs continue."""
    routes: list[TaskGlob] = Field(default_factory=list, max_length=64)
    """Task-name globs (app.tasks.heavy.*) whose BackgroundJobs without spec.queue go to this
    queue (Celery's task_routes). Several queues matching: the longest glob wins, then the
    queue name that sorts first."""
    podTemplate: PodDefaults | None = None
    """Pod defaults for the queue's Jobs (node pool, tolerations, priority class, resources)."""

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        return JOB_QUEUE_RULES


class JobQueueStatus(Model):
    """What the queue is doing, as the operator last saw it."""

    running: int = 0
    """Jobs of this queue admitted and not finished."""
    waiting: int = 0
    """Jobs of this queue waiting for admission."""
    admittedLastMinute: int = 0
    """Jobs admitted in the last 60 seconds (by this operator process)."""
    oldestWaiting: str | None = None
    """When the oldest waiting job was created."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_LIST,
    )
    """Ready; Invalid (e.g. a rate the operator cannot read)."""
    observedGeneration: int | None = None
    """The spec generation the status reflects."""


class JobQueue(Model):
    """A queue of BackgroundJobs: concurrency cap, cluster-wide rate limit, pause, routes and
    pod defaults."""

    apiVersion: Literal["bgjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["JobQueue"] = "JobQueue"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobQueueSpec = Field(default_factory=JobQueueSpec)  # type: ignore[arg-type]
    status: JobQueueStatus | None = None
