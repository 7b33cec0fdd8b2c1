"""The Python client for application code: submit tasks, follow them, fetch results.

    from bgjobs.client import Client

    jobs = Client(namespace="shop")
    handle = jobs.submit("reports.export", 7, fmt="csv", idempotency_key=f"export-{order_id}")
    print(handle.result(timeout=600))       # the task's return value, or JobFailed

A submitted task is a ``BackgroundJob`` custom resource; everything here is an ordinary
Kubernetes API call (create, get, list, merge patch, delete), so the client needs no Redis,
no broker and no credentials beyond RBAC on ``backgroundjobs`` and ``deadletters``. Errors
are the typed ones in ``bgjobs.errors``.

The module keeps its pure parts (names, building the object, reading status into a
``JobView``, Celery's state names) apart from the I/O, so they are unit-tested alone.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from bgjobs.api.names import replay_name
from bgjobs.api.v1alpha1 import API_VERSION, GROUP, MAX_JOB_NAME, TERMINAL_PHASES, VERSION, Phase
from bgjobs.errors import (
    ApiError,
    BgJobsError,
    ClusterUnreachable,
    ConfigurationError,
    Conflict,
    InvalidSpec,
    JobCancelled,
    JobFailed,
    JobTimeout,
    NotFound,
    status_message,
)

__all__ = [
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "DeadLetterView",
    "JobHandle",
    "JobView",
    "build_background_job",
    "celery_state",
    "generate_name",
    "idempotent_name",
    "replay_name",
    "task_prefix",
]

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BACKGROUND_JOBS = "backgroundjobs"
DEAD_LETTERS = "deadletters"
IDEMPOTENCY_ANNOTATION = "bgjobs.dev/idempotency-key"
# Set by the Job controller on every pod of a Job.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
WORKER_CONTAINER = "worker"

# --- names (pure) ---------------------------------------------------------------------

# The Kubernetes name generator's alphabet (no vowels, no look-alike digits), so generated
# names never spell words and read like the ones `generateName` gives.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LEN = 5
_KEY_HASH_LEN = 10


def task_prefix(task: str, max_len: int = MAX_JOB_NAME - 1 - _SUFFIX_LEN) -> str:
    """A DNS-label-safe prefix from a task name: ``reports.Export`` -> ``reports-export``."""
    prefix = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")
    prefix = prefix[:max_len].rstrip("-")
    return prefix or "job"


def generate_name(task: str, rand: Callable[[str], str] = secrets.choice) -> str:
    """A fresh unique name for a run of ``task``, ``<task-prefix>-<5 random characters>``
    (at most 63 characters, a DNS label: the batch Job gets the same name)."""
    suffix = "".join(rand(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LEN))
    return f"{task_prefix(task)}-{suffix}"


def idempotent_name(task: str, key: str) -> str:
    """The name a submission with idempotency ``key`` always gets:
    ``<task-prefix>-<sha256(key)[:10]>``. Keys are therefore scoped per task prefix."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:_KEY_HASH_LEN]
    return f"{task_prefix(task, MAX_JOB_NAME - 1 - _KEY_HASH_LEN)}-{digest}"


# --- building a BackgroundJob (pure) --------------------------------------------------


def _seconds(value: float | timedelta | None) -> int | None:
    """Whole seconds for a CRD integer field, rounded up (a limit is never shortened)."""
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs <= 0:
        raise InvalidSpec(f"time limits and deadlines must be positive, got {value!r}")
    return max(1, math.ceil(secs))


def _exception_names(items: Sequence[str | type[BaseException]] | None) -> list[str] | None:
    if items is None:
        return None
    # A bare class name matches any class of that name in the raised exception's hierarchy
    # (see RetryPolicy.retryOn), which survives the app and the worker importing the class
    # under different module paths.
    return [i if isinstance(i, str) else i.__name__ for i in items]


