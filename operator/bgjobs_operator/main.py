"""Start the operator: configuration, stores, the work queue and its workers, the progress
pump and metrics, all on kopf's event loop; then kopf, whose handlers feed the queue."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import aiohttp
import kopf
import redis.asyncio as aioredis
from prometheus_client import start_http_server

from bgjobs.api import names
from bgjobs.redaction import redact
from bgjobs_operator import config as config_mod
from bgjobs_operator import fastjson, handlers, metrics
from bgjobs_operator.controllers import (
    backgroundjob,
    deadletter,
    jobqueue,
    jobschedule,
    jobworkflow,
    queue,
)
from bgjobs_operator.informer import Informer
from bgjobs_operator.kubeapi import ApiError, KubeApi, load_credentials
from bgjobs_operator.progress import ProgressPump
from bgjobs_operator.runtime import Runtime, WorkKey
from bgjobs_operator.standby import Standby, observe_kopf_peering
from bgjobs_operator.workqueue import worker

log = logging.getLogger("bgjobs_operator")
MANAGED_SELECTOR = f"{names.MANAGED_BY}={names.MANAGER}"
LISTING_PAGE_SIZE = 500
KOPF_WORKER_IDLE_SECONDS = 0.5  # see start()
# Reconciles are async and mostly wait on the API server: a few workers keep enough
# requests in flight for a burst without letting one flood it.
WORKERS = 16

_tasks: list[asyncio.Task[Any]] = []
_runtime: Runtime | None = None


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a deep copy of every object's "essence" on every event to diff it for
    change handlers. This operator has only event handlers and never reads a diff, and
    that copy was 13 % of its CPU in a burst (notes/operator-profile-2026-12.md)."""

    def build(self, *, body: Any, extra_fields: Iterable[Any] | None = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def _libc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


async def release_freed_memory(startup: float = 120.0, every: float = 300.0) -> None:
    """Hand the heap that parsing the initial listing freed back to the OS. glibc keeps
    freed memory mapped, so without this the RSS stays at its listing-time peak for good
    (docs/benchmarks.md, section 5). The listing's length is not known in advance, so the
    trim runs every 10 s during start-up, then every `every` seconds; one trim walks the
    free lists in milliseconds."""
    trim = _libc_trim()
    if trim is None:
        return
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        await asyncio.sleep(10.0 if loop.time() - started < startup else every)
        trim(0)


async def dispatch(rt: Runtime, key: WorkKey) -> float | None:
    with metrics.RECONCILE_SECONDS.labels(key[0]).time():
        return await _dispatch(rt, key)


async def _dispatch(rt: Runtime, key: WorkKey) -> float | None:
    kind, namespace, name = key
    if kind == "BackgroundJob":
        return await backgroundjob.reconcile(rt, namespace, name)
    if kind == "JobSchedule":
        return await jobschedule.reconcile(rt, namespace, name)
    if kind == "JobWorkflow":
        return await jobworkflow.reconcile(rt, namespace, name)
    if kind == "JobQueue":
        return await jobqueue.reconcile(rt, namespace, name)
    if kind == "DeadLetter":
        await deadletter.reconcile(rt, namespace, name)
    elif kind == "Queue":
        await queue.admit(rt, namespace, name)
    return None


def on_error(key: WorkKey, exc: Exception, delay: float) -> None:
    """Count and log a failed reconcile; the queue retries it after `delay`. API refusals
    and connection errors are expected weather and get one line; anything else is a bug
    and gets its traceback."""
    metrics.RECONCILE_ERRORS.labels(key[0]).inc()
    what = f"reconciling {key[0]} {key[1]}/{key[2]} failed"
    if isinstance(exc, ApiError | aiohttp.ClientError | TimeoutError | OSError):
        log.warning("%s: %s; retrying in %.0f s", what, redact(str(exc)), delay)
    else:
        log.error("%s; retrying in %.0f s", what, delay, exc_info=exc)


def informers(rt: Runtime, gate: Standby | None) -> list[Informer]:
    """BackgroundJobs and the Jobs made for them come through the operator's own informers
    (informer.py: most of the events, at a fraction of kopf's cost per event); the other
    kinds through kopf's handlers (handlers.py)."""
    api = rt.api
    assert isinstance(api, KubeApi)
    scopes: list[str | None] = list(rt.config.namespaces) or [None]
    made: list[Informer] = []
    for ns in scopes:
        made.append(
            Informer(
                api, "BackgroundJob", ns, rt.backgroundjobs, handlers.on_backgroundjob, gate=gate
            )
        )
        made.append(Informer(api, "Job", ns, rt.jobs, handlers.on_job, MANAGED_SELECTOR, gate=gate))
    return made


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own Events are posted on transitions that matter; kopf's per-handler Events
    # would cost an API write per reconcile.
    settings.posting.enabled = False
    # Only event handlers and no deletion handlers: kopf adds no finalizers and stores
    # no handler progress, so it writes nothing to the objects (README "API writes").
    settings.persistence.finalizer = "bgjobs.dev/unused-finalizer"
    settings.persistence.diffbase_storage = NoDiffBase()
    # No CRD/namespace scanning: fewer watches and less RBAC (the chart's least privilege).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    # Page the initial listing: one response with every object of a big cluster is parsed
    # at once and leaves a heap that never shrinks (docs/benchmarks.md, section 5).
    settings.watching.chunk_size = LISTING_PAGE_SIZE
    settings.networking.request_timeout = 60
    # kopf keeps a task, a queue and an event per object for idle_timeout after its last
    # event (5 s by default). An initial listing of 10,000 objects arrives within those 5 s,
    # so all 10,000 coexisted, and the heap they left never shrank: 219 MiB settled against
    # 115 MiB with 0.5 s (docs/benchmarks.md, section 5). A handler here only stores and
    # enqueues, so re-making a worker for a later event costs microseconds (the burst's CPU
    # per job did not change).
    settings.queueing.idle_timeout = KOPF_WORKER_IDLE_SECONDS
    fastjson.speed_up_kopf_watch_parsing()
    rt = _runtime
    assert rt is not None
    _tasks.append(asyncio.create_task(rt.queue.run_timer(), name="workqueue-timer"))
    # With peering, a paused replica's workers wait (standby.py); standalone, never.
    gate = Standby(rt.forget_cluster_state) if rt.config.peering else None
    if gate is not None:
        observe_kopf_peering(gate)
    for informer in informers(rt, gate):
        _tasks.append(asyncio.create_task(informer.run(), name=informer.name))
    for n in range(WORKERS):
        _tasks.append(
            asyncio.create_task(
                worker(rt.queue, lambda key: dispatch(rt, key), on_error, gate),
                name=f"worker-{n}",
            )
        )
    _tasks.append(asyncio.create_task(release_freed_memory(), name="malloc-trim"))
    if rt.config.redis_url:
        pump = ProgressPump(rt, rt.config.redis_url, rt.config.progress_interval)
        _tasks.append(asyncio.create_task(pump.run(), name="progress-pump"))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    await asyncio.gather(*_tasks, return_exceptions=True)
    _tasks.clear()
    if _runtime is not None:
        await _runtime.api.close()  # type: ignore[attr-defined]
        if _runtime.redis is not None:
            await _runtime.redis.aclose()


def main(argv: list[str] | None = None) -> None:
    global _runtime
    cfg = config_mod.parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    rt = Runtime(config=cfg, api=KubeApi(load_credentials()))
    if cfg.redis_url:
        rt.redis = aioredis.Redis.from_url(
            cfg.redis_url, socket_timeout=1, socket_connect_timeout=1
        )
    else:
        log.warning(
            "no --redis-url: progress is not reported; outcomes come from termination messages"
        )
    _runtime = rt
    handlers.install(rt)
    if cfg.metrics_port:
        metrics.REGISTRY.register(metrics.JobsCollector(rt.backgroundjobs.values))
        metrics.REGISTRY.register(metrics.QueuesCollector(rt.queued_jobs, rt.jobqueues.values))
        start_http_server(cfg.metrics_port, registry=metrics.REGISTRY)
    log.info(
        "bgjobs operator starting: %s",
        "cluster-wide" if cfg.clusterwide else f"namespaces {', '.join(cfg.namespaces)}",
    )
    kopf.run(
        clusterwide=cfg.clusterwide,
        namespaces=cfg.namespaces,
        standalone=cfg.peering is None,
        peering_name=cfg.peering,  # None: no peering resources needed
        # kopf pauses every replica of the highest priority when there are several, so
        # each replica draws its own: one handles events, the others stand by.
        priority=(cfg.peering_priority or secrets.randbelow(2**31) + 1) if cfg.peering else None,
        liveness_endpoint=(
            f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None
        ),
    )
