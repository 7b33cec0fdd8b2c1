"""Celery's canvas as plain data: signatures, ``chain``, ``group`` and ``chord``, flattened
into the steps of a JobWorkflow, and Celery's calling API (``delay``, ``apply_async``).

Standard library only, so tasks can be composed where they are defined without the worker
image needing the client; ``bgjobs.canvas`` re-exports all of it and adds what needs the
API types and the Kubernetes client (the JobWorkflow manifest, submitting, handles).

Result passing, the rule the operator applies too (``call_args``): a step with one
dependency receives its result as the first positional argument (chain); a step with
several receives the list of their results, in dependency order (chord body); an immutable
signature (``task.si(...)``) receives nothing.

Submitting goes through a *dispatcher*: ``bgjobs.canvas.configure(client)`` installs one
that creates BackgroundJobs and JobWorkflows; ``set_always_eager(True)`` (Celery's
``task_always_eager``) runs calls and whole canvases here and now through
``bgjobs_worker.eager``, so the seed's tests port unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

Dispatcher = Callable[[Any, Mapping[str, Any]], Any]

_dispatcher: Dispatcher | None = None
_always_eager = False


def call_args(args: Sequence[Any], results: Sequence[Any], immutable: bool) -> list[Any]:
    """A step's positional arguments given its dependencies' results, in dependsOn order."""
    if immutable or not results:
        return list(args)
    first = results[0] if len(results) == 1 else list(results)
    return [first, *args]


class _Composable:
    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)  # type: ignore[arg-type]

    def apply_async(self, *args: Any, **options: Any) -> Any:
        raise NotImplementedError

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)


@dataclass(frozen=True)
class Signature(_Composable):
    """A task call described, not made: Celery's ``task.s(...)`` / ``task.si(...)``."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    immutable: bool = False

    def set(self, **options: Any) -> Signature:
        """The same call with more options (queue=..., max_retries=...), as in Celery."""
        return replace(self, options={**self.options, **options})

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Submit the call (these args after the signature's own), returning an
        AsyncResult-like handle (a client JobHandle, or an EagerResult in eager mode).
        ``countdown=``/``eta=`` delay the start (``spec.countdownSeconds``/``startAt``) as
        ``Client.submit`` does; inside a workflow they are refused."""
        call = replace(
            self,
            args=(*self.args, *(args or ())),
            kwargs={**self.kwargs, **(kwargs or {})},
            options={**self.options, **options},
        )
        return _dispatch(call)


@dataclass(frozen=True)
class BatchCall:
    """One task over many items, as one batch BackgroundJob (``spec.items``): what
    ``task.map``, ``task.starmap`` and ``task.chunks`` build. Each item is one call's
    arguments: a list is positional arguments, a mapping keyword arguments (README
    "Batches"). Not a workflow step (yet): it is submitted on its own."""

    task: str
    items: tuple[Any, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    # Instead of items: a producer task whose return value or generator gives them
    # (spec.itemsFrom.task); each element a call's arguments as for Client.map.
    producer: Signature | None = None

    def apply_async(self, **options: Any) -> Any:
        """Submit the batch (``Client.map`` with these options: parallelism=...,
        chunk_size=..., max_failed_items=..., queue=...); eager mode runs every item here."""
        return _dispatch(replace(self, options={**self.options, **options}))

    def delay(self) -> Any:
        return self.apply_async()


def map_items(items: Iterable[Any]) -> tuple[Any, ...]:
    """Celery's ``task.map(seq)``: each element is the one argument of a call."""
    return tuple([item] for item in items)


def starmap_items(items: Iterable[Any]) -> tuple[Any, ...]:
    """Celery's ``task.starmap(seq)``: each element's tuple is a call's arguments (a mapping
    is keyword arguments)."""
    return tuple(item if isinstance(item, Mapping) else list(item) for item in items)


# Lower-case class names are Celery's: porting a canvas changes only its imports.
class chain(_Composable):
    """Run one after the other, each receiving the previous result."""

    tasks: tuple[Canvas, ...]

    def __init__(self, *tasks: Canvas) -> None:
        flat: list[Canvas] = []
        for t in tasks:
            flat.extend(t.tasks if isinstance(t, chain) else [t])
        self.tasks = tuple(flat)

    def apply_async(self, *_: Any, **options: Any) -> Any:
        return _dispatch(self, options)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.tasks))


