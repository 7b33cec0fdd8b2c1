"""Celery's canvas for bgjobs: ``chain``, ``group``, ``chord`` and task signatures build a
JobWorkflow, so a Celery canvas ports by changing its imports::

    from bgjobs.canvas import chain, group
    from myapp.tasks import extract_text, analyze_sentiment, generate_summary, save_analysis

    workflow = chain(
        extract_text.s(file_id),
        group(analyze_sentiment.s(), generate_summary.s()),
        save_analysis.s(file_id),
    )
    handle = workflow.apply_async()        # or Client(...).submit(workflow)
    handle.get(timeout=600)                # save_analysis's result; WorkflowFailed otherwise

Call ``configure(Client(...))`` once at start-up so ``apply_async()``/``delay()`` know where
to submit; in tests, ``set_always_eager(True)`` runs everything in process instead.
Tasks (``@task`` in bgjobs_worker) get ``.s``, ``.si``, ``.delay`` and ``.apply_async``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bgjobs.client.sync import Client, JobHandle
from bgjobs.client.views import JobView, percent_of
from bgjobs.client.workflows import WorkflowHandle, WorkflowView, build_workflow
from bgjobs_worker.canvas import (
    BatchCall,
    Canvas,
    Signature,
    chain,
    chord,
    flatten,
    group,
    set_always_eager,
    set_dispatcher,
)
from bgjobs_worker.eager import EagerResult, EagerWorkflowResult, TaskFailed

__all__ = [
    "AsyncResult",
    "BatchCall",
    "Canvas",
    "EagerResult",
    "EagerWorkflowResult",
    "Signature",
    "TaskFailed",
    "WorkflowHandle",
    "WorkflowView",
    "build_workflow",
    "chain",
    "chord",
    "configure",
    "flatten",
    "group",
    "set_always_eager",
    "signature",
]


def signature(
    task: str,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    immutable: bool = False,
    **options: Any,
) -> Signature:
    """A signature by task name, for tasks whose code is not importable here."""
    return Signature(task, tuple(args), dict(kwargs or {}), options, immutable)


@dataclass
class AsyncResult:
    """Celery's AsyncResult over a submitted BackgroundJob: ``.id``, ``.state``,
    ``.info`` (progress while it runs, the result or error once done), ``.get()``."""

    handle: JobHandle

    @property
    def id(self) -> str:
        return self.handle.name

    def _view(self) -> JobView:
        return self.handle.get()

    @property
    def state(self) -> str:
        return self._view().celery_state

    @property
    def info(self) -> Any:
        view = self._view()
        if view.succeeded:
            return view.result
        if view.failed:
            return view.error
        progress = dict(view.progress)
        percent = percent_of(progress)
        if percent is not None:
            progress["percent"] = percent
        return progress

    def ready(self) -> bool:
        return self._view().terminal

    def get(self, timeout: float | None = 300.0, propagate: bool = True) -> Any:
        if not propagate:
            view = self.handle.wait(timeout=timeout)
            return view.result if view.succeeded else view.error
        return self.handle.result(timeout=timeout)


def configure(client: Client | None) -> None:
    """Submit ``delay()``/``apply_async()`` calls through ``client`` (None: unconfigure)."""
    if client is None:
        set_dispatcher(None)
        return

    def dispatch(call: Canvas | BatchCall, options: Mapping[str, Any]) -> Any:
        if isinstance(call, BatchCall):
            source = call.producer if call.producer is not None else list(call.items)
            return AsyncResult(client.map(call.task, source, **call.options))
        if isinstance(call, Signature):
            handle = client.submit_call(call.task, call.args, call.kwargs, **call.options)
            return AsyncResult(handle)
        return client.submit_workflow(
            call, name=options.get("name"), fail_fast=bool(options.get("fail_fast"))
        )

    set_dispatcher(dispatch)
