"""bgjobs.canvas: Celery's chain/group/chord flattened into a JobWorkflow, the calling API
on tasks, and eager mode running a whole canvas in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from bgjobs.canvas import (
    AsyncResult,
    TaskFailed,
    build_workflow,
    chain,
    chord,
    configure,
    flatten,
    group,
    set_always_eager,
    signature,
)
from bgjobs.client.workflows import WorkflowView
from bgjobs_worker.canvas import call_args
from examples import tasks


def seed() -> chain:
    return chain(
        tasks.extract_text.s("file-1"),
        group(tasks.analyze_sentiment.s(), tasks.generate_summary.s()),
        tasks.save_analysis.s("file-1"),
    )


@pytest.fixture
def eager() -> Iterator[None]:
    set_always_eager(True)
    yield
    set_always_eager(False)


def test_the_seed_canvas_flattens_into_a_dag() -> None:
    got = [(s.name, s.depends_on) for s in flatten(seed())]
    assert got == [
        ("extract-text", ()),
        ("analyze-sentiment", ("extract-text",)),
        ("generate-summary", ("extract-text",)),
        ("save-analysis", ("analyze-sentiment", "generate-summary")),
    ]


def test_build_workflow_maps_signatures_to_steps_with_options() -> None:
    wf = build_workflow(
        chain(tasks.add.s(1, 2).set(queue="fast", max_retries=0), tasks.add.si(5, 5)),
        name="w",
        fail_fast=True,
    )
    assert wf["kind"] == "JobWorkflow" and wf["metadata"]["name"] == "w"
    first, second = wf["spec"]["steps"]
    assert first == {
        "name": "add",
        "task": "examples.add",
        "args": [1, 2],
        "kwargs": {},
        "queue": "fast",
        "retry": {"maxRetries": 0},
        "dependsOn": [],
    }
    assert second["name"] == "add-2" and second["immutable"] is True
    assert second["dependsOn"] == ["add"]
    assert wf["spec"]["failFast"] is True


def test_nesting_flattens_as_celery_does() -> None:
    a, b, c, d = (signature(f"t.{x}") for x in "abcd")
    steps = flatten(a | group(chain(b, c), d) | signature("t.e"))
    assert [(s.name, s.depends_on) for s in steps] == [
        ("a", ()),
        ("b", ("a",)),
        ("c", ("b",)),
        ("d", ("a",)),
        ("e", ("c", "d")),
    ]
    assert [s.depends_on for s in flatten(chord([a, b], signature("t.z")))][-1] == ("a", "b")


def test_chord_header_called_with_its_body(eager: None) -> None:
    run = chord([tasks.add.s(1, 2), tasks.add.s(3, 4)])(tasks.total.s())
    assert run.get() == 10


def test_too_many_steps_are_refused_before_submitting() -> None:
    with pytest.raises(ValidationError):
        build_workflow(group(*[signature("t.x")] * 51))
    with pytest.raises(ValueError, match="countdown"):
        build_workflow(chain(signature("t.x", countdown=5)))


def test_result_passing_rule() -> None:
    assert call_args([9], [1], immutable=False) == [1, 9]
    assert call_args([9], [1, 2], immutable=False) == [[1, 2], 9]
    assert call_args([9], [1, 2], immutable=True) == [9]
    assert call_args([9], [], immutable=False) == [9]


def test_eager_mode_runs_the_seed_canvas_in_process(eager: None) -> None:
    result = seed().apply_async()
    assert result.state == "SUCCESS"
    assert result.get() == {
        "file": "file-1",
        "sentiment": "positive",
        "summary": "text of file-1: the",
    }


def test_eager_delay_and_apply_async_give_an_async_result(eager: None) -> None:
    res = tasks.add.delay(2, 3)
    assert (res.state, res.get(), res.info) == ("SUCCESS", 5, 5)
    assert tasks.add.apply_async((1,), {"y": 1}).get() == 2
    failed = tasks.permanent.delay()
    assert failed.state == "FAILURE"
    with pytest.raises(TaskFailed, match="bad input"):
        failed.get()


def test_eager_failure_stops_the_canvas(eager: None) -> None:
    run = chain(tasks.add.s(1, 2), tasks.permanent.si(), tasks.add.s(1)).apply_async()
    assert run.state == "FAILURE" and run.failed_step == "permanent"
    assert "add-2" not in run.results
    with pytest.raises(TaskFailed):
        run.get()


def test_without_a_client_delay_says_how_to_configure() -> None:
    with pytest.raises(RuntimeError, match="configure"):
        tasks.add.delay(1, 2)


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def submit_call(self, task: str, args: Any, kwargs: Any, **options: Any) -> Any:
        self.calls.append(("job", (task, list(args), dict(kwargs), options)))
        return "handle"

    def submit_workflow(self, canvas: Any, **options: Any) -> Any:
        self.calls.append(("workflow", build_workflow(canvas, name="w")))
        return "wf-handle"


def test_configure_routes_calls_to_the_client() -> None:
    client = FakeClient()
    configure(client)  # type: ignore[arg-type]
    try:
        res = tasks.add.apply_async((1, 2), queue="fast")
        assert isinstance(res, AsyncResult)
        assert client.calls[0] == ("job", ("examples.add", [1, 2], {}, {"queue": "fast"}))
        assert seed().apply_async() == "wf-handle"
        assert client.calls[1][1]["spec"]["steps"][-1]["args"] == ["file-1"]
        # countdown/eta ride along to Client.submit_call (spec.countdownSeconds / startAt)
        tasks.add.apply_async((1, 2), countdown=60)
        assert client.calls[2] == ("job", ("examples.add", [1, 2], {}, {"countdown": 60}))
    finally:
        configure(None)


def test_workflow_view_reads_status() -> None:
    view = WorkflowView.from_object(
        {
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {"resumes": 1},
            "status": {
                "phase": "Failed",
                "failedStep": "b",
                "error": {"type": "E"},
                "completionTime": "x",
                "steps": [{"name": "a", "phase": "Succeeded"}, {"name": "b", "phase": "Failed"}],
                "resumes": 1,
            },
        }
    )
    assert view.state == "FAILURE" and view.finished and view.failed_step == "b"
    assert view.step("a") == {"name": "a", "phase": "Succeeded"}


def test_the_async_workflow_handle_waits_and_raises_on_failure() -> None:
    import asyncio

    from bgjobs.client.aio import AsyncClient, AsyncWorkflowHandle
    from bgjobs.errors import WorkflowFailed

    views = iter(
        [
            {"status": {"phase": "Running"}},
            {"status": {"phase": "Failed", "failedStep": "b", "completionTime": "t"}},
        ]
    )

    class Sync:
        name = "w"

        def get_view(self) -> WorkflowView:
            return WorkflowView.from_object({"metadata": {"name": "w"}, **next(views)})

    handle = AsyncWorkflowHandle(AsyncClient.__new__(AsyncClient), Sync())  # type: ignore[arg-type]
    with pytest.raises(WorkflowFailed, match="step 'b' failed"):
        asyncio.run(handle.get(timeout=5, poll=0.01))


def test_a_step_event_enqueues_its_workflow() -> None:

    from bgjobs.api import names
    from bgjobs_operator import handlers
    from bgjobs_operator.config import OperatorConfig
    from bgjobs_operator.runtime import Runtime

    rt = Runtime(config=OperatorConfig(), api=None)  # type: ignore[arg-type]
    handlers.install(rt)
    step = {
        "kind": "BackgroundJob",
        "metadata": {"name": "w-a", "namespace": "n", "labels": {names.WORKFLOW: "w"}},
        "status": {"phase": "Succeeded", "result": 1},
    }
    try:
        handlers.on_backgroundjob({"type": "MODIFIED", "object": step})
    finally:
        handlers._runtime = None
    queued = set()
    while rt.queue._ready.qsize():
        queued.add(rt.queue._ready.get_nowait())
    assert queued == {("BackgroundJob", "n", "w-a"), ("JobWorkflow", "n", "w")}
    assert rt.backgroundjobs.by_index("workflow", ("n", "w"))[0]["status"]["result"] == 1


def test_eager_map_starmap_and_chunks_run_every_item_with_its_own_result(eager: None) -> None:
    assert tasks.item.map([1, 2, 3]).get() == [2, 4, 6], "map: the element is the argument"
    assert tasks.add.starmap([(1, 2), {"x": 3, "y": 4}]).get() == [3, 7]
    chunked = tasks.add.chunks([(i, i) for i in range(10)], 4)
    assert chunked.get() == [2 * i for i in range(10)]
    mixed = tasks.item.starmap([(1,), (2, True), (3,)])
    assert mixed.state == "FAILURE"
    assert mixed.get(propagate=False)[0] == 2
    assert mixed.get(propagate=False)[1]["message"] == "item 2 refused"
    with pytest.raises(TaskFailed, match="item 2 refused"):
        mixed.get()


def test_map_submits_one_batch_through_the_client() -> None:
    from bgjobs.canvas import BatchCall, configure

    seen: list[tuple[str, list[Any], dict[str, Any]]] = []

    class Recorder:
        def map(self, task: str, items: list[Any], **options: Any) -> str:
            seen.append((task, items, options))
            return "handle"

    configure(Recorder())  # type: ignore[arg-type]
    try:
        result = tasks.add.chunks([(1, 2), (3, 4)], 2, parallelism=3)
    finally:
        configure(None)
    assert seen == [("examples.add", [[1, 2], [3, 4]], {"parallelism": 3, "chunk_size": 2})]
    assert result.handle == "handle"
    with pytest.raises(TypeError, match="cannot be a workflow step"):
        flatten(chain(tasks.add.s(1, 2), BatchCall("examples.add", ([1, 2],))))  # type: ignore[arg-type]
