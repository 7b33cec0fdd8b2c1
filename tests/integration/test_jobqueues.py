"""JobQueue on the devcluster: the concurrency cap, priority order, pause and resume, rate
limit spacing, delayed start, routes and pod defaults, refused values. Assertions are on
order and counts (and on lower bounds the limiter guarantees), never on how fast a busy
machine gets there."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kubernetes import client

from tests.integration.support import BgJobs, RedisServer, wait_for


def parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def make_queue(bgjobs: BgJobs, name: str, **spec: Any) -> None:
    bgjobs.create(
        "jobqueues",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def queued_reason(bgjobs: BgJobs, name: str) -> str | None:
    conds = bgjobs.status(name).get("conditions") or []
    return next(
        (c["reason"] for c in conds if c["type"] == "Queued" and c["status"] == "True"), None
    )


def admission_patches(audit_log: str, namespace: str) -> Iterator[tuple[str, dt.datetime]]:
    """(Job name, when) of every successful patch of a Job of the namespace by the
    operator, from the audit log: it patches a Job only to unsuspend (admit) it."""
    import json

    with open(audit_log) as f:
        for line in f:
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if (
                e.get("verb") == "patch"
                and ref.get("resource") == "jobs"
                and ref.get("namespace") == namespace
                and e.get("userAgent", "").startswith("bgjobs-operator/")
                and e.get("stage") == "ResponseComplete"
                and (e.get("responseStatus") or {}).get("code", 200) < 300
            ):
                yield ref["name"], parse(e["requestReceivedTimestamp"])


def admission_times(audit_log: str, namespace: str) -> dict[str, dt.datetime]:
    """When the operator unsuspended each Job: the admission itself, not when the Job
    controller got round to starting it."""
    times: dict[str, dt.datetime] = {}
    for name, at in admission_patches(audit_log, namespace):
        times.setdefault(name, at)
    return times


def admission_counts(audit_log: str, namespace: str) -> dict[str, int]:
    """How many times each Job was admitted (patched by the operator)."""
    from collections import Counter

    return dict(Counter(name for name, _ in admission_patches(audit_log, namespace)))


def most_at_once(spans: list[tuple[str, str]]) -> int:
    """The most intervals [start, end) overlapping at any instant (ends before starts)."""
    events = sorted([(parse(s), 1) for s, _ in spans] + [(parse(e), -1) for _, e in spans])
    # At equal times, -1 sorts before +1: a job finishing frees its slot first.
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def test_concurrency_cap_holds_under_a_burst(bgjobs: BgJobs) -> None:
    make_queue(bgjobs, "capped", concurrency=2)
    names = [f"c{i}" for i in range(8)]
    for name in names:
        bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 1}, queue="capped")
    done = [bgjobs.wait_phase(name, timeout=240) for name in names]
    assert [d["phase"] for d in done] == ["Succeeded"] * len(names)
    assert {d["queue"] for d in done} == {"capped"}
    assert most_at_once([(d["startTime"], d["completionTime"]) for d in done]) <= 2
    waited = [
        n
        for n, d in zip(names, done, strict=True)
        if d.get("conditions") and any(c["type"] == "Queued" for c in d["conditions"])
    ]
    assert waited, "with 8 jobs and 2 slots some had to wait, and said so"
    for d in done:
        for c in d.get("conditions") or []:
            if c["type"] == "Queued":
                assert c["status"] == "False" and c["reason"] == "Admitted"


def test_paused_queue_admits_nothing_then_priority_order_on_resume(
    bgjobs: BgJobs, batch: client.BatchV1Api
) -> None:
    make_queue(bgjobs, "ordered", concurrency=1, paused=True)
    order = [("p-low", 0), ("p-high", 10), ("p-mid", 5), ("p-mid2", 5)]
    for name, priority in order:
        bgjobs.submit(
            name, "examples.sleep", kwargs={"seconds": 1}, queue="ordered", priority=priority
        )
    for name, _ in order:
        wait_for(
            lambda n=name: queued_reason(bgjobs, n) == "QueuePaused",
            timeout=60,
            what=f"{name} to say QueuePaused",
        )
    jobs = batch.list_namespaced_job(bgjobs.namespace).items
    assert len(jobs) == len(order) and all(j.spec.suspend for j in jobs), "paused admits nothing"
    assert not any(j.status.active for j in jobs)
    # Raise one waiting job's priority: it jumps the queue.
    bgjobs.patch("p-low", {"spec": {"priority": 7}})
    bgjobs.patch("ordered", {"spec": {"paused": False}}, plural="jobqueues")
    done = {name: bgjobs.wait_phase(name, timeout=180) for name, _ in order}
    ran = sorted(done, key=lambda n: done[n]["startTime"])
    assert ran == ["p-high", "p-low", "p-mid", "p-mid2"]
    starts = [done[n]["startTime"] for n in ran]
    assert len(set(starts)) == len(starts), "one at a time"


def test_rate_limit_spaces_admissions_cluster_wide(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, redis_server: RedisServer, devcluster
) -> None:
    make_queue(bgjobs, "rated", rateLimit="20/m")  # one admission every 3 s
    names = [f"r{i}" for i in range(4)]
    for name in names:
        bgjobs.submit(name, "examples.noop", queue="rated")
    wait_for(
        lambda: sum(queued_reason(bgjobs, n) == "RateLimited" for n in names) >= 2,
        timeout=60,
        what="jobs held back by the rate",
    )
    # While jobs wait, the queue's GCRA state is in Redis (it expires once idle).
    state = redis.Redis.from_url(redis_server.url)
    assert state.exists(f"bgjobs:{bgjobs.namespace}:queue:rated:tat"), "the rate lives in Redis"
    done = [bgjobs.wait_phase(name, timeout=180) for name in names]
    assert [d["phase"] for d in done] == ["Succeeded"] * len(names), [d.get("error") for d in done]
    admitted = admission_times(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
    assert sorted(admitted) == names, "each admitted once"
    starts = sorted(admitted.values())
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # A burst of 2, then 3 s apart by the limiter (Redis' clock); allow a second of
    # request jitter.
    assert all(gap >= 2 for gap in gaps[1:]), gaps


def test_delayed_start_makes_no_job_before_its_time(
    bgjobs: BgJobs, batch: client.BatchV1Api
) -> None:
    created = bgjobs.submit("later", "examples.noop", countdownSeconds=6)
    wait_for(lambda: queued_reason(bgjobs, "later") == "NotBefore", timeout=30, what="NotBefore")
    assert not batch.list_namespaced_job(bgjobs.namespace).items, "no Job before its time"
    done = bgjobs.wait_phase("later", timeout=120)
    assert done["phase"] == "Succeeded"
    assert parse(done["startTime"]) >= parse(created["metadata"]["creationTimestamp"]) + (
        dt.timedelta(seconds=6)
    )


def test_routes_and_pod_defaults_reach_the_pod(bgjobs: BgJobs, core: client.CoreV1Api) -> None:
    make_queue(
        bgjobs,
        "heavy",
        routes=["examples.*"],
        podTemplate={
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "heavy", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "100m"}},
        },
    )
    bgjobs.submit("routed", "examples.noop")
    done = bgjobs.wait_phase("routed", timeout=120)
    assert done["phase"] == "Succeeded" and done["queue"] == "heavy"
    pods = core.list_namespaced_pod(bgjobs.namespace).items
    assert pods and all(p.metadata.labels["bgjobs.dev/queue"] == "heavy" for p in pods)
    assert pods[0].spec.node_selector == {"kubernetes.io/os": "linux"}
    assert any(t.key == "heavy" for t in pods[0].spec.tolerations)
    assert pods[0].spec.containers[0].resources.requests == {"cpu": "100m"}, "a map survives"


def test_an_unknown_queue_runs_unqueued_with_a_warning(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    bgjobs.submit("lost", "examples.noop", queue="nowhere")
    assert bgjobs.wait_phase("lost", timeout=120)["phase"] == "Succeeded"
    events = core.list_namespaced_event(bgjobs.namespace).items
    assert any(e.reason == "QueueNotFound" for e in events)


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("JobQueue", "{rateLimit: fast}", "rateLimit"),
        ("JobQueue", "{concurrency: -1}", "spec.concurrency"),
        (
            "BackgroundJob",
            "{task: examples.noop, startAt: '2030-01-01T00:00:00Z', countdownSeconds: 5}",
            "set startAt or countdownSeconds, not both",
        ),
        ("BackgroundJob", "{task: examples.noop, startAt: tomorrow}", "spec.startAt"),
    ],
)
def test_bad_queue_values_are_refused_at_apply(  # type: ignore[no-untyped-def]
    kubectl, crds, namespace: str, kind: str, spec: str, message: str
) -> None:
    text = f"apiVersion: bgjobs.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: bad}}\nspec: {spec}\n"
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_admission_and_delayed_start_survive_an_operator_sigkill(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, operator, devcluster
) -> None:
    from tests.integration.test_resilience import operator_creates

    make_queue(bgjobs, "survivor", concurrency=1, rateLimit="30/m")  # 2 s apart, one at once
    names = [f"k{i}" for i in range(4)]
    for name in names:
        bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 1}, queue="survivor")
    created = bgjobs.submit("delayed", "examples.noop", countdownSeconds=8)
    bgjobs.wait_phase("k0", "Running", "Succeeded", timeout=120)
    operator.kill()
    operator.start()
    done = {n: bgjobs.wait_phase(n, timeout=240) for n in [*names, "delayed"]}
    assert {n: d["phase"] for n, d in done.items()} == dict.fromkeys(done, "Succeeded")
    spans = [(done[n]["startTime"], done[n]["completionTime"]) for n in names]
    assert most_at_once(spans) == 1, "the cap held across the restart"
    admitted = admission_times(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
    starts = sorted(admitted[n] for n in names)
    # 2 s apart by the limiter, across the restart (the state is in Redis); 1 s of jitter.
    assert all((b - a).total_seconds() >= 1 for a, b in itertools.pairwise(starts))
    assert parse(done["delayed"]["startTime"]) >= parse(
        created["metadata"]["creationTimestamp"]
    ) + dt.timedelta(seconds=8)
    creates = operator_creates(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
    job_creates = {name: c for (res, name), c in creates.items() if res == "jobs"}
    assert job_creates == dict.fromkeys([*names, "delayed"], 1), "one Job each, none skipped"


def test_api_writes_per_queued_job(bgjobs: BgJobs, devcluster) -> None:  # type: ignore[no-untyped-def]
    """From the audit log: a job admitted at once costs the plain job's 3 writes plus its
    unsuspend patch; a job that waited costs one more (its Queued condition)."""
    import json
    import time

    make_queue(bgjobs, "metered", concurrency=1)
    names = [f"m{i}" for i in range(3)]
    for name in names:
        bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 1}, queue="metered")
    for name in names:
        assert bgjobs.wait_phase(name, timeout=120)["phase"] == "Succeeded"
    time.sleep(2)  # let any straggling write land before counting
    per_job: dict[str, list[tuple[str, str, str | None]]] = {n: [] for n in names}
    with open(f"{devcluster.state_dir}/logs/audit.log") as f:
        for line in f:
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if (
                ref.get("namespace") == bgjobs.namespace
                and ref.get("name") in per_job
                and e.get("userAgent", "").startswith("bgjobs-operator/")
                and e.get("stage") == "ResponseComplete"
                and e["verb"] in ("create", "patch", "update", "delete")
            ):
                per_job[ref["name"]].append(
                    (e["verb"], ref.get("resource"), ref.get("subresource"))
                )
    counts = {n: len(w) for n, w in per_job.items()}
    for writes in per_job.values():
        assert writes.count(("create", "jobs", None)) == 1, writes
        assert writes.count(("patch", "jobs", None)) == 1, "admitted exactly once"
    waited = [n for n in names if queued_reason_ever(bgjobs, n)]
    assert waited, "with one slot, later jobs waited"
    for name in names:
        assert counts[name] <= (5 if name in waited else 4), (name, per_job[name])
    print(f"API writes per queued job: {counts}")


def queued_reason_ever(bgjobs: BgJobs, name: str) -> bool:
    conds = bgjobs.status(name).get("conditions") or []
    return any(c["type"] == "Queued" for c in conds)


def test_a_schedules_runs_wait_in_its_job_queue(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, batch: client.BatchV1Api, kubectl
) -> None:
    from tests.integration.test_jobschedule import schedule, trigger

    schedule(bgjobs, "report", "0 3 * * *", {"task": "examples.add", "args": [1, 2]})
    make_queue(bgjobs, "reports", paused=True, routes=["examples.add"])
    wait_for(
        lambda: (
            batch.read_namespaced_cron_job(
                "report", bgjobs.namespace
            ).spec.job_template.spec.suspend
        ),
        timeout=60,
        what="the CronJob to start its runs suspended",
    )
    trigger(kubectl, bgjobs.namespace, "report", "report-now")
    wait_for(
        lambda: queued_reason(bgjobs, "report-now") == "QueuePaused",
        timeout=60,
        what="the run to wait in the paused queue",
    )
    assert batch.read_namespaced_job("report-now", bgjobs.namespace).spec.suspend
    bgjobs.patch("reports", {"spec": {"paused": False}}, plural="jobqueues")
    done = bgjobs.wait_phase("report-now", timeout=120)
    assert done["phase"] == "Succeeded" and done["result"] == 3 and done["queue"] == "reports"


def test_the_cap_holds_with_two_operators_admitting_at_once(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, operator, devcluster, redis_server: RedisServer, alert_sink
) -> None:
    """A second operator, standalone (no peering), so both handle every event: the queue's
    lock in Redis and the API's list of its Jobs keep the cap, not either one's store."""
    from pathlib import Path

    from tests.integration.support import OperatorProcess

    second = OperatorProcess(
        devcluster.kubeconfig,
        redis_server.url,
        Path(devcluster.state_dir) / "logs",
        extra_env={"BGJOBS_WEBHOOK_URL": alert_sink.url, "BGJOBS_QUEUE_LIMITS": "serial=1"},
    )
    second.starts = 100  # its own log files
    second.start()
    try:
        make_queue(bgjobs, "shared", concurrency=3)
        names = [f"s{i:02d}" for i in range(20)]
        for name in names:
            bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 1}, queue="shared")
        done = [bgjobs.wait_phase(name, timeout=300) for name in names]
        assert [d["phase"] for d in done] == ["Succeeded"] * len(names)
        assert most_at_once([(d["startTime"], d["completionTime"]) for d in done]) <= 3
        admitted = admission_times(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
        assert sorted(admitted) == names, "every job admitted, none skipped"
        assert second.alive() and operator.alive()
    finally:
        second.stop()


def reconciles(op: Any) -> float:
    """The replica's reconcile count, all kinds (bgjobs_reconcile_seconds_count)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in op.metrics().splitlines()
        if line.startswith("bgjobs_reconcile_seconds_count")
    )


