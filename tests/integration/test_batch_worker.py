"""Warm batch workers as real processes (``BGJOBS_BATCH``) against a real redis-server, no
cluster: leases, per-item retries, outcomes recorded once, a SIGKILLed worker's items taken
over by another after its lease expires, maxFailedItems."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bgjobs_worker import batch_keys
from bgjobs_worker.batch_keys import BatchKeys
from tests.integration.support import RedisServer, wait_for

REPO = Path(__file__).resolve().parents[2]
NS = "batch-it"


@pytest.fixture
def rds(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


def seed(rds: redis.Redis, items: list[Any]) -> BatchKeys:
    keys = BatchKeys.of(NS, str(uuid.uuid4()))
    args = batch_keys.seed_args(3600, [json.dumps(i) for i in items])
    assert rds.eval(batch_keys.SEED, 6, *keys.all(), *args) == 1
    assert rds.eval(batch_keys.SEED, 6, *keys.all(), *args) == 0, "seeding is idempotent"
    return keys


def start(
    redis_server: RedisServer, keys: BatchKeys, task: str, tmp: Path, **extra: str
) -> subprocess.Popen[str]:
    batch_id = keys.counts.split(":")[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGJOBS_")} | {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "worker_image")]),
        "BGJOBS_TASK": task,
        "BGJOBS_TASK_MODULES": "examples.tasks",
        "BGJOBS_NAMESPACE": NS,
        "BGJOBS_JOB_NAME": "b",
        "BGJOBS_JOB_UID": str(uuid.uuid4()),
        "BGJOBS_BATCH": batch_id,
        "BGJOBS_REDIS_URL": redis_server.url,
        "BGJOBS_TERMINATION_LOG": str(tmp / f"{uuid.uuid4().hex}.log"),
        "BGJOBS_ITEM_RETRY_DELAY": "0.01",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bgjobs_worker", "run"],
        env=env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def counts(rds: redis.Redis, keys: BatchKeys) -> dict[str, int]:
    raw = rds.hgetall(keys.counts)
    updated, started = int(raw.pop("updatedAt", 0)), int(raw.pop("startedAt", 0))
    if int(raw.get("executions", 0)):  # both Redis times, the first lease before the last record
        assert 0 < started <= updated, (started, updated)
    return {k: int(v) for k, v in raw.items()}


def test_two_workers_drain_a_batch_recording_each_outcome_once(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    failing = {3, 17, 40}
    items = [{"n": i, "fail": i in failing} for i in range(50)]
    keys = seed(rds, items)
    procs = [
        start(redis_server, keys, "examples.item", tmp_path, BGJOBS_CHUNK_SIZE="4")
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert counts(rds, keys) == {"total": 50, "succeeded": 47, "failed": 3, "executions": 50}
    assert sorted(int(i) for i in rds.lrange(keys.failed, 0, -1)) == sorted(failing)
    outcome = json.loads(rds.hget(keys.outcomes, "17") or "")
    assert outcome["status"] == "FAILURE" and outcome["error"]["message"] == "item 17 refused"
    assert json.loads(rds.hget(keys.outcomes, "5") or "") == {
        "status": "SUCCESS",
        "result": 10,
        "attempts": 1,
    }
    assert rds.zcard(keys.leases) == 0 and rds.llen(keys.pending) == 0


def test_a_replayed_batch_keeps_its_items_original_numbers(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    """Items 7 and 12 of a batch, replayed: seeded under 7 and 12, recorded under 7 and 12."""
    keys = BatchKeys.of(NS, str(uuid.uuid4()))
    items = [json.dumps({"n": 7, "fail": True}), json.dumps({"n": 12, "fail": False})]
    args = batch_keys.seed_args(3600, items, [7, 12])
    assert rds.eval(batch_keys.SEED, 6, *keys.all(), *args) == 1
    proc = start(redis_server, keys, "examples.item", tmp_path)
    assert proc.communicate(timeout=60)[0] is not None and proc.returncode == 0
    assert counts(rds, keys) == {"total": 2, "succeeded": 1, "failed": 1, "executions": 2}
    assert rds.lrange(keys.failed, 0, -1) == ["7"]
    assert json.loads(rds.hget(keys.outcomes, "12") or "")["result"] == 24
    assert sorted(rds.hkeys(keys.items)) == ["12", "7"]


def test_retryable_items_are_retried_in_process(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = seed(rds, [{"fail_times": 2}, {"fail_times": 0}, {"fail_times": 9}])
    proc = start(redis_server, keys, "examples.flaky", tmp_path, BGJOBS_MAX_RETRIES="3")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert counts(rds, keys) == {"total": 3, "succeeded": 2, "failed": 1, "executions": 3 + 1 + 4}
    assert json.loads(rds.hget(keys.outcomes, "0") or "")["attempts"] == 3


def test_max_failed_items_stops_the_batch_with_exit_3(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = seed(rds, [{"n": i, "fail": True} for i in range(30)])
    proc = start(
        redis_server,
        keys,
        "examples.item",
        tmp_path,
        BGJOBS_MAX_FAILED_ITEMS="2",
        BGJOBS_CHUNK_SIZE="1",
    )
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 3, out
    assert counts(rds, keys)["failed"] == 3
    assert rds.llen(keys.pending) == 27, "no item started after the limit was passed"


def test_a_killed_workers_items_are_taken_over_after_its_lease(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = seed(rds, [{"n": i, "delay": 0.2} for i in range(20)])
    lease = {"BGJOBS_LEASE_SECONDS": "2", "BGJOBS_CHUNK_SIZE": "5"}
    victim = start(redis_server, keys, "examples.item", tmp_path, **lease)
    wait_for(lambda: rds.zcard(keys.leases) > 0, timeout=30, what="a lease")
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    survivor = start(redis_server, keys, "examples.item", tmp_path, **lease)
    out = survivor.communicate(timeout=60)[0]
    assert survivor.returncode == 0, out
    c = counts(rds, keys)
    assert (c["total"], c["succeeded"], c["failed"]) == (20, 20, 0)
    assert rds.hlen(keys.outcomes) == 20


def test_sigterm_gives_leased_items_back(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = seed(rds, [{"n": i, "delay": 0.5} for i in range(10)])
    proc = start(redis_server, keys, "examples.item", tmp_path, BGJOBS_CHUNK_SIZE="5")
    wait_for(lambda: rds.zcard(keys.leases) > 0, timeout=30, what="a lease")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 143, out
    assert rds.zcard(keys.leases) == 0
    c = counts(rds, keys)
    assert c["succeeded"] + rds.llen(keys.pending) == 10


def test_an_item_past_the_hard_limit_is_failed_and_the_pod_replaced(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = seed(rds, [{"seconds": 0}, {"seconds": 30}, {"seconds": 0}, {"seconds": 0}])
    limit = {"BGJOBS_TIME_LIMIT": "0.5", "BGJOBS_CHUNK_SIZE": "4"}
    first = start(redis_server, keys, "examples.sleep", tmp_path, **limit)
    out = first.communicate(timeout=60)[0]
    assert first.returncode == 1, out
    outcome = json.loads(rds.hget(keys.outcomes, "1") or "")
    assert outcome["error"]["type"] == "bgjobs_worker.errors.TimeLimitExceeded"
    assert rds.llen(keys.pending) == 2 and rds.zcard(keys.leases) == 0, "rest given back"
    replacement = start(redis_server, keys, "examples.sleep", tmp_path, **limit)
    out = replacement.communicate(timeout=60)[0]
    assert replacement.returncode == 0, out
    c = counts(rds, keys)
    assert (c["total"], c["succeeded"], c["failed"]) == (4, 3, 1)


def open_batch(rds: redis.Redis) -> BatchKeys:
    keys = BatchKeys.of(NS, str(uuid.uuid4()))
    assert rds.eval(batch_keys.SEED_OPEN, 1, keys.counts, 3600) == 1
    assert rds.eval(batch_keys.SEED_OPEN, 1, keys.counts, 3600) == 0, "opening is idempotent"
    return keys


def producer_env(count: int, **kwargs: Any) -> str:
    return json.dumps({"task": "examples.numbers", "args": [count], "kwargs": kwargs})


def test_a_producer_streams_its_items_into_the_batch_while_two_workers_run_them(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = open_batch(rds)
    env = {"BGJOBS_PRODUCER": producer_env(300), "BGJOBS_CHUNK_SIZE": "7"}
    procs = [start(redis_server, keys, "examples.item", tmp_path, **env) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    c = rds.hgetall(keys.counts)
    assert (c["total"], c["produced"], c["succeeded"], c["failed"], c["sealed"]) == (
        "300",
        "300",
        "300",
        "0",
        "1",
    )
    assert json.loads(rds.hget(keys.outcomes, "299") or "")["result"] == 598
    assert sum("producer examples.numbers done: 300 items" in o for o in outs) == 1


def test_a_producer_killed_midway_is_resumed_by_another_pod_without_duplicates(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = open_batch(rds)
    env = {"BGJOBS_PRODUCER": producer_env(200, delay=0.02), "BGJOBS_LEASE_SECONDS": "1"}
    victim = start(redis_server, keys, "examples.item", tmp_path, **env)
    wait_for(
        lambda: int(rds.hget(keys.counts, "produced") or 0) >= 40,
        timeout=30,
        what="the first pod to produce some items",
    )
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    cut = int(rds.hget(keys.counts, "produced") or 0)
    assert 40 <= cut < 200
    survivor = start(redis_server, keys, "examples.item", tmp_path, **env)
    out = survivor.communicate(timeout=60)[0]
    assert survivor.returncode == 0, out
    c = rds.hgetall(keys.counts)
    assert (c["total"], c["produced"], c["succeeded"]) == ("200", "200", "200"), c
    assert rds.hlen(keys.items) == 200 and rds.hlen(keys.outcomes) == 200, "nothing twice"


def test_a_failing_producer_seals_the_batch_with_its_error_and_its_items_still_run(
    redis_server: RedisServer, rds: redis.Redis, tmp_path: Path
) -> None:
    keys = open_batch(rds)
    env = {"BGJOBS_PRODUCER": producer_env(100, fail_at=30)}
    proc = start(redis_server, keys, "examples.item", tmp_path, **env)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    c = rds.hgetall(keys.counts)
    assert (c["total"], c["succeeded"], c["sealed"]) == ("30", "30", "1")
    assert json.loads(c["producerError"]) == {"type": "LookupError", "message": "source gone at 30"}
