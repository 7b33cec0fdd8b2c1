"""Benchmark sizes: full defaults, tiny --smoke defaults, each overridable by environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Sizes:
    n: int = 1000  # BENCH_N: BackgroundJobs in the throughput burst
    threads: int = 16  # BENCH_THREADS: client threads creating objects
    m: int = 20  # BENCH_M: jobs per kind in the API-write count
    progress_steps: int = 20  # BENCH_PROGRESS_STEPS: examples.progress steps
    progress_delay: float = 0.1  # BENCH_PROGRESS_DELAY: seconds between steps
    rate: float = 20.0  # BENCH_RATE: submissions per second in the latency run
    duration: float = 60.0  # BENCH_DURATION: seconds of steady submission
    hammer_rate: float = 1000.0  # BENCH_HAMMER_RATE: progress reports per second
    hammer_seconds: float = 10.0  # BENCH_HAMMER_SECONDS: seconds of reporting
    memory_n: int = 10000  # BENCH_MEMORY_N: terminal BackgroundJobs present at start-up
    client_n: int = 500  # BENCH_CLIENT_N: objects per client in the API-client comparison
    worker_runs: int = 20  # BENCH_WORKER_RUNS: worker processes started one by one
    eager_calls: int = 20000  # BENCH_EAGER_CALLS: in-process eager calls
    celery_tasks: int = 200  # BENCH_CELERY_TASKS: Celery round trips
    workflow_handoffs: int = 200  # BENCH_WORKFLOW_HANDOFFS: dependency -> next step
    batch_items: int = 10000  # BENCH_BATCH_ITEMS: no-op items in one batch
    batch_parallelism: int = 2  # BENCH_BATCH_PARALLELISM: the batch's pods
    batch_big_items: int = 100000  # BENCH_BATCH_BIG_ITEMS: no-op items uploaded to Redis
    batch_jobs: int = 50  # BENCH_BATCH_JOBS: per-Job no-op BackgroundJobs to compare with
    queue_jobs: int = 60  # BENCH_QUEUE_JOBS: jobs through a JobQueue of concurrency 2
    queue_rate_seconds: float = 300.0  # BENCH_QUEUE_RATE_SECONDS: backlog held at 60/m
    # BENCH_CELERY: 1 run (creating the bench venv if needed), 0 skip, if-present (run only
    # when the bench venv exists: the smoke run never installs anything)
    celery: str = "1"


SMOKE = Sizes(
    n=20,
    m=3,
    rate=5.0,
    duration=5.0,
    hammer_seconds=2.0,
    memory_n=200,
    worker_runs=3,
    client_n=20,
    eager_calls=500,
    celery_tasks=20,
    workflow_handoffs=8,
    celery="if-present",
    batch_items=200,
    batch_big_items=2000,
    batch_jobs=3,
    queue_jobs=6,
    queue_rate_seconds=15.0,
)


def from_env(smoke: bool, env: dict[str, str] | None = None) -> Sizes:
    env = dict(os.environ if env is None else env)
    base = SMOKE if smoke else Sizes()
    values = {}
    for f in fields(Sizes):
        raw = env.get(f"BENCH_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        kind = type(getattr(base, f.name))
        values[f.name] = kind(raw)
    return Sizes(**{**base.__dict__, **values})


def overrides(env: dict[str, str] | None = None) -> dict[str, str]:
    """The BENCH_* variables set for this run, to print with the command."""
    env = dict(os.environ if env is None else env)
    names = {f"BENCH_{f.name.upper()}" for f in fields(Sizes)}
    return {k: v for k, v in sorted(env.items()) if k in names and v}
