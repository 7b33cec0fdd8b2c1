"""9. Batches: N no-op items in one BackgroundJob (warm workers leasing items from Redis)
against the per-Job path (one BackgroundJob, one pod, one worker process per task), in the
same run, with real worker processes; and the warm worker's per-item cost against a plain
in-process loop calling the same function."""

from __future__ import annotations

import time
from typing import Any

from bench.cluster import Bench
from bench.kube import (
    Tracker,
    backgroundjob,
    burst,
    create_backgroundjob,
    phase_is,
    warm_up,
    watch_backgroundjobs,
)
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import num, secs, table

TASK = "examples.noop"
TARGET_RATIO = 1.0  # issue 13: batch time <= Celery's, pod start included


def _batch(b: Bench, s: Sizes) -> dict[str, Any]:
    ns = b.namespace("bench-batch")
    op = b.operator("batches", [ns])
    op.start()
    warm_up(b.api, ns)
    done = Tracker(phase_is("Succeeded", "Failed"))
    watch = watch_backgroundjobs(b.api, ns, done.on_event)
    body = backgroundjob(ns, "batch", TASK, items=[[] for _ in range(s.batch_items)])
    body["spec"]["parallelism"] = s.batch_parallelism
    cpu_before = b.cpu_seconds({"operator": op.pid})
    start = time.time()
    create_backgroundjob(b.api, body)
    finished = done.wait_done(1, 120 + s.batch_items * 0.05)
    elapsed = done.done_at["batch"] - start if finished else None
    cpu_after = b.cpu_seconds({"operator": op.pid})
    watch.stop()
    status = b.custom.get_namespaced_custom_object(
        "bgjobs.dev", "v1alpha1", ns, "backgroundjobs", "batch"
    ).get("status", {})
    op.stop()
    return {
        "items": s.batch_items,
        "parallelism": s.batch_parallelism,
        "seconds": elapsed,
        "phase": status.get("phase"),
        "batch": status.get("batch"),
        "operator_cpu": cpu_after.get("operator", 0.0) - cpu_before.get("operator", 0.0),
    }


def _uploaded(b: Bench, s: Sizes) -> dict[str, Any]:
    """A batch too big for the spec: items uploaded to Redis (spec.itemsFrom), as
    Client.map does past the inline limit. Operator RSS before and after, Redis memory."""
    import json

    import redis

    from bgjobs_worker import batch_keys

    n = s.batch_big_items
    ns = b.namespace("bench-batch-big")
    op = b.operator("batches-big", [ns])
    op.start()
    warm_up(b.api, ns)
    time.sleep(2)
    rss_before = op.memory_kib()["VmRSS"]
    client = redis.Redis.from_url(b.redis.url)
    mem_before = _redis_memory(client)
    done = Tracker(phase_is("Succeeded", "Failed"))
    watch = watch_backgroundjobs(b.api, ns, done.on_event)
    start = time.time()
    batch_keys.write_upload(client, ns, "big", [json.dumps([])] * n)
    upload_s = time.time() - start
    body = backgroundjob(ns, "big", TASK, itemsFrom={"upload": "big"})
    body["spec"]["parallelism"] = s.batch_parallelism
    create_backgroundjob(b.api, body)
    finished = done.wait_done(1, 300 + n * 0.01)
    elapsed = done.done_at["big"] - start if finished else None
    watch.stop()
    time.sleep(2)
    rss_after = op.memory_kib()["VmRSS"]
    mem_after = _redis_memory(client)
    status = b.custom.get_namespaced_custom_object(
        "bgjobs.dev", "v1alpha1", ns, "backgroundjobs", "big"
    ).get("status", {})
    op.stop()
    client.close()
    return {
        "items": n,
        "upload_seconds": upload_s,
        "seconds": elapsed,
        "phase": status.get("phase"),
        "batch": status.get("batch"),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "redis_bytes": mem_after - mem_before,
    }


def _per_job(b: Bench, s: Sizes) -> dict[str, Any]:
    ns = b.namespace("bench-perjob")
    op = b.operator("perjob", [ns])
    op.start()
    warm_up(b.api, ns)
    done = Tracker(phase_is("Succeeded", "Failed"))
    watch = watch_backgroundjobs(b.api, ns, done.on_event)
    bodies = [backgroundjob(ns, f"j-{i:05d}", TASK) for i in range(s.batch_jobs)]
    start = time.time()
    burst(lambda body: create_backgroundjob(b.api, body), bodies, 8)
    finished = done.wait_done(s.batch_jobs, 120 + s.batch_jobs * 2.0)
    elapsed = max(done.done_at.values()) - start if finished else None
    watch.stop()
    op.stop()
    return {"jobs": s.batch_jobs, "seconds": elapsed}


