"""The reconcilers, driven through the cases the integration suite covers only end to end,
with a fake of the narrow API interface and a fixed clock (no cluster, no threads)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from bgjobs.api import names
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.controllers import backgroundjob, jobschedule, queue
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.runtime import Runtime
from tests.unit.fakeapi import FakeApi

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NS = "ns"


def runtime(**config: Any) -> tuple[Runtime, FakeApi]:
    api = FakeApi()
    rt = Runtime(config=OperatorConfig(**config), api=api, clock=lambda: NOW)
    return rt, api


def background_job(name: str = "j", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"task": "app.t", "args": [1], "kwargs": {}, **spec},
        "status": {"phase": "Pending"},
    }


def submit(rt: Runtime, api: FakeApi, obj: dict[str, Any]) -> dict[str, Any]:
    stored = api.add(obj)
    store = {"BackgroundJob": rt.backgroundjobs, "JobSchedule": rt.schedules}[obj["kind"]]
    return store.put(stored)


def reconcile(rt: Runtime, name: str = "j") -> float | None:
    return asyncio.run(backgroundjob.reconcile(rt, NS, name))


def finish_job(rt: Runtime, api: FakeApi, name: str, failed: bool) -> None:
    """What the Job controller would do: mark the Job finished; the watch delivers it."""
    job = api.objects[("Job", NS, name)]
    cond = "Failed" if failed else "Complete"
    job["status"] = {
        "failed" if failed else "succeeded": 1,
        "startTime": "2026-03-01T11:59:00Z",
        "conditions": [
            {"type": cond, "status": "True", "reason": "BackoffLimitExceeded" if failed else None}
        ],
    }
    job["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.jobs.put(job)


def status_of(api: FakeApi, name: str = "j") -> dict[str, Any]:
    return api.objects[("BackgroundJob", NS, name)].get("status") or {}


def test_a_new_job_gets_exactly_one_job_and_no_status_write() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    assert reconcile(rt) == backgroundjob.RESYNC_SECONDS
    reconcile(rt)  # again, before any watch event: the store already holds the Job
    assert api.count("create", "Job") == 1
    assert api.count("status", "BackgroundJob") == 0, "Pending costs no write"


def test_crash_between_dead_letter_and_status_makes_one_dead_letter() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    reconcile(rt)
    finish_job(rt, api, "j", failed=True)
    api.fail_next["status"] = ApiError(500, {"message": "operator killed here"})
    with pytest.raises(ApiError):
        reconcile(rt)
    assert api.count("create", "DeadLetter") == 1
    assert status_of(api).get("phase") != "Failed", "the status write was lost"
    reconcile(rt)  # the retry (or the restarted operator) finishes the job
    assert api.count("create", "DeadLetter") == 1, "found, not doubled"
    assert status_of(api)["phase"] == "Failed"
    assert status_of(api)["deadLetter"] == {"name": names.dead_letter_name("j", "uid-1")}
    assert [r for _, r, _ in api.events].count("DeadLettered") == 1


def test_a_failed_status_written_without_dead_letter_is_finished_later() -> None:
    rt, api = runtime()
    bj = background_job()
    bj["status"] = {"phase": "Failed", "jobName": "j", "error": {"type": "E", "reason": "X"}}
    submit(rt, api, bj)
    reconcile(rt)
    assert api.count("create", "DeadLetter") == 1
    assert status_of(api)["deadLetter"]["name"].startswith("j-")


def test_a_lost_job_is_failed_and_dead_lettered_never_recreated() -> None:
    rt, api = runtime()
    bj = background_job()
    bj["status"] = {"phase": "Running", "jobName": "j", "attempts": 1}
    submit(rt, api, bj)
    api.add({"kind": "Namespace", "metadata": {"name": NS}, "status": {"phase": "Active"}})
    reconcile(rt)
    assert api.count("create", "Job") == 0
    st = status_of(api)
    assert st["phase"] == "Failed" and st["error"]["reason"] == "Lost"
    assert api.count("create", "DeadLetter") == 1
    assert "JobLost" in [r for _, r, _ in api.events]


def test_a_job_vanishing_with_its_namespace_is_not_a_loss() -> None:
    rt, api = runtime()
    bj = background_job()
    bj["status"] = {"phase": "Running", "jobName": "j", "attempts": 1}
    submit(rt, api, bj)
    api.add({"kind": "Namespace", "metadata": {"name": NS}, "status": {"phase": "Terminating"}})
    assert reconcile(rt) is None
    assert api.writes == [] and api.events == []


def _stall(rt: Runtime, api: FakeApi, namespace_phase: str) -> None:
    """A running job whose pod failed and got no replacement (yet)."""
    submit(rt, api, background_job())
    reconcile(rt)  # creates the Job
    job = api.objects[("Job", NS, "j")]
    job["status"] = {"startTime": "2026-03-01T11:59:00Z", "failed": 1, "active": 0}
    rt.jobs.put(job)
    api.add({"kind": "Namespace", "metadata": {"name": NS}, "status": {"phase": namespace_phase}})


def test_a_stalled_job_in_a_terminating_namespace_is_deleted_not_failed() -> None:
    rt, api = runtime()
    _stall(rt, api, "Terminating")
    reconcile(rt)
    assert api.count("delete", "Job") == 1  # its pods are released; the namespace can go
    assert api.count("create", "DeadLetter") == 0 and api.events == []
    assert status_of(api).get("phase") in (None, "Pending")


def test_a_stalled_job_in_a_live_namespace_is_left_to_its_retries() -> None:
    rt, api = runtime()
    _stall(rt, api, "Active")
    reconcile(rt)
    assert api.count("delete", "Job") == 0


def test_a_refused_job_marks_the_job_invalid_with_an_event() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    api.fail_next["create"] = ApiError(422, {"message": "spec.template: Invalid value"})
    reconcile(rt)
    st = status_of(api)
    assert st["phase"] == "Failed" and st["error"]["reason"] == "Invalid"
    assert "Invalid value" in st["error"]["message"]
    assert [r for _, r, _ in api.events] == ["InvalidSpec"]
    assert api.count("create", "DeadLetter") == 0, "an invalid spec never ran"


def test_a_foreign_job_of_the_same_name_is_reported_not_adopted() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    api.add({"kind": "Job", "metadata": {"name": "j", "namespace": NS}})
    reconcile(rt)
    assert "does not belong" in status_of(api)["error"]["message"]


def test_cancel_deletes_the_job_once() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    reconcile(rt)
    rt.backgroundjobs.put(
        asyncio.run(api.patch("BackgroundJob", NS, "j", {"spec": {"cancel": True}}))
    )
    reconcile(rt)
    assert api.count("delete", "Job") == 1
    assert status_of(api)["phase"] == "Cancelled"
    reconcile(rt)
    assert api.count("delete", "Job") == 1, "a terminal job is left alone"


def test_success_costs_three_writes_in_all() -> None:
    rt, api = runtime()
    submit(rt, api, background_job())
    reconcile(rt)
    job = api.objects[("Job", NS, "j")]
    job["status"] = {"active": 1, "ready": 1, "startTime": "2026-03-01T11:59:00Z"}
    job["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.jobs.put(job)
    reconcile(rt)
    reconcile(rt)
    finish_job(rt, api, "j", failed=False)
    reconcile(rt)
    reconcile(rt)
    assert status_of(api)["phase"] == "Succeeded"
    assert len(api.writes) == 3, api.writes  # create Job, status Running, status Succeeded


def schedule(name: str = "s", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "JobSchedule",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"schedule": "*/5 * * * *", "template": {"task": "app.t"}, **spec},
    }


def test_a_schedules_run_is_adopted_once() -> None:
    rt, api = runtime()
    sched = submit(rt, api, schedule())
    run = api.add(
        {
            "kind": "Job",
            "metadata": {
                "name": "s-29000000",
                "namespace": NS,
                "labels": {names.SCHEDULE: "s", names.MANAGED_BY: names.MANAGER},
            },
            "status": {"active": 1, "ready": 1},
        }
    )
    rt.jobs.put(run)
    reconcile(rt, "s-29000000")
    bj = api.objects[("BackgroundJob", NS, "s-29000000")]
    assert bj["metadata"]["annotations"][names.JOB_UID_ANNOTATION] == run["metadata"]["uid"]
    assert bj["metadata"]["ownerReferences"][0]["uid"] == sched["metadata"]["uid"]
    # The adopted run was queued; reconciling it reports the running Job, creates none.
    while len(rt.queue):
        key = asyncio.run(rt.queue.get())
        rt.queue.done(key)
        reconcile(rt, key[2])
    assert api.count("create", "BackgroundJob") == 1 and api.count("create", "Job") == 0
    assert status_of(api, "s-29000000")["phase"] == "Running"


def test_schedule_history_is_pruned_oldest_first() -> None:
    rt, api = runtime()
    submit(rt, api, schedule(successfulRunsHistoryLimit=1))
    for i in range(3):
        run = background_job(f"s-{i}")
        run["metadata"]["labels"] = {names.SCHEDULE: "s"}
        run["metadata"]["creationTimestamp"] = f"2026-03-01T10:0{i}:00Z"
        run["status"] = {"phase": "Succeeded"}
        submit(rt, api, run)
    other = background_job("unrelated")
    other["status"] = {"phase": "Succeeded"}
    submit(rt, api, other)
    asyncio.run(jobschedule.reconcile(rt, NS, "s"))
    deleted = [n for v, k, n in api.writes if v == "delete" and k == "BackgroundJob"]
    assert deleted == ["s-0", "s-1"]
    st = api.objects[("JobSchedule", NS, "s")]["status"]
    assert st["lastRun"] == {"name": "s-2", "phase": "Succeeded"}
    assert api.count("create", "CronJob") == 1


def test_an_invalid_schedule_gets_a_condition_and_one_event() -> None:
    rt, api = runtime()
    submit(rt, api, schedule(schedule="every 7 fortnights"))
    asyncio.run(jobschedule.reconcile(rt, NS, "s"))
    asyncio.run(jobschedule.reconcile(rt, NS, "s"))
    conditions = api.objects[("JobSchedule", NS, "s")]["status"]["conditions"]
    conds = {c["type"]: c["status"] for c in conditions}
    assert conds["Invalid"] == "True" and conds["Ready"] == "False"
    assert [r for _, r, _ in api.events] == ["InvalidSchedule"]
    assert api.count("create", "CronJob") == 0


def queued_job(name: str, created: str, suspend: bool = True) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "creationTimestamp": created,
            "labels": {names.QUEUE: "exports"},
        },
        "spec": {"suspend": suspend},
        "status": {},
    }


def test_queue_admits_oldest_first_and_never_overshoots() -> None:
    rt, api = runtime(queue_limits={"exports": 2})
    for name, created in (("c", "3"), ("a", "1"), ("b", "2"), ("d", "4")):
        rt.jobs.put(api.add(queued_job(name, created)))
    asyncio.run(queue.admit(rt, NS, "exports"))
    assert [n for v, _, n in api.writes if v == "patch"] == ["a", "b"]
    # Before any watch event: the store holds the patched Jobs, so nothing more is admitted.
    asyncio.run(queue.admit(rt, NS, "exports"))
    assert api.count("patch", "Job") == 2


def test_queue_admission_reads_only_its_own_jobs() -> None:
    rt, api = runtime(queue_limits={"exports": 1})
    for i in range(50):
        other = queued_job(f"other-{i}", "0", suspend=False)
        other["metadata"]["labels"] = {names.QUEUE: "default"}
        rt.jobs.put(api.add(other))
    rt.jobs.put(api.add(queued_job("mine", "1")))
    assert [j["metadata"]["name"] for j in rt.jobs.by_index("queue", (NS, "exports"))] == ["mine"]
    asyncio.run(queue.admit(rt, NS, "exports"))
    assert [n for v, _, n in api.writes if v == "patch"] == ["mine"]


def test_finished_jobs_are_compacted_in_the_store_unless_awaiting_dead_letter() -> None:
    rt, _ = runtime()
    done = background_job("done")
    done["metadata"]["uid"] = "u1"
    done["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 999
    }
    done["status"] = {"phase": "Succeeded", "result": {"big": "x" * 999}, "jobName": "done"}
    kept = rt.backgroundjobs.put(done)
    assert "result" not in kept["status"] and kept["metadata"]["annotations"] == {}
    assert set(kept["spec"]) == {"task", "queue", "critical"}
    failing = background_job("failing")
    failing["metadata"]["uid"] = "u2"
    failing["status"] = {"phase": "Failed", "error": {"type": "E"}}
    assert rt.backgroundjobs.put(failing)["spec"]["args"] == [1], "a dead letter needs the spec"
    assert rt.unfinished_jobs() == [(NS, "failing")]


def test_a_refused_replay_is_reported_once_not_retried_forever() -> None:
    from bgjobs_operator.controllers import deadletter

    rt, api = runtime()
    dl = api.add(
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "DeadLetter",
            "metadata": {"name": "j-1234", "namespace": NS, "generation": 2},
            "spec": {"jobName": "j", "jobUID": "u", "task": "app.t", "replays": 1},
        }
    )
    rt.deadletters.put(dl)
    api.fail_next["create"] = ApiError(422, {"message": 'spec.task: Invalid value: "a b"'})
    asyncio.run(deadletter.reconcile(rt, NS, "j-1234"))
    status = api.objects[("DeadLetter", NS, "j-1234")]["status"]
    [cond] = [c for c in status["conditions"] if c["type"] == "ReplayFailed"]
    assert cond["status"] == "True" and "Invalid value" in cond["message"]
    assert [r for _, r, _ in api.events] == ["ReplayFailed"]
    asyncio.run(deadletter.reconcile(rt, NS, "j-1234"))  # the status event's reconcile
    assert api.count("create", "BackgroundJob") == 0 and len(api.events) == 1
    # a spec change (a new generation) tries again, and a success clears the condition
    bumped = api.objects[("DeadLetter", NS, "j-1234")]
    bumped["metadata"]["generation"] = 3
    bumped["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.deadletters.put(bumped)
    asyncio.run(deadletter.reconcile(rt, NS, "j-1234"))
    assert api.count("create", "BackgroundJob") == 1
    status = api.objects[("DeadLetter", NS, "j-1234")]["status"]
    assert status["replayedJobs"] == ["j-1234-r1"] and status["conditions"] == []


def _job_deleted(rt: Runtime, api: FakeApi, *, with_its_backgroundjob: bool) -> None:
    """A job whose Job was created (no status written yet: Pending is never written), then
    deleted; with its BackgroundJob, that one's DELETED event not delivered yet."""
    from bgjobs_operator import handlers

    submit(rt, api, background_job())
    reconcile(rt)
    assert api.count("create", "Job") == 1
    job = api.objects.pop(("Job", NS, "j"))
    if with_its_backgroundjob:
        del api.objects[("BackgroundJob", NS, "j")]
    handlers.install(rt)
    try:
        handlers.on_job({"type": "DELETED", "object": job})
    finally:
        handlers._runtime = None


def test_a_deleted_jobs_job_is_not_made_again_before_its_deletion_arrives() -> None:
    rt, api = runtime()
    _job_deleted(rt, api, with_its_backgroundjob=True)
    reconcile(rt)  # from a store that still holds the deleted BackgroundJob
    assert api.count("create", "Job") == 1
    assert api.writes == [w for w in api.writes if w[0] == "create"]  # no status write


def test_a_job_deleted_before_any_status_is_lost_not_recreated() -> None:
    rt, api = runtime()
    api.add({"kind": "Namespace", "metadata": {"name": NS}, "status": {"phase": "Active"}})
    _job_deleted(rt, api, with_its_backgroundjob=False)
    reconcile(rt)
    assert api.count("create", "Job") == 1
    assert status_of(api)["error"]["reason"] == "Lost"