def test_a_burst_of_100_with_two_peering_replicas_keeps_the_cap_and_the_standby_idle(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, operator, devcluster, redis_server: RedisServer, api_client, alert_sink
) -> None:
    """Two replicas with kopf peering instead of the standalone operator: A (priority 1)
    alone, then B (priority 2) joins mid-burst, so kopf pauses A. A's workers must then
    reconcile nothing, although its delayed keys (the queue's admission window, resyncs)
    keep falling due; B lists everything afresh and finishes the burst. The cap holds,
    every Job is admitted exactly once, every job succeeds."""
    from pathlib import Path

    from devcluster.peering import ensure_peering
    from tests.integration.support import OperatorProcess

    ensure_peering(api_client, bgjobs.namespace, "peers")

    def replica(tag: str, priority: int) -> OperatorProcess:
        log_dir = Path(devcluster.state_dir) / "logs" / f"peer-{tag}-{bgjobs.namespace}"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "BGJOBS_WEBHOOK_URL": alert_sink.url,
            "BGJOBS_NAMESPACES": bgjobs.namespace,
            "BGJOBS_PEERING": "peers",
            "BGJOBS_PEERING_PRIORITY": str(priority),
        }
        return OperatorProcess(devcluster.kubeconfig, redis_server.url, log_dir, extra_env=env)

    a, b = replica("a", 1), replica("b", 2)
    operator.stop()
    try:
        a.start()
        wait_for(
            lambda: "Resuming operations" in a.log_text(), timeout=60, what="replica A to lead"
        )
        make_queue(bgjobs, "burst", concurrency=4)
        names = [f"p{i:03d}" for i in range(100)]
        for name in names:
            bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 0.5}, queue="burst")
        audit = f"{devcluster.state_dir}/logs/audit.log"
        wait_for(
            lambda: len(admission_counts(audit, bgjobs.namespace)) >= 12,
            timeout=180,
            what="replica A to admit a dozen jobs",
        )
        # A's key for this one falls due while A stands by: A must leave it to B.
        bgjobs.submit("later", "examples.noop", countdownSeconds=15)
        b.start()
        wait_for(lambda: "standing by" in a.log_text(), timeout=60, what="replica A to stand by")
        wait_for(lambda: "taking over" in b.log_text(), timeout=60, what="replica B to take over")
        import time

        time.sleep(2)  # reconciles A had in flight when kopf paused it end
        idle_from = reconciles(a)
        done = [bgjobs.wait_phase(name, timeout=600) for name in names]
        assert [d["phase"] for d in done] == ["Succeeded"] * len(names)
        assert most_at_once([(d["startTime"], d["completionTime"]) for d in done]) <= 4
        assert bgjobs.wait_phase("later", timeout=120)["phase"] == "Succeeded"
        counts = admission_counts(audit, bgjobs.namespace)
        assert sorted(counts) == names, "every job admitted, none skipped"
        assert set(counts.values()) == {1}, f"admitted twice: {counts}"
        assert reconciles(a) == idle_from, "the standby reconciled nothing"
        assert a.alive() and b.alive()
    finally:
        a.stop()
        b.stop()
        operator.start()