def _in_process(n: int) -> dict[str, Any]:
    """The floor: the same function called n times in a loop, in this process."""
    from examples.tasks import noop

    start = time.perf_counter()
    for _ in range(n):
        noop.fn()
    return {"calls": n, "seconds": time.perf_counter() - start}


def _warm_worker(b: Bench, n: int) -> dict[str, Any]:
    """One warm worker draining n no-op items in this process, against the bench's Redis:
    the per-item cost without pods (lease, call, record; chunks as the operator sizes
    them for one pod)."""
    import json
    import uuid

    import redis

    from bgjobs_worker import batch_keys
    from bgjobs_worker.batch import BatchSettings, BatchWorker, ItemRunner
    from bgjobs_worker.context import JobIdentity
    from bgjobs_worker.registry import get_task

    client = redis.Redis.from_url(b.redis.url)
    identity = JobIdentity("bench", "warm", str(uuid.uuid4()), "warm-0")
    settings = BatchSettings(batch_id=str(uuid.uuid4()), chunk_size=min(100, max(1, n // 20)))
    keys = batch_keys.BatchKeys.of(identity.namespace, settings.batch_id)
    before = _redis_memory(client)
    client.eval(batch_keys.SEED, 6, *keys.all(), *batch_keys.seed_args(3600, [json.dumps([])] * n))
    seeded = _redis_memory(client)
    task = get_task(TASK)
    runner = ItemRunner(task, task.policy, 0, identity, settings)
    worker = BatchWorker(client, identity, settings, runner, 3600)
    start = time.perf_counter()
    code = worker.run()
    seconds = time.perf_counter() - start
    drained = _redis_memory(client)
    client.delete(*keys.all())
    client.close()
    return {
        "items": n,
        "seconds": seconds,
        "exit": int(code),
        "chunk": settings.chunk_size,
        "redis_bytes_seeded": seeded - before,
        "redis_bytes_drained": drained - before,
    }


def _redis_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def _celery(b: Bench, s: Sizes) -> dict[str, Any]:
    """Celery on the same redis-server: N no-op tasks, apply_async of each, then every
    result fetched, a threads pool of the batch's total concurrency (its parallelism)."""
    import json
    import os
    import subprocess

    from bench.cluster import ROOT
    from bench.worker import _want_celery, bench_venv, ensure_venv

    wanted, why = _want_celery(s)
    if not wanted:
        return {"skipped": why}
    venv = bench_venv()
    ensure_venv(venv)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DEVCLUSTER_ID": str(b.state),
        "BENCH_CELERY_URL": b.redis.url.rsplit("/", 1)[0] + "/2",  # same server, own db
    }
    log = open(b.log_dir / "bench-celery-batch-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            str(venv / "bin" / "celery"),
            "-A",
            "bench.celery_app",
            "worker",
            "--pool=threads",
            f"--concurrency={s.batch_parallelism}",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "bench.celery_app", "burst", str(s.batch_items)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    return {
        "batch": _batch(b, s),
        "uploaded": _uploaded(b, s),
        "per_job": _per_job(b, s),
        "loop": _in_process(s.batch_items),
        "warm": _warm_worker(b, s.batch_items),
        "celery": _celery(b, s),
    }


def _rate(n: int, seconds: float | None) -> float | None:
    return n / seconds if seconds else None


def _celery_row(cel: dict[str, Any], concurrency: int) -> list[Any]:
    label = f"Celery {cel.get('version', '')}, threads pool of {concurrency}, same Redis"
    if not cel.get("seconds"):
        return [label, "-", "-", cel.get("skipped", "not measured")]
    return [label, cel["tasks"], secs(cel["seconds"]), num(cel["tasks"] / cel["seconds"], 0)]


def render(r: dict[str, Any]) -> Section:
    bt, pj, loop = r["batch"], r["per_job"], r["loop"]
    batch_rate = _rate(bt["items"], bt["seconds"])
    job_rate = _rate(pj["jobs"], pj["seconds"])
    speedup = batch_rate / job_rate if batch_rate and job_rate else None
    per_item_us = bt["seconds"] * bt["parallelism"] / bt["items"] * 1e6 if bt["seconds"] else None
    loop_us = loop["seconds"] / loop["calls"] * 1e6
    counts = bt.get("batch") or {}
    body = table(
        ["no-op tasks, real worker processes", "tasks", "submit → all done", "tasks/s"],
        [
            [
                f"**batch**: one BackgroundJob, `items`, parallelism {bt['parallelism']}",
                bt["items"],
                secs(bt["seconds"]),
                f"**{num(batch_rate, 0)}**",
            ],
            [
                "per-Job path: one BackgroundJob (one pod, one process) per task",
                pj["jobs"],
                secs(pj["seconds"]),
                num(job_rate, 1),
            ],
            _celery_row(r.get("celery") or {}, bt["parallelism"]),
        ],
    )
    warm = r.get("warm") or {}
    warm_us = warm["seconds"] / warm["items"] * 1e6 if warm else None
    body += (
        f"\n\nBatch ended `{bt['phase']}` with {counts.get('succeeded')} succeeded, "
        f"{counts.get('failed')} failed, {counts.get('executions')} executions; status "
        f"reported {counts.get('ratePerSecond')} items/s (first lease to last recording, "
        f"Redis' clock). Operator CPU for the whole batch: {bt['operator_cpu']:.2f} s.\n\n"
    )
    body += table(
        ["per-item cost of a no-op", "per item", "what it is"],
        [
            [
                "warm worker, in process",
                f"{num(warm_us, 1)} µs",
                f"one BatchWorker draining {warm.get('items')} items against the same Redis, "
                f"chunks of {warm.get('chunk')}: lease, call, record",
            ],
            [
                "batch on the cluster",
                f"{num(per_item_us, 0)} µs",
                "wall time x pods / items: includes pod and process start",
            ],
            ["plain loop", f"{loop_us:.2f} µs", "the function called in a Python loop"],
        ],
    )
    up = r.get("uploaded") or {}
    if up:
        upc = up.get("batch") or {}
        body += "\n\n" + table(
            [f"{up['items']} no-op items uploaded to Redis (`spec.itemsFrom`)", "value"],
            [
                ["upload (pipelined RPUSH, one MULTI)", secs(up["upload_seconds"])],
                ["upload start → batch `Succeeded`", secs(up["seconds"])],
                ["items/s, pod start included", num(_rate(up["items"], up["seconds"]), 0)],
                ["phase, succeeded", f"{up['phase']}, {upc.get('succeeded')}"],
                [
                    "operator RSS before → after",
                    f"{up['rss_before_kib'] / 1024:.0f} → {up['rss_after_kib'] / 1024:.0f} MiB",
                ],
                [
                    "Redis memory added (upload, items, outcomes)",
                    f"{up['redis_bytes'] / up['items']:.0f} bytes/item",
                ],
            ],
        )
    if warm.get("redis_bytes_drained") is not None:
        n = warm["items"]
        body += (
            f"\n\nRedis memory per item (`used_memory`, {n} items `[]`): "
            f"{warm['redis_bytes_seeded'] / n:.0f} bytes once seeded, "
            f"{warm['redis_bytes_drained'] / n:.0f} bytes once every outcome is recorded "
            '(item, outcome `{"status": "SUCCESS", "result": null, "attempts": 1}`); '
            "larger items and results add their JSON size."
        )
    how = (
        f"Both runs on the bench's devcluster, real worker processes (`bgjobs-worker run`) on "
        f"the process node, the bench's redis-server. **Batch:** one BackgroundJob with "
        f"{bt['items']} items `[]` of `{TASK}`, `parallelism: {bt['parallelism']}`, default "
        "chunk size; the clock runs from the create request to a watch seeing the phase "
        f"`Succeeded` (pod start included). **Per-Job path:** {pj['jobs']} BackgroundJobs of "
        f"`{TASK}` created by 8 threads, clock to the last `Succeeded`. **Loop:** "
        f"`examples.tasks.noop.fn()` called {loop['calls']} times in the bench process. "
        "**Celery:** Celery in the bench's own virtualenv on the same redis-server (its own "
        f"database), a worker with `--pool=threads --concurrency={bt['parallelism']}` (the "
        f"batch's total concurrency) started beforehand; the client calls `apply_async()` "
        f"for each of {bt['items']} no-op tasks, then fetches every result; the clock runs "
        "from the first `apply_async` to the last result."
    )
    cel = r.get("celery") or {}
    ratio = bt["seconds"] / cel["seconds"] if bt["seconds"] and cel.get("seconds") else None
    if ratio is not None:
        targets = (
            f"Batch time / Celery time for {bt['items']} no-op tasks = {ratio:.2f} (target "
            f"<= {TARGET_RATIO}, pod start included): {verdict(ratio <= TARGET_RATIO)}. "
        )
    else:
        targets = "Celery not measured: " + str(cel.get("skipped", "no result")) + ". "
    targets += (
        f"The batch runs {num(speedup, 0)}x as many no-op tasks per second as the per-Job path."
        if speedup
        else "Not measured: a run did not finish in time."
    )
    return Section(
        title="9. Batches",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                f"batch of {bt['items']} no-op items, {bt['parallelism']} pods: items/s",
                f"{num(batch_rate, 0)}/s ({secs(bt['seconds'])})",
            ),
            Headline(
                f"batch of {bt['items']}: time / Celery's time (threads pool, same Redis)",
                f"{secs(bt['seconds'])} / {secs(cel.get('seconds'))} = {num(ratio)}",
                f"<= {TARGET_RATIO}",
                verdict(ratio is not None and ratio <= TARGET_RATIO),
            ),
            Headline("per-Job path, no-op: jobs/s", f"{num(job_rate, 1)}/s"),
        ],
    )
