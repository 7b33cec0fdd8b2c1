"""Prometheus metrics served by the operator (README "Metrics" lists them).

Counters count transitions this operator process observed. Gauges (running jobs, queue
backlog) are computed at scrape time from the operator's view of the cluster, so they are
level-based like everything else and survive restarts."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_FINISHED = Counter(
    "bgjobs_jobs_finished_total",
    "BackgroundJobs that reached a final phase.",
    ["task", "phase"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "bgjobs_job_duration_seconds",
    "From the first attempt's start to the final phase.",
    ["task"],
    registry=REGISTRY,
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800),
)
RETRIES = Counter(
    "bgjobs_job_retries_total", "Failed attempts that were retried.", ["task"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "bgjobs_dead_letters_total",
    'DeadLetters created; critical="true" ones alert.',
    ["task", "critical"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "bgjobs_reconcile_errors_total",
    "Reconciliations that raised; retried with backoff.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "bgjobs_reconcile_seconds",
    "Wall time of one reconcile (observe, decide, act), by kind.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
WEBHOOK_FAILURES = Counter(
    "bgjobs_alert_webhook_failures_total", "Alert webhook calls that failed.", registry=REGISTRY
)
PROGRESS_WRITES = Counter(
    "bgjobs_progress_status_writes_total", "Status writes carrying progress.", registry=REGISTRY
)
QUEUE_ADMITTED = Counter(
    "bgjobs_queue_admitted_total",
    "Jobs a JobQueue admitted (unsuspended).",
    ["namespace", "queue"],
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "bgjobs_queue_admission_wait_seconds",
    "From a queued job's creation to its admission.",
    ["namespace", "queue"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400),
)


class JobsCollector(Collector):
    """bgjobs_jobs{phase,task,queue}: BackgroundJobs by phase right now (Pending = backlog)."""

    def __init__(self, snapshot: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "bgjobs_jobs", "BackgroundJobs by current phase.", labels=["phase", "task", "queue"]
        )
        tally: Tally[tuple[str, str, str]] = Tally()
        for bj in self.snapshot():
            spec, status = bj.get("spec") or {}, bj.get("status") or {}
            tally[
                (
                    status.get("phase") or "Pending",
                    spec.get("task", ""),
                    status.get("queue") or spec.get("queue") or "default",
                )
            ] += 1
        for (phase, task, queue), n in sorted(tally.items()):
            gauge.add_metric([phase, task, queue], n)
        yield gauge


class QueuesCollector(Collector):
    """bgjobs_queue_jobs{namespace,queue,state}: unfinished Jobs per queue right now,
    running (admitted) or waiting (suspended); bgjobs_queue_paused{namespace,queue}."""

    def __init__(
        self,
        snapshot: Callable[[], Iterable[tuple[tuple[str, str], bool]]],
        queues: Callable[[], Iterable[dict[str, Any]]],
    ) -> None:
        self.snapshot = snapshot  # ((namespace, queue), suspended) per unfinished Job
        self.queues = queues  # the JobQueue objects

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "bgjobs_queue_jobs",
            "Unfinished Jobs per queue: running (admitted) or waiting (suspended).",
            labels=["namespace", "queue", "state"],
        )
        tally: Tally[tuple[str, str, str]] = Tally()
        for (namespace, queue), suspended in self.snapshot():
            tally[(namespace, queue, "waiting" if suspended else "running")] += 1
        for labels, n in sorted(tally.items()):
            gauge.add_metric(list(labels), n)
        yield gauge
        paused = GaugeMetricFamily(
            "bgjobs_queue_paused",
            "1 for a JobQueue with spec.paused (its waiting jobs are not stuck), else 0.",
            labels=["namespace", "queue"],
        )
        for jq in self.queues():
            md = jq["metadata"]
            value = 1.0 if (jq.get("spec") or {}).get("paused") else 0.0
            paused.add_metric([md["namespace"], md["name"]], value)
        yield paused
