"""Eager mode: the worker's attempt loop in-process, for users' unit tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import examples.tasks as ex
from bgjobs_worker import PermanentError, SoftTimeLimitExceeded, TaskContext, current_task, eager
from bgjobs_worker.errors import TaskNotRegistered
from bgjobs_worker.registry import task, unregister


@pytest.fixture
def fresh_name() -> Iterator[str]:
    name = f"tests.eager.{uuid.uuid4().hex[:8]}"
    yield name
    unregister(name)


def test_success_by_name_and_by_task() -> None:
    by_name = eager.run("examples.add", 2, 3)
    assert (by_name.status, by_name.result, by_name.attempts, by_name.exit_code) == (
        "SUCCESS",
        5,
        1,
        0,
    )
    assert by_name.error is None
    assert by_name.successful
    assert eager.run(ex.add, x=1, y=1).result == 2


def test_retries_until_success_and_attempts_count() -> None:
    result = eager.run("examples.flaky", fail_times=2, max_retries=3)
    assert result.status == "SUCCESS"
    assert result.result == {"attempt": 3}
    assert result.attempts == 3


def test_retries_run_out() -> None:
    result = eager.run("examples.flaky", fail_times=5, max_retries=2)
    assert result.status == "FAILURE"
    assert result.attempts == 3
    assert result.exit_code == 1
    assert result.error == {
        "type": "ConnectionError",
        "message": "upstream unavailable (attempt 3)",
    }


def test_fallback_on_last_attempt() -> None:
    result = eager.run("examples.fallback", max_retries=2)
    assert (result.status, result.result, result.attempts) == ("SUCCESS", {"fallback": True}, 3)
    assert eager.run("examples.fallback").attempts == 1  # no retries: the first is the last


def test_permanent_error_is_not_retried() -> None:
    result = eager.run("examples.permanent", max_retries=5)
    assert result.attempts == 1
    assert result.exit_code == 3
    assert result.error == {"type": "bgjobs_worker.errors.PermanentError", "message": "bad input"}


def test_exception_outside_retry_on_is_permanent() -> None:
    # examples.flaky retries only ConnectionError; the spec may narrow it to something else.
    result = eager.run("examples.flaky", fail_times=5, max_retries=3, retry_on=["TimeoutError"])
    assert (result.attempts, result.exit_code) == (1, 3)
    result = eager.run("examples.always_fails", max_retries=2, permanent_on=[RuntimeError])
    assert (result.attempts, result.exit_code) == (1, 3)
    result = eager.run("examples.always_fails", max_retries=2)
    assert (result.attempts, result.exit_code) == (3, 1)


def test_bad_arguments_are_permanent() -> None:
    result = eager.run("examples.add", 1, max_retries=3)
    assert (result.status, result.attempts, result.exit_code) == ("FAILURE", 1, 3)
    assert result.error is not None
    assert result.error["type"] == "bgjobs_worker.errors.InvalidArguments"


def test_every_progress_report_is_kept() -> None:
    result = eager.run("examples.progress", steps=4, delay=0)
    assert result.result == {"steps": 4}
    assert [p["percent"] for p in result.progress] == [25.0, 50.0, 75.0, 100.0]
    assert [p["current"] for p in result.progress] == [1, 2, 3, 4]
    assert {p["attempt"] for p in result.progress} == {1}


def test_export_reports_per_chunk() -> None:
    result = eager.run("examples.export", total_records=2500, batch_size=1000, delay=0)
    assert result.result["records"] == 2500
    assert result.result["parts"] == 3
    assert [p["current"] for p in result.progress] == [0, 1000, 2000, 2500, 2500]
    assert result.progress[-1]["stage"] == "uploading"
    assert eager.run("examples.export", batch_size=0, max_retries=3).attempts == 1


def test_progress_of_every_attempt_is_kept(fresh_name: str) -> None:
    @task(name=fresh_name, bind=True)
    def stepper(ctx: TaskContext) -> int:
        ctx.progress(percent=10 * ctx.attempt)
        if not ctx.is_last_attempt:
            raise ConnectionError("again")
        return ctx.attempt

    result = eager.run(fresh_name, max_retries=2)
    assert result.result == 3
    assert [(p["attempt"], p["percent"]) for p in result.progress] == [
        (1, 10.0),
        (2, 20.0),
        (3, 30.0),
    ]


def test_result_goes_through_json(fresh_name: str) -> None:
    @task(name=fresh_name)
    def returns_tuple() -> tuple[int, int]:
        return (1, 2)

    assert eager.run(fresh_name).result == [1, 2]


def test_unserialisable_result_is_permanent(fresh_name: str) -> None:
    @task(name=fresh_name)
    def returns_object() -> object:
        return object()

    result = eager.run(fresh_name, max_retries=2)
    assert (result.status, result.attempts, result.exit_code) == ("FAILURE", 1, 3)
    assert result.error is not None
    assert result.error["type"] == "bgjobs_worker.errors.ResultNotSerializable"


def test_unbound_task_uses_current_task(fresh_name: str) -> None:
    @task(name=fresh_name)
    def unbound() -> tuple[int, bool, str]:
        ctx = current_task()
        ctx.progress(current=1, total=2)
        return ctx.attempt, ctx.is_last_attempt, ctx.task_name

    result = eager.run(fresh_name)
    assert result.result == [1, True, fresh_name]
    assert result.progress[0]["percent"] == 50.0


def test_soft_time_limit_raised_by_task_maps_to_exit_4(fresh_name: str) -> None:
    @task(name=fresh_name)
    def too_slow() -> None:
        raise SoftTimeLimitExceeded("pretend the alarm fired")

    result = eager.run(fresh_name, max_retries=1)
    assert (result.exit_code, result.attempts) == (4, 2)


def test_permanent_error_subclass_in_user_code(fresh_name: str) -> None:
    class NotFound(PermanentError):
        pass

    @task(name=fresh_name, retry_on=(NotFound,))  # even listed, permanent stays permanent
    def lookup() -> None:
        raise NotFound("gone")

    assert eager.run(fresh_name, max_retries=3).attempts == 1


def test_unknown_task_name_raises() -> None:
    with pytest.raises(TaskNotRegistered):
        eager.run("examples.does_not_exist")
