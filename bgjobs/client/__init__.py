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

from bgjobs.api.names import replay_name
from bgjobs.client.aio import AsyncClient, AsyncJobHandle, AsyncWorkflowHandle
from bgjobs.client.connection import api_errors, default_namespace, load_api_client
from bgjobs.client.constants import IDEMPOTENCY_ANNOTATION, JOB_NAME_LABEL, WORKER_CONTAINER
from bgjobs.client.naming import build_background_job, generate_name, idempotent_name, task_prefix
from bgjobs.client.sync import Client, JobHandle
from bgjobs.client.views import DeadLetterView, JobView, celery_state, parse_time, percent_of
from bgjobs.client.workflows import WorkflowHandle, WorkflowView, build_workflow

__all__ = [
    "IDEMPOTENCY_ANNOTATION",
    "JOB_NAME_LABEL",
    "WORKER_CONTAINER",
    "AsyncClient",
    "AsyncJobHandle",
    "AsyncWorkflowHandle",
    "Client",
    "DeadLetterView",
    "JobHandle",
    "JobView",
    "WorkflowHandle",
    "WorkflowView",
    "api_errors",
    "build_background_job",
    "build_workflow",
    "celery_state",
    "default_namespace",
    "generate_name",
    "idempotent_name",
    "load_api_client",
    "parse_time",
    "percent_of",
    "replay_name",
    "task_prefix",
]