def _env_list(env: Mapping[str, str] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    return [dict(e) for e in env]


def _json_value(what: str, value: Any) -> Any:
    """A JSON round trip, so the caller learns at once what the worker would not receive."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(f"{what} must be JSON-serializable: {exc}") from None


def build_background_job(
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    name: str,
    idempotency_key: str | None = None,
    queue: str | None = None,
    max_retries: int | None = None,
    retry_on: Sequence[str | type[BaseException]] | None = None,
    permanent_on: Sequence[str | type[BaseException]] | None = None,
    soft_time_limit: float | timedelta | None = None,
    time_limit: float | timedelta | None = None,
    deadline: float | timedelta | None = None,
    critical: bool | None = None,
    image: str | None = None,
    env: Mapping[str, str] | Sequence[Mapping[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The BackgroundJob object for a submission. Options left as None are left out, so the
    CRD's defaults apply (maxRetries 3, queue "default", ...)."""
    spec: dict[str, Any] = {
        "task": task,
        "args": _json_value("args", list(args)),
        "kwargs": _json_value("kwargs", dict(kwargs or {})),
    }
    retry: dict[str, Any] = {}
    if max_retries is not None:
        retry["maxRetries"] = int(max_retries)
    if (names := _exception_names(retry_on)) is not None:
        retry["retryOn"] = names
    if (names := _exception_names(permanent_on)) is not None:
        retry["permanentOn"] = names
    if retry:
        spec["retry"] = retry
    limits = {
        k: v
        for k, v in (
            ("softSeconds", _seconds(soft_time_limit)),
            ("hardSeconds", _seconds(time_limit)),
        )
        if v is not None
    }
    if limits:
        spec["timeLimits"] = limits
    if deadline is not None:
        spec["activeDeadlineSeconds"] = _seconds(deadline)
    if queue is not None:
        spec["queue"] = queue
    if critical is not None:
        spec["critical"] = bool(critical)
    if image is not None:
        spec["image"] = image
    if env:
        spec["env"] = _env_list(env)
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = {str(k): str(v) for k, v in labels.items()}
    if idempotency_key is not None:
        metadata["annotations"] = {IDEMPOTENCY_ANNOTATION: idempotency_key}
    return {"apiVersion": API_VERSION, "kind": "BackgroundJob", "metadata": metadata, "spec": spec}


# --- reading status (pure) ------------------------------------------------------------


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
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobView:
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        st = obj.get("status") or {}
        return cls(
            name=str(md.get("name") or ""),
            namespace=str(md.get("namespace") or ""),
            task=str(spec.get("task") or ""),
            # No status yet reads as Pending, like the CRD's default.
            phase=str(st.get("phase") or Phase.PENDING.value),
            attempts=int(st.get("attempts") or 0),
            progress={k: v for k, v in (st.get("progress") or {}).items() if v is not None},
            result=st.get("result"),
            result_ref=st.get("resultRef"),
            error=dict(st["error"]) if st.get("error") else None,
            conditions=[dict(c) for c in st.get("conditions") or []],
            dead_letter=(st.get("deadLetter") or {}).get("name"),
            created=parse_time(md.get("creationTimestamp")),
            started=parse_time(st.get("startTime")),
            completed=parse_time(st.get("completionTime")),
            queue=str(spec.get("queue") or "default"),
            args=list(spec.get("args") or []),
            kwargs=dict(spec.get("kwargs") or {}),
            cancel_requested=bool(spec.get("cancel")),
            job_name=st.get("jobName"),
            uid=md.get("uid"),
            resource_version=md.get("resourceVersion"),
            labels=dict(md.get("labels") or {}),
            annotations=dict(md.get("annotations") or {}),
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
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeadLetterView:
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        st = obj.get("status") or {}
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
            replayed_jobs=list(st.get("replayedJobs") or []),
            last_output=spec.get("lastOutput"),
            schedule=spec.get("schedule"),
            created=parse_time(md.get("creationTimestamp")),
            resource_version=md.get("resourceVersion"),
            raw=dict(obj),
        )


# --- I/O ------------------------------------------------------------------------------


def _as_dict(obj: object) -> dict[str, Any]:
    """The custom-objects API returns decoded JSON typed as ``object``."""
    return cast(dict[str, Any], obj)


def _short_reason(exc: BaseException) -> str:
    """``[Errno 111] Connection refused`` out of urllib3's nested retry message."""
    text = str(getattr(exc, "reason", None) or exc)
    match = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return match.group(0).strip() if match else text


@contextlib.contextmanager
def api_errors(
    server: str, kind: str = "BackgroundJob", name: str = "", namespace: str = ""
) -> Iterator[None]:
    """Turn the Kubernetes client's exceptions into bgjobs.errors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        message, causes = status_message(exc.body)
        if exc.status == 404:
            raise NotFound(kind, name, namespace) from None
        if exc.status == 422:
            raise InvalidSpec(message, causes) from None
        if exc.status == 409:
            raise Conflict(message or f"{kind.lower()} {name!r} conflicts") from None
        if not exc.status:
            raise ClusterUnreachable(server, str(exc.reason)) from None
        raise ApiError(exc.status, str(exc.reason), message) from None
    except (HTTPError, OSError) as exc:
        raise ClusterUnreachable(server, _short_reason(exc)) from None


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from ``kubeconfig`` (a path), else in-cluster config when running in a
    pod, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigurationError(
            f"no usable Kubernetes configuration ({where}): {exc}. Set KUBECONFIG, or run "
            "`make cluster-up` for the local dev cluster"
        ) from None


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the current kubeconfig context (in a pod: the pod's own), else
    ``default``."""
    from kubernetes import config

    sa_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        with contextlib.suppress(OSError):
            return sa_ns.read_text().strip() or "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # noqa: BLE001 - no kubeconfig: the loader reports that later
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class Client:
    """Submit and follow BackgroundJobs in one namespace.

    ``api_client``: a ready kubernetes ``ApiClient``; else one is loaded from ``kubeconfig``
    (a path), from in-cluster config when running in a pod, or from $KUBECONFIG /
    ~/.kube/config. ``namespace=None`` takes the current context's namespace.
    ``redis``: optional redis-py client, used only by ``result()`` for results too large
    for status (``status.resultRef``). ``request_timeout``: seconds per API call.
    """

    def __init__(
        self,
        namespace: str | None = "default",
        api_client: Any = None,
        kubeconfig: str | None = None,
        *,
        context: str | None = None,
        redis: Any = None,
        request_timeout: float = 30.0,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client or load_api_client(kubeconfig, context)
        self.namespace = namespace or default_namespace(kubeconfig, context)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.redis = redis
        self.request_timeout = request_timeout

    @property
    def server(self) -> str:
        return str(self.api_client.configuration.host)

    def errors(
        self, kind: str = "BackgroundJob", name: str = ""
    ) -> contextlib.AbstractContextManager[None]:
        return api_errors(self.server, kind, name, self.namespace)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        """A kubernetes model object as the plain camelCase dict the API returns."""
        return dict(self.api_client.sanitize_for_serialization(obj))

    # -- submitting -----------------------------------------------------------------

    def submit(
        self,
        task: str,
        *args: Any,
        name: str | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        retry_on: Sequence[str | type[BaseException]] | None = None,
        permanent_on: Sequence[str | type[BaseException]] | None = None,
        soft_time_limit: float | timedelta | None = None,
        time_limit: float | timedelta | None = None,
        deadline: float | timedelta | None = None,
        critical: bool | None = None,
        image: str | None = None,
        env: Mapping[str, str] | Sequence[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Run ``task(*args, **kwargs)`` as a BackgroundJob; returns at once.

        Without ``name`` the job gets a unique ``<task-prefix>-xxxxx`` name. With
        ``idempotency_key`` the name is derived from the key, and submitting the same key
        again returns the existing job (``handle.created`` is False) instead of running
        the task twice; a job of that name running another task raises ``Conflict``.
        ``deadline`` (seconds or timedelta) bounds the whole job, all attempts included;
        ``soft_time_limit``/``time_limit`` bound each attempt. A task keyword argument
        that clashes with an option's name goes through ``submit_call``."""
        return self.submit_call(
            task,
            args,
            kwargs,
            name=name,
            idempotency_key=idempotency_key,
            queue=queue,
            max_retries=max_retries,
            retry_on=retry_on,
            permanent_on=permanent_on,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            deadline=deadline,
            critical=critical,
            image=image,
            env=env,
            labels=labels,
        )

    def submit_call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobHandle:
        """``submit`` with args and kwargs passed as values (RQ's ``enqueue_call``, Celery's
        ``apply_async(args, kwargs)``), for task arguments built at run time."""
        generated = name is None and idempotency_key is None
        if name is None:
            name = (
                idempotent_name(task, idempotency_key) if idempotency_key else generate_name(task)
            )
        body = build_background_job(
            task, args, kwargs, name=name, idempotency_key=idempotency_key, **options
        )
        for _ in range(5):
            try:
                with self.errors(name=name):
                    obj = self.custom.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.namespace,
                        BACKGROUND_JOBS,
                        body,
                        _request_timeout=self.request_timeout,
                    )
                return JobHandle(self, JobView.from_object(_as_dict(obj)), created=True)
            except Conflict:
                if generated:  # a clash of random names: draw another
                    name = generate_name(task)
                    body["metadata"]["name"] = name
                    continue
                if idempotency_key is None:
                    raise Conflict(
                        f'backgroundjob "{name}" already exists in namespace "{self.namespace}"'
                    ) from None
            try:
                existing = self.get(name)
            except NotFound:
                continue  # deleted between our create and get: create it again
            if existing.task != task or existing.idempotency_key != idempotency_key:
                raise Conflict(
                    f'backgroundjob "{name}" exists with task {existing.task!r} and idempotency '
                    f"key {existing.idempotency_key!r}; this submission has task {task!r} and "
                    f"key {idempotency_key!r}"
                )
            return JobHandle(self, existing, created=False)
        raise Conflict(f'could not create backgroundjob "{name}": it keeps conflicting')

    # -- reading --------------------------------------------------------------------

    def get(self, name: str) -> JobView:
        with self.errors(name=name):
            obj = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                BACKGROUND_JOBS,
                name,
                _request_timeout=self.request_timeout,
            )
        return JobView.from_object(_as_dict(obj))

    def list(
        self,
        task: str | None = None,
        phase: str | None = None,
        queue: str | None = None,
        *,
        label_selector: str | None = None,
        all_namespaces: bool = False,
    ) -> list[JobView]:
        """BackgroundJobs, oldest first, filtered by task, phase and queue."""
        with self.errors():
            if all_namespaces:
                listing = self.custom.list_cluster_custom_object(
                    GROUP,
                    VERSION,
                    BACKGROUND_JOBS,
                    label_selector=label_selector,
                    _request_timeout=self.request_timeout,
                )
            else:
                listing = self.custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    BACKGROUND_JOBS,
                    label_selector=label_selector,
                    _request_timeout=self.request_timeout,
                )
        views = [JobView.from_object(o) for o in _as_dict(listing).get("items") or []]
        views = [
            v
            for v in views
            if (task is None or v.task == task)
            and (phase is None or v.phase.lower() == str(phase).lower())
            and (queue is None or v.queue == queue)
        ]
        return sorted(views, key=lambda v: (v.created or _EPOCH, v.name))

    def watch(
        self, name: str, *, timeout: float | None = None, poll: float = 0.5
    ) -> Iterator[JobView]:
        """Yield the job each time it changes (the first time at once), until it reaches a
        final phase (yielded last). Raises JobTimeout when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JobView | None = None
        while True:
            view = self.get(name)
            if last is None or view.resource_version != last.resource_version:
                yield view
            last = view
            if view.terminal:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(name, float(timeout or 0), last)
            time.sleep(
                poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            )

    def wait(self, name: str, timeout: float | None = 300.0, poll: float = 0.5) -> JobView:
        """The job once it is Succeeded, Failed or Cancelled; JobTimeout after ``timeout``
        seconds (None: no limit). It does not raise for Failed: see ``result``."""
        last: JobView | None = None
        for view in self.watch(name, timeout=timeout, poll=poll):
            last = view
        assert last is not None
        return last

    def result(self, name: str, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        """The task's return value, waiting for it. Raises JobFailed (with the job's error),
        JobCancelled or JobTimeout."""
        return self.outcome(self.wait(name, timeout=timeout, poll=poll))

    def outcome(self, view: JobView) -> Any:
        """The result of a finished job, or the matching error."""
        if view.failed:
            raise JobFailed(view)
        if view.cancelled:
            raise JobCancelled(view)
        if not view.succeeded:
            raise BgJobsError(f"backgroundjob {view.name!r} is still {view.phase}")
        if view.result is None and view.result_ref:
            return self._large_result(view)
        return view.result

    def _large_result(self, view: JobView) -> Any:
        if self.redis is None:
            raise BgJobsError(
                f"the result of {view.name!r} is too large for status and is kept in Redis "
                f"under {view.result_ref!r}; pass redis= to Client to fetch it"
            )
        from bgjobs_worker.redis_keys import decode_result

        doc = decode_result(self.redis.get(view.result_ref))
        if doc is None:
            raise BgJobsError(f"the result of {view.name!r} has expired from Redis")
        return doc.get("result")

    # -- changing -------------------------------------------------------------------

    def cancel(self, name: str) -> JobView:
        """Ask the operator to stop the job (spec.cancel: true): its pods are killed and it
        ends Cancelled. A job that already finished keeps its outcome."""
        with self.errors(name=name):
            obj = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                BACKGROUND_JOBS,
                name,
                {"spec": {"cancel": True}},
                _request_timeout=self.request_timeout,
            )
        return JobView.from_object(_as_dict(obj))

    def delete(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete the BackgroundJob; its Job and pods go with it, its DeadLetter stays."""
        try:
            with self.errors(name=name):
                self.custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    BACKGROUND_JOBS,
                    name,
                    propagation_policy="Background",
                    _request_timeout=self.request_timeout,
                )
        except NotFound:
            if not missing_ok:
                raise

    # -- dead letters ---------------------------------------------------------------

    def dead_letter(self, name: str) -> DeadLetterView:
        with self.errors("DeadLetter", name):
            obj = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                DEAD_LETTERS,
                name,
                _request_timeout=self.request_timeout,
            )
        return DeadLetterView.from_object(_as_dict(obj))

    def dead_letters(
        self, task: str | None = None, job: str | None = None, *, critical: bool | None = None
    ) -> builtins.list[DeadLetterView]:
        """DeadLetters, oldest first, filtered by task, failed job name and criticality."""
        with self.errors("DeadLetter"):
            listing = self.custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                DEAD_LETTERS,
                _request_timeout=self.request_timeout,
            )
        views = [DeadLetterView.from_object(o) for o in _as_dict(listing).get("items") or []]
        views = [
            v
            for v in views
            if (task is None or v.task == task)
            and (job is None or v.job_name == job)
            and (critical is None or v.critical == critical)
        ]
        return sorted(views, key=lambda v: (v.created or _EPOCH, v.name))

    def replay(self, dead_letter: str, *, attempts: int = 10) -> str:
        """Run a dead-lettered task again: raise the DeadLetter's spec.replays by one and
        return the name of the BackgroundJob the operator creates for it (``<dl>-r<N>``).

        The increment is an optimistic-concurrency update (the merge patch carries the
        resourceVersion read), retried on conflict, so two concurrent replays make two
        runs, never one lost update."""
        for _ in range(attempts):
            dl = self.dead_letter(dead_letter)
            n = dl.replays + 1
            patch = {"metadata": {"resourceVersion": dl.resource_version}, "spec": {"replays": n}}
            try:
                with self.errors("DeadLetter", dead_letter):
                    self.custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.namespace,
                        DEAD_LETTERS,
                        dead_letter,
                        patch,
                        _request_timeout=self.request_timeout,
                    )
            except Conflict:
                continue
            return replay_name(dead_letter, n)
        raise Conflict(f"deadletter {dead_letter!r} kept changing; replay not requested")

    # -- around the job -------------------------------------------------------------

    def events(self, name: str, kind: str = "BackgroundJob") -> builtins.list[dict[str, Any]]:
        """Kubernetes Events about the object, oldest first."""
        with self.errors(kind, name):
            listing = self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.name={name},involvedObject.kind={kind}",
                _request_timeout=self.request_timeout,
            )
        events = [self.to_dict(e) for e in listing.items or []]

        def when(e: dict[str, Any]) -> str:
            return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp"))

        return sorted(events, key=when)

    def pods(self, name: str) -> builtins.list[dict[str, Any]]:
        """The pods of the job's batch Job (one per attempt), oldest first."""
        view = self.get(name)
        with self.errors("Pod"):
            listing = self.core.list_namespaced_pod(
                self.namespace,
                label_selector=f"{JOB_NAME_LABEL}={view.job_name or name}",
                _request_timeout=self.request_timeout,
            )
        pods = [self.to_dict(p) for p in listing.items or []]
        return sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))


