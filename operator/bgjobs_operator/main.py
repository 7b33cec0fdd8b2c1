"""Start the operator: configuration, caches, progress pump, metrics, then kopf."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

import kopf
import redis
from prometheus_client import start_http_server

from bgjobs_operator import config as config_mod
from bgjobs_operator import handlers, metrics, queues, runtime
from bgjobs_operator.controllers import backgroundjob, jobschedule, queue
from bgjobs_operator.kubeapi import KubeApi, load_client
from bgjobs_operator.progress import STATUS_FIELDS, Key, ProgressPump
from bgjobs_operator.runtime import Runtime, trim_object
from bgjobs_operator.status import is_terminal

log = logging.getLogger("bgjobs_operator")
RESYNC_SECONDS = 30.0
LISTING_PAGE_SIZE = 500


@kopf.on.startup()
def configure_kopf(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own Events are posted on transitions that matter; kopf's per-handler Events
    # would cost an API write per reconcile.
    settings.posting.enabled = False
    # Only event handlers and no deletion handlers: kopf adds no finalizers and stores
    # no handler progress, so it writes nothing to the objects (README "API writes").
    settings.persistence.finalizer = "bgjobs.dev/unused-finalizer"
    settings.execution.max_workers = 16
    # No CRD/namespace scanning: fewer watches and less RBAC (the chart's least privilege).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    # Page the initial listing: one response with every object of a big cluster is parsed
    # at once and leaves a heap that never shrinks (docs/benchmarks.md, section 5).
    settings.watching.chunk_size = LISTING_PAGE_SIZE
    settings.networking.request_timeout = 60


def _progress_target(rt: Runtime, key: Key) -> tuple[str, dict[str, Any] | None] | None:
    bj, job = rt.backgroundjobs.get(key), rt.jobs.get(key)
    if bj is None or job is None or is_terminal(bj):
        return None
    return job["metadata"]["uid"], (bj.get("status") or {}).get("progress")


def _write_progress(rt: Runtime, key: Key, progress: dict[str, Any]) -> None:
    # Every field, unset ones as null: a merge patch would otherwise keep an older message.
    full = {k: progress.get(k) for k in STATUS_FIELDS}
    updated = rt.api.patch_status("BackgroundJob", key[0], key[1], {"progress": full})
    metrics.PROGRESS_WRITES.inc()
    rt.remember(rt.backgroundjobs, trim_object(updated))


def _active(rt: Runtime) -> list[Key]:
    return [k for k, bj in list(rt.backgroundjobs.items()) if not is_terminal(bj)]


def _resync(rt: Runtime, stop: threading.Event) -> None:
    """Level-based safety net: re-reconcile every unfinished object periodically, so a
    transient API error or a missed event never leaves a job stuck. Unchanged objects
    cost no API calls."""
    while not stop.wait(RESYNC_SECONDS):
        for bj in [b for b in list(rt.backgroundjobs.values()) if not is_terminal(b)]:
            handlers._guard("BackgroundJob", backgroundjob.reconcile, rt, bj)
        for sched in list(rt.schedules.values()):
            handlers._guard("JobSchedule", jobschedule.reconcile, rt, sched)
        for namespace, name in {(k[0], queues.queue_of(j)) for k, j in list(rt.jobs.items())}:
            handlers._guard("Queue", queue.admit, rt, namespace, name)


def main(argv: list[str] | None = None) -> None:
    cfg = config_mod.parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    rt = Runtime(config=cfg, api=KubeApi(load_client()))
    if cfg.redis_url:
        rt.redis = redis.Redis.from_url(cfg.redis_url, socket_timeout=1, socket_connect_timeout=1)
    else:
        log.warning(
            "no --redis-url: progress is not reported; outcomes come from termination messages"
        )
    runtime.install(rt)
    if cfg.metrics_port:
        metrics.REGISTRY.register(metrics.JobsCollector(lambda: list(rt.backgroundjobs.values())))
        start_http_server(cfg.metrics_port, registry=metrics.REGISTRY)
    pump = None
    if cfg.redis_url:
        pump = ProgressPump(
            cfg.redis_url,
            cfg.progress_interval,
            lambda k: _progress_target(rt, k),
            lambda k, p: _write_progress(rt, k, p),
            lambda: _active(rt),
        )
        pump.start()
    stop = threading.Event()
    threading.Thread(target=_resync, args=(rt, stop), name="resync", daemon=True).start()
    log.info(
        "bgjobs operator starting: %s",
        "cluster-wide" if cfg.clusterwide else f"namespaces {', '.join(cfg.namespaces)}",
    )
    try:
        kopf.run(
            clusterwide=cfg.clusterwide,
            namespaces=cfg.namespaces,
            standalone=cfg.peering is None,
            peering_name=cfg.peering,  # None: no peering resources needed
            # kopf pauses every replica of the highest priority when there are several, so
            # each replica draws its own: one handles events, the others stand by.
            priority=secrets.randbelow(2**31) + 1 if cfg.peering else None,
            liveness_endpoint=(
                f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None
            ),
        )
    finally:
        stop.set()
        if pump:
            pump.stop()