def test_admitted_last_minute_is_shared_through_redis(redis_server: RedisServer) -> None:
    """A replica that starts (or takes over) counts the other replicas' admissions of the
    last minute, read from Redis, not only its own."""
    import asyncio

    import redis.asyncio as aioredis

    from bgjobs_operator.config import OperatorConfig
    from bgjobs_operator.controllers import jobqueue
    from bgjobs_operator.runtime import Runtime

    now = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)

    async def run() -> tuple[int, int, int]:
        conn = aioredis.Redis.from_url(redis_server.url)
        try:
            first, second = (Runtime(config=OperatorConfig(), api=None, redis=conn) for _ in "ab")  # type: ignore[arg-type]
            earlier = now - dt.timedelta(seconds=90)  # outside the window by now
            await jobqueue._record_admissions(first, "ns", "q", ["old"], earlier)
            await jobqueue._record_admissions(first, "ns", "q", ["j1", "j2"], now)
            await jobqueue._load_admissions(second, "ns", "q", now + dt.timedelta(seconds=5))
            late = now + dt.timedelta(seconds=61)
            third = Runtime(config=OperatorConfig(), api=None, redis=conn)  # type: ignore[arg-type]
            await jobqueue._load_admissions(third, "ns", "q", late)
            kept = await conn.zcard(jobqueue.admissions_key("ns", "q"))
            return len(second.admissions[("ns", "q")]), len(third.admissions[("ns", "q")]), kept
        finally:
            await conn.aclose()

    seen, later, kept = asyncio.run(run())
    assert seen == 2, "the other replica's two admissions of the last minute"
    assert later == 0, "a minute on, the window is empty"
    assert kept == 2, "admissions older than the window are trimmed from Redis"


