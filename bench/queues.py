"""11. JobQueue admission: the delay from a freed slot to the next admission, the rate
limiter's accuracy over minutes of backlog, and the API writes a queued job costs."""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

from bench import audit
from bench.cluster import Bench
from bench.kube import (
    Tracker,
    backgroundjob,
    burst,
    create_backgroundjob,
    job_complete,
    warm_up,
    watch_jobs,
)
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import num, secs, summary, table

TARGET_DELAY_P99 = 0.5  # seconds, the queues issue's goal
CONCURRENCY = 2
RATE_PER_MINUTE = 60
UNQUEUED_WRITES = 3.0  # per successful job, section 2


def _queue(b: Bench, ns: str, name: str, **spec: Any) -> None:
    b.custom.create_namespaced_custom_object(
        "bgjobs.dev",
        "v1alpha1",
        ns,
        "jobqueues",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def _admissions(b: Bench, ns: str) -> dict[str, float]:
    """When the operator unsuspended each Job (its patch of the Job, audit log)."""
    found: dict[str, float] = {}
    for w in audit.by_agent(audit.writes(b.state, [ns]), "bgjobs-operator"):
        if w.kind == "patch jobs" and w.code < 300:
            found.setdefault(w.name, w.at)
    return found


def _slots(b: Bench, s: Sizes, ns: str, out: dict[str, Any]) -> None:
    """Jobs wait behind a concurrency cap; each admission after the first CONCURRENCY
    follows a completion. The k-th admission's slot was freed by the (k - CONCURRENCY)-th
    completion (first seen by a Job watch), so the delay is the difference."""
    _queue(b, ns, "slots", concurrency=CONCURRENCY)
    jobs = Tracker(job_complete)
    watch = watch_jobs(b.api, ns, jobs)
    n = s.queue_jobs
    bodies = [backgroundjob(ns, f"q{i:04d}", "examples.noop", queue="slots") for i in range(n)]
    burst(lambda body: create_backgroundjob(b.api, body), bodies, 4)
    out["slots_done"] = jobs.wait_done(n, 120 + n * 2)
    time.sleep(2)  # the last status writes
    watch.stop()
    admitted = sorted(_admissions(b, ns).values())
    completed = sorted(jobs.done_at.values())
    delays = [
        admitted[k] - completed[k - CONCURRENCY]
        for k in range(CONCURRENCY, min(len(admitted), len(completed) + CONCURRENCY))
    ]
    mine = [
        w
        for w in audit.by_agent(audit.writes(b.state, [ns]), "bgjobs-operator")
        if not w.name.startswith("warm-up") and w.resource != "jobqueues"
    ]
    out.update(
        slots_jobs=n,
        slots_admitted=len(admitted),
        delay=summary(delays),
        writes=len(mine),
        writes_by_kind=audit.tally(mine),
        queue_writes=sum(
            1
            for w in audit.by_agent(audit.writes(b.state, [ns]), "bgjobs-operator")
            if w.resource == "jobqueues"
        ),
    )


def _rate(b: Bench, s: Sizes, ns: str, out: dict[str, Any]) -> None:
    """A backlog larger than the rate can admit in the run: count admissions per window."""
    _queue(b, ns, "rated", rateLimit=f"{RATE_PER_MINUTE}/m")
    seconds = s.queue_rate_seconds
    n = int(RATE_PER_MINUTE * seconds / 60) + 10  # never runs dry
    bodies = [backgroundjob(ns, f"r{i:04d}", "examples.noop", queue="rated") for i in range(n)]
    burst(lambda body: create_backgroundjob(b.api, body), bodies, 4)
    time.sleep(seconds + 5)
    admitted = sorted(_admissions(b, ns).values())
    start = admitted[0] if admitted else 0.0
    inside = [t for t in admitted if t < start + seconds]
    windows = [bisect.bisect_left(admitted, t + 60) - i for i, t in enumerate(admitted)]
    full = [w for i, w in enumerate(windows) if admitted[i] + 60 <= start + seconds]
    out.update(
        rate_seconds=seconds,
        rate_admitted=len(inside),
        rate_expected=RATE_PER_MINUTE * seconds / 60,
        rate_max_window=max(windows, default=0),
        rate_min_full_window=min(full, default=None),
    )


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    slots_ns, rate_ns = b.namespace("bench-queue-slots"), b.namespace("bench-queue-rate")
    op = b.operator("queues", [slots_ns, rate_ns], {"BGJOBS_WORKER_COMMAND": "true"})
    op.start()
    warm_up(b.api, slots_ns)
    warm_up(b.api, rate_ns)
    out: dict[str, Any] = {}
    # Side by side: the rate run is minutes of mostly waiting.
    rate = threading.Thread(target=_rate, args=(b, s, rate_ns, out))
    rate.start()
    _slots(b, s, slots_ns, out)
    rate.join()
    op.stop()
    return out


def render(r: dict[str, Any]) -> Section:
    lat = r["delay"]
    n = r["slots_jobs"]
    per_job = r["writes"] / n if n else None
    body = table(
        [f"{r['slots_admitted']} admissions, concurrency {CONCURRENCY}", "p50", "p99", "max"],
        [
            [
                "a Job completes → the next waiting Job unsuspended",
                secs(lat.get("p50")),
                secs(lat.get("p99")),
                secs(lat.get("max")),
            ]
        ],
    )
    body += "\n\n" + table(
        ["operator writes for queued jobs", "count", "per job"],
        [[kind, c, num(c / n)] for kind, c in r["writes_by_kind"].items()]
        + [
            ["all (JobQueue status excluded)", r["writes"], num(per_job)],
            ["JobQueue status writes", r["queue_writes"], num(r["queue_writes"] / n)],
        ],
    )
    accuracy = r["rate_admitted"] / r["rate_expected"] if r["rate_expected"] else None
    body += "\n\n" + table(
        [f"rateLimit {RATE_PER_MINUTE}/m, backlogged for {r['rate_seconds']:.0f} s", "value"],
        [
            [
                "admitted / expected",
                f"{r['rate_admitted']} / {r['rate_expected']:.0f} = {num(accuracy)}",
            ],
            ["most admissions in any 60 s window", r["rate_max_window"]],
            ["fewest in a full 60 s window while backlogged", r["rate_min_full_window"]],
        ],
    )
    how = (
        f"One operator (`BGJOBS_WORKER_COMMAND=true`, pods exit at once) on two namespaces. "
        f"Slots: {n} `examples.noop` jobs into a JobQueue with concurrency {CONCURRENCY}; a Job "
        "watch records when each Job's Complete condition arrives, the audit log when the "
        f"operator patched each Job to unsuspend it; admission k's slot was freed by completion "
        f"k - {CONCURRENCY}, so the delay covers the Job event reaching the operator, the queue's "
        "reconcile (Redis lock, the API list of the queue's Jobs, a GCRA token) and the patch. "
        f"Rate: a JobQueue with rateLimit {RATE_PER_MINUTE}/m and more jobs than it may admit, "
        "run side by side; admissions counted from the audit log (API server clock)."
    )
    p99 = lat.get("p99")
    met = p99 is not None and p99 <= TARGET_DELAY_P99
    targets = (
        f"Admission delay p99 {secs(p99)} (goal <= {secs(TARGET_DELAY_P99)}): {verdict(met)}. "
        f"Rate accuracy {num(accuracy)} with at most {r['rate_max_window']} in any 60 s window "
        f"(limit {RATE_PER_MINUTE}). Writes per queued job {num(per_job)} against "
        f"{num(UNQUEUED_WRITES)} unqueued: the unsuspend patch, and a BackgroundJob status write "
        "when its Queued reason changes (not per admission of another job)."
    )
    return Section(
        title="11. JobQueue admission",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                "queue admission delay: p50 / p99",
                f"{secs(lat.get('p50'))} / {secs(p99)}",
                f"p99 <= {secs(TARGET_DELAY_P99)}",
                verdict(met),
            ),
            Headline(
                f"rate {RATE_PER_MINUTE}/m over {r['rate_seconds']:.0f} s: accuracy / max per 60 s",
                f"{num(accuracy)} / {r['rate_max_window']}",
                f"<= {RATE_PER_MINUTE} per 60 s",
                verdict(r["rate_max_window"] <= RATE_PER_MINUTE),
            ),
            Headline("API writes per queued job", num(per_job)),
        ],
    )
