"""Batches in the operator: the Indexed Job, seeding, status from the item counts, one
DeadLetter for the failed items, and a replay of only those. decide is driven with plain
observations and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bgjobs.api.v1alpha1 import BackgroundJobSpec, FailedItem, JobError
from bgjobs_operator.actions import CreateObject, SeedBatch
from bgjobs_operator.batches import BatchResult, replay_items
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.controllers import backgroundjob
from bgjobs_operator.controllers.backgroundjob import Observed
from bgjobs_operator.deadletters import build_replay
from bgjobs_operator.jobspec import InvalidSpec, build_job, chunk_size, items_json
from bgjobs_worker.batch_keys import BatchCounts

NOW = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
T0 = int(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp() * 1000)  # the Job's start
CONFIG = OperatorConfig(default_image="w:1", redis_url="redis://r:6379/0")
ITEMS = [{"n": i} for i in range(50)]


def batch(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "b", "namespace": "ns", "uid": "bj-uid", "generation": 1},
        "spec": {"task": "app.item", "items": ITEMS, "parallelism": 2, **spec},
        "status": {"phase": "Running", "startTime": "2026-03-01T12:00:00Z", "jobName": "b"},
    }


def job(condition: str | None = None, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-03-01T12:00:00Z", "active": 2, "ready": 2}
    if condition:
        status = {
            "startTime": "2026-03-01T12:00:00Z",
            "completionTime": "2026-03-01T12:00:05Z",
            "succeeded": 2,
            "conditions": [{"type": condition, "status": "True", "reason": reason}],
        }
    return {
        "metadata": {
            "name": "b",
            "namespace": "ns",
            "uid": "job-uid",
            "ownerReferences": [{"uid": "bj-uid"}],
        },
        "status": status,
    }


def test_a_batch_runs_as_one_indexed_job_reading_its_items_from_redis() -> None:
    body = batch(maxFailedItems=5)
    manifest = build_job(body, BackgroundJobSpec.model_validate(body["spec"]), CONFIG)
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    assert spec["backoffLimitPerIndex"] >= 1 and "backoffLimit" not in spec
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [3]
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["BGJOBS_BATCH"] == "bj-uid"
    assert env["BGJOBS_MAX_FAILED_ITEMS"] == "5"
    assert env["BGJOBS_CHUNK_SIZE"] == "1"  # 50 items, 2 pods, ~20 chunks each
    assert "BGJOBS_ARGS" not in env and "BGJOBS_KWARGS" not in env
    assert '"n"' not in str(manifest), "items travel through Redis, not the pod spec"


def test_chunk_size_defaults_to_about_twenty_chunks_per_pod() -> None:
    def size(n: int, pods: int, chunk: int | None = None) -> int:
        spec = {"task": "t", "items": [[i] for i in range(n)], "parallelism": pods}
        return chunk_size(BackgroundJobSpec.model_validate({**spec, "chunkSize": chunk}))

    assert size(10_000, 2) == 100 and size(2000, 2) == 50 and size(3, 1) == 1
    assert size(10_000, 2, chunk=7) == 7


def test_inline_items_are_bounded_in_bytes() -> None:
    spec = BackgroundJobSpec.model_validate({"task": "t", "items": [["x" * 100]] * 20})
    assert len(items_json(spec, CONFIG)) == 20
    with pytest.raises(InvalidSpec, match="over the 1000-byte limit"):
        items_json(spec, OperatorConfig(max_items_bytes=1000))


def test_a_new_batch_seeds_its_items_before_its_job() -> None:
    body = batch()
    body["status"] = {"phase": "Pending"}
    decision = backgroundjob.decide(Observed(body, None), NOW, CONFIG)
    seed, create = decision.actions
    assert isinstance(seed, SeedBatch) and isinstance(create, CreateObject)
    assert (seed.namespace, seed.bj_uid, len(seed.items)) == ("ns", "bj-uid", 50)
    assert seed.items[3] == '{"n": 3}'
    assert create.manifest["kind"] == "Job"


def test_a_batch_without_redis_is_invalid() -> None:
    body = batch()
    body["status"] = {"phase": "Pending"}
    decision = backgroundjob.decide(Observed(body, None), NOW, OperatorConfig())
    assert decision.status is not None and decision.status["error"]["type"] == "InvalidSpec"
    assert "needs Redis" in decision.status["error"]["message"]


def test_a_running_batch_shows_counts_and_rate() -> None:
    counts = BatchCounts(
        total=50, succeeded=18, failed=2, executions=21, running=4, updated_at_ms=T0 + 10_000
    )
    decision = backgroundjob.decide(Observed(batch(), job(), batch=counts), NOW, CONFIG)
    assert decision.status is not None
    assert decision.status["batch"] == {
        "total": 50,
        "succeeded": 18,
        "failed": 2,
        "running": 4,
        "executions": 21,
        "ratePerSecond": 2.0,  # 20 done in 10 s
        "outcomesKey": "bgjobs:ns:bj-uid:batch:outcomes",
    }
    assert decision.status["phase"] == "Running"
    assert decision.status["progress"] == {
        "current": 20.0,
        "total": 50.0,
        "percent": 40.0,
        "stage": "items",
        "message": "18 succeeded, 2 failed of 50",
    }
    # The same counts later (a resync, the watch event of this very write) write nothing:
    # the rate comes from the last recording's time, not the clock.
    body = batch()
    body["status"] = decision.status
    later = datetime(2026, 3, 1, 12, 0, 40, tzinfo=UTC)
    again = backgroundjob.decide(Observed(body, job(), batch=counts), later, CONFIG)
    assert again.status is None


def test_a_batch_whose_items_all_succeeded_succeeds() -> None:
    counts = BatchCounts(total=50, succeeded=50, executions=50, updated_at_ms=T0 + 5000)
    obs = Observed(batch(), job("Complete"), batch=counts, batch_result=BatchResult(counts))
    decision = backgroundjob.decide(obs, NOW, CONFIG)
    assert decision.status is not None
    assert decision.status["phase"] == "Succeeded"
    assert decision.status["batch"]["ratePerSecond"] == 10.0  # 50 items in 5 s
    assert "resultRef" not in decision.status and "result" not in decision.status
    assert decision.status["batch"]["outcomesKey"] == "bgjobs:ns:bj-uid:batch:outcomes"
    assert not any(isinstance(a, CreateObject) for a in decision.actions)


def failures(*indexes: int) -> list[FailedItem]:
    return [
        FailedItem(
            index=i,
            item={"n": i},
            error=JobError(type="PermanentError", message=f"item {i} refused"),
            attempts=1,
        )
        for i in indexes
    ]


def test_failed_items_fail_the_batch_with_one_dead_letter_replaying_only_them() -> None:
    counts = BatchCounts(total=50, succeeded=47, failed=3, executions=50)
    result = BatchResult(counts, failures(3, 17, 40), [3, 17, 40])
    obs = Observed(batch(), job("Complete"), batch=counts, batch_result=result)
    decision = backgroundjob.decide(obs, NOW, CONFIG)
    assert decision.status is not None
    st = decision.status
    assert st["phase"] == "Failed"
    assert st["error"]["type"] == "ItemsFailed"
    assert st["error"]["message"].startswith("3 of 50 items failed; first: item 3")
    assert (st["batch"]["succeeded"], st["batch"]["failed"]) == (47, 3)
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Failed"] == "True" and conds.get("Succeeded") != "True"
    creates = [a for a in decision.actions if isinstance(a, CreateObject)]
    assert [c.manifest["kind"] for c in creates] == ["DeadLetter"]
    dl = creates[0].manifest
    assert [f["index"] for f in dl["spec"]["failedItems"]] == [3, 17, 40]
    assert dl["spec"]["failedItems"][0]["error"]["message"] == "item 3 refused"
    assert dl["spec"]["failedItemsCount"] == 3
    dl["metadata"]["uid"] = "dl-uid"
    replay = build_replay(dl, 1)
    assert replay["spec"]["items"] == [{"n": 3}, {"n": 17}, {"n": 40}]
    assert replay["spec"]["itemIndexes"] == [3, 17, 40], "the original numbers, not 0, 1, 2"
    BackgroundJobSpec.model_validate(replay["spec"])
    # The replay is seeded under those numbers, and its own failures keep them again.
    replay["metadata"]["uid"] = "replay-uid"
    replay["status"] = {"phase": "Pending"}
    seeds = [a for a in backgroundjob.decide(Observed(replay, None), NOW, CONFIG).actions]
    seed = next(a for a in seeds if isinstance(a, SeedBatch))
    assert seed.indexes == (3, 17, 40)
    again = BatchResult(BatchCounts(total=3, succeeded=2, failed=1), failures(17), [17])
    spec = replay["spec"]
    assert replay_items(spec["items"], spec["itemIndexes"], again) == ([{"n": 17}], [17])


@pytest.mark.parametrize(
    ("indexes", "says"),
    [([0], "1 numbers for 2 items"), ([4, 4], "uses a number twice")],
)
def test_item_indexes_must_number_each_item_once(indexes: list[int], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        BackgroundJobSpec.model_validate({"task": "t", "items": [[1], [2]], "itemIndexes": indexes})


def test_a_short_batchs_rate_is_over_its_items_time_not_since_the_job_started() -> None:
    """40 items leased at T0 + 4.6 s and all recorded by T0 + 5.0 s: 100 items/s, whatever
    the Job's (whole-second) start time says."""
    counts = BatchCounts(
        total=40, succeeded=40, executions=40, started_at_ms=T0 + 4600, updated_at_ms=T0 + 5000
    )
    decision = backgroundjob.decide(Observed(batch(), job(), batch=counts), NOW, CONFIG)
    assert decision.status is not None
    assert decision.status["batch"]["ratePerSecond"] == 100.0


