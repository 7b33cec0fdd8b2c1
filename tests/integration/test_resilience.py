"""Restart safety and degraded dependencies: the operator SIGKILLed mid-flight, Redis
stopped mid-run. Nothing is duplicated, nothing is lost."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

from kubernetes import client

from tests.integration.support import BgJobs, OperatorProcess, RedisServer, wait_for


def operator_creates(audit_log: str, namespace: str) -> Counter[tuple[str, str]]:
    """Successful creates by the operator in namespace, by (resource, name)."""
    made: Counter[tuple[str, str]] = Counter()
    with open(audit_log) as f:
        for line in f:
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if (
                e.get("verb") == "create"
                and ref.get("namespace") == namespace
                and e.get("userAgent", "").startswith("bgjobs-operator/")
                and e.get("stage") == "ResponseComplete"
                and (e.get("responseStatus") or {}).get("code") == 201
            ):
                made[(ref.get("resource"), ref.get("name"))] += 1
    return made


def test_operator_sigkill_with_50_jobs_in_flight(
    bgjobs: BgJobs, operator: OperatorProcess, devcluster
) -> None:  # type: ignore[no-untyped-def]
    expected = {}
    for i in range(50):
        name = f"j{i:02d}"
        if i % 5 == 0:
            bgjobs.submit(name, "examples.permanent", retry={"maxRetries": 0})
            expected[name] = "Failed"
        elif i % 7 == 0:
            bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 3})
            expected[name] = "Succeeded"
        else:
            bgjobs.submit(name, "examples.add", args=[i, 1])
            expected[name] = "Succeeded"
    time.sleep(2)
    operator.kill()
    time.sleep(3)  # the cluster moves on without it: Jobs finish, nobody records them
    operator.start()

    def all_done() -> bool:
        phases = {
            j["metadata"]["name"]: (j.get("status") or {}).get("phase")
            for j in bgjobs.list("backgroundjobs")
        }
        return all(phases.get(n) in ("Succeeded", "Failed", "Cancelled") for n in expected)

    wait_for(all_done, timeout=300, what="all 50 jobs to finish", interval=1)
    jobs = {j["metadata"]["name"]: j for j in bgjobs.list("backgroundjobs")}
    assert {n: jobs[n]["status"]["phase"] for n in expected} == expected
    for n, phase in expected.items():
        if phase == "Succeeded" and n.startswith("j") and expected[n] == "Succeeded":
            assert jobs[n]["status"].get("attempts") == 1
    creates = operator_creates(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
    job_creates = {name: c for (res, name), c in creates.items() if res == "jobs"}
    assert set(job_creates) == set(expected)
    assert set(job_creates.values()) == {1}, "a BackgroundJob got a second Job"
    dead = [d["spec"]["jobName"] for d in bgjobs.list("deadletters")]
    assert sorted(dead) == sorted(n for n, p in expected.items() if p == "Failed")
    assert all(c == 1 for (res, _), c in creates.items() if res == "deadletters")
    assert operator.alive()


def test_redis_outage_loses_no_outcome_and_progress_resumes(
    bgjobs: BgJobs, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    for name in ("a", "b"):
        bgjobs.submit(name, "examples.progress", kwargs={"steps": 10, "delay": 0.6})
    for name in ("a", "b"):
        bgjobs.wait_phase(name, "Running", timeout=60)
    redis_server.stop()
    try:
        for name in ("a", "b"):
            st = bgjobs.wait_phase(name, timeout=90)
            assert st["phase"] == "Succeeded"
            assert st["result"] == {"steps": 10}, "result came through the termination message"
            assert st["progress"]["current"] == 10, "and the last progress with it"
        assert operator.alive()
    finally:
        redis_server.resume()
    bgjobs.submit("c", "examples.progress", kwargs={"steps": 10, "delay": 0.6})

    def midway() -> bool:
        pct = (bgjobs.status("c").get("progress") or {}).get("percent")
        return pct is not None and 0 < pct < 100

    wait_for(midway, timeout=60, what="progress to flow again after Redis returned")
    assert bgjobs.wait_phase("c", timeout=60)["phase"] == "Succeeded"
    assert "Redis at" in operator.log_text() and "unreachable" in operator.log_text()


def test_progress_reported_during_a_redis_outage_lands_when_redis_returns(
    bgjobs: BgJobs, redis_server: RedisServer
) -> None:
    """The task reports stage "two" while Redis is down and nothing after it for 12 s: the
    worker keeps that snapshot and retries, so the job shows "two" while still running
    (before the fix the snapshot was dropped and "two" never appeared)."""
    bgjobs.submit("rare", "examples.stages", kwargs={"names": ["one", "two"], "seconds": 12})

    def stage() -> str | None:
        return (bgjobs.status("rare").get("progress") or {}).get("stage")

    wait_for(lambda: stage() == "one", timeout=60, what='stage "one" in status')
    redis_server.stop()
    try:
        time.sleep(13)  # "two" is reported meanwhile, into the outage
    finally:
        redis_server.resume()
    wait_for(
        lambda: stage() == "two" and bgjobs.status("rare").get("phase") == "Running",
        timeout=10,
        what='stage "two" in status while the job still runs',
    )
    assert bgjobs.wait_phase("rare", timeout=60)["phase"] == "Succeeded"


def test_attempt_numbers_survive_redis_losing_its_data_between_attempts(
    bgjobs: BgJobs, redis_server: RedisServer
) -> None:
    """Redis emptied while a job waits to retry: the operator puts the Job's counted
    failures back under the attempt counter, so the next pod is attempt 2, not 1 again, and
    the task's ctx.attempt agrees with status.attempts to the end."""
    import redis

    bgjobs.submit("numbered", "examples.flaky", kwargs={"fail_times": 2}, retry={"maxRetries": 4})
    wait_for(
        lambda: bgjobs.status("numbered").get("phase") == "Retrying",
        timeout=60,
        what="the first attempt to fail",
    )
    redis.Redis.from_url(redis_server.url).flushall()  # as a Redis restarted without its data
    st = bgjobs.wait_phase("numbered", timeout=180)
    assert st["phase"] == "Succeeded"
    assert st["attempts"] == 3 and st["result"] == {"attempt": 3}, st


