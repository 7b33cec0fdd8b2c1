"""Operator configuration: command-line flags, each defaulting to an environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field


def _csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)
    default_image: str = "bgjobs/worker:0.1.0"
    worker_command: list[str] = field(default_factory=lambda: ["bgjobs-worker", "run"])
    task_modules: list[str] = field(default_factory=list)
    redis_url: str | None = None
    webhook_url: str | None = None
    metrics_port: int = 8080
    health_port: int = 8081
    progress_interval: float = 1.0
    peering: str | None = None
    # queue -> most Jobs of that queue running at once in one namespace (unlisted: no limit)
    queue_limits: dict[str, int] = field(default_factory=dict)
    max_result_bytes: int = 8192
    max_input_bytes: int = 32768
    # A batch's inline items, in JSON (they are in etcd already, with the BackgroundJob).
    max_items_bytes: int = 1024 * 1024

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


ENV_FLAGS: list[tuple[str, str, str]] = [
    # (flag, environment variable, help)
    (
        "--namespaces",
        "BGJOBS_NAMESPACES",
        "comma-separated namespaces to watch; empty: the whole cluster",
    ),
    (
        "--default-image",
        "BGJOBS_DEFAULT_IMAGE",
        "worker image for jobs that do not name one (default bgjobs/worker:0.1.0)",
    ),
    (
        "--worker-command",
        "BGJOBS_WORKER_COMMAND",
        "command that starts the worker runtime in the image (default 'bgjobs-worker run')",
    ),
    (
        "--task-modules",
        "BGJOBS_TASK_MODULES",
        "comma-separated modules the worker imports to register tasks",
    ),
    (
        "--redis-url",
        "BGJOBS_REDIS_URL",
        "Redis for progress and results, e.g. redis://redis:6379/0; empty: no progress",
    ),
    (
        "--webhook-url",
        "BGJOBS_WEBHOOK_URL",
        "POSTed a JSON alert when a critical job is dead-lettered",
    ),
    ("--metrics-port", "BGJOBS_METRICS_PORT", "Prometheus metrics port (default 8080; 0: off)"),
    ("--health-port", "BGJOBS_HEALTH_PORT", "liveness endpoint port (default 8081; 0: off)"),
    (
        "--progress-interval",
        "BGJOBS_PROGRESS_INTERVAL",
        "seconds between progress writes to one job's status (default 1.0)",
    ),
    (
        "--queue-limits",
        "BGJOBS_QUEUE_LIMITS",
        "per-queue concurrency, e.g. 'exports=2,default=50': at most N running Jobs of a queue "
        "per namespace; the rest wait suspended",
    ),
    ("--peering", "BGJOBS_PEERING", "kopf peering name for several replicas; empty: standalone"),
]


def parse(argv: list[str] | None = None) -> OperatorConfig:
    parser = argparse.ArgumentParser(
        prog="bgjobs-operator",
        description="Run the bgjobs operator. Every flag defaults to its environment variable.",
    )
    for flag, env, help_ in ENV_FLAGS:
        parser.add_argument(flag, default=os.environ.get(env), help=f"{help_} [${env}]")
    opts = parser.parse_args(argv)
    defaults = OperatorConfig()
    return OperatorConfig(
        namespaces=_csv(opts.namespaces),
        default_image=opts.default_image or defaults.default_image,
        worker_command=(
            opts.worker_command.split() if opts.worker_command else defaults.worker_command
        ),
        task_modules=_csv(opts.task_modules),
        redis_url=opts.redis_url or None,
        webhook_url=opts.webhook_url or None,
        metrics_port=int(opts.metrics_port) if opts.metrics_port else defaults.metrics_port,
        health_port=int(opts.health_port) if opts.health_port else defaults.health_port,
        progress_interval=(
            float(opts.progress_interval) if opts.progress_interval else defaults.progress_interval
        ),
        peering=opts.peering or None,
        queue_limits=parse_queue_limits(opts.queue_limits),
    )


def parse_queue_limits(text: str | None) -> dict[str, int]:
    """'exports=2,default=50' -> {'exports': 2, 'default': 50}; refuses anything else."""
    limits: dict[str, int] = {}
    for item in _csv(text):
        queue, sep, number = item.partition("=")
        if not sep or not queue.strip() or not number.strip().isdigit() or int(number) < 1:
            raise SystemExit(f"--queue-limits: {item!r} is not QUEUE=N with N >= 1")
        limits[queue.strip()] = int(number)
    return limits
