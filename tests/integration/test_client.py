"""The Python client against devcluster: the real API server (CRD schema and CEL), the real
operator, Job controller, process node and Redis."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from bgjobs.client import AsyncClient, Client
from bgjobs.errors import (
    Conflict,
    InvalidSpec,
    JobCancelled,
    JobFailed,
    JobTimeout,
    NotFound,
)
from tests.integration.support import BgJobs, wait_for


@pytest.fixture
def jobs(bgjobs: BgJobs, api_client: client.ApiClient) -> Client:
    return Client(bgjobs.namespace, api_client=api_client)


def pods_of(core: client.CoreV1Api, ns: str, job: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


def test_submit_wait_result(jobs: Client) -> None:
    handle = jobs.submit("examples.add", 40, 2)
    assert handle.created and handle.name.startswith("examples-add-")
    assert handle.result(timeout=60) == 42
    view = jobs.get(handle.name)
    assert view.succeeded and view.attempts == 1
    assert view.completed is not None and view.started is not None
    assert (view.condition("Succeeded") or {}).get("status") == "True"
    assert [v.name for v in jobs.list(task="examples.add")] == [handle.name]
    assert [v.name for v in jobs.list(phase="Succeeded")] == [handle.name]
    assert jobs.list(phase="Failed") == [] and jobs.list(task="examples.noop") == []


def test_idempotent_resubmission_runs_the_task_once(jobs: Client, core: client.CoreV1Api) -> None:
    key = f"order-{random.randint(0, 10**9)}"
    first = jobs.submit("examples.add", 1, 2, idempotency_key=key)
    again = jobs.submit("examples.add", 1, 2, idempotency_key=key)
    assert first.created and not again.created
    assert again.name == first.name
    assert first.result(timeout=60) == 3
    # After it finished, too: the same job and its result, no second run.
    late = jobs.submit("examples.add", 1, 2, idempotency_key=key)
    assert late.name == first.name and not late.created
    assert late.result(timeout=5) == 3
    assert len(pods_of(core, jobs.namespace, first.name)) == 1
    assert [v.name for v in jobs.list()] == [first.name]
    # Another task whose name maps to the same job name cannot take the key over.
    with pytest.raises(Conflict, match=r"examples\.add"):
        jobs.submit("examples_add", idempotency_key=key)


def test_cancel_a_running_job(jobs: Client) -> None:
    handle = jobs.submit("examples.sleep", seconds=600)
    wait_for(lambda: handle.get().phase == "Running", timeout=60, what="Running")
    assert handle.cancel().cancel_requested
    with pytest.raises(JobCancelled):
        handle.result(timeout=60)
    assert jobs.get(handle.name).condition("Cancelled") is not None


def test_replay_a_dead_letter(jobs: Client, core: client.CoreV1Api) -> None:
    handle = jobs.submit("examples.permanent", max_retries=0)
    with pytest.raises(JobFailed) as failed:
        handle.result(timeout=60)
    assert failed.value.error["exitCode"] == 3
    assert failed.value.error["message"] == "bad input"
    dl = failed.value.dead_letter
    assert dl is not None
    assert [d.name for d in jobs.dead_letters(task="examples.permanent")] == [dl]
    assert jobs.dead_letter(dl).job_name == handle.name

    first = jobs.replay(dl)
    assert first == f"{dl}-r1"
    replayed = wait_for(lambda: jobs.get(first), timeout=30, what="the replayed job")
    assert replayed.task == "examples.permanent"
    with pytest.raises(JobFailed):
        jobs.result(first, timeout=60)
    assert len(pods_of(core, jobs.namespace, first)) == 1
    # Concurrent replays: each increment lands once (resourceVersion + retry on 409).
    with ThreadPoolExecutor(3) as pool:
        names = set(pool.map(lambda _: jobs.replay(dl), range(3)))
    assert names == {f"{dl}-r2", f"{dl}-r3", f"{dl}-r4"}
    assert jobs.dead_letter(dl).replays == 4
    for name in names:
        wait_for(lambda name=name: jobs.get(name), timeout=30, what=f"replay {name}")


def test_typed_errors(jobs: Client) -> None:
    with pytest.raises(NotFound) as missing:
        jobs.get("no-such-job")
    assert (
        str(missing.value)
        == f'backgroundjob "no-such-job" not found in namespace "{jobs.namespace}"'
    )
    with pytest.raises(NotFound):
        jobs.cancel("no-such-job")
    with pytest.raises(NotFound, match="deadletter"):
        jobs.replay("no-such-dead-letter")

    # Refused by the CRD's CEL rule, with the API server's own message.
    with pytest.raises(InvalidSpec) as invalid:
        jobs.submit("examples.add", 1, 2, soft_time_limit=10, time_limit=5)
    assert (
        "timeLimits.softSeconds must be less than timeLimits.hardSeconds" in invalid.value.message
    )
    assert jobs.list() == [], "nothing was created"

    handle = jobs.submit("examples.sleep", name="held", seconds=600)
    with pytest.raises(Conflict, match="already exists"):
        jobs.submit("examples.sleep", name="held", seconds=1)
    with pytest.raises(JobTimeout) as late:
        handle.wait(timeout=1)
    assert late.value.last is not None and not late.value.last.terminal
    handle.delete()
    wait_for(lambda: not jobs.list(), timeout=30, what="the job deleted")

    failing = jobs.submit("examples.always_fails", max_retries=0)
    with pytest.raises(JobFailed) as failed:
        failing.result(timeout=60)
    assert failed.value.error["type"] == "RuntimeError"
    assert failed.value.error["reason"] == "BackoffLimitExceeded"


def test_async_client(jobs: Client) -> None:
    async def scenario() -> tuple[object, str]:
        ajobs = AsyncClient(client=jobs)
        handle = await ajobs.submit("examples.add", 20, 22)
        result = await handle.result(timeout=60)
        return result, (await ajobs.get(handle.name)).phase

    assert asyncio.run(scenario()) == (42, "Succeeded")


def test_a_decorated_rate_limit_is_held_to_its_job_queue(jobs: Client, bgjobs: BgJobs) -> None:
    """@task(rate_limit="30/m", queue=...) means what Celery users expect only if the
    JobQueue enforces it: the client refuses the submission until it does, creating
    nothing, then submits into that queue."""
    from bgjobs.errors import RateLimitNotEnforced
    from bgjobs_worker.registry import task

    @task(name="tests.rated_mail", queue="rated-mail", rate_limit="30/m")
    def rated_mail(to: str) -> str:
        return to

    with pytest.raises(RateLimitNotEnforced, match="has no JobQueue"):
        jobs.submit("tests.rated_mail", "ada@example.com")
    bgjobs.create(
        "jobqueues",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": "rated-mail"},
            "spec": {"rateLimit": "10/m"},
        },
    )
    with pytest.raises(RateLimitNotEnforced, match="has rateLimit 10/m; make it 30/m"):
        jobs.submit("tests.rated_mail", "ada@example.com")
    assert jobs.list(task="tests.rated_mail") == [], "a refused submission creates nothing"
    bgjobs.patch("rated-mail", {"spec": {"rateLimit": "30/m"}}, plural="jobqueues")
    handle = jobs.submit("tests.rated_mail", "ada@example.com")
    assert jobs.get(handle.name).queue == "rated-mail"
