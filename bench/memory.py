"""5. Memory and start-up: the operator started with many terminal BackgroundJobs present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from bench.cluster import ROOT, Bench, cpu_seconds
from bench.kube import Tracker, backgroundjob, burst, create_backgroundjob, watch_jobs
from bench.report import Headline, Section, verdict
from bench.sizes import Sizes
from bench.stats import secs, table
from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs_operator.informer import PAGE_SIZE
from tests.integration.support import wait_for

TARGET_MB = 150  # 150 * 10^6 bytes
FRESH = "fresh"


def terminal_status() -> dict[str, Any]:
    """What a finished job's status looks like, so each object has a realistic size."""
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "phase": "Succeeded",
        "attempts": 1,
        "startTime": ts,
        "completionTime": ts,
        "result": None,
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Completed",
                "message": "the task returned",
                "lastTransitionTime": ts,
            }
        ],
    }


def _create_finished(b: Bench, body: dict[str, Any]) -> None:
    create_backgroundjob(b.api, body)
    md = body["metadata"]
    custom: Any = client.CustomObjectsApi(b.api)
    resp = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        md["namespace"],
        "backgroundjobs",
        md["name"],
        {"status": terminal_status()},
        _preload_content=False,
    )
    _ = resp.data
    resp.release_conn()


def succeeded_count(metrics_text: str) -> int:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("bgjobs_jobs{") and 'phase="Succeeded"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


RECONCILE_PROBE = 50  # new jobs whose reconciles are timed, with and without old ones