@dataclass
class JobHandle:
    """What ``submit`` returns: the job's name and shortcuts to follow it."""

    client: Client = field(repr=False)
    submitted: JobView
    created: bool = True
    """False when an idempotency key matched an existing job, which is returned instead."""

    @property
    def name(self) -> str:
        return self.submitted.name

    @property
    def namespace(self) -> str:
        return self.submitted.namespace

    def __str__(self) -> str:
        return self.name

    def get(self) -> JobView:
        return self.client.get(self.name)

    def wait(self, timeout: float | None = 300.0, poll: float = 0.5) -> JobView:
        return self.client.wait(self.name, timeout=timeout, poll=poll)

    def result(self, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        return self.client.result(self.name, timeout=timeout, poll=poll)

    def cancel(self) -> JobView:
        return self.client.cancel(self.name)

    def delete(self) -> None:
        self.client.delete(self.name)


# --- asyncio --------------------------------------------------------------------------


class AsyncClient:
    """``Client`` for asyncio code (FastAPI handlers and the like).

    The official Kubernetes client is blocking, so every call runs the synchronous
    ``Client`` in a worker thread with ``asyncio.to_thread``; ``wait`` and ``result`` poll
    with ``asyncio.sleep`` between calls, so a long wait holds no thread. Construct it
    like ``Client`` or wrap one: ``AsyncClient(client=Client(...))``.
    """

    def __init__(
        self,
        namespace: str | None = "default",
        api_client: Any = None,
        kubeconfig: str | None = None,
        *,
        client: Client | None = None,
        **options: Any,
    ) -> None:
        self.sync = client or Client(namespace, api_client, kubeconfig, **options)

    @property
    def namespace(self) -> str:
        return self.sync.namespace

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def submit(self, task: str, *args: Any, **options: Any) -> AsyncJobHandle:
        handle = await self._run(self.sync.submit, task, *args, **options)
        return AsyncJobHandle(self, handle.submitted, handle.created)

    async def submit_call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncJobHandle:
        handle = await self._run(self.sync.submit_call, task, args, kwargs, **options)
        return AsyncJobHandle(self, handle.submitted, handle.created)

    async def get(self, name: str) -> JobView:
        return await self._run(self.sync.get, name)

    async def list(
        self, task: str | None = None, phase: str | None = None, queue: str | None = None, **kw: Any
    ) -> list[JobView]:
        return await self._run(self.sync.list, task, phase, queue, **kw)

    async def wait(self, name: str, timeout: float | None = 300.0, poll: float = 0.5) -> JobView:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            view = await self.get(name)
            if view.terminal:
                return view
            if deadline is not None and loop.time() >= deadline:
                raise JobTimeout(name, float(timeout or 0), view)
            await asyncio.sleep(poll)

    async def result(self, name: str, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        view = await self.wait(name, timeout=timeout, poll=poll)
        return await self._run(self.sync.outcome, view)

    async def cancel(self, name: str) -> JobView:
        return await self._run(self.sync.cancel, name)

    async def delete(self, name: str, *, missing_ok: bool = False) -> None:
        await self._run(self.sync.delete, name, missing_ok=missing_ok)

    async def dead_letter(self, name: str) -> DeadLetterView:
        return await self._run(self.sync.dead_letter, name)

    async def dead_letters(
        self, task: str | None = None, job: str | None = None, **kw: Any
    ) -> builtins.list[DeadLetterView]:
        return await self._run(self.sync.dead_letters, task, job, **kw)

    async def replay(self, dead_letter: str) -> str:
        return await self._run(self.sync.replay, dead_letter)

    async def events(self, name: str, kind: str = "BackgroundJob") -> builtins.list[dict[str, Any]]:
        return await self._run(self.sync.events, name, kind)


@dataclass
class AsyncJobHandle:
    """``JobHandle`` for AsyncClient: the same shortcuts, as coroutines."""

    client: AsyncClient = field(repr=False)
    submitted: JobView
    created: bool = True

    @property
    def name(self) -> str:
        return self.submitted.name

    def __str__(self) -> str:
        return self.name

    async def get(self) -> JobView:
        return await self.client.get(self.name)

    async def wait(self, timeout: float | None = 300.0, poll: float = 0.5) -> JobView:
        return await self.client.wait(self.name, timeout=timeout, poll=poll)

    async def result(self, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        return await self.client.result(self.name, timeout=timeout, poll=poll)

    async def cancel(self) -> JobView:
        return await self.client.cancel(self.name)

    async def delete(self) -> None:
        await self.client.delete(self.name)
