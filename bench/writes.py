"""2. API writes per job, counted in the audit log: bgjobs' operator on M successful jobs
without and with progress, then a kopf-defaults baseline operator on M jobs, one after the
other, each in its own namespace."""

from __future__ import annotations

import importlib.metadata
import time
from typing import Any

from bench import audit
from bench.cluster import Bench, OperatorRun
from bench.kube import Tracker, backgroundjob, burst, create_backgroundjob, watch_backgroundjobs
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import num, table

OURS = ("bgjobs-operator/", "kopf/")
BASELINE = ("bgjobs-bench-kopf-baseline/", "kopf/")
TARGET = 3.0


def _run_jobs(
    b: Bench, op: OperatorRun, ns: str, bodies: list[dict[str, Any]], agents: tuple[str, ...]
) -> dict[str, Any]:
    """Submit bodies, wait until every one is Succeeded, count the operator's writes."""
    op.start()
    done = Tracker(lambda bj: (bj.get("status") or {}).get("phase") == "Succeeded")
    watch = watch_backgroundjobs(b.api, ns, done.on_event)
    burst(lambda body: create_backgroundjob(b.api, body), bodies, 4)
    finished = done.wait_done(len(bodies), 120 + 5 * len(bodies))
    time.sleep(3)  # straggling writes (a late status write, an Event) still count
    op.stop()
    watch.stop()
    found = audit.by_agent(audit.writes(b.state, [ns]), *agents)
    return {
        "namespace": ns,
        "jobs": len(bodies),
        "succeeded": len(done.done_at),
        "finished": finished,
        "writes": len(found),
        "by_kind": audit.tally(found),
        "by_agent": audit.tally_agents(found),
    }


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    ns_add, ns_progress, ns_kopf = (
        b.namespace("bench-writes"),
        b.namespace("bench-writes-progress"),
        b.namespace("bench-writes-kopf"),
    )
    add = [backgroundjob(ns_add, f"add-{i:03d}", "examples.add", args=[i, 1]) for i in range(s.m)]
    progress_kwargs = {"steps": s.progress_steps, "delay": s.progress_delay}
    progress = [
        backgroundjob(ns_progress, f"progress-{i:03d}", "examples.progress", kwargs=progress_kwargs)
        for i in range(s.m)
    ]
    kopf_add = [
        backgroundjob(ns_kopf, f"add-{i:03d}", "examples.add", args=[i, 1]) for i in range(s.m)
    ]
    return {
        "kopf": importlib.metadata.version("kopf"),
        "m": s.m,
        "progress_kwargs": progress_kwargs,
        "ours_add": _run_jobs(b, b.operator("writes", [ns_add]), ns_add, add, OURS),
        "ours_progress": _run_jobs(
            b, b.operator("writes-progress", [ns_progress]), ns_progress, progress, OURS
        ),
        "kopf_add": _run_jobs(
            b, b.kopf_baseline("kopf-default", ns_kopf), ns_kopf, kopf_add, BASELINE
        ),
    }


def _per_job(r: dict[str, Any]) -> float:
    return float(r["writes"]) / r["jobs"] if r["jobs"] else 0.0


def _extra(ours: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Kinds of write the baseline makes more of than bgjobs, per job."""
    extra = []
    for kind, count in baseline["by_kind"].items():
        more = (count - ours["by_kind"].get(kind, 0)) / max(1, baseline["jobs"])
        if more > 0:
            extra.append(f"`{kind}` {num(more)}")
    return ", ".join(extra) or "nothing"


def render(r: dict[str, Any]) -> Section:
    runs = [
        ("bgjobs, `examples.add`", r["ours_add"]),
        (
            f"bgjobs, `examples.progress` (steps {r['progress_kwargs']['steps']}, "
            f"delay {r['progress_kwargs']['delay']} s)",
            r["ours_progress"],
        ),
        ("kopf defaults baseline, `examples.add`", r["kopf_add"]),
    ]
    kinds = sorted({k for _, run in runs for k in run["by_kind"]})
    header = ["write", *[name for name, _ in runs]]
    rows: list[list[object]] = [
        [f"`{k}`", *[num(run["by_kind"].get(k, 0) / run["jobs"]) for _, run in runs]] for k in kinds
    ]
    rows.append(["**total per job**", *[f"**{num(_per_job(run))}**" for _, run in runs]])
    rows.append(
        [
            "jobs (Succeeded / submitted)",
            *[f"{run['succeeded']} / {run['jobs']}" for _, run in runs],
        ]
    )
    body = table(header, rows)
    body += (
        "\n\nWrites by user agent: "
        + "; ".join(
            f"{name}: " + ", ".join(f"`{a}` {n}" for a, n in run["by_agent"].items())
            for name, run in runs
        )
        + "."
    )
    m = r["m"]
    how = (
        f"M = {m} jobs per column, each column in its own namespace with its own operator "
        "process, run one after the other (never two operators at once), with the real worker "
        "(`bgjobs-worker run`) and Redis. The bench waits until every job is `Succeeded`, "
        "waits 3 s more, stops the operator, and reads the API server's audit log (every "
        "create/update/patch/delete at Metadata level) for writes to objects in that "
        "namespace whose user agent is the operator's: `bgjobs-operator/` (its Kubernetes "
        "client) or `kopf/` (kopf's own requests: annotations, finalizers, Events). The "
        "baseline is `bench/kopf_default_operator.py`: `@kopf.on.create` creates the same Job "
        "(`build_job`) and returns a status dict, `@kopf.on.event` on batch Jobs patches the "
        "owner's `status.phase` once per phase change; kopf's settings are left at their "
        "defaults; its client writes carry `bgjobs-bench-kopf-baseline/`. The table divides "
        "each kind of write by M."
    )
    ours, with_progress, baseline = (
        _per_job(r["ours_add"]),
        _per_job(r["ours_progress"]),
        _per_job(r["kopf_add"]),
    )
    met = ours <= TARGET and r["ours_add"]["succeeded"] == m
    targets = (
        f"{num(ours)} writes per successful job without progress (target <= {TARGET:g}): "
        f"{verdict(met)}. The kopf-defaults baseline costs {num(baseline)} per job for the "
        f"same work ({num(baseline / ours if ours else 0)}x); what it writes on top, per "
        f"job: {_extra(r['ours_add'], r['kopf_add'])}. "
        f"With progress, a job costs {num(with_progress)} writes: its "
        f"{r['progress_kwargs']['steps']} reports over "
        f"{r['progress_kwargs']['steps'] * r['progress_kwargs']['delay']:g} s are coalesced "
        "to at most one status write per second."
    )
    kopf_events = r["kopf_add"]["by_kind"].get("create events", 0)
    if not kopf_events:
        targets += (
            f" kopf {r['kopf']} posted no Events for the baseline: it turns handler log "
            "messages into Events only with `settings.posting.loggers`, off by default. The "
            "handler result kopf stores under `status.create_job` is pruned by the CRD's "
            "structural schema, so that status write changes nothing and costs all the same."
        )
    if not met:
        targets += (
            " Over budget: the table shows which kind of write is extra; a status write "
            "when the job starts and one when it ends are the only ones expected besides the "
            "Job create."
        )
    return Section(
        title="2. API writes per job",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                "API writes per successful job (no progress): bgjobs / kopf defaults",
                f"{num(ours)} / {num(baseline)}",
                f"<= {TARGET:g}",
                verdict(met),
            ),
            Headline("API writes per job with progress (bgjobs)", num(with_progress)),
        ],
    )