def test_a_120_per_minute_queue_holds_the_rate_in_every_window_and_fills_it_when_backlogged(  # type: ignore[no-untyped-def]
    bgjobs: BgJobs, devcluster
) -> None:
    """150 jobs at once into a 120/m queue: no 60 s window holds more than 120 admissions
    (Redis' GCRA), and the first minute, with a backlog throughout, admits at least 90 %
    of 120 (the operator's own latency between tokens is what could lose rate)."""
    import bisect

    make_queue(bgjobs, "perminute", rateLimit="120/m")
    names = [f"m{i:03d}" for i in range(150)]
    for name in names:
        bgjobs.submit(name, "examples.noop", queue="perminute")
    audit = f"{devcluster.state_dir}/logs/audit.log"
    wait_for(
        lambda: len(admission_counts(audit, bgjobs.namespace)) == len(names),
        timeout=300,
        what="all 150 admitted",
    )
    counts = admission_counts(audit, bgjobs.namespace)
    assert set(counts.values()) == {1}, "each admitted once"
    times = sorted(admission_times(audit, bgjobs.namespace).values())
    minute = dt.timedelta(seconds=60)
    windows = [bisect.bisect_left(times, t + minute) - i for i, t in enumerate(times)]
    assert max(windows) <= 120, f"a 60 s window held {max(windows)} admissions"
    assert windows[0] >= 108, f"backlogged first minute admitted only {windows[0]} of 120"
