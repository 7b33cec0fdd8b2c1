"""JobWorkflows from the client: a canvas (bgjobs.canvas) turned into the JobWorkflow
object, its status read into a WorkflowView, and the handle a submission returns."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bgjobs.api.v1alpha1 import API_VERSION, GROUP, VERSION, JobWorkflowSpec, JobWorkflowStatus
from bgjobs.client.connection import as_dict
from bgjobs.client.constants import JOB_WORKFLOWS
from bgjobs.client.naming import build_background_job, generate_name
from bgjobs.client.views import celery_state, read_status
from bgjobs.errors import Conflict, JobTimeout, WorkflowFailed
from bgjobs_worker.canvas import Canvas, flatten


class Client(Protocol):
    """What a workflow handle uses of ``bgjobs.client.Client`` (a protocol: the client
    module imports this one)."""

    custom: Any
    namespace: str
    request_timeout: float

    def errors(
        self, kind: str = ..., name: str = ...
    ) -> contextlib.AbstractContextManager[None]: ...


_UNSUPPORTED = ("countdown", "eta", "link", "link_error")


def build_workflow(
    canvas: Canvas, *, name: str | None = None, fail_fast: bool = False
) -> dict[str, Any]:
    """The JobWorkflow object for a canvas: one step per signature, its dependencies from
    the chain and group structure, its options mapped as ``Client.submit`` maps them.
    Validated here as the API server would (unknown options, cycles, more than 50 steps)."""
    steps: list[dict[str, Any]] = []
    for step in flatten(canvas):
        sig = step.signature
        bad = [o for o in _UNSUPPORTED if o in sig.options]
        if bad:
            raise ValueError(f"{', '.join(bad)} not supported in a workflow step ({sig.task})")
        options = dict(sig.options)
        # task.s().set(for_each=True): one call per element of the previous step's result,
        # as a batch (Celery's group over a dynamic list); parallelism= its pods.
        for_each = bool(options.pop("for_each", False))
        job = build_background_job(sig.task, sig.args, sig.kwargs, name="x", **options)
        steps.append(
            {
                "name": step.name,
                **job["spec"],
                "dependsOn": list(step.depends_on),
                **({"immutable": True} if sig.immutable else {}),
                **({"forEach": True} if for_each else {}),
            }
        )
    spec: dict[str, Any] = {"steps": steps}
    if fail_fast:
        spec["failFast"] = True
    JobWorkflowSpec.model_validate(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "JobWorkflow",
        "metadata": {"name": name or generate_name(steps[0]["task"] if steps else "workflow")},
        "spec": spec,
    }


@dataclass(frozen=True)
class WorkflowView:
    """A JobWorkflow as the client sees it."""

    name: str
    namespace: str
    phase: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    steps_done: str = ""
    progress: float | None = None
    failed_step: str | None = None
    error: dict[str, Any] | None = None
    result: Any = None
    finished: bool = False
    resumes: int = 0
    status: JobWorkflowStatus = field(
        default_factory=lambda: read_status(JobWorkflowStatus, None), repr=False
    )
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> WorkflowView:
        md = obj.get("metadata") or {}
        st = read_status(JobWorkflowStatus, obj.get("status"))
        return cls(
            name=md.get("name", ""),
            namespace=md.get("namespace", ""),
            phase=st.phase.value,
            steps=[s.model_dump(mode="json", exclude_none=True) for s in st.steps],
            steps_done=st.stepsDone or "",
            progress=st.progress,
            failed_step=st.failedStep,
            error=st.error.model_dump(mode="json", exclude_none=True) if st.error else None,
            result=st.result,
            finished=bool(st.completionTime),
            resumes=st.resumes or 0,
            status=st,
            raw=obj,
        )

    @property
    def state(self) -> str:
        """Celery's state name (PENDING, STARTED, SUCCESS, FAILURE, REVOKED)."""
        return celery_state(self.phase)

    def step(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.steps if s.get("name") == name), None)


@dataclass
class WorkflowHandle:
    """What submitting a workflow returns: wait, per-step state, the final result."""

    client: Client = field(repr=False)
    name: str

    def __str__(self) -> str:
        return self.name

    def get_view(self) -> WorkflowView:
        with self.client.errors("JobWorkflow", self.name):
            obj = self.client.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.client.namespace,
                JOB_WORKFLOWS,
                self.name,
                _request_timeout=self.client.request_timeout,
            )
        return WorkflowView.from_object(as_dict(obj))

    @property
    def state(self) -> str:
        return self.get_view().state

    def steps(self) -> list[dict[str, Any]]:
        """Each step's phase, attempts, progress, times, result summary and error."""
        return self.get_view().steps

    def wait(self, timeout: float | None = 300.0, poll: float = 0.5) -> WorkflowView:
        """The workflow once it has finished (no step runs any more)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.get_view()
            if view.finished and view.resumes >= self._resumes_asked(view):
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(self.name, float(timeout or 0), None)
            time.sleep(poll)

    def _resumes_asked(self, view: WorkflowView) -> int:
        return int(((view.raw.get("spec") or {}).get("resumes")) or 0)

    def get(self, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        """The workflow's result (its last step's, or a list when several end it);
        WorkflowFailed when it failed or was cancelled (Celery's ``AsyncResult.get``)."""
        view = self.wait(timeout, poll)
        if view.phase != "Succeeded":
            raise WorkflowFailed(view.name, view.phase, view.failed_step, view.error)
        return view.result

    result = get

    def resume(self, attempts: int = 10) -> int:
        """Run a failed workflow again from where it failed (spec.resumes + 1); succeeded
        steps keep their results. Returns the resume's number."""
        for _ in range(attempts):
            view = self.get_view()
            n = self._resumes_asked(view) + 1
            patch = {
                "metadata": {"resourceVersion": view.raw["metadata"]["resourceVersion"]},
                "spec": {"resumes": n},
            }
            try:
                self._patch(patch)
            except Conflict:
                continue
            return n
        raise Conflict(f"jobworkflow {self.name!r} kept changing; resume not requested")

    def cancel(self) -> None:
        """Stop the workflow: running steps are cancelled, no step starts."""
        self._patch({"spec": {"cancel": True}})

    def _patch(self, patch: dict[str, Any]) -> None:
        with self.client.errors("JobWorkflow", self.name):
            self.client.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.client.namespace,
                JOB_WORKFLOWS,
                self.name,
                patch,
                _request_timeout=self.client.request_timeout,
            )


def submit_workflow(
    client: Client,
    workflow: Canvas | Mapping[str, Any],
    *,
    name: str | None = None,
    fail_fast: bool = False,
) -> WorkflowHandle:
    """Create the JobWorkflow for a canvas (or a ready JobWorkflow object)."""
    body = (
        dict(workflow)
        if isinstance(workflow, Mapping)
        else build_workflow(workflow, name=name, fail_fast=fail_fast)
    )
    name = body["metadata"]["name"]
    with client.errors("JobWorkflow", name):
        client.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            client.namespace,
            JOB_WORKFLOWS,
            body,
            _request_timeout=client.request_timeout,
        )
    return WorkflowHandle(client, name)
