"""The ``@task`` decorator and the process-wide registry of task names.

A worker pod runs one task, chosen by name from the BackgroundJob spec, so names are the
contract between users' manifests and their code: registering a second function under a
taken name is an error rather than a silent replacement.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, overload

from bgjobs_worker.canvas import BatchCall, Signature, map_items, starmap_items
from bgjobs_worker.context import TaskContext, active_context
from bgjobs_worker.errors import (
    InvalidArguments,
    TaskAlreadyRegistered,
    TaskImportError,
    TaskNotRegistered,
)
from bgjobs_worker.retry_policy import Matcher, RetryPolicy

_registry: dict[str, Task] = {}


class Task:
    """A registered function plus the defaults the BackgroundJob spec may override."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        bind: bool = False,
        retry_on: Iterable[Matcher] = (),
        permanent_on: Iterable[Matcher] = (),
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
        queue: str | None = None,
        rate_limit: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.bind = bind
        self.policy = RetryPolicy(tuple(retry_on), tuple(permanent_on))
        self.soft_time_limit = soft_time_limit
        self.time_limit = time_limit
        # Read by the Python client when it submits this task without a queue (Celery's
        # @task(queue=...)); the worker itself never uses it.
        self.queue = queue
        # Also for the client only: "10/m" must match the rateLimit of the JobQueue the task
        # goes to, which enforces it cluster-wide (Celery's is per worker); a submission
        # whose queue does not enforce it is refused (bgjobs/client/task_options.py).
        self.rate_limit = rate_limit
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as Celery does when a task is called directly."""
        if not self.bind:
            return self.fn(*args, **kwargs)
        ctx = active_context() or TaskContext(task_name=self.name, args=list(args), kwargs=kwargs)
        return self.fn(ctx, *args, **kwargs)

    # -- Celery's calling API (bgjobs_worker.canvas) ----------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature receiving its predecessor's result first (Celery's ``.s``)."""
        return Signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it receives no result (Celery's ``.si``)."""
        return Signature(self.name, args, kwargs, immutable=True)

    def signature(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        immutable: bool = False,
        **options: Any,
    ) -> Signature:
        return Signature(self.name, tuple(args), dict(kwargs or {}), options, immutable)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Submit ``task(*args, **kwargs)`` to run as a BackgroundJob (or in process under
        eager mode); returns an AsyncResult-like handle."""
        return self.s(*args, **kwargs).apply_async()

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """``delay`` with options: queue=..., max_retries=..., time limits (the client's
        submit options)."""
        return Signature(self.name, tuple(args or ()), dict(kwargs or {})).apply_async(**options)

    def map(self, items: Iterable[Any] | Signature, **options: Any) -> Any:
        """Celery's ``task.map(seq)``: one call per element, the element its only argument,
        as one batch BackgroundJob (``apply_async`` options: parallelism=..., queue=...).
        Given a signature instead (``send.map(all_subscriptions.s("2026-03"))``), that task
        produces the items inside the batch, streamed while they run (a list element is
        positional arguments, a mapping keyword arguments, any other value one argument)."""
        if isinstance(items, Signature):
            return BatchCall(self.name, (), options, producer=items).apply_async()
        return BatchCall(self.name, map_items(items), options).apply_async()

    def starmap(self, items: Iterable[Any], **options: Any) -> Any:
        """Celery's ``task.starmap(seq)``: one call per element, its tuple the arguments."""
        return BatchCall(self.name, starmap_items(items), options).apply_async()

    def chunks(self, items: Iterable[Any], n: int, **options: Any) -> Any:
        """Celery's ``task.chunks(seq, n)``: the calls of ``starmap``, taken ``n`` at a time
        by a worker (``spec.chunkSize``). Celery makes each chunk one task whose result is
        the chunk's list; here each item keeps its own result, retries and outcome, and
        ``n`` is how many a worker leases per Redis round trip."""
        return BatchCall(
            self.name, starmap_items(items), {**options, "chunk_size": n}
        ).apply_async()

    def bind_arguments(
        self, ctx: TaskContext, args: list[Any], kwargs: dict[str, Any]
    ) -> inspect.BoundArguments:
        """Check the job's arguments against the signature before running anything.

        Doing it up front tells a bad spec (permanent) apart from a TypeError raised by a
        bug inside the task (which the retry policy decides on).
        """
        call_args = [ctx, *args] if self.bind else list(args)
        try:
            return inspect.signature(self.fn).bind(*call_args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"arguments do not fit {self.name}: {exc}") from exc


def register(new: Task) -> Task:
    existing = _registry.get(new.name)
    if existing is not None and not _same_function(existing.fn, new.fn):
        raise TaskAlreadyRegistered(
            f"task name {new.name!r} is already taken by "
            f"{existing.fn.__module__}.{existing.fn.__qualname__}"
        )
    _registry[new.name] = new
    return new


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # importlib.reload() re-creates the function object: same module and qualname is the same
    # task, not a clash.
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def unregister(name: str) -> None:
    """Forget a task (for tests that register throwaway tasks)."""
    _registry.pop(name, None)


def registered_tasks() -> dict[str, Task]:
    return dict(_registry)


def get_task(name: str) -> Task:
    try:
        return _registry[name]
    except KeyError:
        # The closest names first: with many tasks registered, an alphabetical head of the
        # list would rarely show the one the caller meant.
        close = difflib.get_close_matches(name, _registry, n=5, cutoff=0.5)
        shown = close or sorted(_registry)[:10]
        known = ", ".join(shown) or "none"
        raise TaskNotRegistered(
            f"no task named {name!r} is registered ({len(_registry)} known; "
            f"{'closest' if close else 'for example'}: {known}); "
            "is its module listed in BGJOBS_TASK_MODULES?"
        ) from None


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the user's modules so that their ``@task`` decorators run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise TaskImportError(
                f"cannot import task module {module!r}: {type(exc).__name__}: {exc}"
            ) from exc


@overload
def task(fn: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    name: str | None = None,
    bind: bool = False,
    retry_on: Iterable[Matcher] = (),
    permanent_on: Iterable[Matcher] = (),
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    queue: str | None = None,
    rate_limit: str | None = None,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    bind: bool = False,
    retry_on: Iterable[Matcher] = (),
    permanent_on: Iterable[Matcher] = (),
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    queue: str | None = None,
    rate_limit: str | None = None,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Register a function as a task; use bare (``@task``) or with options (``@task(...)``)."""

    def decorate(f: Callable[..., Any]) -> Task:
        return register(
            Task(
                f,
                name=name,
                bind=bind,
                retry_on=retry_on,
                permanent_on=permanent_on,
                soft_time_limit=soft_time_limit,
                time_limit=time_limit,
                queue=queue,
                rate_limit=rate_limit,
            )
        )

    return decorate(fn) if fn is not None else decorate