class group(_Composable):
    """Run in parallel; what follows receives the list of their results."""

    def __init__(self, *tasks: Canvas | Iterable[Canvas]) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], _Composable):
            tasks = tuple(tasks[0])
        self.tasks: tuple[Canvas, ...] = tuple(tasks)  # type: ignore[arg-type]

    def apply_async(self, *_: Any, **options: Any) -> Any:
        return _dispatch(self, options)

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.tasks))})"


class chord(chain):
    """A group (the header) then a body that receives the list of the header's results:
    ``chord(header, body)`` or ``chord(header)(body)``."""

    def __init__(self, header: Iterable[Canvas] | group, body: Canvas | None = None) -> None:
        self.header = header if isinstance(header, group) else group(*header)
        self.body = body
        super().__init__(self.header, *([body] if body is not None else []))

    def __call__(self, body: Canvas | None = None, **options: Any) -> Any:
        return chord(self.header, body or self.body).apply_async(**options)


Canvas = Union[Signature, chain, group]  # noqa: UP007


# --- flattening ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of the flattened graph."""

    name: str
    signature: Signature
    depends_on: tuple[str, ...]


def step_name(task: str, taken: set[str], limit: int = 40) -> str:
    """A step name from the task's last dotted part (``app.extract_text`` ->
    ``extract-text``), numbered when taken (``extract-text-2``)."""
    base = re.sub(r"[^a-z0-9-]+", "-", task.rsplit(".", 1)[-1].lower()).strip("-") or "step"
    base = base[: limit - 4].strip("-")
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def flatten(canvas: Canvas) -> list[Step]:
    """The steps of a canvas in an order where dependencies come first. Nested chains and
    groups flatten as Celery's do: a group member that is a chain contributes its last
    result; a group inside a group contributes its members' results to the same list."""
    steps: list[Step] = []
    taken: set[str] = set()

    def walk(node: Canvas, deps: tuple[str, ...]) -> tuple[str, ...]:
        if isinstance(node, Signature):
            name = step_name(node.task, taken)
            steps.append(Step(name, node, deps))
            return (name,)
        if isinstance(node, group):
            tails: tuple[str, ...] = ()
            for member in node.tasks:
                tails += walk(member, deps)
            return tails
        if isinstance(node, chain):
            for link in node.tasks:
                deps = walk(link, deps)
            return deps
        if isinstance(node, BatchCall):
            raise TypeError(
                f"a batch ({node.task}.map/starmap/chunks) cannot be a workflow step; "
                "submit it on its own"
            )
        raise TypeError(f"not a task signature, chain, group or chord: {node!r}")

    walk(canvas, ())
    return steps


# --- calling: dispatcher or eager ------------------------------------------------------


def _dispatch(call: Canvas | BatchCall, options: Mapping[str, Any] | None = None) -> Any:
    if _always_eager:
        from bgjobs_worker.eager import run_batch, run_canvas

        return run_batch(call) if isinstance(call, BatchCall) else run_canvas(call)
    if _dispatcher is None:
        raise RuntimeError(
            "no bgjobs client is configured for delay()/apply_async(): call "
            "bgjobs.canvas.configure(Client(...)) first, or set_always_eager(True) in tests"
        )
    return _dispatcher(call, options or {})


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def set_always_eager(on: bool = True) -> None:
    """Run ``delay()``/``apply_async()`` in process (Celery's ``task_always_eager``)."""
    global _always_eager
    _always_eager = on
