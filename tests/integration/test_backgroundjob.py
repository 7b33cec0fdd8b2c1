"""BackgroundJob end to end on devcluster: the real Job controller retries, the real
process node runs the worker, a real redis-server carries progress and results, and the
real operator derives status and dead letters."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import redis
from kubernetes import client

from bgjobs_worker import redis_keys
from tests.integration.support import BgJobs, RedisServer, processes_with, wait_for


def one_dead_letter(bgjobs: BgJobs, job: str) -> dict[str, Any]:
    dls = [d for d in bgjobs.list("deadletters") if d["spec"]["jobName"] == job]
    assert len(dls) == 1, f"expected one DeadLetter for {job}, got {len(dls)}"
    return dls[0]


def pods_of(core: client.CoreV1Api, ns: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


def test_progress_moves_then_result_in_status(bgjobs: BgJobs, kubectl) -> None:  # type: ignore[no-untyped-def]
    bgjobs.submit("report", "examples.progress", kwargs={"steps": 8, "delay": 0.5})
    seen: list[float] = []

    def midway() -> bool:
        pct = (bgjobs.status("report").get("progress") or {}).get("percent")
        if pct is not None:
            seen.append(pct)
        return pct is not None and 0 < pct < 100

    wait_for(midway, timeout=60, what="progress between 0 and 100 %")
    table = kubectl("get", "backgroundjobs", "-n", bgjobs.namespace).stdout
    assert "examples.progress" in table and "Running" in table
    st = bgjobs.wait_phase("report", timeout=60)
    assert st["phase"] == "Succeeded"
    assert st["result"] == {"steps": 8}
    assert st["progress"]["percent"] == 100
    assert st["attempts"] == 1
    assert seen == sorted(seen), "progress never goes backwards"
    final = kubectl("get", "backgroundjobs", "-n", bgjobs.namespace).stdout.splitlines()[1]
    assert final.split()[:4] == ["report", "examples.progress", "Succeeded", "100"]


def test_retryable_error_then_success(bgjobs: BgJobs) -> None:
    bgjobs.submit("flaky", "examples.flaky", kwargs={"fail_times": 1})
    st = bgjobs.wait_phase("flaky", timeout=120)
    assert st["phase"] == "Succeeded"
    assert st["attempts"] == 2
    assert st["result"] == {"attempt": 2}


def test_permanent_error_is_not_retried_and_dead_lettered(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    bgjobs.submit("perm", "examples.permanent", retry={"maxRetries": 5})
    st = bgjobs.wait_phase("perm", timeout=60)
    assert st["phase"] == "Failed"
    assert st["error"]["exitCode"] == 3
    assert st["error"]["reason"] == "PodFailurePolicy"
    assert "PermanentError" in st["error"]["type"]
    assert len(pods_of(core, bgjobs.namespace, "perm")) == 1
    dl = one_dead_letter(bgjobs, "perm")
    assert st["deadLetter"]["name"] == dl["metadata"]["name"]
    assert dl["spec"]["error"]["message"] == "bad input"
    assert dl["spec"]["task"] == "examples.permanent"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Failed"] == "True" and conds["DeadLettered"] == "True"


def test_retries_exhausted(bgjobs: BgJobs, core: client.CoreV1Api) -> None:
    bgjobs.submit("doomed", "examples.always_fails", retry={"maxRetries": 1}, critical=True)
    st = bgjobs.wait_phase("doomed", timeout=120)
    assert st["phase"] == "Failed"
    assert st["attempts"] == 2
    assert st["error"]["reason"] == "BackoffLimitExceeded"
    assert st["error"]["type"] == "RuntimeError"
    dl = one_dead_letter(bgjobs, "doomed")
    assert dl["spec"]["attempts"] == 2
    assert dl["spec"]["error"]["message"] == "boom"
    assert dl["spec"]["critical"] is True
    assert len(pods_of(core, bgjobs.namespace, "doomed")) == 2


def test_soft_time_limit_ends_with_exit_code_4(bgjobs: BgJobs) -> None:
    bgjobs.submit(
        "slow",
        "examples.soft_limit",
        kwargs={"seconds": 20},
        timeLimits={"softSeconds": 1, "hardSeconds": 30},
        retry={"maxRetries": 2, "retryOnSoftTimeLimit": False},
    )
    st = bgjobs.wait_phase("slow", timeout=60)
    assert st["phase"] == "Failed"
    assert st["error"]["exitCode"] == 4
    assert "SoftTimeLimitExceeded" in st["error"]["type"]
    assert st["attempts"] == 1, "retryOnSoftTimeLimit: false fails at once"


def test_whole_job_deadline(bgjobs: BgJobs) -> None:
    seconds = random.randint(1000, 9000)
    bgjobs.submit("late", "examples.sleep", kwargs={"seconds": seconds}, activeDeadlineSeconds=3)
    st = bgjobs.wait_phase("late", timeout=60)
    assert st["phase"] == "Failed"
    assert st["error"]["reason"] == "DeadlineExceeded"
    one_dead_letter(bgjobs, "late")


def test_cancel_mid_run_kills_the_process(bgjobs: BgJobs, batch: client.BatchV1Api) -> None:
    seconds = float(random.randint(1000, 9000))
    bgjobs.submit("long", "examples.sleep", kwargs={"seconds": seconds})
    bgjobs.wait_phase("long", "Running", timeout=60)
    marker = f'"seconds": {seconds}'
    wait_for(lambda: processes_with("bgjobs-worker"), timeout=10, what="worker process")
    bgjobs.patch("long", {"spec": {"cancel": True}})
    st = bgjobs.wait_phase("long", timeout=60)
    assert st["phase"] == "Cancelled"
    wait_for(
        lambda: not batch.list_namespaced_job(bgjobs.namespace).items,
        timeout=60,
        what="the Job deleted",
    )
    assert not any(
        marker in Path(f"/proc/{p}/environ").read_text(errors="replace")
        for p in processes_with("bgjobs-worker")
    ), "worker process still running"


def test_unknown_task_fails_without_retry(bgjobs: BgJobs, core: client.CoreV1Api) -> None:
    bgjobs.submit("typo", "examples.does_not_exist", retry={"maxRetries": 3})
    st = bgjobs.wait_phase("typo", timeout=60)
    assert st["phase"] == "Failed"
    assert st["error"]["exitCode"] == 3
    assert "examples.does_not_exist" in st["error"]["message"]
    assert len(pods_of(core, bgjobs.namespace, "typo")) == 1
    one_dead_letter(bgjobs, "typo")


def test_replaying_a_dead_letter_runs_the_task_again(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    bgjobs.submit("once", "examples.permanent", retry={"maxRetries": 0})
    bgjobs.wait_phase("once", timeout=60)
    dl = one_dead_letter(bgjobs, "once")
    name = dl["metadata"]["name"]
    bgjobs.patch(name, {"spec": {"replays": 1}}, plural="deadletters")
    replay = f"{name}-r1"
    st = bgjobs.wait_phase(replay, timeout=60)
    assert st["attempts"] == 1
    assert len(pods_of(core, bgjobs.namespace, replay)) == 1
    dl_status = wait_for(
        lambda: bgjobs.get(name, "deadletters").get("status"), timeout=30, what="dead letter status"
    )
    assert dl_status["replayedJobs"] == [replay]
    assert bgjobs.get(replay)["spec"]["task"] == "examples.permanent"


def test_deleting_a_backgroundjob_deletes_its_job_and_pods(
    bgjobs: BgJobs, core: client.CoreV1Api, batch: client.BatchV1Api
) -> None:
    bgjobs.submit("gone", "examples.sleep", kwargs={"seconds": 600})
    bgjobs.wait_phase("gone", "Running", timeout=60)
    bgjobs.custom.delete_namespaced_custom_object(
        bgjobs.group, bgjobs.version, bgjobs.namespace, "backgroundjobs", "gone"
    )
    wait_for(
        lambda: not batch.list_namespaced_job(bgjobs.namespace).items,
        timeout=60,
        what="Job garbage-collected",
    )
    wait_for(
        lambda: not core.list_namespaced_pod(bgjobs.namespace).items,
        timeout=60,
        what="pods garbage-collected",
    )


def test_api_writes_per_successful_job(bgjobs: BgJobs, devcluster) -> None:  # type: ignore[no-untyped-def]
    """The operator's own writes for one job's whole life, read from the API server's
    audit log: create the Job, at most two status writes, nothing else."""
    bgjobs.submit("cheap", "examples.add", args=[2, 3])
    st = bgjobs.wait_phase("cheap", timeout=60)
    assert st["result"] == 5
    time.sleep(2)  # let any straggling write land before counting
    writes = []
    with open(f"{devcluster.state_dir}/logs/audit.log") as f:
        for line in f:
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if (
                ref.get("namespace") == bgjobs.namespace
                and e.get("userAgent", "").startswith("bgjobs-operator/")
                and e.get("stage") == "ResponseComplete"
            ):
                writes.append((e["verb"], ref.get("resource"), ref.get("subresource")))
    assert ("create", "jobs", None) in writes
    assert writes.count(("create", "jobs", None)) == 1
    assert len(writes) <= 3, writes
    assert all(w[0] in ("create", "patch") for w in writes), writes


def test_arguments_reach_the_task_byte_for_byte(bgjobs: BgJobs) -> None:
    """Args travel in env values, where the kubelet expands $(VAR) and $$: the operator
    escapes them, so the task receives exactly what was submitted."""
    args = ["$(BGJOBS_TASK)", "price: $$5", "$", "$$(X)", "$(BGJOBS_ARGS", "ü$$$(Y)"]
    kwargs = {"$(BGJOBS_KWARGS)": "$$", "note": "cost $(HOME) and $PATH"}
    bgjobs.submit("dollars", "examples.echo", args=args, kwargs=kwargs)
    st = bgjobs.wait_phase("dollars", timeout=60)
    assert st["phase"] == "Succeeded", st
    assert json.dumps(st["result"], sort_keys=True) == json.dumps(
        {"args": args, "kwargs": kwargs}, sort_keys=True
    )


def test_an_evicted_attempt_is_not_counted_by_the_job_or_the_task(
    bgjobs: BgJobs, core: client.CoreV1Api, batch: client.BatchV1Api, redis_server: RedisServer
) -> None:
    """Eviction marks the pod DisruptionTarget, the Job ignores it (podFailurePolicy), and
    the next pod's task sees the same attempt number as status.attempts."""
    ns = bgjobs.namespace
    bgjobs.submit(
        "evicted", "examples.sleep_then_attempt", kwargs={"seconds": 4}, retry={"maxRetries": 1}
    )
    bgjobs.wait_phase("evicted", "Running", timeout=60)
    uid = batch.read_namespaced_job("evicted", ns).metadata.uid
    rds = redis.Redis.from_url(redis_server.url)
    wait_for(
        lambda: redis_keys.read_attempts(rds, ns, uid) == 1, timeout=20, what="attempt 1 counted"
    )
    (first,) = pods_of(core, ns, "evicted")
    core.create_namespaced_pod_eviction(
        first.metadata.name,
        ns,
        client.V1Eviction(metadata=client.V1ObjectMeta(name=first.metadata.name, namespace=ns)),
    )

    def disrupted() -> bool:
        pod = core.read_namespaced_pod(first.metadata.name, ns)
        return any(c.type == "DisruptionTarget" for c in pod.status.conditions or [])

    wait_for(disrupted, timeout=10, what="the evicted pod marked DisruptionTarget")
    st = bgjobs.wait_phase("evicted", timeout=120)
    assert st["phase"] == "Succeeded", st
    (second,) = pods_of(core, ns, "evicted")
    assert second.metadata.name != first.metadata.name
    assert not batch.read_namespaced_job("evicted", ns).status.failed
    assert st["attempts"] == 1
    assert st["result"] == {"attempt": 1, "isLastAttempt": False}