def reconcile_totals(metrics_text: str, kind: str = "BackgroundJob") -> tuple[float, float]:
    """(sum, count) of the operator's bgjobs_reconcile_seconds histogram for one kind."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if f'kind="{kind}"' not in line:
            continue
        if line.startswith("bgjobs_reconcile_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("bgjobs_reconcile_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def _probe_reconciles(b: Bench, op: Any, ns: str, prefix: str) -> dict[str, float]:
    """Submit RECONCILE_PROBE new jobs to a running operator and report the mean wall time
    and the operator CPU per reconcile of a BackgroundJob while they run to the end."""
    jobs = Tracker(done=lambda o: True)
    watch = watch_jobs(b.api, ns, jobs)
    sum0, count0 = reconcile_totals(op.metrics())
    cpu0 = cpu_seconds(op.pid)
    for i in range(RECONCILE_PROBE):
        create_backgroundjob(b.api, backgroundjob(ns, f"{prefix}-{i:03d}", "examples.noop"))
    jobs.wait_seen(RECONCILE_PROBE, 120)
    time.sleep(5)  # their pods run `true` and finish; their reconciles are counted too
    sum1, count1 = reconcile_totals(op.metrics())
    cpu1 = cpu_seconds(op.pid)
    watch.stop()
    reconciles = max(1.0, count1 - count0)
    return {
        "reconciles": count1 - count0,
        "mean_seconds": (sum1 - sum0) / reconciles,
        "cpu_per_reconcile": (cpu1 - cpu0) / reconciles,
    }


def _idle_rss(b: Bench) -> tuple[int, dict[str, float]]:
    """RSS of an operator watching an empty namespace, for reference, and the cost of
    reconciling new jobs there."""
    ns = b.namespace("bench-idle")
    op = b.operator("idle", [ns], {"BGJOBS_WORKER_COMMAND": "true"})
    op.start()
    time.sleep(3)
    rss = op.memory_kib()["VmRSS"]
    probe = _probe_reconciles(b, op, ns, "probe")
    op.stop()
    return rss, probe


def _start_and_list(
    b: Bench, ns: str, s: Sizes, label: str, module: str, jobs: Tracker | None
) -> dict[str, Any]:
    """Start an operator over the namespace's finished jobs; with `jobs`, submit a new job
    right after the spawn and time its Job too."""
    op = b.operator(label, [ns], {"BGJOBS_WORKER_COMMAND": "true"}, module=module)
    started = op.start(wait=False)
    submitted = None
    if jobs is not None:
        # Submitted right after the process starts: it is listed along with the others.
        create_backgroundjob(b.api, backgroundjob(ns, FRESH, "examples.noop"))
        submitted = time.time()
    op.wait_healthy(timeout=300)
    healthy = time.time()
    timeout = 120 + s.memory_n * 0.05
    wait_for(
        lambda: succeeded_count(op.metrics()) >= s.memory_n,
        timeout=timeout,
        interval=0.25,
        what=f"the operator to list {s.memory_n} BackgroundJobs",
    )
    listed = time.time()
    at_listed = op.memory_kib()
    fresh = jobs.wait_seen(1, timeout) if jobs is not None else False
    time.sleep(5)
    settled = op.memory_kib()
    probe = _probe_reconciles(b, op, ns, f"probe-{label}") if jobs is not None else None
    op.stop()
    return {
        "rss_at_listed_kib": at_listed["VmRSS"],
        "rss_settled_kib": settled["VmRSS"],
        "hwm_kib": settled["VmHWM"],
        "to_healthy": healthy - started,
        "to_listed": listed - started,
        "submitted_after": submitted - started if submitted else None,
        "to_first_job": jobs.first_seen[FRESH] - started if jobs is not None and fresh else None,
        "probe": probe,
    }


def _breakdown(b: Bench, ns: str, n: int) -> dict[str, float]:
    """Per-object cost of the operator's cache, in a fresh interpreter, for copies of one
    of the real objects."""
    custom: Any = client.CustomObjectsApi(b.api)
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "backgroundjobs", limit=1)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(listing["items"][0], f)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory_breakdown", f.name, str(n)],
            env=b.base_env(),
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
    finally:
        os.unlink(f.name)
    return dict(json.loads(out))


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    idle_kib, idle_probe = _idle_rss(b)
    ns = b.namespace("bench-memory")
    bodies = [backgroundjob(ns, f"m-{i:05d}", "examples.noop") for i in range(s.memory_n)]
    setup_seconds = burst(lambda body: _create_finished(b, body), bodies, s.threads)
    jobs = Tracker()
    watch = watch_jobs(b.api, ns, jobs)
    shipped = _start_and_list(b, ns, s, "memory", "bgjobs_operator", jobs)
    watch.stop()
    return {
        "n": s.memory_n,
        "setup_seconds": setup_seconds,
        "idle_rss_kib": idle_kib,
        "idle_probe": idle_probe,
        **shipped,
        "chunk_size": PAGE_SIZE,
        "breakdown": _breakdown(b, ns, max(2000, s.memory_n)),
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def _mib_mb(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB ({kib * 1024 / 1e6:.0f} MB)"


def _met(kib: int) -> bool:
    return kib * 1024 <= TARGET_MB * 1e6


def render(r: dict[str, Any]) -> Section:
    n, bd = r["n"], r["breakdown"]
    growth = r["rss_settled_kib"] - r["idle_rss_kib"]
    cache_kib = bd["cache_kib_per_object"] * n
    rows = [
        ["operator RSS, empty namespace (reference)", _mib(r["idle_rss_kib"])],
        [f"**operator RSS with {n} BackgroundJobs listed**", f"**{_mib(r['rss_settled_kib'])}**"],
        ["RSS right when the last one was listed", _mib(r["rss_at_listed_kib"])],
        ["peak RSS (VmHWM)", _mib(r["hwm_kib"])],
        [
            "of the growth over the empty namespace: the operator's cached copies (estimated)",
            f"{_mib(int(cache_kib))} ({bd['cache_kib_per_object']:.1f} KiB per job)",
        ],
        ["of the growth: the rest (not attributed)", _mib(int(growth - cache_kib))],
        ["process start → /healthz answers", secs(r["to_healthy"])],
        [f"process start → all {n} listed (metrics)", secs(r["to_listed"])],
        ["process start → Job of a job submitted right after start", secs(r["to_first_job"])],
    ]
    idle_p, full_p = r["idle_probe"], r["probe"]
    if full_p:
        rows += [
            [
                f"reconcile of a new job, mean wall time: empty namespace / {n} finished present",
                f"{secs(idle_p['mean_seconds'])} / {secs(full_p['mean_seconds'])}",
            ],
            [
                f"operator CPU per reconcile: empty namespace / {n} finished present",
                f"{secs(idle_p['cpu_per_reconcile'])} / {secs(full_p['cpu_per_reconcile'])}",
            ],
        ]
    body = table([f"{n} terminal BackgroundJobs present", "measured"], rows)
    how = (
        f"With no operator running, the bench creates {n} BackgroundJobs and patches each "
        "one's status subresource to a finished `Succeeded` status (phase, attempts, times, a "
        f"condition), so no pod ever runs ({r['setup_seconds']:.0f} s with 16 threads). It "
        "then starts the operator and, "
        f"{(r['submitted_after'] or 0) * 1000:.0f} ms after spawning it, submits one new "
        'BackgroundJob. The operator\'s `bgjobs_jobs{phase="Succeeded"}` gauge (computed from '
        "its cache, which its watch handlers fill) is polled every 0.25 s until it reaches "
        f"{n}; RSS is VmRSS from `/proc/<pid>/status` at that moment and again 5 s later "
        '(reported as the figure), peak is VmHWM. "Job of a job submitted right after '
        'start" is the time from spawning the process to a raw-JSON watch seeing that '
        "job's batch Job: import, start-up and its place in the initial listing. The "
        "reference RSS is the same operator watching an empty namespace. The estimates come "
        f"from a separate interpreter (`bench/memory_breakdown.py`) holding "
        f"{max(2000, n)} copies of one of these objects as the API server returns it "
        f"({bd['object_json_bytes']} bytes of JSON): the operator's cached copy (what its "
        "informer keeps: the BackgroundJob store's trimmed copy; kopf keeps no record of "
        "BackgroundJobs, which come through the operator's own informer, `informer.py`). The "
        f"informer fetches its initial listing in pages of {r['chunk_size']}. Reconcile "
        "cost: after the listing settled, "
        f"{RECONCILE_PROBE} new BackgroundJobs are submitted to the running operator and, once "
        "every Job exists and 5 s more have passed, the change in the operator's "
        "`bgjobs_reconcile_seconds` histogram (kind BackgroundJob) and in its CPU time "
        "(`/proc/<pid>/stat`) is divided by the number of reconciles; the same probe runs "
        "against the reference operator in an empty namespace."
    )
    met = _met(r["rss_settled_kib"])
    targets = (
        f"RSS {_mib_mb(r['rss_settled_kib'])} with {n} BackgroundJobs "
        f"(target <= {TARGET_MB} MB): {verdict(met)}. Over the "
        f"{_mib(r['idle_rss_kib'])} of an operator with nothing to watch, memory grows by "
        f"{growth / max(1, n):.1f} KiB per job: about {bd['cache_kib_per_object']:.1f} KiB "
        "is the operator's cached copy of the job; the rest "
        f"({_mib(int(growth - cache_kib))}) is not attributed to live objects here."
    )
    if not met:
        targets += (
            " What would close it: the unattributed heap left by parsing the listing "
            "(smaller pages, or returning freed memory to the OS after the initial sync), and "
            "a smaller cached copy of running jobs."
        )
    return Section(
        title="5. Memory and start-up",
        body=body,
        how=how,
        targets=targets,
        headlines=[
            Headline(
                f"operator RSS with {n} BackgroundJobs",
                _mib_mb(r["rss_settled_kib"]),
                f"<= {TARGET_MB} MB",
                verdict(met),
            ),
            Headline(
                f"start → first new Job, {n} jobs present",
                secs(r["to_first_job"]),
            ),
        ],
    )
