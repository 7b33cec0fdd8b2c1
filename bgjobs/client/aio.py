"""The asyncio client: the sync client run in threads, waits on asyncio.sleep."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bgjobs.client.constants import T
from bgjobs.client.sync import Client
from bgjobs.client.views import DeadLetterView, JobView
from bgjobs.client.workflows import WorkflowHandle, WorkflowView
from bgjobs.errors import (
    JobTimeout,
    WorkflowFailed,
)
from bgjobs_worker.canvas import Canvas

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

    async def submit(self, task: str | Canvas, *args: Any, **options: Any) -> AsyncJobHandle:
        """As ``Client.submit``; a canvas becomes a JobWorkflow (an AsyncWorkflowHandle)."""
        if not isinstance(task, str):
            return await self.submit_workflow(task, name=options.get("name"))  # type: ignore[return-value]
        handle = await self._run(self.sync.submit, task, *args, **options)
        return AsyncJobHandle(self, handle.submitted, handle.created)

    async def submit_workflow(
        self,
        workflow: Canvas | Mapping[str, Any],
        *,
        name: str | None = None,
        fail_fast: bool = False,
    ) -> AsyncWorkflowHandle:
        handle = await self._run(
            self.sync.submit_workflow, workflow, name=name, fail_fast=fail_fast
        )
        return AsyncWorkflowHandle(self, handle)

    def workflow(self, name: str) -> AsyncWorkflowHandle:
        return AsyncWorkflowHandle(self, self.sync.workflow(name))

    async def submit_call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncJobHandle:
        handle = await self._run(self.sync.submit_call, task, args, kwargs, **options)
        return AsyncJobHandle(self, handle.submitted, handle.created)

    async def map(self, task: str, items: Sequence[Any], **options: Any) -> AsyncJobHandle:
        """``Client.map``: one batch running ``task`` once per item."""
        handle = await self._run(self.sync.map, task, items, **options)
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


@dataclass
class AsyncWorkflowHandle:
    """``WorkflowHandle`` for asyncio: waits poll with ``asyncio.sleep``."""

    client: AsyncClient = field(repr=False)
    sync: WorkflowHandle

    @property
    def name(self) -> str:
        return self.sync.name

    async def get_view(self) -> WorkflowView:
        return await self.client._run(self.sync.get_view)

    async def steps(self) -> builtins.list[dict[str, Any]]:
        return (await self.get_view()).steps

    async def wait(self, timeout: float | None = 300.0, poll: float = 0.5) -> WorkflowView:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            view = await self.get_view()
            asked = int(((view.raw.get("spec") or {}).get("resumes")) or 0)
            if view.finished and view.resumes >= asked:
                return view
            if deadline is not None and loop.time() >= deadline:
                raise JobTimeout(self.name, float(timeout or 0), None)
            await asyncio.sleep(poll)

    async def get(self, timeout: float | None = 300.0, poll: float = 0.5) -> Any:
        view = await self.wait(timeout, poll)
        if view.phase != "Succeeded":
            raise WorkflowFailed(view.name, view.phase, view.failed_step, view.error)
        return view.result

    async def resume(self) -> int:
        return await self.client._run(self.sync.resume)

    async def cancel(self) -> None:
        await self.client._run(self.sync.cancel)
