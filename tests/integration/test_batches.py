"""Batches end to end on the devcluster: one Indexed Job of warm workers (process node),
items in a real redis-server, the real operator's counts, DeadLetter and replay."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from kubernetes import client

from bgjobs_worker.batch_keys import BatchKeys
from tests.integration.support import BgJobs, RedisServer, wait_for


def pods_of(core: client.CoreV1Api, ns: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


def dead_letters_of(bgjobs: BgJobs, job: str) -> list[dict[str, Any]]:
    return [d for d in bgjobs.list("deadletters") if d["spec"]["jobName"] == job]


def submit_batch(bgjobs: BgJobs, name: str, items: list[Any], **spec: Any) -> None:
    body = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": {"task": "examples.item", "items": items, **spec},
    }
    bgjobs.create("backgroundjobs", body)


FAILING = {4, 19, 33}


def test_a_batch_with_failing_items_fails_with_exact_counts_and_one_dead_letter(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    items = [{"n": i, "fail": i in FAILING, "delay": 0.1} for i in range(50)]
    submit_batch(bgjobs, "invoices", items, parallelism=2, chunkSize=2)

    def midway() -> bool:
        b = bgjobs.status("invoices").get("batch") or {}
        return 0 < b.get("succeeded", 0) + b.get("failed", 0) < 50

    wait_for(midway, timeout=90, what="a live item count between 0 and 50")
    st = bgjobs.wait_phase("invoices", timeout=120)
    assert st["phase"] == "Failed", st
    b = st["batch"]
    assert (b["total"], b["succeeded"], b["failed"]) == (50, 47, 3)
    assert b["executions"] == 50 and b["ratePerSecond"] > 0
    assert st["error"]["type"] == "ItemsFailed"
    assert st["error"]["message"].startswith("3 of 50 items failed")
    assert len(pods_of(core, bgjobs.namespace, "invoices")) == 2, "two warm pods, not 50"

    dls = dead_letters_of(bgjobs, "invoices")
    assert len(dls) == 1
    dl = dls[0]["spec"]
    assert sorted(f["index"] for f in dl["failedItems"]) == sorted(FAILING)
    assert {f["error"]["message"] for f in dl["failedItems"]} == {
        f"item {i} refused" for i in FAILING
    }
    assert dl["failedItemsCount"] == 3
    assert st["deadLetter"]["name"] == dls[0]["metadata"]["name"]

    # The replay runs the failed items only (they fail again: this input is refused).
    name = dls[0]["metadata"]["name"]
    bgjobs.patch(name, {"spec": {"replays": 1}}, plural="deadletters")
    replay = bgjobs.wait_phase(f"{name}-r1", timeout=120)
    assert [i["n"] for i in bgjobs.get(f"{name}-r1")["spec"]["items"]] == sorted(FAILING)
    rb = replay["batch"]
    assert (rb["total"], rb["succeeded"], rb["failed"], rb["executions"]) == (3, 0, 3, 3)
    # The replay keeps the items' numbers: its own DeadLetter names the original indexes.
    (again,) = dead_letters_of(bgjobs, f"{name}-r1")
    assert sorted(f["index"] for f in again["spec"]["failedItems"]) == sorted(FAILING)


def test_the_example_batch_succeeds_with_its_item_count_in_kubectl_get(
    bgjobs: BgJobs, kubectl: Any
) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "backgroundjob-batch.yaml"
    kubectl("apply", "-n", bgjobs.namespace, "-f", str(example))
    st = bgjobs.wait_phase("monthly-invoices", timeout=180)
    assert st["phase"] == "Succeeded", st
    b = st["batch"]
    assert (b["total"], b["succeeded"], b["failed"]) == (300, 300, 0)
    assert b["outcomesKey"].endswith(":batch:outcomes")
    assert st["progress"]["percent"] == 100
    row = kubectl("get", "backgroundjobs", "-n", bgjobs.namespace).stdout.splitlines()[1]
    assert row.split()[:4] == ["monthly-invoices", "examples.item", "Succeeded", "100"]


def test_items_and_args_are_refused_together_at_apply(bgjobs: BgJobs) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        submit_batch(bgjobs, "both", [[1]], args=[1])
    assert refused.value.status == 422
    with pytest.raises(ApiException) as refused:
        bgjobs.submit("single", "examples.noop", parallelism=2)
    assert refused.value.status == 422
    submit_batch(bgjobs, "fine", [[1]], args=[], kwargs={})
    with pytest.raises(ApiException) as refused:
        submit_batch(bgjobs, "two-sources", [[1]], itemsFrom={"upload": "u1"})
    assert refused.value.status == 422, "items and itemsFrom together"
    with pytest.raises(ApiException) as refused:
        bgjobs.submit("bad-upload", "examples.noop", itemsFrom={"upload": "Not_A_Name"})
    assert refused.value.status == 422


def test_a_batch_over_the_inline_limit_is_uploaded_and_replays_its_failures_by_number(
    bgjobs: BgJobs, api_client: client.ApiClient, redis_server: RedisServer
) -> None:
    """12,000 items (over the 10,000 inline): Client.map uploads them to Redis and the
    BackgroundJob names the upload; etcd never holds them. Failed items replay from an
    upload the operator stages, under their original numbers."""
    import redis

    from bgjobs.client import Client

    failing = {5, 7000, 11999}
    items = [{"n": i, "fail": i in failing} for i in range(12000)]
    r = redis.Redis.from_url(redis_server.url)
    jobs = Client(bgjobs.namespace, api_client=api_client, redis=r)
    handle = jobs.map("examples.item", items, parallelism=2)
    spec = bgjobs.get(handle.name)["spec"]
    assert "items" not in spec and spec["itemsFrom"]["upload"].startswith(handle.name + ".")
    st = bgjobs.wait_phase(handle.name, timeout=240)
    b = st["batch"]
    assert (st["phase"], b["total"], b["succeeded"], b["failed"]) == ("Failed", 12000, 11997, 3)
    assert jobs.item_outcome(handle.name, 11998) == {
        "status": "SUCCESS",
        "result": 23996,
        "attempts": 1,
    }
    (dl,) = dead_letters_of(bgjobs, handle.name)
    assert sorted(f["index"] for f in dl["spec"]["failedItems"]) == sorted(failing)
    replayed = dl["spec"]["originalSpec"]
    assert "items" not in replayed and replayed["itemsFrom"]["upload"].startswith("replay-")
    name = dl["metadata"]["name"]
    bgjobs.patch(name, {"spec": {"replays": 1}}, plural="deadletters")
    again = bgjobs.wait_phase(f"{name}-r1", timeout=120)
    assert (again["batch"]["total"], again["batch"]["failed"]) == (3, 3)
    (dl2,) = dead_letters_of(bgjobs, f"{name}-r1")
    assert sorted(f["index"] for f in dl2["spec"]["failedItems"]) == sorted(failing)
    assert [
        f["item"]["n"] for f in sorted(dl2["spec"]["failedItems"], key=lambda f: f["index"])
    ] == sorted(failing)


def test_a_batch_whose_upload_is_missing_is_refused_with_a_clear_error(bgjobs: BgJobs) -> None:
    bgjobs.submit("no-upload", "examples.noop", itemsFrom={"upload": "never-written"})
    st = bgjobs.wait_phase("no-upload", timeout=60)
    assert st["phase"] == "Failed" and st["error"]["type"] == "InvalidSpec", st
    assert "spec.itemsFrom.upload never-written: nothing uploaded under" in st["error"]["message"]


def worker_pids(namespace: str, job: str) -> dict[str, int]:
    """pod name -> pid of the worker process of each running pod of a Job (from the
    environment the process node gives it)."""
    from pathlib import Path

    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(
                kv.split("=", 1)
                for kv in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in kv
            )
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (
            env.get("BGJOBS_NAMESPACE") == namespace
            and env.get("BGJOBS_JOB_NAME") == job
            and b"bgjobs-worker" in cmdline
        ):
            found[env.get("BGJOBS_POD_NAME", "")] = int(entry.name)
    return found


def batch_counts(redis_server: RedisServer, bgjobs: BgJobs, name: str) -> dict[str, int]:
    import redis

    uid = bgjobs.get(name)["metadata"]["uid"]
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = BatchKeys.of(bgjobs.namespace, uid)
    counts = {k: int(v) for k, v in client.hgetall(keys.counts).items()}
    counts["pending"] = int(client.llen(keys.pending))
    client.close()
    return counts


def test_a_pod_killed_mid_batch_loses_no_item_and_counts_none_twice(bgjobs: BgJobs) -> None:
    items = [{"n": i, "delay": 0.3} for i in range(40)]
    lease = [{"name": "BGJOBS_LEASE_SECONDS", "value": "3"}]
    submit_batch(bgjobs, "killed", items, parallelism=2, chunkSize=2, env=lease)
    wait_for(
        lambda: (
            (bgjobs.status("killed").get("batch") or {}).get("succeeded", 0) >= 4
            and len(worker_pids(bgjobs.namespace, "killed")) == 2
        ),
        timeout=90,
        what="both pods working",
    )
    _pod, pid = sorted(worker_pids(bgjobs.namespace, "killed").items())[0]
    os.kill(pid, signal.SIGKILL)
    st = bgjobs.wait_phase("killed", timeout=180)
    assert st["phase"] == "Succeeded", st
    b = st["batch"]
    assert (b["total"], b["succeeded"], b["failed"]) == (40, 40, 0)
    # The killed pod's leased items (at most a chunk) ran again elsewhere.
    assert 40 <= b["executions"] <= 42, b


def test_cancel_mid_batch_starts_no_new_items(bgjobs: BgJobs, redis_server: RedisServer) -> None:
    items = [{"n": i, "delay": 0.3} for i in range(60)]
    submit_batch(bgjobs, "stopped", items, parallelism=2, chunkSize=2)
    wait_for(
        lambda: (bgjobs.status("stopped").get("batch") or {}).get("succeeded", 0) >= 4,
        timeout=90,
        what="items succeeding",
    )
    bgjobs.patch("stopped", {"spec": {"cancel": True}})
    assert bgjobs.wait_phase("stopped", timeout=60)["phase"] == "Cancelled"
    wait_for(lambda: not worker_pids(bgjobs.namespace, "stopped"), timeout=60, what="workers gone")
    after = batch_counts(redis_server, bgjobs, "stopped")
    time.sleep(2)
    assert batch_counts(redis_server, bgjobs, "stopped") == after, "nothing runs after cancel"
    assert after["pending"] > 0 and after["succeeded"] < 60


def test_max_failed_items_fails_the_batch_early(bgjobs: BgJobs) -> None:
    items = [{"n": i, "fail": True} for i in range(30)]
    submit_batch(bgjobs, "early", items, parallelism=1, chunkSize=1, maxFailedItems=2)
    st = bgjobs.wait_phase("early", timeout=120)
    assert st["phase"] == "Failed", st
    assert st["batch"]["failed"] == 3 and st["batch"]["succeeded"] == 0
    assert st["error"]["reason"] == "PodFailurePolicy"
    assert "27 not run" in st["error"]["message"]
    (dl,) = dead_letters_of(bgjobs, "early")
    assert dl["spec"]["failedItemsCount"] == 30, "the replay runs failed and unrun items"
    assert len(dl["spec"]["originalSpec"]["items"]) == 30


def test_client_map_runs_a_batch_and_reads_item_outcomes(
    bgjobs: BgJobs, api_client: client.ApiClient, redis_server: RedisServer
) -> None:
    import redis

    from bgjobs.client import Client

    jobs = Client(
        bgjobs.namespace, api_client=api_client, redis=redis.Redis.from_url(redis_server.url)
    )
    handle = jobs.map("examples.add", [(i, 1) for i in range(20)], parallelism=2)
    view = handle.wait(timeout=120)
    assert view.succeeded and view.batch["succeeded"] == 20
    assert jobs.item_outcome(handle.name, 7) == {"status": "SUCCESS", "result": 8, "attempts": 1}
    assert jobs.item_outcome(handle.name, 99) is None
    assert jobs.result(handle.name) == [i + 1 for i in range(20)], "item results, in order"

    # Celery's task.chunks through the same client: one batch, a result per item.
    from bgjobs.canvas import configure
    from examples import tasks

    configure(jobs)
    try:
        chunked = tasks.add.chunks([(i, i) for i in range(10)], 3, parallelism=2)
        assert chunked.get(timeout=120) == [2 * i for i in range(10)]
    finally:
        configure(None)
    assert bgjobs.get(chunked.id)["spec"]["chunkSize"] == 3


def operator_writes(state_dir: str, namespace: str, name: str) -> list[Any]:
    from pathlib import Path

    from bench import audit

    return [
        w
        for w in audit.writes(Path(state_dir), [namespace])
        if w.name == name and w.user_agent.startswith("bgjobs-operator/")
    ]


def test_many_pods_recording_items_cost_at_most_one_status_write_per_second(
    bgjobs: BgJobs, devcluster: Any
) -> None:
    items = [{"n": i, "delay": 0.05} for i in range(120)]
    submit_batch(bgjobs, "busy", items, parallelism=3, chunkSize=1)
    st = bgjobs.wait_phase("busy", timeout=120)
    assert st["phase"] == "Succeeded" and st["batch"]["succeeded"] == 120
    time.sleep(1)  # let the last writes reach the audit log
    writes = [
        w.at
        for w in operator_writes(devcluster.state_dir, bgjobs.namespace, "busy")
        if w.kind == "patch backgroundjobs/status" or w.kind == "update backgroundjobs/status"
    ]
    assert writes, "the batch's status was written"
    # 120 recordings, nudging each time: the pump writes once per interval at most; a
    # phase change (Running, Succeeded) may fall within the same second.
    busiest = max(sum(1 for t in writes if s <= t < s + 1.0) for s in writes)
    assert busiest <= 2, writes


def test_an_operator_restart_mid_batch_seeds_once_and_finishes_it(
    bgjobs: BgJobs, operator: Any, devcluster: Any
) -> None:
    items = [{"n": i, "delay": 0.1} for i in range(60)]
    submit_batch(bgjobs, "restarted", items, parallelism=2, chunkSize=2)
    wait_for(
        lambda: (bgjobs.status("restarted").get("batch") or {}).get("succeeded", 0) >= 4,
        timeout=90,
        what="items succeeding",
    )
    operator.kill()
    time.sleep(1)
    operator.start()
    st = bgjobs.wait_phase("restarted", timeout=120)
    assert st["phase"] == "Succeeded", st
    b = st["batch"]
    assert (b["total"], b["succeeded"], b["failed"], b["executions"]) == (60, 60, 0, 60)
    creates = [
        w
        for w in operator_writes(devcluster.state_dir, bgjobs.namespace, "restarted")
        if w.verb == "create" and w.resource == "jobs"
    ]
    assert len(creates) == 1


def test_a_producer_task_makes_the_items_inside_the_batch(
    bgjobs: BgJobs, api_client: client.ApiClient, redis_server: RedisServer
) -> None:
    """Celery's "loop over every subscription", made parallel: examples.numbers yields the
    items in one pod while both pods run them; task.map(producer.s(...)) submits it."""
    import redis

    from bgjobs.canvas import configure
    from bgjobs.client import Client
    from examples import tasks

    jobs = Client(
        bgjobs.namespace, api_client=api_client, redis=redis.Redis.from_url(redis_server.url)
    )
    configure(jobs)
    try:
        made = tasks.item.map(tasks.numbers.s(250), parallelism=2)
    finally:
        configure(None)
    spec = bgjobs.get(made.id)["spec"]
    assert spec["itemsFrom"] == {"task": "examples.numbers", "args": [250], "kwargs": {}}
    assert "items" not in spec
    assert made.get(timeout=180) == [2 * i for i in range(250)]
    b = bgjobs.status(made.id)["batch"]
    assert (b["total"], b["succeeded"], b.get("producing")) == (250, 250, None)

    bgjobs.submit(
        "broken-source",
        "examples.item",
        itemsFrom={"task": "examples.numbers", "args": [40], "kwargs": {"fail_at": 25}},
    )
    st = bgjobs.wait_phase("broken-source", timeout=120)
    assert st["phase"] == "Failed" and st["error"]["type"] == "ProducerFailed", st
    assert (
        "the producer failed after 25 items: LookupError: source gone at 25"
        in st["error"]["message"]
    )
    assert (st["batch"]["total"], st["batch"]["succeeded"]) == (25, 25)
