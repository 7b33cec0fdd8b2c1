"""8. Workflow step hand-off: a dependency Succeeded → the next step's Job exists, and the
API writes a workflow step costs."""

from __future__ import annotations

import time
from typing import Any

from bench import audit
from bench.cluster import Bench
from bench.kube import Tracker, burst, phase_is, warm_up, watch_backgroundjobs, watch_jobs
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import num, secs, summary, table

TARGET_P99 = 1.0  # seconds: Celery's chord_unlock polls once a second
CHAIN = 5  # steps per workflow: 4 hand-offs each


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    ns = b.namespace("bench-workflows")
    op = b.operator("workflows", [ns], {"BGJOBS_WORKER_COMMAND": "true"})
    op.start()
    warm_up(b.api, ns)
    succeeded = Tracker(phase_is("Succeeded"))
    jobs = Tracker()
    bj_watch = watch_backgroundjobs(b.api, ns, succeeded.on_event)
    job_watch = watch_jobs(b.api, ns, jobs)
    workflows = max(1, s.workflow_handoffs // (CHAIN - 1))
    bodies = [
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobWorkflow",
            "metadata": {"name": f"w{i:04d}", "namespace": ns},
            "spec": {
                "steps": [
                    {
                        "name": f"s{k}",
                        "task": "examples.noop",
                        "dependsOn": [f"s{k - 1}"] if k else [],
                        "immutable": True,
                    }
                    for k in range(CHAIN)
                ]
            },
        }
        for i in range(workflows)
    ]

    def create(body: dict[str, Any]) -> None:
        resp = b.custom.create_namespaced_custom_object(
            "bgjobs.dev", "v1alpha1", ns, "jobworkflows", body, _preload_content=False
        )
        _ = resp.data  # read to the end, so the connection can serve the next request
        resp.release_conn()

    burst(create, bodies, 4)
    steps = workflows * CHAIN
    done = succeeded.wait_done(steps + 1, 120 + steps * 0.5)  # + the warm-up job
    time.sleep(2)  # the last workflow status writes
    op.stop()
    bj_watch.stop()
    job_watch.stop()
    handoffs = [
        jobs.first_seen[f"w{i:04d}-s{k}"] - succeeded.done_at[f"w{i:04d}-s{k - 1}"]
        for i in range(workflows)
        for k in range(1, CHAIN)
        if f"w{i:04d}-s{k}" in jobs.first_seen and f"w{i:04d}-s{k - 1}" in succeeded.done_at
    ]
    found = [
        w
        for w in audit.by_agent(audit.writes(b.state, [ns]), "bgjobs-operator")
        if not w.name.startswith("warm-up")
    ]
    return {
        "workflows": workflows,
        "steps": steps,
        "all_done": done,
        "handoffs": len(handoffs),
        "latency": summary(handoffs),
        "writes": len(found),
        "by_kind": audit.tally(found),
    }


def render(r: dict[str, Any]) -> Section:
    lat = r["latency"]
    body = table(
        [
            f"{r['handoffs']} hand-offs in {r['workflows']} chains of {CHAIN}",
            "p50",
            "p95",
            "p99",
            "max",
        ],
        [
            [
                "dependency Succeeded → next step's Job exists",
                secs(lat.get("p50")),
                secs(lat.get("p95")),
                secs(lat.get("p99")),
                secs(lat.get("max")),
            ]
        ],
    )
    per_step = r["writes"] / r["steps"] if r["steps"] else None
    body += "\n\n" + table(
        ["operator writes", "count", "per step"],
        [[kind, n, num(n / r["steps"])] for kind, n in r["by_kind"].items()]
        + [["all", r["writes"], num(per_step)]],
    )
    how = (
        f"{r['workflows']} JobWorkflows, each a chain of {CHAIN} immutable `examples.noop` "
        "steps, are created at once (4 client threads); the operator runs with "
        "`BGJOBS_WORKER_COMMAND=true`. Raw-JSON watches on BackgroundJobs and Jobs record the "
        "arrival of the event where a step's BackgroundJob reads `Succeeded` and of the next "
        "step's Job's first event; the hand-off is the difference, so it covers the step's "
        "status event reaching the operator, the workflow reconcile, the BackgroundJob create, "
        "its reconcile and the Job create. Writes are the operator's, read from the audit log."
    )
    p99 = lat.get("p99")
    met = p99 is not None and p99 <= TARGET_P99
    targets = (
        f"p99 {secs(p99)} (target <= {secs(TARGET_P99)}, Celery's chord_unlock interval): "
        f"{verdict(met)}. Writes per step {num(per_step)}: the step's BackgroundJob create, "
        "the job's own (Job create, status writes) and the workflow's status write per step "
        "phase change."
    )
    return Section(
        title="8. Workflow step hand-off",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                "workflow hand-off: p50 / p99",
                f"{secs(lat.get('p50'))} / {secs(p99)}",
                f"p99 <= {secs(TARGET_P99)}",
                verdict(met),
            ),
            Headline("API writes per workflow step", num(per_step)),
        ],
    )