def test_a_batch_stopped_early_replays_its_failed_and_unrun_items() -> None:
    counts = BatchCounts(total=50, succeeded=10, failed=3)
    unrun = list(range(13, 50))
    result = BatchResult(counts, failures(0, 1, 2), [0, 1, 2, *unrun])
    obs = Observed(
        batch(maxFailedItems=2),
        job("Failed", "PodFailurePolicy"),
        batch=counts,
        batch_result=result,
    )
    decision = backgroundjob.decide(obs, NOW, CONFIG)
    assert decision.status is not None
    assert decision.status["error"]["reason"] == "PodFailurePolicy"
    assert "37 not run" in decision.status["error"]["message"]
    dl = next(a for a in decision.actions if isinstance(a, CreateObject)).manifest
    assert len(dl["spec"]["originalSpec"]["items"]) == 40


def test_a_finished_batch_waits_for_redis_rather_than_guess() -> None:
    counts = BatchCounts(total=50, succeeded=30)
    obs = Observed(batch(), job("Complete"), batch=counts, batch_result=None)
    decision = backgroundjob.decide(obs, NOW, CONFIG)
    assert decision.status is None and decision.actions == []
    assert decision.requeue_after == backgroundjob.BATCH_READ_RETRY_SECONDS


class FakePipeline:
    """What the progress pump asks of redis.asyncio: queued reads, one execute."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.queued: list[Any] = []

    def hgetall(self, key: str) -> None:
        self.queued.append(self.data.get(key) or {})

    def zcard(self, key: str) -> None:
        self.queued.append(self.data.get(key, 0))

    async def execute(self) -> list[Any]:
        replies, self.queued = self.queued, []
        return replies


class FakeRedis:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self.data)


def test_the_pump_turns_many_nudges_into_one_reconcile_per_changed_batch() -> None:
    import asyncio

    from bgjobs_operator.progress import ProgressPump
    from bgjobs_operator.runtime import Runtime
    from bgjobs_operator.workqueue import WorkQueue
    from tests.unit.fakeapi import FakeApi

    rt = Runtime(config=CONFIG, api=FakeApi())
    body = batch()
    rt.backgroundjobs.put(body)
    rt.jobs.put(job())
    prefix = "bgjobs:ns:bj-uid:batch:"
    data: dict[str, Any] = {
        prefix + "counts": {b"total": b"50", b"succeeded": b"7", b"failed": b"1"},
        prefix + "leases": 2,
    }
    pump = ProgressPump(rt, "redis://unused", 1.0)
    client = FakeRedis(data)
    for _ in range(100):  # many pods nudging: one key
        pump.dirty.add(("ns", "b"))
    asyncio.run(pump.flush(client))
    assert rt.batches[("ns", "b")] == BatchCounts(total=50, succeeded=7, failed=1, running=2)
    assert len(rt.queue) == 1
    # Nudged again with nothing new: no reconcile, so no status write.
    rt.queue = WorkQueue()
    pump.dirty.add(("ns", "b"))
    asyncio.run(pump.flush(client))
    assert len(rt.queue) == 0
