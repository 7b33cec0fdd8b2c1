"""The seed guide's task endpoints, the bgjobs way: a FastAPI app that submits
BackgroundJobs and reports their state in Celery's vocabulary.

    BGJOBS_NAMESPACE=shop KUBECONFIG=... uvicorn examples.fastapi_app:app

    POST   /api/tasks/export   {"total_records": 5000}  -> 202 {"id", "status_url"}
    POST   /api/tasks          {"task", "args", "kwargs", "idempotencyKey"} -> 202
    GET    /api/tasks/{id}     -> {"id", "state", "phase", "progress", "result", "error"}
    DELETE /api/tasks/{id}     -> 202, the job is cancelled (Celery's revoke)

Unlike FastAPI's BackgroundTasks the work survives the web process: it is a Kubernetes
Job with retries, and its state lives in the BackgroundJob's status, so any replica of
this app (or kubectl) can answer for it. The app needs RBAC to create, get and patch
``backgroundjobs`` in its namespace, nothing else.

The generic ``POST /api/tasks`` runs any registered task by name, which is what the
seed's examples do; a real service would accept only the tasks it means to expose.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from bgjobs.client import AsyncClient, JobView
from bgjobs.errors import ClusterUnreachable, Conflict, InvalidSpec, NotFound

app = FastAPI(title="bgjobs example", version="0.1.0")


@lru_cache(maxsize=1)
def get_client() -> AsyncClient:
    """The app's client: namespace from BGJOBS_NAMESPACE (default "default"), cluster
    from in-cluster config or KUBECONFIG. Tests override this dependency."""
    return AsyncClient(namespace=os.environ.get("BGJOBS_NAMESPACE") or "default")


Jobs = Annotated[AsyncClient, Depends(get_client)]


class ExportRequest(BaseModel):
    total_records: int = Field(5000, ge=0, le=10_000_000)
    batch_size: int = Field(1000, ge=1)
    idempotency_key: str | None = Field(None, max_length=200)


class TaskRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, alias="idempotencyKey", max_length=200)


class Submitted(BaseModel):
    id: str
    status_url: str


class Progress(BaseModel):
    current: int | float | None = None
    total: int | float | None = None
    percent: int | float | None = None
    stage: str | None = None
    message: str | None = None


class TaskState(BaseModel):
    id: str
    state: str
    """Celery's name: PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED."""
    phase: str
    progress: Progress
    result: Any = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    """True once DELETE was called; state turns REVOKED when the pods are stopped."""


def task_state(view: JobView) -> TaskState:
    """What GET /api/tasks/{id} returns for a job (pure; unit-tested)."""
    p = view.progress
    return TaskState(
        id=view.name,
        state=view.celery_state,
        phase=view.phase,
        progress=Progress(
            current=p.get("current"),
            total=p.get("total"),
            percent=view.percent,
            stage=p.get("stage"),
            message=p.get("message"),
        ),
        result=view.result if view.succeeded else None,
        error=view.error if view.failed else None,
        cancel_requested=view.cancel_requested,
    )


async def _submit(jobs: AsyncClient, request: Request, task: str, **call: Any) -> Submitted:
    try:
        handle = await jobs.submit_call(task, **call)
    except InvalidSpec as exc:
        raise HTTPException(422, exc.message) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ClusterUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    url = str(request.url_for("get_task", task_id=handle.name))
    return Submitted(id=handle.name, status_url=url)


@app.post("/api/tasks/export", status_code=status.HTTP_202_ACCEPTED)
async def export_data(body: ExportRequest, request: Request, jobs: Jobs) -> Submitted:
    """The seed's batch export: progress per chunk, the file's URL as the result."""
    return await _submit(
        jobs,
        request,
        "examples.export",
        kwargs={"total_records": body.total_records, "batch_size": body.batch_size},
        idempotency_key=body.idempotency_key,
    )


@app.post("/api/tasks", status_code=status.HTTP_202_ACCEPTED)
async def submit_task(body: TaskRequest, request: Request, jobs: Jobs) -> Submitted:
    return await _submit(
        jobs,
        request,
        body.task,
        args=body.args,
        kwargs=body.kwargs,
        idempotency_key=body.idempotency_key,
    )


async def _view(jobs: AsyncClient, task_id: str) -> JobView:
    try:
        return await jobs.get(task_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found") from None
    except ClusterUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


@app.get("/api/tasks/{task_id}", name="get_task")
async def get_task(task_id: str, jobs: Jobs) -> TaskState:
    return task_state(await _view(jobs, task_id))


@app.delete("/api/tasks/{task_id}", status_code=status.HTTP_202_ACCEPTED)
async def cancel_task(task_id: str, jobs: Jobs) -> TaskState:
    """Celery's revoke(terminate=True): the pods are stopped and the job ends REVOKED. A job
    that already finished keeps its outcome."""
    view = await _view(jobs, task_id)
    if not view.terminal:
        try:
            view = await jobs.cancel(task_id)
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found") from None
    return task_state(view)
