"""Reading a BackgroundJob's status into a JobView, Celery's state names, and the typed
errors made from the Kubernetes client's exceptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from bgjobs.client import DeadLetterView, JobView, api_errors, celery_state, percent_of
from bgjobs.errors import (
    ApiError,
    ClusterUnreachable,
    Conflict,
    InvalidSpec,
    JobFailed,
    NotFound,
    describe_error,
)
from examples.fastapi_app import task_state

FAILED_JOB: dict[str, Any] = {
    "apiVersion": "bgjobs.dev/v1alpha1",
    "kind": "BackgroundJob",
    "metadata": {
        "name": "perm",
        "namespace": "shop",
        "uid": "0f7c",
        "resourceVersion": "812",
        "creationTimestamp": "2025-03-01T10:00:00Z",
        "annotations": {"bgjobs.dev/idempotency-key": "order-9"},
    },
    "spec": {"task": "examples.permanent", "args": [1], "kwargs": {"a": 2}, "queue": "q1"},
    "status": {
        "phase": "Failed",
        "attempts": 1,
        "jobName": "perm",
        "startTime": "2025-03-01T10:00:01Z",
        "completionTime": "2025-03-01T10:00:03Z",
        "progress": {"current": 3, "total": 4, "stage": "rows", "message": None},
        "error": {
            "type": "PermanentError",
            "message": "bad input",
            "exitCode": 3,
            "attempt": 1,
            "reason": "PodFailurePolicy",
        },
        "deadLetter": {"name": "perm-0f7c0000"},
        "conditions": [
            {"type": "Running", "status": "False", "reason": "Failed"},
            {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"},
        ],
    },
}


def test_job_view_reads_status() -> None:
    view = JobView.from_object(FAILED_JOB)
    assert (view.name, view.namespace, view.task, view.queue) == (
        "perm",
        "shop",
        "examples.permanent",
        "q1",
    )
    assert view.phase == "Failed" and view.failed and view.terminal and not view.succeeded
    assert view.attempts == 1
    assert view.progress == {"current": 3, "total": 4, "stage": "rows"}, "None fields dropped"
    assert view.percent == 75.0, "computed from current/total when percent is absent"
    assert view.error is not None and view.error["exitCode"] == 3
    assert view.dead_letter == "perm-0f7c0000"
    assert view.created == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert view.completed == datetime(2025, 3, 1, 10, 0, 3, tzinfo=UTC)
    assert view.condition("Failed") == {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
    }
    assert view.condition("Succeeded") is None
    assert (view.args, view.kwargs) == ([1], {"a": 2})
    assert view.idempotency_key == "order-9"
    assert view.resource_version == "812"
    assert view.celery_state == "FAILURE"


def test_a_job_without_status_is_pending() -> None:
    view = JobView.from_object({"metadata": {"name": "new"}, "spec": {"task": "t"}})
    assert view.phase == "Pending" and not view.terminal
    assert (view.attempts, view.progress, view.percent, view.error) == (0, {}, None, None)
    assert view.queue == "default"


@pytest.mark.parametrize(
    ("progress", "percent"),
    [
        (None, None),
        ({}, None),
        ({"percent": 40}, 40),
        ({"percent": 40, "current": 1, "total": 2}, 40),
        ({"current": 1, "total": 4}, 25.0),
        ({"current": 5, "total": 0}, None),
        ({"current": 9, "total": 4}, 100.0),
        ({"stage": "x"}, None),
    ],
)
def test_percent(progress: dict[str, Any] | None, percent: float | None) -> None:
    assert percent_of(progress) == percent


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("Pending", "PENDING"),
        ("Running", "STARTED"),
        ("Retrying", "RETRY"),
        ("Succeeded", "SUCCESS"),
        ("Failed", "FAILURE"),
        ("Cancelled", "REVOKED"),
        (None, "PENDING"),
        ("SomethingNew", "PENDING"),
    ],
)
def test_celery_state(phase: str | None, state: str) -> None:
    assert celery_state(phase) == state


def test_api_task_state_for_a_running_and_a_failed_job() -> None:
    running = JobView.from_object(
        {
            "metadata": {"name": "exp"},
            "spec": {"task": "examples.export"},
            "status": {
                "phase": "Running",
                "progress": {"current": 2000, "total": 5000, "percent": 40, "stage": "exporting"},
                "result": "stale",
            },
        }
    )
    doc = task_state(running).model_dump()
    assert doc["state"] == "STARTED" and doc["phase"] == "Running"
    assert doc["progress"] == {
        "current": 2000,
        "total": 5000,
        "percent": 40,
        "stage": "exporting",
        "message": None,
    }
    assert doc["result"] is None, "only a succeeded job has a result"
    failed = task_state(JobView.from_object(FAILED_JOB)).model_dump()
    assert failed["state"] == "FAILURE"
    assert failed["error"]["message"] == "bad input"


def test_dead_letter_view() -> None:
    dl = DeadLetterView.from_object(
        {
            "metadata": {"name": "perm-0f7c0000", "namespace": "shop", "resourceVersion": "9"},
            "spec": {
                "jobName": "perm",
                "jobUID": "0f7c",
                "task": "examples.permanent",
                "error": {"type": "PermanentError"},
                "attempts": 1,
                "replays": 2,
                "critical": True,
                "failedAt": "2025-03-01T10:00:03Z",
            },
            "status": {"replayedJobs": ["perm-0f7c0000-r1", "perm-0f7c0000-r2"]},
        }
    )
    assert (dl.job_name, dl.task, dl.replays, dl.critical) == (
        "perm",
        "examples.permanent",
        2,
        True,
    )
    assert dl.replayed_jobs == ["perm-0f7c0000-r1", "perm-0f7c0000-r2"]
    assert dl.failed_at == datetime(2025, 3, 1, 10, 0, 3, tzinfo=UTC)


def _raise(exc: BaseException, **where: str) -> BaseException:
    with pytest.raises(Exception) as info, api_errors("https://k8s:6443", **where):
        raise exc
    return info.value


def test_api_errors_become_typed_errors() -> None:
    not_found = _raise(ApiException(status=404, reason="Not Found"), name="x", namespace="ns")
    assert isinstance(not_found, NotFound)
    assert str(not_found) == 'backgroundjob "x" not found in namespace "ns"'

    body = {
        "kind": "Status",
        "message": 'BackgroundJob.bgjobs.dev "x" is invalid: spec: Invalid value: '
        "timeLimits.softSeconds must be less than timeLimits.hardSeconds",
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": "spec"}]},
    }
    invalid = _raise(ApiException(status=422, reason="Unprocessable", body=json.dumps(body)))
    assert isinstance(invalid, InvalidSpec)
    assert invalid.message == body["message"]
    assert invalid.causes == [{"reason": "FieldValueInvalid", "field": "spec"}]

    conflict = _raise(ApiException(status=409, reason="Conflict", body='{"message": "exists"}'))
    assert isinstance(conflict, Conflict) and str(conflict) == "exists"

    other = _raise(ApiException(status=403, reason="Forbidden", body='{"message": "no RBAC"}'))
    assert isinstance(other, ApiError) and other.status == 403 and "no RBAC" in str(other)

    refused = MaxRetryError(
        None,  # type: ignore[arg-type]
        "/apis",
        NewConnectionError(
            None, "Failed to establish a new connection: [Errno 111] Connection refused"
        ),  # type: ignore[arg-type]
    )
    down = _raise(refused)
    assert isinstance(down, ClusterUnreachable)
    assert down.server == "https://k8s:6443"
    assert down.reason == "[Errno 111] Connection refused"


def test_job_failed_carries_the_error() -> None:
    exc = JobFailed(JobView.from_object(FAILED_JOB))
    assert exc.error["type"] == "PermanentError" and exc.dead_letter == "perm-0f7c0000"
    assert str(exc) == (
        "backgroundjob 'perm' failed: PermanentError: bad input "
        "(PodFailurePolicy, exit code 3, attempt 1)"
    )


def test_describe_error_without_details() -> None:
    assert describe_error(None) == "no error recorded"
    assert describe_error({"reason": "DeadlineExceeded"}) == "failed (DeadlineExceeded)"


class FakeDeadLetters:
    """Stands in for CustomObjectsApi: a dead letter whose replays another writer raises
    between our read and our write, once."""

    def __init__(self) -> None:
        self.replays, self.version = 0, 1
        self.patches: list[dict[str, Any]] = []
        self.race_once = True

    def get_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": args[4], "resourceVersion": str(self.version)},
            "spec": {"jobName": "perm", "task": "t", "replays": self.replays},
        }

    def patch_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        patch = args[5]
        self.patches.append(patch)
        if self.race_once:  # someone else replays first
            self.race_once = False
            self.replays, self.version = self.replays + 1, self.version + 1
        if patch["metadata"]["resourceVersion"] != str(self.version):
            raise ApiException(status=409, reason="Conflict", body='{"message": "modified"}')
        self.replays, self.version = patch["spec"]["replays"], self.version + 1
        return {}


def test_replay_is_an_optimistic_concurrency_update() -> None:
    from types import SimpleNamespace

    from bgjobs.client import Client

    api = SimpleNamespace(configuration=SimpleNamespace(host="https://k8s"))
    jobs = Client("shop", api_client=api)
    fake = FakeDeadLetters()
    jobs.custom = fake  # type: ignore[assignment]
    assert jobs.replay("perm-1234abcd") == "perm-1234abcd-r2", "the other writer took r1"
    assert fake.replays == 2
    assert [p["metadata"]["resourceVersion"] for p in fake.patches] == ["1", "2"]
    assert [p["spec"]["replays"] for p in fake.patches] == [1, 2]


def test_views_parse_status_into_the_operators_models() -> None:
    view = JobView.from_object(FAILED_JOB)
    assert view.status.phase == "Failed" and view.status.error is not None
    assert view.status.error.exitCode == 3, "typed, not a dict"
    assert view.status.progress is not None and view.status.progress.total == 4


def test_status_fields_a_newer_operator_wrote_are_dropped_not_fatal() -> None:
    obj = {
        "metadata": {"name": "j"},
        "spec": {"task": "t"},
        "status": {"phase": "Running", "attempts": 2, "somethingNew": {"x": 1}},
    }
    view = JobView.from_object(obj)
    assert (view.phase, view.attempts) == ("Running", 2)


def test_a_status_that_does_not_validate_reads_as_defaults() -> None:
    obj = {"metadata": {"name": "j"}, "spec": {"task": "t"}, "status": {"phase": "Exploded"}}
    assert JobView.from_object(obj).phase == "Pending"
