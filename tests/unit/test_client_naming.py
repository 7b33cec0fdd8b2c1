"""Names the client gives BackgroundJobs, and the object it builds for a submission."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjobs.api.v1alpha1 import BackgroundJob
from bgjobs.client import (
    IDEMPOTENCY_ANNOTATION,
    build_background_job,
    generate_name,
    idempotent_name,
    replay_name,
    task_prefix,
)
from bgjobs.errors import InvalidSpec
from bgjobs_operator.deadletters import replay_name as operator_replay_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("task", "prefix"),
    [
        ("examples.add", "examples-add"),
        ("Reports.Export_CSV", "reports-export-csv"),
        ("app.tasks:send-email", "app-tasks-send-email"),
        ("_private..task_", "private-task"),
        ("___", "job"),
        ("", "job"),
    ],
)
def test_task_prefix(task: str, prefix: str) -> None:
    assert task_prefix(task) == prefix


def test_generated_name_is_prefix_and_five_random_characters() -> None:
    assert generate_name("examples.add", rand=lambda alphabet: alphabet[0]) == "examples-add-bbbbb"
    names = {generate_name("examples.add") for _ in range(200)}
    assert len(names) == 200
    assert all(re.fullmatch(r"examples-add-[bcdfghjklmnpqrstvwxz2456789]{5}", n) for n in names)


def test_idempotent_name_is_the_task_prefix_and_a_hash_of_the_key() -> None:
    digest = hashlib.sha256(b"order-1234").hexdigest()[:10]
    assert idempotent_name("examples.add", "order-1234") == f"examples-add-{digest}"
    assert idempotent_name("examples.add", "order-1234") == idempotent_name(
        "examples.add", "order-1234"
    )
    assert idempotent_name("examples.add", "order-1235") != idempotent_name(
        "examples.add", "order-1234"
    )
    # Tasks whose names map to the same prefix share a name: the client detects that and
    # raises Conflict rather than return another task's job.
    assert idempotent_name("examples_add", "k") == idempotent_name("examples.add", "k")


@given(task=st.text(max_size=300), key=st.text(max_size=300))
def test_names_are_dns_labels_within_63_characters(task: str, key: str) -> None:
    for name in (generate_name(task), idempotent_name(task, key)):
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name


@pytest.mark.parametrize("name", ["perm-1a2b3c4d", "x" * 55 + "-1a2b3c4d", "y" * 70])
@pytest.mark.parametrize("n", [1, 7, 100])
def test_replay_name_agrees_with_the_operator(name: str, n: int) -> None:
    assert replay_name(name, n) == operator_replay_name({"metadata": {"name": name}}, n)
    assert len(replay_name(name, n)) <= 63


def test_minimal_submission_leaves_defaults_to_the_crd() -> None:
    body = build_background_job("examples.add", [40, 2], name="add-1")
    assert body == {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "add-1"},
        "spec": {"task": "examples.add", "args": [40, 2], "kwargs": {}},
    }


def test_every_option_lands_in_the_spec_and_matches_the_api_types() -> None:
    body = build_background_job(
        "reports.export",
        [7],
        {"fmt": "csv"},
        name="reports-export-abcde",
        idempotency_key="export-7",
        queue="reports",
        max_retries=5,
        retry_on=[ConnectionError, "TimeoutError"],
        permanent_on=[ValueError],
        soft_time_limit=24.2,
        time_limit=timedelta(seconds=30),
        deadline=timedelta(minutes=10),
        critical=True,
        image="registry.local/worker:1",
        env={"MODE": "fast"},
        labels={"team": "billing"},
    )
    spec = body["spec"]
    assert spec["retry"] == {
        "maxRetries": 5,
        "retryOn": ["ConnectionError", "TimeoutError"],
        "permanentOn": ["ValueError"],
    }
    assert spec["timeLimits"] == {"softSeconds": 25, "hardSeconds": 30}, "rounded up"
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["queue"] == "reports"
    assert spec["critical"] is True
    assert spec["image"] == "registry.local/worker:1"
    assert spec["env"] == [{"name": "MODE", "value": "fast"}]
    assert body["metadata"]["labels"] == {"team": "billing"}
    assert body["metadata"]["annotations"] == {IDEMPOTENCY_ANNOTATION: "export-7"}
    # The API types accept it as it is (extra="forbid" catches misspelt fields).
    BackgroundJob.model_validate(body)


def test_arguments_must_be_json() -> None:
    with pytest.raises(InvalidSpec, match="args must be JSON-serializable"):
        build_background_job("t", [object()], name="t")
    with pytest.raises(InvalidSpec, match="kwargs must be JSON-serializable"):
        build_background_job("t", [], {"x": float("nan")}, name="t")
    # Tuples become lists, as the worker will see them.
    assert build_background_job("t", [(1, 2)], name="t")["spec"]["args"] == [[1, 2]]


def test_time_limits_must_be_positive() -> None:
    with pytest.raises(InvalidSpec, match="positive"):
        build_background_job("t", name="t", time_limit=0)


def test_delayed_start_and_priority_options() -> None:
    from datetime import UTC, datetime

    body = build_background_job("t", name="t", countdown=timedelta(seconds=59.5), priority=3)
    assert body["spec"]["countdownSeconds"] == 60 and body["spec"]["priority"] == 3
    eta = datetime(2030, 1, 1, 9, 30, tzinfo=UTC)
    body = build_background_job("t", name="t", eta=eta)
    assert body["spec"]["startAt"] == "2030-01-01T09:30:00+00:00"
    BackgroundJob.model_validate(body)
    with pytest.raises(InvalidSpec, match="not both"):
        build_background_job("t", name="t", eta=eta, countdown=5)
    with pytest.raises(InvalidSpec, match="aware"):
        build_background_job("t", name="t", eta=datetime(2030, 1, 1))


def test_the_task_decorators_queue_is_used_when_submitting_without_one() -> None:
    from bgjobs.client.task_options import declared
    from bgjobs_worker.registry import task, unregister

    @task(name="tests.heavy_render", queue="heavy")
    def render() -> None:
        pass

    try:
        assert declared("tests.heavy_render").queue == "heavy"
        assert declared("tests.unknown").queue is None
    finally:
        unregister("tests.heavy_render")


def test_a_map_submission_is_a_batch_the_api_accepts() -> None:
    body = build_background_job(
        "billing.invoice",
        name="billing-invoice-abcde",
        items=[(1, "eur"), {"subscription_id": 2}, 3],
        parallelism=4,
        chunk_size=10,
        max_failed_items=0,
    )
    spec = body["spec"]
    assert spec["items"] == [[1, "eur"], {"subscription_id": 2}, [3]]
    assert (spec["parallelism"], spec["chunkSize"], spec["maxFailedItems"]) == (4, 10, 0)
    assert spec["args"] == [] and spec["kwargs"] == {}
    BackgroundJob.model_validate(body)
