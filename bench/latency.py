"""3. Submit-to-Job latency at a steady submission rate."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.cluster import Bench
from bench.kube import Tracker, backgroundjob, create_backgroundjob, warm_up, watch_jobs
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import secs, summary, table

TARGET_P99 = 0.300  # seconds, submit → Job at 20/s


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    ns = b.namespace("bench-latency")
    op = b.operator("latency", [ns], {"BGJOBS_WORKER_COMMAND": "true"})
    op.start()
    warm_up(b.api, ns)
    jobs = Tracker()
    watch = watch_jobs(b.api, ns, jobs)
    count = int(s.rate * s.duration)
    submitted: dict[str, float] = {}
    call_seconds: list[float] = []
    lock = threading.Lock()

    def submit(name: str) -> None:
        sent = time.time()
        create_backgroundjob(b.api, backgroundjob(ns, name, "examples.noop"))
        with lock:
            submitted[name] = sent
            call_seconds.append(time.time() - sent)

    start = time.monotonic()
    # A few threads, so one slow create never delays the next submission's schedule.
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for i in range(count):
            delay = start + i / s.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(submit, f"l-{i:05d}"))
        for f in futures:
            f.result()
    submit_seconds = time.monotonic() - start
    all_seen = jobs.wait_seen(count, 60 + count * 0.2)
    time.sleep(1)
    op.stop()
    watch.stop()
    latencies = [jobs.first_seen[n] - t for n, t in submitted.items() if n in jobs.first_seen]
    return {
        "rate": s.rate,
        "duration": s.duration,
        "count": count,
        "achieved_rate": count / submit_seconds,
        "seen": len(latencies),
        "all_seen": all_seen,
        "latency": summary(latencies),
        "create_call": summary(call_seconds),
    }


def render(r: dict[str, Any]) -> Section:
    lat, call = r["latency"], r["create_call"]
    rows = [
        [
            "submit → Job exists",
            secs(lat.get("p50")),
            secs(lat.get("p95")),
            secs(lat.get("p99")),
            secs(lat.get("max")),
        ],
        [
            "the create request itself",
            secs(call.get("p50")),
            secs(call.get("p95")),
            secs(call.get("p99")),
            secs(call.get("max")),
        ],
    ]
    body = table(
        [
            f"{r['count']} jobs at {r['rate']:g}/s for {r['duration']:g} s",
            "p50",
            "p95",
            "p99",
            "max",
        ],
        rows,
    )
    body += (
        f"\n\nAchieved submission rate {r['achieved_rate']:.1f}/s; "
        f"{r['seen']} of {r['count']} Jobs seen."
    )
    how = (
        f"The bench submits one BackgroundJob (`examples.noop`) every {1 / r['rate']:.3f} s "
        f"for {r['duration']:g} s from a paced loop (the creates run on 8 client threads so a "
        "slow request never delays the schedule) and records the client-side time just "
        "before each create request. A raw-JSON watch on batch Jobs in the namespace records "
        "the arrival of each Job's first event; latency = arrival - submit, so it includes "
        "the create request, the BackgroundJob's watch event reaching the operator, the "
        "reconcile, the Job create and the Job's watch event reaching the bench. The "
        "operator runs with `BGJOBS_WORKER_COMMAND=true` (pods run `true`), as in section 1; "
        "the jobs' pods run and finish during the measurement."
    )
    p99 = lat.get("p99")
    met = p99 is not None and p99 <= TARGET_P99
    targets = (
        f"p99 {secs(p99)} (target <= {secs(TARGET_P99)}): {verdict(met)}. Measured p50 "
        f"{secs(lat.get('p50'))}, p95 {secs(lat.get('p95'))}, "
        f"p99 {secs(lat.get('p99'))} at {r['rate']:g} submissions/s. Of that, the "
        f"client's own create request takes p50 {secs(call.get('p50'))}."
    )
    return Section(
        title="3. Submit-to-Job latency",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                f"submit → Job at {r['rate']:g}/s: p50 / p95 / p99",
                f"{secs(lat.get('p50'))} / {secs(lat.get('p95'))} / {secs(lat.get('p99'))}",
                f"p99 <= {secs(TARGET_P99)}",
                verdict(met),
            )
        ],
    )
