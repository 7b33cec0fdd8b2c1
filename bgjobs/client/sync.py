"""The synchronous client and the handle a submission returns."""

from __future__ import annotations

import builtins
import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bgjobs.api.names import replay_name
from bgjobs.api.v1alpha1 import GROUP, MAX_ITEMS, VERSION
from bgjobs.client.connection import api_errors, as_dict, default_namespace, load_api_client
from bgjobs.client.constants import (
    BACKGROUND_JOBS,
    DEAD_LETTERS,
    EPOCH,
    JOB_NAME_LABEL,
    JOB_QUEUES,
)
from bgjobs.client.naming import (
    build_background_job,
    encode_items,
    generate_name,
    idempotent_name,
)
from bgjobs.client.task_options import declared, rate_limit_problem
from bgjobs.client.views import DeadLetterView, JobView
from bgjobs.client.workflows import WorkflowHandle, submit_workflow
from bgjobs.errors import (
    BgJobsError,
    Conflict,
    JobCancelled,
    JobFailed,
    JobTimeout,
    NotFound,
    RateLimitNotEnforced,
)
from bgjobs_worker.batch_keys import write_upload
from bgjobs_worker.canvas import Canvas, Signature

# Item lists over this much JSON go to Redis (spec.itemsFrom), well under the operator's
# default --max-items-bytes (1 MiB) and etcd's request limit.
INLINE_ITEMS_BYTES = 512 * 1024


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
        # (queue, task, rate) triples whose JobQueue was found to enforce the rate; checked
        # once per client (task_options.py).
        self._rates_checked: set[tuple[str | None, str, str]] = set()

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
        task: str | Canvas,
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
        priority: int | None = None,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Run ``task(*args, **kwargs)`` as a BackgroundJob; returns at once.

        Without ``name`` the job gets a unique ``<task-prefix>-xxxxx`` name. With
        ``idempotency_key`` the name is derived from the key, and submitting the same key
        again returns the existing job (``handle.created`` is False) instead of running
        the task twice; a job of that name running another task raises ``Conflict``.
        ``deadline`` (seconds or timedelta) bounds the whole job, all attempts included;
        ``soft_time_limit``/``time_limit`` bound each attempt. A task keyword argument
        that clashes with an option's name goes through ``submit_call``.

        A canvas (``bgjobs.canvas``: a chain, group, chord or signature) is submitted as a
        JobWorkflow instead; a WorkflowHandle is returned."""
        if not isinstance(task, str):
            return submit_workflow(self, task, name=name)  # type: ignore[return-value]
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
            priority=priority,
            countdown=countdown,
            eta=eta,
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
        decorator = declared(task)
        if options.get("queue") is None and decorator.queue:
            options["queue"] = decorator.queue
        if decorator.rate_limit:
            self._check_rate_limit(task, decorator.rate_limit, options.get("queue"))
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
                return JobHandle(self, JobView.from_object(as_dict(obj)), created=True)
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

    def submit_workflow(
        self,
        workflow: Canvas | Mapping[str, Any],
        *,
        name: str | None = None,
        fail_fast: bool = False,
    ) -> WorkflowHandle:
        """Run a canvas (chain, group, chord) as a JobWorkflow; returns its handle."""
        return submit_workflow(self, workflow, name=name, fail_fast=fail_fast)

    def workflow(self, name: str) -> WorkflowHandle:
        """The handle of an existing JobWorkflow."""
        return WorkflowHandle(self, name)

    def map(
        self,
        task: str,
        items: Sequence[Any] | Signature,
        *,
        parallelism: int | None = None,
        chunk_size: int | None = None,
        max_failed_items: int | None = None,
        name: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobHandle:
        """Run ``task`` once per item as one batch (Celery's ``map``/``starmap``/``chunks``):
        a list or tuple item is positional arguments, a mapping keyword arguments, any
        other value one argument. ``parallelism`` worker pods lease the items from Redis;
        the batch ends Succeeded when every item did (README "Batches").

        More than 10,000 items or 512 KiB of JSON are uploaded to Redis first (this client
        needs ``redis=``) and the BackgroundJob names the upload (``spec.itemsFrom``)
        instead of carrying them: etcd never holds a large item list."""
        if isinstance(items, Signature):  # a producer task makes the items in the batch
            producer = {"task": items.task, "args": list(items.args), "kwargs": dict(items.kwargs)}
            return self.submit_call(
                task,
                name=name,
                idempotency_key=idempotency_key,
                items_from_task=producer,
                parallelism=parallelism,
                chunk_size=chunk_size,
                max_failed_items=max_failed_items,
                **options,
            )
        encoded = encode_items(items)
        if len(encoded) > MAX_ITEMS or sum(map(len, encoded)) > INLINE_ITEMS_BYTES:
            if self.redis is None:
                raise BgJobsError(
                    f"{len(encoded)} items are over the inline limit ({MAX_ITEMS} items, "
                    f"{INLINE_ITEMS_BYTES} bytes of JSON): pass redis= to Client to upload them"
                )
            name = name or (
                idempotent_name(task, idempotency_key) if idempotency_key else generate_name(task)
            )
            upload = f"{name}.{secrets.token_hex(4)}"
            write_upload(self.redis, self.namespace, upload, encoded)
            options["items_from"] = upload
            items = None  # type: ignore[assignment]
        return self.submit_call(
            task,
            name=name,
            idempotency_key=idempotency_key,
            items=items,
            parallelism=parallelism,
            chunk_size=chunk_size,
            max_failed_items=max_failed_items,
            **options,
        )

    def item_results(self, view: JobView) -> builtins.list[Any]:
        """A batch's item results in index order, from Redis (they are not in status)."""
        if self.redis is None:
            raise BgJobsError("a batch's item results are kept in Redis; pass redis= to Client")
        from bgjobs_worker.batch_keys import read_outcomes

        outcomes = read_outcomes(self.redis, view.namespace, view.uid or "")
        return [doc.get("result") for _, doc in sorted(outcomes.items())]

    def item_outcome(self, name: str, index: int) -> dict[str, Any] | None:
        """One item's outcome in a batch (``{"status", "result" | "error", "attempts"}``),
        read from Redis by its index in ``spec.items``; None when not recorded (yet)."""
        if self.redis is None:
            raise BgJobsError("item outcomes are kept in Redis; pass redis= to Client")
        from bgjobs_worker.batch_keys import read_outcome

        view = self.get(name)
        return read_outcome(self.redis, view.namespace, view.uid or "", index)

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
        return JobView.from_object(as_dict(obj))

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
        views = [JobView.from_object(o) for o in as_dict(listing).get("items") or []]
        views = [
            v
            for v in views
            if (task is None or v.task == task)
            and (phase is None or v.phase.lower() == str(phase).lower())
            and (queue is None or v.queue == queue)
        ]
        return sorted(views, key=lambda v: (v.created or EPOCH, v.name))

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
        if view.batch:  # every item succeeded: their results, as Celery's group result
            return self.item_results(view)
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
        return JobView.from_object(as_dict(obj))

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
        return DeadLetterView.from_object(as_dict(obj))

    def _check_rate_limit(self, task: str, rate: str, queue: str | None) -> None:
        """Refuse a submission whose ``@task(rate_limit=...)`` its JobQueue does not enforce."""
        key = (queue, task, rate)
        if key in self._rates_checked:
            return
        problem = rate_limit_problem(task, rate, queue, self.queues(), self.namespace)
        if problem is not None:
            raise RateLimitNotEnforced(problem)
        self._rates_checked.add(key)

    def queues(self) -> builtins.list[dict[str, Any]]:
        """The JobQueues of the namespace, as the API returns them, by name."""
        with self.errors("JobQueue"):
            listing = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, JOB_QUEUES, _request_timeout=self.request_timeout
            )
        items = list(as_dict(listing).get("items") or [])
        return sorted(items, key=lambda o: str(o["metadata"]["name"]))

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
        views = [DeadLetterView.from_object(o) for o in as_dict(listing).get("items") or []]
        views = [
            v
            for v in views
            if (task is None or v.task == task)
            and (job is None or v.job_name == job)
            and (critical is None or v.critical == critical)
        ]
        return sorted(views, key=lambda v: (v.created or EPOCH, v.name))

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