def test_deleting_a_namespace_with_running_jobs_is_not_a_failure(  # type: ignore[no-untyped-def]
    api_client, operator
) -> None:
    """Jobs (a batch among them) vanishing with their namespace are normal: the namespace
    goes, with no JobLost, no DeadLetter attempt, no error or traceback in the operator's
    log (it used to log `reconciling BackgroundJob failed` with `... because it is being
    terminated` for each). The batch's namespace used to stay Terminating for good: its
    failed pods kept the Job controller's tracking finalizer, waiting for replacements
    that a terminating namespace refuses, and the namespace waited for its pods first."""
    core = client.CoreV1Api(api_client)
    ns = f"t-gone-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait_for(
        lambda: core.read_namespaced_service_account("default", ns),
        timeout=30,
        what=f"default ServiceAccount in {ns}",
    )
    bgjobs = BgJobs(client.CustomObjectsApi(api_client), ns)
    for i in range(3):
        bgjobs.submit(f"long-{i}", "examples.sleep", kwargs={"seconds": 60})
    # A batch too: one Indexed Job with backoffLimitPerIndex, its pods mid-item.
    bgjobs.submit(
        "long-batch",
        "examples.item",
        items=[{"n": i, "delay": 5} for i in range(20)],
        parallelism=2,
    )
    names = [f"long-{i}" for i in range(3)] + ["long-batch"]
    wait_for(
        lambda: all(bgjobs.status(n).get("phase") == "Running" for n in names),
        timeout=90,
        what="three running jobs and a running batch",
    )
    log_before = len(operator.log_text())
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=180, what=f"namespace {ns} deleted")
    time.sleep(3)  # let any late reconcile of the vanished jobs run and log
    new_log = operator.log_text()[log_before:]
    assert "Traceback" not in new_log, new_log
    assert " ERROR " not in new_log, new_log
    assert "being terminated" not in new_log, new_log
    dead = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        "bgjobs.dev", "v1alpha1", "deadletters"
    )
    assert not [d for d in dead["items"] if d["metadata"]["namespace"] == ns]
